// Writing an SR under faults: a power cut at every file-system call of MakeReport (the
// SR's temp file, its sync, its folder, its link), then a restart. Whatever the database
// records as a report must have its complete, readable SR file; and after the restart
// the report is made (again) without trouble. Also an EIO/ENOSPC at each call: a clear
// error and no recorded report without its file.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "../../tests/support/dicom_gen.h"
#include "pxs/filestore/fault_injection.h"
#include "pxs/filestore/file_store.h"
#include "pxs/pipeline/report_maker.h"
#include "pxs/scoring/scorer.h"
#include "pxs/scp/ingest.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;

class ReportFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto scorer = scoring::Scorer::Create(
        {.model_path = std::string(PXS_SOURCE_DIR) + "/tests/fixtures/pxs_test_model.pt"});
    ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
    scorer_ = std::move(*scorer);
    src_ = fs::temp_directory_path() / ("pxs-report-faults-src-" + std::to_string(::getpid()));
    fs::remove_all(src_);
    files_ = testing::WriteSyntheticSeries(src_.string(), 1, 64);
    ASSERT_EQ(files_.size(), 1u);
  }
  void TearDown() override { fs::remove_all(src_); }

  // A fresh data folder with one stored, scored instance; returns its job and score.
  void Prepare(const fs::path& dir, Job* job, ScoreRecord* score) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto db = Database::Open(DatabasePathFor(dir.string()), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok());
    {
      IngestOptions options;
      options.data_dir = dir.string();
      auto ingester = Ingester::Create(options, db->get());
      ASSERT_TRUE(ingester.ok());
      ASSERT_EQ((*ingester)->IngestFile(files_[0], {}).dimse_status, 0);
    }
    auto claimed = (*db)->ClaimJobs(1);
    ASSERT_TRUE(claimed.ok() && claimed->size() == 1);
    *job = (*claimed)[0];
    score->job_id = job->id;
    score->pxs = score->raw_distance = 1.5;
    score->embedding.assign(scorer_->model().embedding_dim, 0.25f);
    score->model_name = scorer_->model().name;
    score->model_version = scorer_->model().version;
    score->scored_at_ms = 1;
    ASSERT_TRUE((*db)->CompleteJob(*score).ok());
  }

  // If the database records a report for the study, its SR file is complete.
  void ExpectRecordedReportIsReadable(const fs::path& dir, const Job& job, const std::string& context) {
    auto db = Database::Open(DatabasePathFor(dir.string()), Database::Mode::kReadOnly);
    ASSERT_TRUE(db.ok());
    auto latest = (*db)->LatestReport(job.study_uid, scorer_->model().name);
    ASSERT_TRUE(latest.ok());
    if (!latest->has_value()) return;
    fs::path file = dir / FileStore::ReportPath(job.study_uid, scorer_->model().name, (*latest)->version);
    DcmFileFormat sr;
    ASSERT_TRUE(sr.loadFile(file.c_str()).good()) << context << ": recorded SR " << file << " is unreadable";
    OFString uid;
    sr.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, uid);
    EXPECT_EQ(uid.c_str(), (*latest)->sr_sop_instance_uid) << context;
  }

  StatusOr<std::string> Make(const fs::path& dir, FileSystem* file_system, const Job& job, const ScoreRecord& score) {
    auto db = Database::Open(DatabasePathFor(dir.string()), Database::Mode::kReadWrite);
    if (!db.ok()) return db.status();
    FileStore store(dir.string(), file_system);
    ReportMaker maker({.data_dir = dir.string(), .ae_title = "PXSNODE", .software_version = "test",
                       .file_store = &store},
                      db->get(),
                      [this](const std::string&, const std::string&) {
                        return std::make_shared<const scoring::ModelInfo>(scorer_->model());
                      },
                      nullptr);
    return maker.MakeReport(job, score);
  }

  // File-system calls one report makes.
  int CountCalls(const fs::path& dir) {
    Job job;
    ScoreRecord score;
    Prepare(dir, &job, &score);
    FaultInjectionFileSystem faults(dir.string());
    EXPECT_TRUE(Make(dir, &faults, job, score).ok());
    return faults.calls();
  }

  std::unique_ptr<scoring::Scorer> scorer_;
  fs::path src_;
  std::vector<std::string> files_;
};

TEST_F(ReportFaultsTest, APowerCutAtAnyStepNeverLeavesARecordedReportWithoutItsFile) {
  const fs::path dir = fs::temp_directory_path() / ("pxs-report-cut-" + std::to_string(::getpid()));
  const int total = CountCalls(dir);
  ASSERT_GE(total, 3);
  for (int crash_at = 1; crash_at <= total + 1; ++crash_at) {
    const std::string context = "power cut at call " + std::to_string(crash_at) + " of " + std::to_string(total);
    Job job;
    ScoreRecord score;
    Prepare(dir, &job, &score);
    {
      FaultInjectionFileSystem faults(dir.string());
      faults.CrashAtCall(crash_at);
      StatusOr<std::string> made = Make(dir, &faults, job, score);
      if (crash_at <= total) EXPECT_FALSE(made.ok()) << context;
      if (!faults.crashed()) faults.PowerCut();
    }
    ExpectRecordedReportIsReadable(dir, job, context);
    // After the restart the report is made on the real file system.
    StatusOr<std::string> again = Make(dir, nullptr, job, score);
    EXPECT_TRUE(again.ok()) << context << ": " << again.status().ToString();
    ExpectRecordedReportIsReadable(dir, job, context + " (after restart)");
  }
  fs::remove_all(dir);
}

TEST_F(ReportFaultsTest, EioOrEnospcAtAnyCallFailsClearlyAndRecordsNothingHalf) {
  const fs::path dir = fs::temp_directory_path() / ("pxs-report-err-" + std::to_string(::getpid()));
  const int total = CountCalls(dir);
  for (int err : {EIO, ENOSPC}) {
    for (int call = 1; call <= total; ++call) {
      const std::string context = std::string(err == EIO ? "EIO" : "ENOSPC") + " at call " + std::to_string(call);
      Job job;
      ScoreRecord score;
      Prepare(dir, &job, &score);
      FaultInjectionFileSystem faults(dir.string());
      faults.FailCall(call, err);
      StatusOr<std::string> made = Make(dir, &faults, job, score);
      if (!made.ok()) {
        EXPECT_NE(made.status().message().find(err == EIO ? "Input/output" : "No space"), std::string::npos)
            << context << ": " << made.status().ToString();
      }
      ExpectRecordedReportIsReadable(dir, job, context);
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pxs
