// libFuzzer target: a model package's metadata.json reader (packages come from sites and
// researchers; a broken one must be refused with a message, never crash the node).
#include <cstddef>
#include <cstdint>
#include <string>

#include "pxs/scoring/model_info.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  auto info = pxs::scoring::ParseModelMetadata(json);
  (void)info.ok();
  return 0;
}
