// pxs::AdminDatabase (pxsctl's queries and maintenance) against real SQLite files.
#include "pxs/storage/admin.h"

#include <gtest/gtest.h>

#include <chrono>

#include "test_db_util.h"

namespace pxs {
namespace {

using testing_util::MakeInstance;
using testing_util::MakeScore;
using testing_util::ScratchDir;

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(dir_.db(), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
  }
  std::unique_ptr<AdminDatabase> Admin(Database::Mode mode = Database::Mode::kReadOnly) {
    auto admin = AdminDatabase::Open(dir_.db(), mode);
    EXPECT_TRUE(admin.ok()) << admin.status().ToString();
    return admin.ok() ? std::move(*admin) : nullptr;
  }
  // Claims everything queued and scores it: pxs from the map, absent = fail for good.
  void ScoreQueued(const std::map<std::string, double>& pxs, int64_t scored_at_ms = 1'700'000'060'000) {
    auto jobs = db_->ClaimJobs(1000);
    ASSERT_TRUE(jobs.ok());
    for (const Job& job : *jobs) {
      auto it = pxs.find(job.sop_instance_uid);
      if (it == pxs.end()) {
        ASSERT_TRUE(db_->FailJobAttempt(job.id, "unreadable", 1).ok());
      } else {
        ASSERT_TRUE(db_->CompleteJob(MakeScore(job.id, it->second, scored_at_ms)).ok());
      }
    }
  }

  ScratchDir dir_;
  std::unique_ptr<Database> db_;
};

// StudyHistory lists the studies with their counts; the values per study, changes and
// trends come from the longitudinal library over ScoredInstances (one row per score).
TEST_F(AdminTest, StudyHistoryCountsEachStudyAndScoredInstancesListsEveryScore) {
  ASSERT_TRUE(db_->RecordInstances({MakeInstance("1.1", "9.1", "P1", "20200101"), MakeInstance("1.2", "9.1", "P1", "20200101"),
                                    MakeInstance("1.3", "9.2", "P1", "20200601"),  // will fail: no PXS
                                    MakeInstance("1.4", "9.3", "P1", "20210101")},
                                   nullptr)
                  .ok());
  ScoreQueued({{"1.1", 2.0}, {"1.2", 4.0}, {"1.4", 5.0}});
  auto admin = Admin();
  auto history = admin->StudyHistory({"P1", "HOSP"});
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 3u);
  const auto& first = (*history)[0];
  EXPECT_EQ(first.study_uid, "9.1");
  EXPECT_EQ(first.instances, 2);
  EXPECT_EQ(first.scored, 2);
  EXPECT_EQ((*history)[1].scored, 0);
  EXPECT_TRUE(admin->StudyHistory({"P1", "OTHER"})->empty());
  EXPECT_EQ(admin->PatientsWithId("P1")->size(), 1u);
  auto scores = admin->ScoredInstances({"P1", "HOSP"});
  ASSERT_TRUE(scores.ok()) << scores.status().ToString();
  ASSERT_EQ(scores->size(), 3u);
  EXPECT_EQ((*scores)[0].study_uid, "9.1");
  EXPECT_EQ((*scores)[0].model.Label(), "pxs-densenet121 1.0");
  EXPECT_LT((*scores)[0].score_id, (*scores)[1].score_id);
  EXPECT_EQ((*scores)[2].pxs, 5.0);
  EXPECT_EQ((*scores)[2].study_date, "20210101");
}

TEST_F(AdminTest, FindPatientsMatchesPrefixesLiterally) {
  auto a = MakeInstance("1.1", "9.1", "A_1");
  auto b = MakeInstance("1.2", "9.2", "AB1");
  b.patient_name = "Smith^Jane";
  ASSERT_TRUE(db_->RecordInstances({a, b}, nullptr).ok());
  auto admin = Admin();
  auto hits = admin->FindPatients("A_", 10);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 1u);  // '_' is not a wildcard here
  EXPECT_EQ((*hits)[0].patient_id, "A_1");
  hits = admin->FindPatients("smi", 10);  // names, case-insensitive
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].patient_id, "AB1");
  EXPECT_EQ((*hits)[0].instances, 1);
  EXPECT_EQ(admin->FindPatients("", 1)->size(), 1u);  // limit
  EXPECT_TRUE(admin->FindPatients("zzz", 10)->empty());
  EXPECT_EQ(admin->FindPatients("a_", 10)->size(), 1u);  // ids case-insensitive too
  EXPECT_EQ(admin->FindPatients("A", 10)->size(), 2u);
}

