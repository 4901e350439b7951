// pxs::Database against real SQLite files: schema/migrations, ingest, the job state
// machine, longitudinal history, the report outbox and read-only handles.
#include "pxs/storage/database.h"

#include <gtest/gtest.h>

#include <map>
#include <sqlite3.h>

#include <atomic>
#include <set>
#include <thread>

#include "pxs/storage/admin.h"
#include "schema.h"  // private: CreateAtSchemaVersionForTest
#include "test_db_util.h"

namespace pxs {
namespace {

using testing_util::MakeInstance;
using testing_util::MakeScore;
using testing_util::ScratchDir;

std::unique_ptr<Database> OpenOrDie(const std::string& path, Database::Mode mode = Database::Mode::kReadWrite) {
  auto db = Database::Open(path, mode);
  EXPECT_TRUE(db.ok()) << db.status().ToString();
  return db.ok() ? std::move(*db) : nullptr;
}

std::vector<InsertOutcome> Record(Database& db, const std::vector<ReceivedInstance>& batch) {
  std::vector<InsertOutcome> outcomes;
  Status s = db.RecordInstances(batch, &outcomes);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return outcomes;
}

void SetUserVersion(const std::string& path, int version) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, ("PRAGMA user_version = " + std::to_string(version)).c_str(), nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
}

TEST(DatabaseTest, PathIsUnderDataDir) { EXPECT_EQ(DatabasePathFor("/var/lib/pxsnode"), "/var/lib/pxsnode/pxsnode.db"); }

TEST(DatabaseTest, CreatesAndMigratesToCurrentSchema) {
  ScratchDir dir;
  {
    auto db = OpenOrDie(dir.db());
    ASSERT_TRUE(db);
    Record(*db, {MakeInstance("1.1", "9.1", "P1")});
  }
  StatusOr<int> version = ReadSchemaVersion(dir.db());
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(*version, kSchemaVersion);
  // Re-opening applies nothing and keeps the data.
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  EXPECT_TRUE(*db->HasInstance("1.1"));
}

TEST(DatabaseTest, MigratesAnExistingEmptyFile) {
  PXS_SKIP_ON_POSTGRES("an empty SQLite file");
  ScratchDir dir;
  SetUserVersion(dir.db(), 0);  // an SQLite file without our schema
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  EXPECT_EQ(*ReadSchemaVersion(dir.db()), kSchemaVersion);
  EXPECT_EQ(Record(*db, {MakeInstance("1.1", "9.1", "P1")}).at(0), InsertOutcome::kInserted);
}

void ExecSql(const std::string& path, const std::string& sql) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(raw);
}

int CountRows(const std::string& path, const std::string& sql) {
  sqlite3* raw = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(raw, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
  int rows = 0;
  while (sqlite3_step(stmt) == SQLITE_ROW) ++rows;
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
  return rows;
}

TEST(DatabaseTest, MigratesAVersion1DatabaseKeepingItsData) {
  PXS_SKIP_ON_POSTGRES("filled with sqlite3 (postgres_test.cc migrates PostgreSQL)");
  ScratchDir dir;
  ASSERT_TRUE(sqlite::CreateAtSchemaVersionForTest(dir.db(), 1).ok());
  ASSERT_EQ(*ReadSchemaVersion(dir.db()), 1);
  // Filled the way a version-1 node would have (this test lives in storage/).
  ExecSql(dir.db(),
          "INSERT INTO patients (patient_id, issuer, name, created_at) VALUES ('P1', 'HOSP', 'DOE^P1', 1);"
          "INSERT INTO studies (patient_ref, study_uid, study_date, created_at) VALUES (1, '9.1', '20200101', 1);"
          "INSERT INTO instances (sop_instance_uid, study_ref, file_path, file_size, sha256, received_at)"
          " VALUES ('1.1', 1, 'dicom/1.1.dcm', 10, 'ab', 1);"
          "INSERT INTO jobs (instance_ref, state, created_at, updated_at) VALUES (1, 'queued', 1, 1);");
  EXPECT_EQ(CountRows(dir.db(), "SELECT 1 FROM sqlite_master WHERE name = 'patients_by_id_nocase'"), 0);

  // Readers never migrate: they ask for pxsnode to be started first.
  auto reader = Database::Open(dir.db(), Database::Mode::kReadOnly);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find("older"), std::string::npos) << reader.status().message();

  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  EXPECT_EQ(*ReadSchemaVersion(dir.db()), kSchemaVersion);
  EXPECT_EQ(CountRows(dir.db(), "SELECT 1 FROM sqlite_master WHERE name = 'patients_by_id_nocase'"), 1);
  EXPECT_TRUE(*db->HasInstance("1.1"));
  auto jobs = db->ClaimJobs(5);
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].patient.patient_id, "P1");
  EXPECT_EQ((*jobs)[0].file_path, "dicom/1.1.dcm");
}

