// pxs::Database over the storage seam (backend.h): the domain rules, written once in the
// portable dialect, for SQLite and PostgreSQL. One connection behind one mutex: SQLite
// allows one writer at a time anyway, and a single connection lets every statement
// stay prepared for the life of the process. On PostgreSQL several nodes share the
// database; each works on its own instances and reports (the local_* views, schema.cc).
#include "pxs/storage/database.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "schema.h"
#include "sqlite.h"

namespace pxs {

using sqlite::Connection;
using sqlite::Query;
using sqlite::Transaction;
using sqlite::Durability;

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "queued";
    case JobState::kScoring: return "scoring";
    case JobState::kScored: return "scored";
    case JobState::kSkipped: return "skipped";
    case JobState::kFailed: return "failed";
  }
  return "unknown";
}

std::string DatabasePathFor(const std::string& data_dir) { return data_dir + "/pxsnode.db"; }

std::string DefaultNodeId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0) return "pxsnode";
  return host;
}

bool IsPostgresUrl(const std::string& url) {
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) return true;
  // A libpq key/value string starts with "keyword=" (libpq's keywords are lower-case
  // letters and underscores), e.g. "host=db1 dbname=pxs"; a file path does not.
  size_t i = url.find_first_not_of(' ');
  if (i == std::string::npos) return false;
  const size_t start = i;
  while (i < url.size() && ((url[i] >= 'a' && url[i] <= 'z') || url[i] == '_')) ++i;
  while (i < url.size() && url[i] == ' ') ++i;
  return i > start && i < url.size() && url[i] == '=';
}

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The columns of a Job, for queries joining jobs j, instances i, studies s, patients p;
// ReadJobColumns() reads them back from columns 0..kJobColumns-1.
#define PXS_JOB_COLUMNS                                                                                         \
  "j.id, i.sop_instance_uid, s.study_uid, i.file_path, p.patient_id, p.issuer, j.attempts, i.received_at," \
  " i.calling_ae, j.model_name"
constexpr int kJobColumns = 10;

Job ReadJobColumns(const Query& q) {
  Job job;
  job.id = q.Int(0);
  job.sop_instance_uid = q.Text(1);
  job.study_uid = q.Text(2);
  job.file_path = q.Text(3);
  job.patient.patient_id = q.Text(4);  // NULL reads as "": no id
  job.patient.issuer = q.Text(5);
  job.attempts = static_cast<int>(q.Int(6));
  job.received_at_ms = q.Int(7);
  job.calling_ae = q.Text(8);
  job.model_name = q.Text(9);
  return job;
}

// Scoring and report bookkeeping (claims, scores, skips, failed attempts, new reports,
// file hashes) commits with Durability::kDeferred, i.e. without waiting for the disk
// (synchronous=NORMAL for that transaction only). A power cut can lose only a suffix of the WAL, so at worst the last of these commits, and
// start-up recovery redoes them: jobs left 'scoring' are queued again, scored images
// without a report get one. The next synchronous=FULL commit makes them durable with
// itself: every ingest batch, and MarkDeliveriesStarting() before any SR leaves, so a
// report that may be at a receiver is never lost and made again under a new UID. Before,
// each was an fsync on the disk the SCP syncs received images to, taken under the lock
// the SCP's commit needs (measured: docs/database.md).

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(std::unique_ptr<Connection> conn) : conn_(std::move(conn)) {}

  Status RecordInstances(const std::vector<ReceivedInstance>& batch,
                         std::vector<InsertOutcome>* outcomes) override;
  StatusOr<bool> HasInstance(const std::string& sop_instance_uid) override;
  StatusOr<std::optional<StoredFile>> FindStoredFile(const std::string& sop_instance_uid) override;
  Status RecordReplacedInstance(const ReceivedInstance& instance, const std::string& audit_details) override;
  Status AddNodeAudit(const std::string& action, const std::string& details) override;
  StatusOr<int> RequeueInterruptedJobs() override;
  StatusOr<std::vector<Job>> ClaimJobs(int max_images, const std::vector<std::string>& models) override;
  StatusOr<int> CountQueuedJobs(const std::vector<std::string>& models) override;
  Status CompleteJob(const ScoreRecord& score) override { return CompleteJobs({score}); }
  Status CompleteJobs(const std::vector<ScoreRecord>& scores) override;
  Status SkipJob(int64_t job_id, const std::string& reason) override;
  Status FailJobAttempt(int64_t job_id, const std::string& reason, int max_attempts) override;
  StatusOr<int> CountJobs(JobState state) override;
  StatusOr<std::vector<StudyScore>> PatientHistory(const PatientKey& patient) override;
  Status RecordReport(const std::string& sr_sop_instance_uid, const std::string& study_uid,
                      const std::string& model_name, int version, const std::string& file_path,
                      const std::vector<std::string>& destinations) override;
  StatusOr<std::optional<ReportVersion>> LatestReport(const std::string& study_uid,
                                                      const std::string& model_name) override;
  StatusOr<std::vector<OutgoingReport>> DueReports(int64_t now_ms, int max) override;
  Status MarkDeliveriesStarting(const std::vector<int64_t>& delivery_ids) override;
  StatusOr<std::vector<UnhashedFile>> FilesWithoutHash(int64_t after_id, int max) override;
  Status RecordFileHashes(const std::vector<std::pair<int64_t, std::string>>& hashes) override;
  Status MarkReportSent(int64_t report_id) override;
  Status RecordModel(const std::string& name, const std::string& version,
                     const std::string& metadata_json) override;
  StatusOr<std::vector<ScoredJob>> ScoredWithoutReport(int64_t since_ms) override;
  Status MarkReportAttemptFailed(int64_t report_id, const std::string& error,
                                 int64_t next_attempt_at_ms, bool final) override;

 private:
  Status RequireWritable(const char* operation) const {
    if (!conn_->read_only()) return Status::Ok();
    return Status::Unsupported(conn_->path() + ": " + operation + ": database is opened read-only");
  }
  Status InsertAudit(const std::string& action, const std::string& details, int64_t now_ms);
  StatusOr<InsertOutcome> RecordOne(const ReceivedInstance& instance, int64_t now_ms);
  // The instance's jobs: one skipped job (no model) with its skip reason, or one queued
  // job per model its routes selected.
  Status InsertJobs(int64_t instance_ref, const ReceivedInstance& instance, int64_t now_ms);
  StatusOr<int64_t> FindOrCreatePatient(const ReceivedInstance& instance, int64_t now_ms);
  StatusOr<int64_t> FindOrCreateStudy(const ReceivedInstance& instance, int64_t now_ms);
  StatusOr<int64_t> InsertStudy(int64_t patient_ref, const ReceivedInstance& instance, int64_t now_ms);
  // Explains why a guarded UPDATE changed nothing: unknown id or wrong state.
  Status WhyNotUpdated(const char* table, int64_t id, const char* expected_state);

  std::unique_ptr<Connection> conn_;
  std::mutex mutex_;  // guards conn_ (and so serialises every write)

};

