// pxs::Database: the node's one SQLite database (results, durable job queue, report
// outbox, audit log). Only this module speaks SQL; everything else calls this API.
//
// Thread-safety: a Database opened kReadWrite serialises its writes internally (one
// writer connection behind a mutex) and may be shared by the SCP, the scoring worker
// and the sender. Read-only handles (pxsctl) never block the writer (WAL mode).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs {

// A patient is PatientID together with IssuerOfPatientID. An empty patient_id means
// "no patient id": such instances are scored but never linked to other studies.
struct PatientKey {
  std::string patient_id;
  std::string issuer;
  bool has_id() const { return !patient_id.empty(); }
};

// What the SCP records for each instance it acknowledges.
struct ReceivedInstance {
  std::string sop_instance_uid;
  std::string sop_class_uid;
  std::string study_uid;
  std::string series_uid;
  PatientKey patient;
  std::string patient_name;   // stored for `pxsctl patients`; never logged at info level
  std::string study_date;     // DICOM DA (YYYYMMDD), may be empty
  std::string study_time;     // DICOM TM, may be empty
  std::string accession_number;
  std::string modality;
  std::string body_part;
  std::string view_position;
  std::string transfer_syntax_uid;
  std::string file_path;      // relative to data_dir
  uint64_t file_size = 0;
  std::string sha256;         // hex of the stored file's bytes; '' until the hash worker ran
  std::string calling_ae;
  std::string peer_address;
  int64_t received_at_ms = 0; // Unix epoch milliseconds
  // Empty: queue a scoring job for each of `models`. Otherwise the instance is recorded
  // with one job (no model) in state skipped and this reason (e.g. "no model applies:
  // ..."). The routes of the node's [[models]] decide both (docs/models.md).
  std::string skip_reason;
  // The models whose route selected this instance: one queued job each. Empty with an
  // empty skip_reason: one queued job with no model name (claimable by any model; only
  // tests and imports of the one-model era do this).
  std::vector<std::string> models;
};

enum class InsertOutcome { kInserted, kDuplicate };

enum class JobState { kQueued, kScoring, kScored, kSkipped, kFailed };
const char* JobStateName(JobState s);  // "queued", "scoring", ...

// A scoring job handed to the worker: one image, one model.
struct Job {
  int64_t id = 0;
  std::string model_name;  // the model that is to score it ('' only in the one-model era)
  std::string sop_instance_uid;
  std::string study_uid;
  std::string file_path;  // relative to data_dir
  PatientKey patient;
  int attempts = 0;       // including the current one
  int64_t received_at_ms = 0;
  std::string calling_ae;  // the AE that sent the instance ("" for file imports)
};

struct ScoreRecord {
  int64_t job_id = 0;
  double pxs = 0;                      // the score as reported (calibrated if the model has a scale? no: raw PXS)
  double raw_distance = 0;             // median Euclidean distance to the anchors
  std::optional<double> calibrated;    // when the model has a calibration
  std::string calibrated_scale;        // e.g. "mRALE"
  std::vector<float> embedding;
  std::string model_name;
  std::string model_version;
  double queue_ms = 0, decode_ms = 0, inference_ms = 0;
  int64_t scored_at_ms = 0;
};

// One scored instance of a patient's study, for longitudinal comparison.
struct StudyScore {
  std::string study_uid;
  std::string study_date;   // YYYYMMDD or empty
  std::string study_time;
  std::string accession_number;
  std::string sop_instance_uid;
  double pxs = 0;
  std::optional<double> calibrated;
  std::vector<float> embedding;
  std::string model_name;
  std::string model_version;
  int64_t scored_at_ms = 0;
};

enum class ReportState { kPending, kSent, kFailed };

// One SR to deliver to one destination (the outbox).
struct OutgoingReport {
  int64_t id = 0;
  std::string sr_sop_instance_uid;
  std::string study_uid;
  std::string file_path;     // the SR file, relative to data_dir
  std::string destination;   // destination name, or "caller:<AE>"
  int attempts = 0;
  int64_t next_attempt_at_ms = 0;
  std::string last_error;
};

