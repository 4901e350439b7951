// libFuzzer target: the TOML config loader (any text a site may write, or a corrupted
// file) must give a Status, never crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string>

#include "pxs/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = pxs::ParseConfig(text, "/fuzz/pxsnode.toml");
  (void)cfg.ok();
  return 0;
}