// One transaction for the whole batch; a savepoint per instance is not needed: a bad
// instance (missing UID) fails the batch, which the SCP's committer then reports to
// every association in it.
Status SqliteDatabase::RecordInstances(const std::vector<ReceivedInstance>& batch,
                                       std::vector<InsertOutcome>* outcomes) {
  PXS_RETURN_IF_ERROR(RequireWritable("RecordInstances"));
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get());
  PXS_RETURN_IF_ERROR(tx.Begin());
  const int64_t now_ms = NowMs();
  std::vector<InsertOutcome> results;
  results.reserve(batch.size());
  for (const ReceivedInstance& in : batch) {
    StatusOr<InsertOutcome> outcome = RecordOne(in, now_ms);
    if (!outcome.ok()) return outcome.status();  // tx rolls back
    results.push_back(*outcome);
  }
  PXS_RETURN_IF_ERROR(tx.Commit());
  if (outcomes) *outcomes = std::move(results);
  return Status::Ok();
}

StatusOr<std::optional<Database::StoredFile>> SqliteDatabase::FindStoredFile(const std::string& sop_instance_uid) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "SELECT file_path, file_size, transfer_syntax_uid, calling_ae,"
      " CASE WHEN id IN (SELECT id FROM local_instances) THEN 1 ELSE 0 END"
      " FROM instances WHERE sop_instance_uid = ?1");
  q.With(sop_instance_uid);
  StatusOr<bool> found = q.Step();
  if (!found.ok()) return found.status();
  if (!*found) return std::optional<StoredFile>();
  StoredFile f;
  f.file_path = q.Text(0);
  f.file_size = static_cast<uint64_t>(q.Int(1));
  f.transfer_syntax_uid = q.Text(2);
  f.calling_ae = q.Text(3);
  f.on_this_node = q.Int(4) != 0;
  return std::optional<StoredFile>(std::move(f));
}

