// The background workers put ingest first: while the SCP says images are arriving, a
// scoring batch or a round of hashing waits (at most yield_to_ingest_ms), and starts as
// soon as they stop. The hash worker records the SHA-256 that ingest no longer computes.
#include <gtest/gtest.h>

#include "pxs/common/files.h"
#include "pxs/pipeline/hash_worker.h"
#include "pxs/pipeline/scoring_worker.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "../../tests/support/dicom_gen.h"
#include "pxs/pipeline/model_registry.h"
#include "pxs/scoring/scorer.h"
#include "pxs/scp/ingest.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class WorkersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pxs-scoring-worker-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto db = Database::Open(DatabasePathFor(dir_.string()), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
    models_ = std::make_unique<ModelRegistry>([](const ModelEntry& e) { return scoring::Scorer::Create({.model_path = e.package}); });
    ModelEntry test_model;
    test_model.package = std::string(PXS_SOURCE_DIR) + "/tests/fixtures/pxs_test_model.pt";
    ModelRegistry::ApplyReport loaded = models_->Apply({test_model});
    ASSERT_EQ(loaded.loaded.size(), 1u) << (loaded.failed.empty() ? "" : loaded.failed[0]);
    IngestOptions ingest_options;
    ingest_options.data_dir = dir_.string();
    auto ingester = Ingester::Create(ingest_options, db_.get());
    ASSERT_TRUE(ingester.ok()) << ingester.status().ToString();
    std::vector<std::string> files = testing::WriteSyntheticSeries((dir_ / "send").string(), 1, 128);
    ASSERT_EQ(files.size(), 1u);
    IngestResult stored = (*ingester)->IngestFile(files[0], {});
    ASSERT_EQ(stored.dimse_status, 0) << stored.error;
    // The one stored file (under data_dir/dicom/<study>/<series>/).
    for (const auto& entry : fs::recursive_directory_iterator(dir_ / "dicom")) {
      if (entry.is_regular_file()) stored_file_ = entry.path();
    }
  }
  void TearDown() override {
    worker_.reset();
    hasher_.reset();
    fs::remove_all(dir_);
  }
  void StartWorker(int yield_ms) {
    ScoringWorkerOptions options;
    options.data_dir = dir_.string();
    options.max_batch = 1;
    options.ingest_busy = [this] { return busy_.load(); };
    options.yield_to_ingest_ms = yield_ms;
    worker_ = std::make_unique<ScoringWorker>(options, db_.get(), models_.get(), [](const Job&, const ScoreRecord&) {});
    ASSERT_TRUE(worker_->Start().ok());
    worker_->Notify();
  }
  void StartHasher(int yield_ms) {
    HashWorkerOptions options;
    options.data_dir = dir_.string();
    options.poll_interval_ms = 50;
    options.ingest_busy = [this] { return busy_.load(); };
    options.yield_to_ingest_ms = yield_ms;
    hasher_ = std::make_unique<HashWorker>(options, db_.get());
    hasher_->Start();
  }
  // The hash recorded for the stored file ("" while pending).
  std::string RecordedHash() {
    auto files = db_->FilesWithoutHash(0, 10);
    if (files.ok() && !files->empty()) return "";
    auto admin = AdminDatabase::Open(DatabasePathFor(dir_.string()), Database::Mode::kReadOnly);
    std::string sha;
    if (admin.ok()) {
      Status visited = (*admin)->ForEachRecordedFile([&](const RecordedFile& f) { sha = f.sha256; });
      if (!visited.ok()) return "";
    }
    return sha;
  }
  bool ScoredWithin(std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    do {
      if (*db_->CountJobs(JobState::kScored) == 1) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (Clock::now() < deadline);
    return false;
  }

  fs::path dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<ScoringWorker> worker_;
  std::unique_ptr<HashWorker> hasher_;
  fs::path stored_file_;
  std::atomic<bool> busy_{false};
};

TEST_F(WorkersTest, WaitsWhileImagesArriveAndStartsWhenTheyStop) {
  busy_ = true;
  StartWorker(/*yield_ms=*/60000);
  EXPECT_FALSE(ScoredWithin(std::chrono::milliseconds(800))) << "scored while ingest was busy";
  busy_ = false;
  EXPECT_TRUE(ScoredWithin(std::chrono::seconds(10)));
}

TEST_F(WorkersTest, AStreamThatNeverStopsDelaysScoringOnlyBoundedly) {
  busy_ = true;
  StartWorker(/*yield_ms=*/300);
  EXPECT_TRUE(ScoredWithin(std::chrono::seconds(10)));
}

TEST_F(WorkersTest, WithoutYieldItScoresWhileImagesArrive) {
  busy_ = true;
  StartWorker(/*yield_ms=*/0);
  EXPECT_TRUE(ScoredWithin(std::chrono::seconds(10)));
}

TEST_F(WorkersTest, IngestLeavesTheHashToTheHashWorkerWhichRecordsTheFilesSha256) {
  EXPECT_EQ(db_->FilesWithoutHash(0, 10)->size(), 1u) << "ingest computed the hash itself";
  busy_ = true;
  StartHasher(/*yield_ms=*/60000);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(db_->FilesWithoutHash(0, 10)->size(), 1u) << "hashed while images were arriving";
  busy_ = false;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!db_->FilesWithoutHash(0, 10)->empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto expected = Sha256HexOfFile(stored_file_.string());
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(RecordedHash(), *expected);
}

}  // namespace
}  // namespace pxs