TEST(DatabaseTest, RefusesNewerSchemaInBothModes) {
  PXS_SKIP_ON_POSTGRES("PRAGMA user_version (postgres_test.cc has pxs_schema's)");
  ScratchDir dir;
  { ASSERT_TRUE(OpenOrDie(dir.db())); }
  SetUserVersion(dir.db(), kSchemaVersion + 1);
  for (auto mode : {Database::Mode::kReadWrite, Database::Mode::kReadOnly}) {
    auto db = Database::Open(dir.db(), mode);
    ASSERT_FALSE(db.ok());
    EXPECT_EQ(db.status().code(), Status::Code::kUnsupported);
    const std::string& m = db.status().message();
    EXPECT_NE(m.find("version " + std::to_string(kSchemaVersion + 1)), std::string::npos) << m;
    EXPECT_NE(m.find("version " + std::to_string(kSchemaVersion) + ")"), std::string::npos) << m;
    EXPECT_NE(m.find(dir.db()), std::string::npos) << m;
  }
  // And the refusal changed nothing.
  EXPECT_EQ(*ReadSchemaVersion(dir.db()), kSchemaVersion + 1);
}

TEST(DatabaseTest, ReadOnlyOpenOfMissingFileIsNotFound) {
  PXS_SKIP_ON_POSTGRES("a missing file");
  ScratchDir dir;
  auto db = Database::Open(dir.path() + "/nope.db", Database::Mode::kReadOnly);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Status::Code::kNotFound) << db.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/nope.db"));
}

TEST(DatabaseTest, DuplicateSopInstanceUidIsReportedAndQueuesNoSecondJob) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  auto first = Record(*db, {MakeInstance("1.1", "9.1", "P1"), MakeInstance("1.2", "9.1", "P1"),
                            MakeInstance("1.1", "9.1", "P1")});  // duplicate inside the batch
  EXPECT_EQ(first, (std::vector<InsertOutcome>{InsertOutcome::kInserted, InsertOutcome::kInserted,
                                               InsertOutcome::kDuplicate}));
  ReceivedInstance again = MakeInstance("1.2", "9.1", "P1");
  again.file_path = "elsewhere.dcm";
  EXPECT_EQ(Record(*db, {again}).at(0), InsertOutcome::kDuplicate);
  EXPECT_EQ(*db->CountJobs(JobState::kQueued), 2);
  auto jobs = db->ClaimJobs(10);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[1].file_path, "dicom/1.2.dcm");  // the duplicate changed nothing
}

TEST(DatabaseTest, FilesWithoutHashAreListedUntilTheirHashIsRecordedOnce) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  ReceivedInstance pending = MakeInstance("1.1", "9.1", "P1");
  pending.sha256 = "";  // acknowledged before hashing
  ReceivedInstance hashed = MakeInstance("1.2", "9.1", "P1");
  hashed.sha256 = std::string(64, 'a');
  Record(*db, {pending, hashed});
  auto files = db->FilesWithoutHash(0, 10);
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].file_path, pending.file_path);
  EXPECT_TRUE(db->FilesWithoutHash((*files)[0].instance_id, 10)->empty());  // after_id is exclusive
  ASSERT_TRUE(db->RecordFileHashes({{(*files)[0].instance_id, std::string(64, 'b')}}).ok());
  EXPECT_TRUE(db->FilesWithoutHash(0, 10)->empty());
  // A recorded hash is never replaced.
  ASSERT_TRUE(db->RecordFileHashes({{(*files)[0].instance_id, std::string(64, 'c')}}).ok());
  auto admin = AdminDatabase::Open(dir.db(), Database::Mode::kReadOnly);
  ASSERT_TRUE(admin.ok());
  std::map<std::string, std::string> sha_of;
  ASSERT_TRUE((*admin)->ForEachRecordedFile([&](const RecordedFile& f) { sha_of[f.sop_instance_uid] = f.sha256; }).ok());
  EXPECT_EQ(sha_of["1.1"], std::string(64, 'b'));
  EXPECT_EQ(sha_of["1.2"], std::string(64, 'a'));
}