Status SqliteDatabase::RecordReplacedInstance(const ReceivedInstance& in, const std::string& audit_details) {
  PXS_RETURN_IF_ERROR(RequireWritable("RecordReplacedInstance"));
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get());
  PXS_RETURN_IF_ERROR(tx.Begin());
  const int64_t now_ms = NowMs();
  Query update = conn_->Prepare(
      "UPDATE instances SET file_size = ?2, sha256 = '', transfer_syntax_uid = ?3, calling_ae = ?4,"
      " peer_address = ?5, received_at = ?6 WHERE sop_instance_uid = ?1");
  update.With(in.sop_instance_uid, static_cast<int64_t>(in.file_size), in.transfer_syntax_uid, in.calling_ae,
              in.peer_address, in.received_at_ms ? in.received_at_ms : now_ms);
  PXS_RETURN_IF_ERROR(update.Run());
  if (conn_->Changes() != 1) return Status::NotFound("instance " + in.sop_instance_uid + " is not stored");
  // One job per instance: the old score described bytes that are gone, so it goes and the
  // job starts again (the audit row keeps what the old score was).
  std::string old_score;
  {
    Query q = conn_->Prepare(
        "SELECT sc.pxs, sc.model_name, sc.model_version FROM scores sc JOIN jobs j ON j.id = sc.job_ref"
        " JOIN instances i ON i.id = j.instance_ref WHERE i.sop_instance_uid = ?1");
    q.With(in.sop_instance_uid);
    StatusOr<bool> found = q.Step();
    if (!found.ok()) return found.status();
    if (*found) old_score = "; previous score " + std::to_string(q.Real(0)) + " (" + q.Text(1) + " " + q.Text(2) + ")";
  }
  Query drop_score = conn_->Prepare(
      "DELETE FROM scores WHERE job_ref IN (SELECT j.id FROM jobs j JOIN instances i ON i.id = j.instance_ref"
      " WHERE i.sop_instance_uid = ?1)");
  drop_score.With(in.sop_instance_uid);
  PXS_RETURN_IF_ERROR(drop_score.Run());
  // The new bytes get the jobs today's routes select (the models may have changed too).
  int64_t instance_ref = 0;
  {
    Query q = conn_->Prepare("SELECT id FROM instances WHERE sop_instance_uid = ?1");
    q.With(in.sop_instance_uid);
    StatusOr<bool> found = q.Step();
    if (!found.ok()) return found.status();
    instance_ref = q.Int(0);
  }
  Query drop_jobs = conn_->Prepare("DELETE FROM jobs WHERE instance_ref = ?1");
  drop_jobs.With(instance_ref);
  PXS_RETURN_IF_ERROR(drop_jobs.Run());
  PXS_RETURN_IF_ERROR(InsertJobs(instance_ref, in, now_ms));
  PXS_RETURN_IF_ERROR(InsertAudit("instance_replaced", audit_details + old_score, now_ms));
  return tx.Commit();
}

Status SqliteDatabase::AddNodeAudit(const std::string& action, const std::string& details) {
  PXS_RETURN_IF_ERROR(RequireWritable("AddNodeAudit"));
  std::lock_guard guard(mutex_);
  return InsertAudit(action, details, NowMs());
}

Status SqliteDatabase::InsertAudit(const std::string& action, const std::string& details, int64_t now_ms) {
  Query q = conn_->Prepare("INSERT INTO audit (at, unix_user, action, details) VALUES (?1, 'pxsnode', ?2, ?3)");
  q.With(now_ms, action, details);
  return q.Run();
}

StatusOr<InsertOutcome> SqliteDatabase::RecordOne(const ReceivedInstance& in, int64_t now_ms) {
  if (in.sop_instance_uid.empty() || in.study_uid.empty() || in.file_path.empty()) {
    return Status::InvalidArgument("RecordInstances: instance '" + in.sop_instance_uid +
                                   "' lacks SOP Instance UID, Study Instance UID or file path");
  }
  {
    Query q = conn_->Prepare("SELECT 1 FROM instances WHERE sop_instance_uid = ?1");
    q.With(in.sop_instance_uid);
    StatusOr<bool> found = q.Step();
    if (!found.ok()) return found.status();
    if (*found) return InsertOutcome::kDuplicate;
  }
  StatusOr<int64_t> study_ref = FindOrCreateStudy(in, now_ms);
  if (!study_ref.ok()) return study_ref.status();
  Query insert_instance = conn_->Prepare(
      "INSERT INTO instances (sop_instance_uid, study_ref, series_uid, sop_class_uid, modality,"
      " body_part, view_position, transfer_syntax_uid, file_path, file_size, sha256, calling_ae,"
      " peer_address, received_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
      " ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING id");
  insert_instance.With(in.sop_instance_uid, *study_ref, in.series_uid, in.sop_class_uid, in.modality,
                       in.body_part, in.view_position, in.transfer_syntax_uid, in.file_path,
                       static_cast<int64_t>(in.file_size), in.sha256, in.calling_ae, in.peer_address,
                       in.received_at_ms ? in.received_at_ms : now_ms);
  StatusOr<bool> inserted = insert_instance.Step();
  if (!inserted.ok()) return inserted.status();
  // No row: another node sharing the database stored the same SOP Instance UID between
  // the check above and this insert (PostgreSQL waited for its commit): a duplicate.
  if (!*inserted) return InsertOutcome::kDuplicate;
  const int64_t instance_ref = insert_instance.Int(0);
  PXS_RETURN_IF_ERROR(InsertJobs(instance_ref, in, now_ms));
  return InsertOutcome::kInserted;
}

Status SqliteDatabase::InsertJobs(int64_t instance_ref, const ReceivedInstance& in, int64_t now_ms) {
  const bool skipped = !in.skip_reason.empty();
  std::vector<std::string> models = skipped || in.models.empty() ? std::vector<std::string>{""} : in.models;
  for (const std::string& model : models) {
    Query insert_job = conn_->Prepare(
        "INSERT INTO jobs (instance_ref, model_name, state, reason, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING");
    insert_job.With(instance_ref, model, skipped ? "skipped" : "queued", in.skip_reason, now_ms);
    PXS_RETURN_IF_ERROR(insert_job.Run());
  }
  return Status::Ok();
}

