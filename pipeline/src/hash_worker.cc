#include "pxs/pipeline/hash_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "worker_signal.h"
#include "pxs/common/files.h"
#include "pxs/common/thread_name.h"

namespace pxs {

class HashWorker::Impl {
 public:
  Impl(const HashWorkerOptions& options, Database* db) : options_(options), db_(db) {}
  ~Impl() { Stop(); }

  void Start() {
    thread_ = std::thread([this] {
      NameThisThread("pxs-hash");
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);  // background work, as scoring
      Run();
    });
  }

  void Stop() {
    signal_.RequestStop();
    if (thread_.joinable()) thread_.join();
  }

  void Notify() { signal_.Notify(); }

 private:
  void Run() {
    while (signal_.WaitFor(std::chrono::milliseconds(options_.poll_interval_ms))) {
      if (!HashEverythingPending()) return;
    }
  }

  // One pass over the files without a hash; false when stopping.
  bool HashEverythingPending() {
    int64_t after_id = 0;  // a file that cannot be read is skipped for this pass
    while (true) {
      if (!signal_.WaitWhileIngestBusy(options_.ingest_busy, options_.yield_to_ingest_ms)) return false;
      auto files = db_->FilesWithoutHash(after_id, options_.batch);
      if (!files.ok()) {
        spdlog::error("hashing: cannot read the database: {}", files.status().ToString());
        return true;
      }
      if (files->empty()) return true;
      std::vector<std::pair<int64_t, std::string>> hashes;
      for (const Database::UnhashedFile& file : *files) {
        after_id = file.instance_id;
        if (unreadable_.count(file.instance_id)) continue;  // said once; verify reports it
        StatusOr<std::string> sha =
            Sha256HexOfFile((std::filesystem::path(options_.data_dir) / file.file_path).string());
        if (sha.ok()) {
          hashes.emplace_back(file.instance_id, *sha);
        } else {
          unreadable_.insert(file.instance_id);
          spdlog::warn("hashing: {} (pxsctl verify will report it)", sha.status().ToString());
        }
        if (signal_.Stopping()) break;
      }
      if (Status s = db_->RecordFileHashes(hashes); !s.ok()) {
        spdlog::error("hashing: cannot record {} hash(es): {}", hashes.size(), s.ToString());
      }
    }
  }

  HashWorkerOptions options_;
  Database* db_;
  WorkerSignal signal_;
  std::set<int64_t> unreadable_;  // files that could not be read (this run); not retried
  std::thread thread_;
};

HashWorker::HashWorker(const HashWorkerOptions& options, Database* db)
    : impl_(std::make_unique<Impl>(options, db)) {}
HashWorker::~HashWorker() = default;
void HashWorker::Start() { impl_->Start(); }
void HashWorker::Stop() { impl_->Stop(); }
void HashWorker::Notify() { impl_->Notify(); }

}  // namespace pxs