TEST(DatabaseTest, SkipReasonRecordsASkippedJob) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  ReceivedInstance hand = MakeInstance("1.1", "9.1", "P1");
  hand.skip_reason = "not a chest (BodyPartExamined HAND)";
  Record(*db, {hand});
  EXPECT_EQ(*db->CountJobs(JobState::kSkipped), 1);
  EXPECT_EQ(*db->CountJobs(JobState::kQueued), 0);
  EXPECT_TRUE(db->ClaimJobs(5)->empty());
}

TEST(DatabaseTest, BadInstanceFailsItsBatchOnly) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  ReceivedInstance bad = MakeInstance("1.2", "9.1", "P1");
  bad.study_uid.clear();
  std::vector<InsertOutcome> outcomes;
  Status s = db->RecordInstances({MakeInstance("1.1", "9.1", "P1"), bad}, &outcomes);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("1.2"), std::string::npos) << s.message();
  EXPECT_FALSE(*db->HasInstance("1.1"));  // the whole batch rolled back
  Record(*db, {MakeInstance("1.3", "9.1", "P1")});
  EXPECT_TRUE(*db->HasInstance("1.3"));
}

TEST(DatabaseTest, JobStateMachine) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  Record(*db, {MakeInstance("1.1", "9.1", "P1"), MakeInstance("1.2", "9.2", "P1"),
               MakeInstance("1.3", "9.3", ""), MakeInstance("1.4", "9.4", "P2")});
  auto claimed = db->ClaimJobs(2);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].sop_instance_uid, "1.1");  // oldest first
  EXPECT_EQ((*claimed)[0].attempts, 1);
  EXPECT_EQ((*claimed)[0].patient.patient_id, "P1");
  EXPECT_EQ((*claimed)[0].patient.issuer, "HOSP");
  EXPECT_EQ(*db->CountJobs(JobState::kScoring), 2);
  EXPECT_EQ(*db->CountJobs(JobState::kQueued), 2);

  const Job first = (*claimed)[0], second = (*claimed)[1];
  ASSERT_TRUE(db->CompleteJob(MakeScore(first.id, 3.5)).ok());
  Status twice = db->CompleteJob(MakeScore(first.id, 4.0));
  EXPECT_EQ(twice.code(), Status::Code::kInvalidArgument) << twice.ToString();  // scored exactly once
  EXPECT_EQ(db->CompleteJob(MakeScore(999, 1.0)).code(), Status::Code::kNotFound);

  // Failed attempts go back to the queue until max_attempts, then to failed.
  ASSERT_TRUE(db->FailJobAttempt(second.id, "decode error", 2).ok());
  EXPECT_EQ(*db->CountJobs(JobState::kFailed), 0);
  auto again = db->ClaimJobs(1);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].id, second.id);  // requeued, still the oldest
  EXPECT_EQ((*again)[0].attempts, 2);
  ASSERT_TRUE(db->FailJobAttempt(second.id, "decode error", 2).ok());
  EXPECT_EQ(*db->CountJobs(JobState::kFailed), 1);
  EXPECT_FALSE(db->FailJobAttempt(second.id, "again", 2).ok());  // failed is final

  // A crash while scoring: the job goes back to queued at start-up.
  auto third = db->ClaimJobs(1);
  ASSERT_EQ(third->size(), 1u);
  EXPECT_EQ((*third)[0].patient.patient_id, "");  // the no-id instance
  db.reset();
  db = OpenOrDie(dir.db());
  EXPECT_EQ(*db->RequeueInterruptedJobs(), 1);
  EXPECT_EQ(*db->CountJobs(JobState::kScoring), 0);
  auto resumed = db->ClaimJobs(5);
  ASSERT_EQ(resumed->size(), 2u);
  EXPECT_EQ((*resumed)[0].id, (*third)[0].id);
  EXPECT_EQ((*resumed)[0].attempts, 2);  // the interrupted attempt counts
  ASSERT_TRUE(db->SkipJob((*resumed)[1].id, "not a chest").ok());
  EXPECT_EQ(*db->CountJobs(JobState::kSkipped), 1);
  EXPECT_EQ(*db->CountJobs(JobState::kScored), 1);
}