StatusOr<int64_t> SqliteDatabase::FindOrCreatePatient(const ReceivedInstance& in, int64_t now_ms) {
  {
    Query q = conn_->Prepare("SELECT id, name FROM patients WHERE patient_id = ?1 AND issuer = ?2");
    q.With(in.patient.patient_id, in.patient.issuer);
    StatusOr<bool> found = q.Step();
    if (!found.ok()) return found.status();
    if (*found) {
      const int64_t id = q.Int(0);
      // Keep the newest non-empty name (corrections at the modality happen).
      if (!in.patient_name.empty() && q.Text(1) != in.patient_name) {
        Query update = conn_->Prepare("UPDATE patients SET name = ?2 WHERE id = ?1");
        update.With(id, in.patient_name);
        PXS_RETURN_IF_ERROR(update.Run());
      }
      return id;
    }
  }
  // ON CONFLICT: another node may create the same patient at the same time; its row
  // is then found again below.
  {
    Query insert = conn_->Prepare(
        "INSERT INTO patients (patient_id, issuer, name, created_at) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT DO NOTHING RETURNING id");
    insert.With(in.patient.patient_id, in.patient.issuer, in.patient_name, now_ms);
    StatusOr<bool> inserted = insert.Step();
    if (!inserted.ok()) return inserted.status();
    if (*inserted) return insert.Int(0);
  }
  Query again = conn_->Prepare("SELECT id FROM patients WHERE patient_id = ?1 AND issuer = ?2");
  again.With(in.patient.patient_id, in.patient.issuer);
  StatusOr<bool> found = again.Step();
  if (!found.ok()) return found.status();
  if (!*found) return Status::Internal("patient " + in.patient.patient_id + " neither inserted nor found");
  return again.Int(0);
}

StatusOr<int64_t> SqliteDatabase::InsertStudy(int64_t patient_ref, const ReceivedInstance& in,
                                              int64_t now_ms) {
  Query insert = conn_->Prepare(
      "INSERT INTO studies (patient_ref, study_uid, study_date, study_time, accession_number,"
      " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING RETURNING id");
  insert.With(patient_ref, in.study_uid, in.study_date, in.study_time, in.accession_number, now_ms);
  StatusOr<bool> inserted = insert.Step();
  if (!inserted.ok()) return inserted.status();
  if (*inserted) return insert.Int(0);
  // Created by another node meanwhile (UNIQUE (patient_ref, study_uid)).
  Query again = conn_->Prepare("SELECT id FROM studies WHERE patient_ref = ?1 AND study_uid = ?2");
  again.With(patient_ref, in.study_uid);
  StatusOr<bool> found = again.Step();
  if (!found.ok()) return found.status();
  if (!*found) return Status::Internal("study " + in.study_uid + " neither inserted nor found");
  return again.Int(0);
}

// A study belongs to exactly one patient row. Without a PatientID the study gets a
// patient row of its own (patient_id NULL), so it can never join another study's
// history, even when two id-less studies share a name.
StatusOr<int64_t> SqliteDatabase::FindOrCreateStudy(const ReceivedInstance& in, int64_t now_ms) {
  if (!in.patient.has_id()) {
    Query q = conn_->Prepare(
        "SELECT s.id FROM studies s JOIN patients p ON p.id = s.patient_ref"
        " WHERE s.study_uid = ?1 AND p.patient_id IS NULL");
    q.With(in.study_uid);
    StatusOr<bool> found = q.Step();
    if (!found.ok()) return found.status();
    if (*found) return q.Int(0);
    Query insert = conn_->Prepare(
        "INSERT INTO patients (patient_id, issuer, name, created_at) VALUES (NULL, ?1, ?2, ?3) RETURNING id");
    insert.With(in.patient.issuer, in.patient_name, now_ms);
    StatusOr<bool> inserted = insert.Step();
    if (!inserted.ok()) return inserted.status();
    if (!*inserted) return Status::Internal("patient row without id not inserted");
    return InsertStudy(insert.Int(0), in, now_ms);
  }
  StatusOr<int64_t> patient_ref = FindOrCreatePatient(in, now_ms);
  if (!patient_ref.ok()) return patient_ref.status();
  Query q = conn_->Prepare(
      "SELECT id, study_date, study_time, accession_number FROM studies"
      " WHERE patient_ref = ?1 AND study_uid = ?2");
  q.With(*patient_ref, in.study_uid);
  StatusOr<bool> found = q.Step();
  if (!found.ok()) return found.status();
  if (!*found) return InsertStudy(*patient_ref, in, now_ms);
  const int64_t id = q.Int(0);
  // Fill in attributes an earlier instance of the study lacked.
  const bool fill = (q.Text(1).empty() && !in.study_date.empty()) ||
                    (q.Text(2).empty() && !in.study_time.empty()) ||
                    (q.Text(3).empty() && !in.accession_number.empty());
  if (fill) {
    Query update = conn_->Prepare(
        "UPDATE studies SET study_date = CASE WHEN study_date = '' THEN ?2 ELSE study_date END,"
        " study_time = CASE WHEN study_time = '' THEN ?3 ELSE study_time END,"
        " accession_number = CASE WHEN accession_number = '' THEN ?4 ELSE accession_number END"
        " WHERE id = ?1");
    update.With(id, in.study_date, in.study_time, in.accession_number);
    PXS_RETURN_IF_ERROR(update.Run());
  }
  return id;
}

