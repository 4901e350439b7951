// libFuzzer target: the attribute validation of received data sets, through the real
// Ingester (DCMTK parse, SOP class / UID / pixel-data checks, storing what is valid) on a
// data folder on tmpfs. Any bytes must end in a DIMSE status, never a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "pxs/scp/ingest.h"
#include "pxs/storage/database.h"

namespace {

struct Stack {
  Stack() {
    dir = "/dev/shm/pxs-fuzz-ingest-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    db = std::move(*pxs::Database::OpenNonDurableForBenchmark(pxs::DatabasePathFor(dir)));
    pxs::IngestOptions options;
    options.data_dir = dir;
    ingester = std::move(*pxs::Ingester::Create(options, db.get()));
  }
  std::string dir;
  std::unique_ptr<pxs::Database> db;
  std::unique_ptr<pxs::Ingester> ingester;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Stack* stack = new Stack();  // one database for the whole run
  const std::string path = stack->dir + "/input.dcm";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  pxs::IngestResult r = stack->ingester->IngestFile(path, {.calling_ae = "FUZZ"});
  if (r.dimse_status != 0 && r.error.empty()) __builtin_trap();  // every refusal says why
  return 0;
}