TEST(DatabaseTest, CompleteJobsIsAllOrNothing) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  Record(*db, {MakeInstance("1.1", "9.1", "P1"), MakeInstance("1.2", "9.2", "P1")});
  auto jobs = db->ClaimJobs(2);
  ASSERT_EQ(jobs->size(), 2u);
  Status s = db->CompleteJobs({MakeScore((*jobs)[0].id, 1), MakeScore(12345, 2)});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(*db->CountJobs(JobState::kScored), 0);
  ASSERT_TRUE(db->CompleteJobs({MakeScore((*jobs)[0].id, 1), MakeScore((*jobs)[1].id, 2)}).ok());
  EXPECT_EQ(*db->CountJobs(JobState::kScored), 2);
}

// Scores every queued job with pxs = f(SOP UID) so tests can check the order.
void ScoreAll(Database& db, const std::map<std::string, double>& pxs_by_sop) {
  auto jobs = db.ClaimJobs(1000);
  ASSERT_TRUE(jobs.ok());
  for (const Job& job : *jobs) {
    ASSERT_TRUE(db.CompleteJob(MakeScore(job.id, pxs_by_sop.at(job.sop_instance_uid))).ok());
  }
}

TEST(DatabaseTest, HistoryIsOrderedByStudyDateAndIsolatesPatientsWithoutId) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  // Received out of order; one study has no StudyDate (sorts by its receipt day, 2023-11-14).
  ReceivedInstance undated = MakeInstance("1.5", "9.5", "P1", "");
  Record(*db, {MakeInstance("1.1", "9.1", "P1", "20220301"), MakeInstance("1.2", "9.2", "P1", "20200101"),
               MakeInstance("1.3", "9.3", "P1", "20210615"), undated,
               // the same Study UID without a patient id: must not join P1's study
               MakeInstance("1.4", "9.1", ""),
               // two id-less studies, and a second instance of one of them
               MakeInstance("1.6", "9.6", ""), MakeInstance("1.7", "9.7", ""), MakeInstance("1.8", "9.7", ""),
               // another issuer's patient with the same id
               [] { auto i = MakeInstance("1.9", "9.9", "P1", "20190101"); i.patient.issuer = "OTHER"; return i; }()});
  ScoreAll(*db, {{"1.1", 3}, {"1.2", 1}, {"1.3", 2}, {"1.4", 50}, {"1.5", 4}, {"1.6", 60}, {"1.7", 70},
                 {"1.8", 71}, {"1.9", 90}});

  auto history = db->PatientHistory({"P1", "HOSP"});
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  std::vector<std::string> order;
  for (const StudyScore& s : *history) order.push_back(s.sop_instance_uid);
  EXPECT_EQ(order, (std::vector<std::string>{"1.2", "1.3", "1.1", "1.5"}));
  EXPECT_EQ((*history)[0].study_date, "20200101");
  EXPECT_EQ((*history)[0].embedding, (std::vector<float>{0.5f, -1.25f, 3.0f}));
  EXPECT_EQ((*history)[0].model_name, "pxs-densenet121");

  EXPECT_TRUE(db->PatientHistory({"", ""})->empty());
  EXPECT_TRUE(db->PatientHistory({"", "HOSP"})->empty());
  ASSERT_EQ(db->PatientHistory({"P1", "OTHER"})->size(), 1u);

  // Each id-less study has a patient row of its own (both instances of 9.7 share one).
  auto admin = AdminDatabase::Open(dir.db(), Database::Mode::kReadOnly);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  auto patients = (*admin)->FindPatients("", 100);
  ASSERT_TRUE(patients.ok());
  int no_id_rows = 0;
  for (const PatientSummary& p : *patients) {
    if (p.patient_id.empty()) {
      ++no_id_rows;
      EXPECT_EQ(p.studies, 1);
    }
  }
  EXPECT_EQ(no_id_rows, 3);  // 9.1 (no id), 9.6, 9.7
  auto study = (*admin)->Study("9.1");
  ASSERT_EQ(study->size(), 2u);  // P1's and the id-less one, kept apart
  EXPECT_EQ((*study)[0].instances.size(), 1u);
  EXPECT_EQ((*study)[1].instances.size(), 1u);
}