StatusOr<bool> SqliteDatabase::HasInstance(const std::string& sop_instance_uid) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare("SELECT 1 FROM instances WHERE sop_instance_uid = ?1");
  q.With(sop_instance_uid);
  return q.Step();
}

StatusOr<int> SqliteDatabase::RequeueInterruptedJobs() {
  PXS_RETURN_IF_ERROR(RequireWritable("RequeueInterruptedJobs"));
  std::lock_guard guard(mutex_);
  // attempts stay counted: an image that crashes the worker must still reach
  // max_attempts and end as failed instead of crashing the node forever.
  Query q = conn_->Prepare(
      "UPDATE jobs SET state = 'queued', reason = 'interrupted (node restarted)', updated_at = ?1"
      " WHERE state = 'scoring' AND instance_ref IN (SELECT id FROM local_instances)");
  q.With(NowMs());
  PXS_RETURN_IF_ERROR(q.Run());
  return conn_->Changes();
}

namespace {

// The models a claim or count is for, as one bound text: '' for any model, else the
// names as |a|b|, matched with instr() (a PostgreSQL backend defines it over strpos), so
// that one cached statement serves every set of models. Model names cannot hold '|'
// (the config refuses it).
constexpr char kModelSeparator = '|';
std::string ModelSet(const std::vector<std::string>& models) {
  if (models.empty()) return "";
  std::string set(1, kModelSeparator);
  for (const std::string& m : models) set += m + kModelSeparator;
  return set;
}

}  // namespace

StatusOr<std::vector<Job>> SqliteDatabase::ClaimJobs(int max_images, const std::vector<std::string>& models) {
  PXS_RETURN_IF_ERROR(RequireWritable("ClaimJobs"));
  std::vector<Job> jobs;
  if (max_images <= 0) return jobs;
  const std::string model_set = ModelSet(models);
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get(), Durability::kDeferred);
  PXS_RETURN_IF_ERROR(tx.Begin());
  {
    // The oldest images with a queued job of these models, then all such jobs of them.
#define PXS_CLAIM_SQL \
        "SELECT " PXS_JOB_COLUMNS \
        " FROM jobs j JOIN local_instances i ON i.id = j.instance_ref" \
        " JOIN studies s ON s.id = i.study_ref JOIN patients p ON p.id = s.patient_ref" \
        " WHERE j.state = 'queued'" \
        " AND (?1 = '' OR instr(?1, '|' || j.model_name || '|') > 0)" \
        " AND j.instance_ref IN (SELECT q.instance_ref FROM jobs q WHERE q.state = 'queued'" \
        "   AND q.instance_ref IN (SELECT id FROM local_instances)" \
        "   AND (?1 = '' OR instr(?1, '|' || q.model_name || '|') > 0)" \
        "   GROUP BY q.instance_ref ORDER BY min(q.id) LIMIT ?2)" \
        " ORDER BY j.instance_ref, j.id"
    // SKIP LOCKED: on a shared PostgreSQL a claim never waits for, nor takes, a job row
    // another transaction holds; SQLite's BEGIN IMMEDIATE already serialises claims.
    Query q = conn_->Prepare(conn_->dialect() == sql::Dialect::kPostgres ? PXS_CLAIM_SQL " FOR UPDATE OF j SKIP LOCKED"
                                                                        : PXS_CLAIM_SQL);
#undef PXS_CLAIM_SQL
    q.With(model_set, max_images);
    while (true) {
      StatusOr<bool> row = q.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      Job job = ReadJobColumns(q);
      job.attempts += 1;  // the claim being made counts
      jobs.push_back(std::move(job));
    }
  }
  const int64_t now_ms = NowMs();
  for (const Job& job : jobs) {
    Query update = conn_->Prepare(
        "UPDATE jobs SET state = 'scoring', attempts = attempts + 1, started_at = ?2, updated_at = ?2"
        " WHERE id = ?1");
    update.With(job.id, now_ms);
    PXS_RETURN_IF_ERROR(update.Run());
  }
  PXS_RETURN_IF_ERROR(tx.Commit());
  return jobs;
}

Status SqliteDatabase::WhyNotUpdated(const char* table, int64_t id, const char* expected_state) {
  Query q = conn_->Prepare(std::string_view(table) == "jobs"
                               ? "SELECT state FROM jobs WHERE id = ?1"
                               : "SELECT state FROM report_deliveries WHERE id = ?1");
  q.With(id);
  StatusOr<bool> found = q.Step();
  if (!found.ok()) return found.status();
  std::string what = std::string(table == std::string_view("jobs") ? "job " : "report delivery ") +
                     std::to_string(id);
  if (!*found) return Status::NotFound(what + " does not exist");
  return Status::InvalidArgument(what + " is " + q.Text(0) + ", not " + expected_state);
}