// Where the node keeps its database: data_dir + "/pxsnode.db".
std::string DatabasePathFor(const std::string& data_dir);

// Where the node's database is and how to reach it ([database] and [node] id in the
// config; docs/deployment-postgresql.md). Everywhere a database "path" is taken, the url forms
// work too.
struct DatabaseOptions {
  // A SQLite file path, "sqlite:PATH", or "postgresql://user@host/db" (a libpq
  // connection URI; "postgres://" too). Several nodes may share one PostgreSQL.
  std::string url;
  // This node's identity: the instances it receives (their files stay on it), the jobs
  // it scores and the SRs it sends. Empty: DefaultNodeId().
  std::string node_id;
  int pool_size = 4;              // connections to PostgreSQL a process may hold (1-64)
  int statement_timeout_ms = 0;   // PostgreSQL statement_timeout; 0: the server's default
};

// The host name (what [node] id defaults to).
std::string DefaultNodeId();
// True for postgresql:// and postgres:// URLs and libpq key/value strings
// ("host=db1 dbname=pxs").
bool IsPostgresUrl(const std::string& url);

class Database {
 public:
  enum class Mode { kReadWrite, kReadOnly };
  // Opens (and in kReadWrite creates and migrates) the database. A schema newer than
  // this binary knows is refused with a message that says both versions.
  static StatusOr<std::unique_ptr<Database>> Open(const std::string& path, Mode mode);
  static StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options, Mode mode);
  // Open() with synchronous=OFF: fast bulk loading for benchmarks and tests ONLY.
  // A power cut may lose recent commits, which breaks the C-STORE guarantee.
  static StatusOr<std::unique_ptr<Database>> OpenNonDurableForBenchmark(const std::string& path);
  virtual ~Database() = default;

  // --- ingest (SCP) ---------------------------------------------------------------
  // Records instances and their jobs in ONE durable transaction (synchronous=FULL).
  // The batching across associations is the SCP's group committer's job; this call
  // does not wait for other callers. outcomes[i] is kDuplicate when that SOP Instance
  // UID was already stored (then nothing is changed for it).
  virtual Status RecordInstances(const std::vector<ReceivedInstance>& batch,
                                 std::vector<InsertOutcome>* outcomes) = 0;
  virtual StatusOr<bool> HasInstance(const std::string& sop_instance_uid) = 0;
  // The stored file of an instance, when the instance is known.
  struct StoredFile {
    std::string file_path;  // relative to data_dir
    uint64_t file_size = 0;
    std::string transfer_syntax_uid;
    std::string calling_ae;
    // false: another node sharing the database (PostgreSQL) received it and holds the
    // file; a copy arriving here is a duplicate of it (the file is not on this node).
    bool on_this_node = true;
  };
  virtual StatusOr<std::optional<StoredFile>> FindStoredFile(const std::string& sop_instance_uid) = 0;
  // "replace" conflict policy: the instance's file was replaced by a re-sent copy with
  // different content. Updates what the instance row says about the file and the sender,
  // queues its job again (or skips it, with the reason), drops the score of the old bytes
  // and writes an audit row naming the old score, in one durable transaction. SRs
  // already sent stay; the rescoring makes a new SR version.
  virtual Status RecordReplacedInstance(const ReceivedInstance& instance, const std::string& audit_details) = 0;
  // An audit row written by the node itself (unix_user "pxsnode"), e.g. a re-sent
  // instance whose different content was not kept. Durable.
  virtual Status AddNodeAudit(const std::string& action, const std::string& details) = 0;

  // --- scoring queue (scoring worker) ----------------------------------------------
  // At start-up: jobs left in state scoring by a crash go back to queued.
  virtual StatusOr<int> RequeueInterruptedJobs() = 0;
  // Moves queued jobs (oldest first) to scoring and increments attempts: every queued job
  // of `models` (empty: of any model) for at most max_images images, so that an image
  // is decoded once for all the models that score it.
  virtual StatusOr<std::vector<Job>> ClaimJobs(int max_images, const std::vector<std::string>& models) = 0;
  StatusOr<std::vector<Job>> ClaimJobs(int max_images) { return ClaimJobs(max_images, {}); }
  virtual Status CompleteJob(const ScoreRecord& score) = 0;              // -> scored
  // Several CompleteJob()s in one transaction (one commit for a scored batch).
  // All or nothing: an error leaves every job as it was.
  virtual Status CompleteJobs(const std::vector<ScoreRecord>& scores) = 0;
  virtual Status SkipJob(int64_t job_id, const std::string& reason) = 0;  // -> skipped
  // A failed attempt: back to queued, or to failed once attempts >= max_attempts.
  virtual Status FailJobAttempt(int64_t job_id, const std::string& reason, int max_attempts) = 0;
  virtual StatusOr<int> CountJobs(JobState state) = 0;
  // Queued jobs of these models (empty: of any model).
  virtual StatusOr<int> CountQueuedJobs(const std::vector<std::string>& models) = 0;

  // --- longitudinal ----------------------------------------------------------------
  // Every scored instance of the patient's studies, oldest first (by study date/time,
  // then scored time). Empty for a patient without id.
  virtual StatusOr<std::vector<StudyScore>> PatientHistory(const PatientKey& patient) = 0;

  // Scored jobs (scored at or after since_ms) whose study has no report made after the
  // score: work the report worker lost to a crash between scoring and reporting.
  struct ScoredJob {
    Job job;
    ScoreRecord score;
  };
  virtual StatusOr<std::vector<ScoredJob>> ScoredWithoutReport(int64_t since_ms) = 0;

  // Records (or refreshes) the metadata.json of the model the node scores with, at
  // start-up, so that admin tools interpret scores with the model's own thresholds.
  virtual Status RecordModel(const std::string& name, const std::string& version,
                             const std::string& metadata_json) = 0;

  // --- reports outbox (report worker, sender) --------------------------------------
  // Records an SR written for a study by one model and queues it for each destination,
  // in one transaction. Each model has its own SR of a study (docs/models.md): version is
  // 1 for a study's first SR of that model, then 2, 3, ...
  virtual Status RecordReport(const std::string& sr_sop_instance_uid, const std::string& study_uid,
                              const std::string& model_name, int version, const std::string& file_path,
                              const std::vector<std::string>& destinations) = 0;
  // The newest SR of a model written for a study (to reference as predecessor), if any.
  struct ReportVersion {
    std::string sr_sop_instance_uid;
    int version = 0;
  };
  virtual StatusOr<std::optional<ReportVersion>> LatestReport(const std::string& study_uid,
                                                              const std::string& model_name) = 0;
  virtual StatusOr<std::vector<OutgoingReport>> DueReports(int64_t now_ms, int max) = 0;

  // Stored files whose SHA-256 is not recorded yet (ingest acknowledges before hashing;
  // the hash worker fills it in when the CPU is free), by id, after after_id.
  struct UnhashedFile {
    int64_t instance_id = 0;
    std::string file_path;  // relative to data_dir
  };
  virtual StatusOr<std::vector<UnhashedFile>> FilesWithoutHash(int64_t after_id, int max) = 0;
  // (instance id, SHA-256 hex) pairs; a hash already recorded is not replaced.
  virtual Status RecordFileHashes(const std::vector<std::pair<int64_t, std::string>>& hashes) = 0;
  // Before deliveries go out: records that an attempt is starting, durably. Reports and
  // scores are committed without waiting for the disk; this commit (synchronous=FULL)
  // makes them durable too, so an SR that reaches a receiver is never lost here and made
  // again under a new UID after a power cut.
  virtual Status MarkDeliveriesStarting(const std::vector<int64_t>& delivery_ids) = 0;
  virtual Status MarkReportSent(int64_t report_id) = 0;
  // A failed attempt: rescheduled at next_attempt_at_ms, or failed when final.
  virtual Status MarkReportAttemptFailed(int64_t report_id, const std::string& error,
                                         int64_t next_attempt_at_ms, bool final) = 0;
};

}  // namespace pxs