TEST(DatabaseTest, ReportOutboxSchedulesRetries) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  EXPECT_FALSE(db->LatestReport("9.1", "pxs")->has_value());
  ASSERT_TRUE(db->RecordReport("2.1", "9.1", "pxs", 1, "reports/2.1.dcm", {"PACS", "caller:MOD1"}).ok());
  ASSERT_TRUE(db->RecordReport("2.2", "9.1", "pxs", 2, "reports/2.2.dcm", {}).ok());
  EXPECT_EQ(db->RecordReport("2.1", "9.1", "pxs", 3, "x.dcm", {"PACS"}).code(), Status::Code::kAlreadyExists);
  auto latest = db->LatestReport("9.1", "pxs");
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->sr_sop_instance_uid, "2.2");
  EXPECT_EQ((*latest)->version, 2);

  const int64_t now = 4'000'000'000'000;  // after the records' created_at: all due
  auto due = db->DueReports(now, 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].file_path, "reports/2.1.dcm");
  const int64_t pacs = (*due)[0].destination == "PACS" ? (*due)[0].id : (*due)[1].id;
  const int64_t caller = pacs == (*due)[0].id ? (*due)[1].id : (*due)[0].id;

  ASSERT_TRUE(db->MarkReportAttemptFailed(pacs, "association rejected", now + 5000, false).ok());
  due = db->DueReports(now, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].id, caller);
  due = db->DueReports(now + 5000, 10);
  ASSERT_EQ(due->size(), 2u);
  const OutgoingReport& retried = (*due)[0].id == pacs ? (*due)[0] : (*due)[1];
  EXPECT_EQ(retried.attempts, 1);
  EXPECT_EQ(retried.last_error, "association rejected");
  EXPECT_EQ(retried.next_attempt_at_ms, now + 5000);

  ASSERT_TRUE(db->MarkReportSent(caller).ok());
  EXPECT_FALSE(db->MarkReportSent(caller).ok());  // sent is final
  ASSERT_TRUE(db->MarkReportAttemptFailed(pacs, "timeout", now + 9000, /*final=*/true).ok());
  EXPECT_TRUE(db->DueReports(now + 1'000'000, 10)->empty());
  EXPECT_EQ(db->MarkReportSent(777).code(), Status::Code::kNotFound);
}

TEST(DatabaseTest, MarkingDeliveriesStartingKeepsThemPendingAndDue) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->RecordReport("2.1", "9.1", "pxs", 1, "reports/2.1.dcm", {"PACS", "ARCHIVE"}).ok());
  const int64_t now = 4'000'000'000'000;
  auto due = db->DueReports(now, 10);
  ASSERT_EQ(due->size(), 2u);
  ASSERT_TRUE(db->MarkReportSent((*due)[1].id).ok());
  ASSERT_TRUE(db->MarkDeliveriesStarting({(*due)[0].id, (*due)[1].id}).ok());
  ASSERT_TRUE(db->MarkDeliveriesStarting({}).ok());
  auto after = db->DueReports(now, 10);
  ASSERT_EQ(after->size(), 1u);  // the pending one is still due, the sent one stays sent
  EXPECT_EQ((*after)[0].id, (*due)[0].id);
  EXPECT_EQ((*after)[0].attempts, 0);  // starting is not an attempt yet
  ASSERT_TRUE(db->MarkReportSent((*due)[0].id).ok());
}