Status SqliteDatabase::CompleteJobs(const std::vector<ScoreRecord>& scores) {
  PXS_RETURN_IF_ERROR(RequireWritable("CompleteJob"));
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get(), Durability::kDeferred);
  PXS_RETURN_IF_ERROR(tx.Begin());
  const int64_t now_ms = NowMs();
  for (const ScoreRecord& score : scores) {
    // Only a job claimed for scoring can be completed: the UNIQUE job_ref in scores
    // and this guard together make "scored exactly once" hold across crashes.
    Query update = conn_->Prepare(
        "UPDATE jobs SET state = 'scored', reason = '', updated_at = ?2 WHERE id = ?1 AND state = 'scoring'");
    update.With(score.job_id, now_ms);
    PXS_RETURN_IF_ERROR(update.Run());
    if (conn_->Changes() == 0) return WhyNotUpdated("jobs", score.job_id, "scoring");
    Query insert = conn_->Prepare(
        "INSERT INTO scores (job_ref, pxs, raw_distance, calibrated, calibrated_scale, embedding,"
        " model_name, model_version, queue_ms, decode_ms, inference_ms, scored_at)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
    insert.With(score.job_id, score.pxs, score.raw_distance, score.calibrated, score.calibrated_scale,
                score.embedding, score.model_name, score.model_version, score.queue_ms,
                score.decode_ms, score.inference_ms, score.scored_at_ms ? score.scored_at_ms : now_ms);
    PXS_RETURN_IF_ERROR(insert.Run());
  }
  return tx.Commit();
}

Status SqliteDatabase::SkipJob(int64_t job_id, const std::string& reason) {
  PXS_RETURN_IF_ERROR(RequireWritable("SkipJob"));
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get(), Durability::kDeferred);
  PXS_RETURN_IF_ERROR(tx.Begin());
  Query q = conn_->Prepare(
      "UPDATE jobs SET state = 'skipped', reason = ?2, updated_at = ?3"
      " WHERE id = ?1 AND state IN ('queued', 'scoring')");
  q.With(job_id, reason, NowMs());
  PXS_RETURN_IF_ERROR(q.Run());
  if (conn_->Changes() == 0) return WhyNotUpdated("jobs", job_id, "queued or scoring");
  return tx.Commit();
}

Status SqliteDatabase::FailJobAttempt(int64_t job_id, const std::string& reason, int max_attempts) {
  PXS_RETURN_IF_ERROR(RequireWritable("FailJobAttempt"));
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get(), Durability::kDeferred);
  PXS_RETURN_IF_ERROR(tx.Begin());
  Query q = conn_->Prepare(
      "UPDATE jobs SET state = CASE WHEN attempts >= ?3 THEN 'failed' ELSE 'queued' END,"
      " reason = ?2, updated_at = ?4 WHERE id = ?1 AND state = 'scoring'");
  q.With(job_id, reason, max_attempts, NowMs());
  PXS_RETURN_IF_ERROR(q.Run());
  if (conn_->Changes() == 0) return WhyNotUpdated("jobs", job_id, "scoring");
  return tx.Commit();
}

StatusOr<int> SqliteDatabase::CountQueuedJobs(const std::vector<std::string>& models) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "SELECT count(*) FROM jobs WHERE state = 'queued'"
      " AND (?1 = '' OR instr(?1, '|' || model_name || '|') > 0)");
  q.With(ModelSet(models));
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(q.Int(0));
}

StatusOr<int> SqliteDatabase::CountJobs(JobState state) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare("SELECT count(*) FROM jobs WHERE state = ?1");
  q.With(JobStateName(state));
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(q.Int(0));
}

StatusOr<std::vector<StudyScore>> SqliteDatabase::PatientHistory(const PatientKey& patient) {
  std::vector<StudyScore> history;
  if (!patient.has_id()) return history;
  std::lock_guard guard(mutex_);
  // Studies without StudyDate/Time sort by the day they were received.
  Query q = conn_->Prepare(
      "SELECT s.study_uid, s.study_date, s.study_time, s.accession_number, i.sop_instance_uid,"
      " sc.pxs, sc.calibrated, sc.embedding, sc.model_name, sc.model_version, sc.scored_at"
      " FROM patients p JOIN studies s ON s.patient_ref = p.id"
      " JOIN instances i ON i.study_ref = s.id JOIN jobs j ON j.instance_ref = i.id"
      " JOIN scores sc ON sc.job_ref = j.id"
      " WHERE p.patient_id = ?1 AND p.issuer = ?2"
      " ORDER BY COALESCE(NULLIF(s.study_date, ''), pxs_utc_day(s.created_at)),"
      " s.study_time, sc.scored_at, sc.id");
  q.With(patient.patient_id, patient.issuer);
  while (true) {
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    StudyScore entry;
    entry.study_uid = q.Text(0);
    entry.study_date = q.Text(1);
    entry.study_time = q.Text(2);
    entry.accession_number = q.Text(3);
    entry.sop_instance_uid = q.Text(4);
    entry.pxs = q.Real(5);
    entry.calibrated = q.OptReal(6);
    entry.embedding = q.Floats(7);
    entry.model_name = q.Text(8);
    entry.model_version = q.Text(9);
    entry.scored_at_ms = q.Int(10);
    history.push_back(std::move(entry));
  }
  return history;
}