TEST_F(AdminTest, StatsCountStatesAndMeasureLatencies) {
  const int64_t now = Now();
  ASSERT_TRUE(db_->RecordInstances({MakeInstance("1.1", "9.1", "P1", "20200101", now - 10'000),
                                    MakeInstance("1.2", "9.2", "P1", "20200201", now - 20'000),
                                    MakeInstance("1.3", "9.3", "P2", "20200201", now)},
                                   nullptr)
                  .ok());
  auto jobs = db_->ClaimJobs(2);
  ASSERT_EQ(jobs->size(), 2u);
  ASSERT_TRUE(db_->CompleteJob(MakeScore((*jobs)[0].id, 1.0, now - 5'000)).ok());  // 1.1: 5 s
  ASSERT_TRUE(db_->CompleteJob(MakeScore((*jobs)[1].id, 1.0, now - 5'000)).ok());  // 1.2: 15 s
  ASSERT_TRUE(db_->RecordReport("2.1", "9.1", "pxs", 1, "r.dcm", {"PACS", "ARCHIVE"}).ok());
  auto due = db_->DueReports(now + 60'000, 10);
  ASSERT_EQ(due->size(), 2u);
  ASSERT_TRUE(db_->MarkReportSent((*due)[0].id).ok());

  auto stats = Admin()->ComputeStats(Now() + 1);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->patients, 2);
  EXPECT_EQ(stats->studies, 3);
  EXPECT_EQ(stats->instances, 3);
  EXPECT_EQ(stats->jobs_by_state.at("scored"), 2);
  EXPECT_EQ(stats->jobs_by_state.at("queued"), 1);
  EXPECT_EQ(stats->jobs_by_state.at("failed"), 0);
  EXPECT_EQ(stats->reports_by_state.at("sent"), 1);
  EXPECT_EQ(stats->reports_by_state.at("pending"), 1);
  ASSERT_EQ(stats->scores_per_hour.size(), 24u);
  EXPECT_EQ(stats->scores_per_hour.back(), 2);
  EXPECT_EQ(stats->receipt_to_score.count, 2);
  EXPECT_DOUBLE_EQ(stats->receipt_to_score.p50_ms, 5'000);
  EXPECT_DOUBLE_EQ(stats->receipt_to_score.max_ms, 15'000);
  EXPECT_EQ(stats->receipt_to_report_sent.count, 1);
  EXPECT_GE(stats->receipt_to_report_sent.p50_ms, 10'000);
  EXPECT_LT(stats->receipt_to_report_sent.p50_ms, 60'000);
}

TEST_F(AdminTest, PruneKeepsUnfinishedWorkAndRetryCannotRevivePrunedFiles) {
  const int64_t old = Now() - 100LL * 24 * 3600 * 1000;
  ASSERT_TRUE(db_->RecordInstances({MakeInstance("1.1", "9.1", "P1", "20200101", old),
                                    MakeInstance("1.2", "9.2", "P1", "20200101", old),
                                    MakeInstance("1.3", "9.3", "P1", "20200101", old),
                                    MakeInstance("1.4", "9.4", "P1", "20200101", Now())},
                                   nullptr)
                  .ok());
  auto jobs = db_->ClaimJobs(2);  // 1.1 scored, 1.2 failed; 1.3 stays queued
  ASSERT_TRUE(db_->CompleteJob(MakeScore((*jobs)[0].id, 1.0)).ok());
  ASSERT_TRUE(db_->FailJobAttempt((*jobs)[1].id, "unreadable", 1).ok());

  auto admin = Admin(Database::Mode::kReadWrite);
  auto candidates = admin->PruneCandidates(Now() - 30LL * 24 * 3600 * 1000);
  ASSERT_TRUE(candidates.ok());
  std::vector<std::string> uids;
  std::vector<int64_t> ids;
  for (const auto& c : *candidates) {
    uids.push_back(c.sop_instance_uid);
    ids.push_back(c.instance_id);
  }
  EXPECT_EQ(uids, (std::vector<std::string>{"1.1", "1.2"}));
  ASSERT_TRUE(admin->MarkPruned(ids, Now()).ok());
  EXPECT_TRUE(admin->PruneCandidates(Now())->empty());  // 1.3 and 1.4 are not final yet
  std::vector<std::string> recorded;
  ASSERT_TRUE(admin->ForEachRecordedFile([&](const RecordedFile& f) { recorded.push_back(f.sop_instance_uid); }).ok());
  EXPECT_EQ(recorded, (std::vector<std::string>{"1.3", "1.4"}));
  auto retried = admin->Retry("1.2", Now());
  ASSERT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(retried->jobs_requeued, 0);
  EXPECT_EQ(retried->skipped_pruned, 1);
  EXPECT_EQ(admin->RetryAllFailed(Now())->skipped_pruned, 1);
  EXPECT_EQ(*db_->CountJobs(JobState::kFailed), 1);
  // The score of the pruned instance is still there.
  EXPECT_EQ(db_->PatientHistory({"P1", "HOSP"})->size(), 1u);
  EXPECT_EQ(admin->Retry("no.such.uid", Now()).status().code(), Status::Code::kNotFound);
}

TEST_F(AdminTest, AuditRowsAreStoredNewestFirst) {
  auto admin = Admin(Database::Mode::kReadWrite);
  ASSERT_TRUE(admin->AddAudit({1000, "alice", "retry", "{\"target\":\"all-failed\"}"}).ok());
  ASSERT_TRUE(admin->AddAudit({2000, "bob", "prune", "{\"deleted\":3}"}).ok());
  auto entries = Admin()->RecentAudit(10);
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].unix_user, "bob");
  EXPECT_EQ((*entries)[0].action, "prune");
  EXPECT_EQ((*entries)[1].at_ms, 1000);
  EXPECT_EQ((*entries)[1].details, "{\"target\":\"all-failed\"}");
}

TEST_F(AdminTest, QuickCheckIsOkOnAHealthyDatabase) { EXPECT_EQ(*Admin()->QuickCheck(), "ok"); }

}  // namespace
}  // namespace pxs

namespace pxs {
namespace {

TEST_F(AdminTest, ModelMetadataIsRecordedPerNameAndVersionAndRefreshed) {
  EXPECT_FALSE(Admin()->ModelMetadata("m", "1").value().has_value());
  ASSERT_TRUE(db_->RecordModel("m", "1", R"({"trend":{"stable_delta":0.5}})").ok());
  ASSERT_TRUE(db_->RecordModel("m", "2", R"({"trend":{"stable_delta":2}})").ok());
  ASSERT_TRUE(db_->RecordModel("m", "1", R"({"trend":{"stable_delta":0.25}})").ok());  // refreshed
  auto admin = Admin();
  EXPECT_EQ(admin->ModelMetadata("m", "1").value().value(), R"({"trend":{"stable_delta":0.25}})");
  EXPECT_EQ(admin->ModelMetadata("m", "2").value().value(), R"({"trend":{"stable_delta":2}})");
  EXPECT_FALSE(admin->ModelMetadata("other", "1").value().has_value());
}

// Every model that scored (counts, first and last score) and every recorded one, even
// before its first score; sorted by name, then version.
TEST_F(AdminTest, ScoringModelsListsEachModelVersionWithItsScores) {
  EXPECT_TRUE(Admin()->ScoringModels().value().empty());
  ASSERT_TRUE(db_->RecordInstances({MakeInstance("3.1", "6.1", "P3", "20200101"),
                                    MakeInstance("3.2", "6.2", "P3", "20200201"),
                                    MakeInstance("3.3", "6.3", "P3", "20200301")},
                                   nullptr)
                  .ok());
  auto jobs = db_->ClaimJobs(10);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 3u);
  int64_t at = 1'700'000'000'000;
  for (const Job& job : *jobs) {
    ScoreRecord score = MakeScore(job.id, 1.0, at += 1000);
    if (job.sop_instance_uid == "3.3") score.model_version = "2.0";
    ASSERT_TRUE(db_->CompleteJob(score).ok());
  }
  ASSERT_TRUE(db_->RecordModel("pxs-densenet121", "2.0", R"({"trend":{}})").ok());
  ASSERT_TRUE(db_->RecordModel("later", "1", "{}").ok());  // loaded, nothing scored yet
  auto models = Admin()->ScoringModels();
  ASSERT_TRUE(models.ok()) << models.status().ToString();
  ASSERT_EQ(models->size(), 3u);
  const ScoringModel& later = (*models)[0];
  EXPECT_EQ(later.name, "later");
  EXPECT_EQ(later.scores, 0);
  EXPECT_FALSE(later.first_scored_at_ms.has_value());
  EXPECT_TRUE(later.loaded_at_ms.has_value());
  EXPECT_EQ(later.metadata_json.value_or(""), "{}");
  const ScoringModel& v1 = (*models)[1];
  EXPECT_EQ(v1.name, "pxs-densenet121");
  EXPECT_EQ(v1.version, "1.0");
  EXPECT_EQ(v1.scores, 2);
  EXPECT_EQ(v1.first_scored_at_ms.value_or(0), 1'700'000'001'000);
  EXPECT_EQ(v1.last_scored_at_ms.value_or(0), 1'700'000'002'000);
  EXPECT_FALSE(v1.loaded_at_ms.has_value());  // scored, never recorded (a database from before models)
  const ScoringModel& v2 = (*models)[2];
  EXPECT_EQ(v2.version, "2.0");
  EXPECT_EQ(v2.scores, 1);
  EXPECT_EQ(v2.first_scored_at_ms.value_or(0), 1'700'000'003'000);
  EXPECT_EQ(v2.last_scored_at_ms.value_or(0), 1'700'000'003'000);
  EXPECT_EQ(v2.metadata_json.value_or(""), R"({"trend":{}})");
}

TEST_F(AdminTest, ScoredWithoutReportFindsWhatACrashLeftBetweenScoreAndReport) {
  ASSERT_TRUE(db_->RecordInstances({MakeInstance("2.1", "8.1", "P2", "20200101"),
                                    MakeInstance("2.2", "8.2", "P2", "20200201")},
                                   nullptr)
                  .ok());
  const int64_t scored_at = 1'700'000'060'000;
  ScoreQueued({{"2.1", 1.0}, {"2.2", 2.0}}, scored_at);
  auto lost = db_->ScoredWithoutReport(0);
  ASSERT_TRUE(lost.ok()) << lost.status().ToString();
  ASSERT_EQ(lost->size(), 2u);
  EXPECT_EQ((*lost)[0].job.study_uid, "8.1");
  EXPECT_EQ((*lost)[0].job.patient.patient_id, "P2");
  EXPECT_DOUBLE_EQ((*lost)[0].score.pxs, 1.0);
  EXPECT_FALSE((*lost)[0].score.embedding.empty());
  // A report made (now, i.e. after the score) for study 8.1 settles it; 8.2 stays.
  ASSERT_TRUE(db_->RecordReport("7.1", "8.1", "pxs-densenet121", 1, "reports/8.1/sr-v1.dcm", {}).ok());
  lost = db_->ScoredWithoutReport(0);
  ASSERT_EQ(lost->size(), 1u);
  EXPECT_EQ((*lost)[0].job.study_uid, "8.2");
  // Only scores since the given time are looked at.
  EXPECT_TRUE(db_->ScoredWithoutReport(scored_at + 1)->empty());
}

}  // namespace
}  // namespace pxs