TEST(DatabaseTest, ReadOnlyHandleRefusesWrites) {
  ScratchDir dir;
  {
    auto db = OpenOrDie(dir.db());
    Record(*db, {MakeInstance("1.1", "9.1", "P1")});
  }
  auto ro = OpenOrDie(dir.db(), Database::Mode::kReadOnly);
  ASSERT_TRUE(ro);
  EXPECT_TRUE(*ro->HasInstance("1.1"));
  std::vector<InsertOutcome> outcomes;
  EXPECT_FALSE(ro->RecordInstances({MakeInstance("1.2", "9.1", "P1")}, &outcomes).ok());
  EXPECT_FALSE(ro->ClaimJobs(1).ok());
  EXPECT_FALSE(ro->RecordReport("2.1", "9.1", "pxs", 1, "r.dcm", {"PACS"}).ok());
  EXPECT_FALSE(ro->MarkDeliveriesStarting({1}).ok());
  EXPECT_FALSE(ro->RequeueInterruptedJobs().ok());
  EXPECT_FALSE(*ro->HasInstance("1.2"));
  EXPECT_EQ(*ro->CountJobs(JobState::kQueued), 1);
  // The admin handle too, and SQLite itself refuses (query_only + READONLY).
  auto admin = AdminDatabase::Open(dir.db(), Database::Mode::kReadOnly);
  ASSERT_TRUE(admin.ok());
  EXPECT_FALSE((*admin)->AddAudit({1, "root", "test", ""}).ok());
  EXPECT_FALSE((*admin)->RetryAllFailed(1).ok());
}

TEST(DatabaseTest, ReadOnlyReaderSeesCommitsOfARunningWriter) {
  ScratchDir dir;
  auto writer = OpenOrDie(dir.db());
  auto reader = OpenOrDie(dir.db(), Database::Mode::kReadOnly);
  ASSERT_TRUE(writer && reader);
  Record(*writer, {MakeInstance("1.1", "9.1", "P1")});
  EXPECT_TRUE(*reader->HasInstance("1.1"));
}

TEST(DatabaseTest, ConcurrentBatchesFromSeveralThreadsAreAllRecordedOnce) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  constexpr int kThreads = 4, kBatches = 40, kPerBatch = 5;
  std::atomic<int> inserted{0}, duplicates{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<ReceivedInstance> batch;
        for (int i = 0; i < kPerBatch; ++i) {
          // Threads 0/1 and 2/3 send the same UIDs: every UID must be inserted once.
          std::string sop = "1." + std::to_string(t / 2) + "." + std::to_string(b) + "." + std::to_string(i);
          batch.push_back(MakeInstance(sop, "9." + std::to_string(t / 2) + "." + std::to_string(b),
                                       std::string("P").append(std::to_string(b % 7))));
        }
        std::vector<InsertOutcome> outcomes;
        if (!db->RecordInstances(batch, &outcomes).ok() || outcomes.size() != batch.size()) {
          ++errors;
          continue;
        }
        for (InsertOutcome o : outcomes) (o == InsertOutcome::kInserted ? inserted : duplicates)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(inserted.load(), 2 * kBatches * kPerBatch);
  EXPECT_EQ(duplicates.load(), 2 * kBatches * kPerBatch);
  EXPECT_EQ(*db->CountJobs(JobState::kQueued), 2 * kBatches * kPerBatch);
}