Status SqliteDatabase::RecordReport(const std::string& sr_sop_instance_uid, const std::string& study_uid,
                                    const std::string& model_name, int version, const std::string& file_path,
                                    const std::vector<std::string>& destinations) {
  PXS_RETURN_IF_ERROR(RequireWritable("RecordReport"));
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get(), Durability::kDeferred);
  PXS_RETURN_IF_ERROR(tx.Begin());
  const int64_t now_ms = NowMs();
  {
    Query exists = conn_->Prepare("SELECT 1 FROM reports WHERE sr_sop_instance_uid = ?1");
    exists.With(sr_sop_instance_uid);
    StatusOr<bool> found = exists.Step();
    if (!found.ok()) return found.status();
    if (*found) return Status::AlreadyExists("SR " + sr_sop_instance_uid + " is already recorded");
  }
  int64_t report_ref = 0;
  {  // scoped: a RETURNING statement still open would keep SQLite from committing
    Query insert = conn_->Prepare(
        "INSERT INTO reports (sr_sop_instance_uid, study_uid, model_name, version, file_path, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id");
    insert.With(sr_sop_instance_uid, study_uid, model_name, version, file_path, now_ms);
    StatusOr<bool> inserted = insert.Step();
    if (!inserted.ok()) return inserted.status();
    if (!*inserted) return Status::Internal("SR " + sr_sop_instance_uid + " not recorded");
    report_ref = insert.Int(0);
  }
  for (const std::string& destination : destinations) {
    Query delivery = conn_->Prepare(
        "INSERT INTO report_deliveries (report_ref, destination, state, next_attempt_at, created_at,"
        " updated_at) VALUES (?1, ?2, 'pending', ?3, ?3, ?3) ON CONFLICT DO NOTHING");
    delivery.With(report_ref, destination, now_ms);
    PXS_RETURN_IF_ERROR(delivery.Run());
  }
  return tx.Commit();
}

StatusOr<std::optional<Database::ReportVersion>> SqliteDatabase::LatestReport(const std::string& study_uid,
                                                                              const std::string& model_name) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "SELECT sr_sop_instance_uid, version FROM reports WHERE study_uid = ?1 AND model_name = ?2"
      " ORDER BY version DESC, id DESC LIMIT 1");
  q.With(study_uid, model_name);
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<ReportVersion>();
  return std::optional<ReportVersion>(ReportVersion{q.Text(0), static_cast<int>(q.Int(1))});
}

StatusOr<std::vector<OutgoingReport>> SqliteDatabase::DueReports(int64_t now_ms, int max) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "SELECT d.id, r.sr_sop_instance_uid, r.study_uid, r.file_path, d.destination, d.attempts,"
      " d.next_attempt_at, d.last_error FROM report_deliveries d JOIN local_reports r ON r.id = d.report_ref"
      " WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 ORDER BY d.next_attempt_at, d.id LIMIT ?2");
  q.With(now_ms, max);
  std::vector<OutgoingReport> due;
  while (true) {
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    OutgoingReport report;
    report.id = q.Int(0);
    report.sr_sop_instance_uid = q.Text(1);
    report.study_uid = q.Text(2);
    report.file_path = q.Text(3);
    report.destination = q.Text(4);
    report.attempts = static_cast<int>(q.Int(5));
    report.next_attempt_at_ms = q.Int(6);
    report.last_error = q.Text(7);
    due.push_back(std::move(report));
  }
  return due;
}

StatusOr<std::vector<Database::ScoredJob>> SqliteDatabase::ScoredWithoutReport(int64_t since_ms) {
  std::vector<ScoredJob> found;
  std::lock_guard guard(mutex_);
  // scores_by_time bounds the scan; reports_by_study answers NOT EXISTS per row.
  Query q = conn_->Prepare(
      "SELECT " PXS_JOB_COLUMNS ", sc.pxs, sc.raw_distance, sc.calibrated, sc.calibrated_scale, sc.embedding,"
      " sc.model_name, sc.model_version, sc.queue_ms, sc.decode_ms, sc.inference_ms, sc.scored_at"
      " FROM scores sc JOIN jobs j ON j.id = sc.job_ref JOIN local_instances i ON i.id = j.instance_ref"
      " JOIN studies s ON s.id = i.study_ref JOIN patients p ON p.id = s.patient_ref"
      " WHERE sc.scored_at >= ?1 AND NOT EXISTS (SELECT 1 FROM reports r"
      "   WHERE r.study_uid = s.study_uid AND r.model_name = sc.model_name AND r.created_at >= sc.scored_at)"
      " ORDER BY sc.scored_at, sc.id");
  q.With(since_ms);
  while (true) {
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    ScoredJob sj;
    sj.job = ReadJobColumns(q);
    sj.score.job_id = sj.job.id;
    sj.score.pxs = q.Real(kJobColumns + 0);
    sj.score.raw_distance = q.Real(kJobColumns + 1);
    sj.score.calibrated = q.OptReal(kJobColumns + 2);
    sj.score.calibrated_scale = q.Text(kJobColumns + 3);
    sj.score.embedding = q.Floats(kJobColumns + 4);
    sj.score.model_name = q.Text(kJobColumns + 5);
    sj.score.model_version = q.Text(kJobColumns + 6);
    sj.score.queue_ms = q.Real(kJobColumns + 7);
    sj.score.decode_ms = q.Real(kJobColumns + 8);
    sj.score.inference_ms = q.Real(kJobColumns + 9);
    sj.score.scored_at_ms = q.Int(kJobColumns + 10);
    found.push_back(std::move(sj));
  }
  return found;
}

