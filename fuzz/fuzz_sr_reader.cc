// libFuzzer target: the SR reader (reads SRs back for tests and tools; a damaged SR file
// must give a Status). DCMTK reads files, so each input goes through a temp file on tmpfs.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "pxs/reports/sr_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/dev/shm/pxs-fuzz-sr-" + std::to_string(::getpid()) + ".dcm";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto sr = pxs::ReadStructuredReport(path);
  (void)sr.ok();
  return 0;
}
