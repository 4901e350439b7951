#include "pxs/pipeline/hash_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "ingest_yield.h"
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Notify() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      notified_ = true;
    }
    cv_.notify_all();
  }

 private:
  void Run() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(options_.poll_interval_ms),
                     [&] { return stopping_ || notified_; });
        notified_ = false;
        if (stopping_) return;
      }
      if (!HashEverythingPending()) return;
    }
  }

  // One pass over the files without a hash; false when stopping.
  bool HashEverythingPending() {
    int64_t after_id = 0;  // a file that cannot be read is skipped for this pass
    while (true) {
      if (!WaitWhileIngestBusy(options_.ingest_busy, options_.yield_to_ingest_ms, mu_, cv_, stopping_)) return false;
      auto files = db_->FilesWithoutHash(after_id, options_.batch);
      if (!files.ok()) {
        spdlog::error("hashing: cannot read the database: {}", files.status().ToString());
        return true;
      }
      if (files->empty()) return true;
      std::vector<std::pair<int64_t, std::string>> hashes;
      for (const Database::UnhashedFile& file : *files) {
        after_id = file.instance_id;
        const std::string path = (std::filesystem::path(options_.data_dir) / file.file_path).string();
        if (unreadable_.count(file.instance_id)) continue;  // said once; verify reports it
        StatusOr<std::string> sha = Sha256HexOfFile(path);
        if (sha.ok()) {
          hashes.emplace_back(file.instance_id, *sha);
        } else {
          unreadable_.insert(file.instance_id);
          spdlog::warn("hashing: {} (pxsctl verify will report it)", sha.status().ToString());
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) break;
      }
      if (Status s = db_->RecordFileHashes(hashes); !s.ok()) {
        spdlog::error("hashing: cannot record {} hash(es): {}", hashes.size(), s.ToString());
      }
    }
  }

  HashWorkerOptions options_;
  Database* db_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool notified_ = false;
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