Status SqliteDatabase::RecordModel(const std::string& name, const std::string& version,
                                   const std::string& metadata_json) {
  PXS_RETURN_IF_ERROR(RequireWritable("RecordModel"));
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "INSERT INTO models(name, version, metadata_json, recorded_at) VALUES (?1, ?2, ?3, ?4)"
      " ON CONFLICT(name, version) DO UPDATE SET metadata_json = ?3, recorded_at = ?4");
  q.With(name, version, metadata_json, NowMs());
  return q.Run();
}

StatusOr<std::vector<Database::UnhashedFile>> SqliteDatabase::FilesWithoutHash(int64_t after_id, int max) {
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "SELECT id, file_path FROM local_instances WHERE sha256 = '' AND pruned_at IS NULL AND id > ?1"
      " ORDER BY id LIMIT ?2");
  q.With(after_id, max);
  std::vector<UnhashedFile> files;
  while (true) {
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    files.push_back({q.Int(0), q.Text(1)});
  }
  return files;
}

Status SqliteDatabase::RecordFileHashes(const std::vector<std::pair<int64_t, std::string>>& hashes) {
  PXS_RETURN_IF_ERROR(RequireWritable("RecordFileHashes"));
  if (hashes.empty()) return Status::Ok();
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get(), Durability::kDeferred);  // a lost hash is computed again
  PXS_RETURN_IF_ERROR(tx.Begin());
  for (const auto& [id, sha256] : hashes) {
    Query q = conn_->Prepare("UPDATE instances SET sha256 = ?2 WHERE id = ?1 AND sha256 = ''");
    q.With(id, sha256);
    PXS_RETURN_IF_ERROR(q.Run());
  }
  return tx.Commit();
}

Status SqliteDatabase::MarkDeliveriesStarting(const std::vector<int64_t>& delivery_ids) {
  PXS_RETURN_IF_ERROR(RequireWritable("MarkDeliveriesStarting"));
  if (delivery_ids.empty()) return Status::Ok();
  std::lock_guard guard(mutex_);
  Transaction tx(conn_.get());
  PXS_RETURN_IF_ERROR(tx.Begin());
  const int64_t now_ms = NowMs();
  for (int64_t id : delivery_ids) {
    Query q = conn_->Prepare("UPDATE report_deliveries SET updated_at = ?2 WHERE id = ?1 AND state = 'pending'");
    q.With(id, now_ms);
    PXS_RETURN_IF_ERROR(q.Run());
  }
  return tx.Commit();  // synchronous=FULL: everything committed before is durable now
}

Status SqliteDatabase::MarkReportSent(int64_t report_id) {
  PXS_RETURN_IF_ERROR(RequireWritable("MarkReportSent"));
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "UPDATE report_deliveries SET state = 'sent', attempts = attempts + 1, last_error = '',"
      " sent_at = ?2, updated_at = ?2 WHERE id = ?1 AND state = 'pending'");
  q.With(report_id, NowMs());
  PXS_RETURN_IF_ERROR(q.Run());
  if (conn_->Changes() == 0) return WhyNotUpdated("report_deliveries", report_id, "pending");
  return Status::Ok();
}

Status SqliteDatabase::MarkReportAttemptFailed(int64_t report_id, const std::string& error,
                                               int64_t next_attempt_at_ms, bool final) {
  PXS_RETURN_IF_ERROR(RequireWritable("MarkReportAttemptFailed"));
  std::lock_guard guard(mutex_);
  Query q = conn_->Prepare(
      "UPDATE report_deliveries SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,"
      " state = CASE WHEN ?4 THEN 'failed' ELSE 'pending' END, updated_at = ?5"
      " WHERE id = ?1 AND state = 'pending'");
  q.With(report_id, error, next_attempt_at_ms, final, NowMs());
  PXS_RETURN_IF_ERROR(q.Run());
  if (conn_->Changes() == 0) return WhyNotUpdated("report_deliveries", report_id, "pending");
  return Status::Ok();
}

StatusOr<std::unique_ptr<Database>> OpenSqlite(const DatabaseOptions& options, Database::Mode mode, bool durable) {
  StatusOr<std::unique_ptr<Connection>> conn = sqlite::OpenNodeDatabase(options, mode, durable);
  if (!conn.ok()) return conn.status();
  return std::unique_ptr<Database>(new SqliteDatabase(std::move(*conn)));
}

}  // namespace

StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path, Mode mode) {
  DatabaseOptions options;
  options.url = path;
  return OpenSqlite(options, mode, /*durable=*/true);
}

StatusOr<std::unique_ptr<Database>> Database::Open(const DatabaseOptions& options, Mode mode) {
  return OpenSqlite(options, mode, /*durable=*/true);
}

StatusOr<std::unique_ptr<Database>> Database::OpenNonDurableForBenchmark(const std::string& path) {
  DatabaseOptions options;
  options.url = path;
  return OpenSqlite(options, Mode::kReadWrite, /*durable=*/false);
}

}  // namespace pxs