// Issue 12: a version-4 database (one job per instance, one model) keeps every score and
// report when the jobs become per (instance, model); pending work belongs to the model
// the node ran.
TEST(DatabaseTest, MigratesAVersion4DatabaseKeepingScoresAndReports) {
  PXS_SKIP_ON_POSTGRES("filled with sqlite3 (postgres_test.cc migrates PostgreSQL)");
  ScratchDir dir;
  ASSERT_TRUE(sqlite::CreateAtSchemaVersionForTest(dir.db(), 4).ok());
  ExecSql(dir.db(),
          "INSERT INTO patients (patient_id, issuer, name, created_at) VALUES ('P1', 'HOSP', 'DOE^P1', 1);"
          "INSERT INTO studies (patient_ref, study_uid, study_date, created_at) VALUES (1, '9.1', '20200101', 1);"
          "INSERT INTO studies (patient_ref, study_uid, study_date, created_at) VALUES (1, '9.2', '20200201', 1);"
          "INSERT INTO instances (sop_instance_uid, study_ref, file_path, file_size, sha256, received_at)"
          " VALUES ('1.1', 1, 'dicom/1.1.dcm', 10, 'ab', 1), ('1.2', 2, 'dicom/1.2.dcm', 10, 'ab', 2),"
          " ('1.3', 2, 'dicom/1.3.dcm', 10, 'ab', 3);"
          "INSERT INTO jobs (id, instance_ref, state, created_at, updated_at) VALUES (7, 1, 'scored', 1, 1),"
          " (8, 2, 'queued', 2, 2), (9, 3, 'skipped', 3, 3);"
          "INSERT INTO scores (job_ref, pxs, raw_distance, model_name, model_version, scored_at)"
          " VALUES (7, 4.5, 4.5, 'old-model', '1.0', 5);"
          "INSERT INTO models (name, version, metadata_json, recorded_at) VALUES ('old-model', '1.0', '{}', 4);"
          "INSERT INTO reports (sr_sop_instance_uid, study_uid, version, file_path, created_at)"
          " VALUES ('2.1', '9.1', 1, 'reports/9.1/sr-v1.dcm', 6);");
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  EXPECT_EQ(*ReadSchemaVersion(dir.db()), kSchemaVersion);
  EXPECT_EQ(CountRows(dir.db(), "SELECT 1 FROM jobs WHERE id = 7 AND model_name = 'old-model' AND state = 'scored'"), 1);
  EXPECT_EQ(CountRows(dir.db(), "SELECT 1 FROM jobs WHERE id = 9 AND model_name = '' AND state = 'skipped'"), 1);
  EXPECT_EQ(CountRows(dir.db(), "PRAGMA foreign_key_check"), 0);
  auto history = db->PatientHistory({"P1", "HOSP"});
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_DOUBLE_EQ((*history)[0].pxs, 4.5);
  auto latest = db->LatestReport("9.1", "old-model");
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->version, 1);
  EXPECT_EQ(*db->CountQueuedJobs({"old-model"}), 1);
  auto jobs = db->ClaimJobs(5, {"old-model"});
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].id, 8);
  EXPECT_EQ((*jobs)[0].model_name, "old-model");
}

TEST(DatabaseTest, AJobPerSelectedModelClaimedImageByImage) {
  ScratchDir dir;
  auto db = OpenOrDie(dir.db());
  ASSERT_TRUE(db);
  ReceivedInstance both = MakeInstance("1.1", "9.1", "P1");
  both.models = {"pxs", "edema"};
  ReceivedInstance one = MakeInstance("1.2", "9.2", "P1");
  one.models = {"pxs"};
  ReceivedInstance none = MakeInstance("1.3", "9.3", "P1");
  none.skip_reason = "no model applies";
  none.models = {"pxs"};  // a skip reason wins: no job is queued
  Record(*db, {both, one, none});
  EXPECT_EQ(*db->CountQueuedJobs({}), 3);
  EXPECT_EQ(*db->CountQueuedJobs({"pxs"}), 2);
  EXPECT_EQ(*db->CountQueuedJobs({"edema"}), 1);
  EXPECT_EQ(*db->CountQueuedJobs({"other"}), 0);
  EXPECT_EQ(*db->CountJobs(JobState::kSkipped), 1);

  // One image: both of its jobs, so that it is decoded once.
  auto first = db->ClaimJobs(1, {"pxs", "edema"});
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 2u);
  std::set<std::string> models;
  for (const Job& j : *first) {
    EXPECT_EQ(j.sop_instance_uid, "1.1");
    models.insert(j.model_name);
  }
  EXPECT_EQ(models, (std::set<std::string>{"pxs", "edema"}));
  EXPECT_TRUE(db->ClaimJobs(5, {"edema"})->empty());  // a model only claims its own jobs
  auto second = db->ClaimJobs(5, {"pxs"});
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].sop_instance_uid, "1.2");

  // Each model has its own SR versions of a study.
  ASSERT_TRUE(db->RecordReport("2.1", "9.1", "pxs", 1, "r1.dcm", {}).ok());
  EXPECT_FALSE(db->LatestReport("9.1", "edema")->has_value());
  ASSERT_TRUE(db->RecordReport("2.2", "9.1", "edema", 1, "r2.dcm", {}).ok());
  EXPECT_EQ((*db->LatestReport("9.1", "edema"))->sr_sop_instance_uid, "2.2");
  EXPECT_EQ((*db->LatestReport("9.1", "pxs"))->sr_sop_instance_uid, "2.1");
}

}  // namespace
}  // namespace pxs
