// pxs::AdminDatabase: the read and maintenance side of the node database, for pxsctl
// (and tests). It opens its own connection: kReadOnly for queries (never blocks the
// running node, WAL), kReadWrite only for commands that change something (retry,
// prune, audit). Every changing call is one transaction.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/longitudinal/course.h"
#include "pxs/storage/database.h"

namespace pxs {

// The schema version this binary creates and understands (PRAGMA user_version).
inline constexpr int kSchemaVersion = 6;

// The schema version of an existing database file (0 when it has no schema yet).
StatusOr<int> ReadSchemaVersion(const std::string& db_path);

struct PatientSummary {
  std::string patient_id;  // empty for a "no id" patient
  std::string issuer;
  std::string name;        // DICOM PN as received; shown by pxsctl, never logged
  int studies = 0;
  int instances = 0;
  int scored = 0;
  int64_t last_received_at_ms = 0;
};

// One row per study of a patient, oldest first: what was received and how much of it
// is scored. The study's values, changes and trends are the longitudinal library's
// (pxs/longitudinal/course.h), from ScoredInstances().
struct StudyHistoryEntry {
  std::string study_uid;
  std::string study_date;
  std::string study_time;
  std::string accession_number;
  int instances = 0;
  int scored = 0;
};

struct InstanceDetails {
  std::string sop_instance_uid;
  std::string series_uid;
  std::string sop_class_uid;
  std::string modality;
  std::string body_part;
  std::string view_position;
  std::string transfer_syntax_uid;
  std::string file_path;
  uint64_t file_size = 0;
  std::string sha256;
  std::string calling_ae;
  std::string peer_address;
  int64_t received_at_ms = 0;
  std::optional<int64_t> pruned_at_ms;
  std::string job_state;
  std::string job_reason;
  int attempts = 0;
  std::optional<double> pxs;
  std::optional<double> raw_distance;
  std::optional<double> calibrated;
  std::string calibrated_scale;
  std::string model;
  size_t embedding_dim = 0;
  std::optional<int64_t> scored_at_ms;
  // Where the time went between receipt and score (scoring worker's own measurements).
  std::optional<double> queue_ms, decode_ms, inference_ms;
};

struct ReportDelivery {
  int64_t delivery_id = 0;
  std::string sr_sop_instance_uid;
  std::string study_uid;
  int version = 0;
  std::string file_path;
  std::string destination;
  std::string state;  // pending | sent | failed
  int attempts = 0;
  int64_t next_attempt_at_ms = 0;
  std::string last_error;
  std::optional<int64_t> sent_at_ms;
  int64_t updated_at_ms = 0;
};

struct StudyDetails {
  PatientKey patient;
  std::string patient_name;
  std::string study_uid;
  std::string study_date;
  std::string study_time;
  std::string accession_number;
  std::vector<InstanceDetails> instances;
  std::vector<ReportDelivery> reports;
};

struct QueueEntry {
  int64_t job_id = 0;
  std::string state;  // queued | scoring
  std::string sop_instance_uid;
  std::string study_uid;
  std::string calling_ae;
  int attempts = 0;
  int64_t received_at_ms = 0;
  std::string last_reason;  // reason of the previous failed attempt, if any
};

struct QueueView {
  int queued = 0;
  int scoring = 0;
  int reports_pending = 0;
  std::vector<QueueEntry> jobs;                 // oldest first, at most `limit`
  std::vector<ReportDelivery> pending_reports;  // soonest first, at most `limit`
};

struct FailedJob {
  int64_t job_id = 0;
  std::string sop_instance_uid;
  std::string study_uid;
  std::string reason;
  int attempts = 0;
  int64_t received_at_ms = 0;
  int64_t failed_at_ms = 0;
};

struct FailuresView {
  std::vector<FailedJob> jobs;
  std::vector<ReportDelivery> reports;   // state failed
  std::vector<ReportDelivery> retrying;  // pending with at least one failed attempt
};

struct RetryResult {
  int jobs_requeued = 0;
  int reports_requeued = 0;
  int skipped_pruned = 0;  // failed jobs whose file was pruned: cannot be scored again
};

// One instance for research export. Times are Unix ms; optional ones are null in JSON.
// Changes and trends are not stored: pxsctl derives them with the longitudinal library.
struct ExportRow {
  std::string patient_id;
  std::string issuer;
  std::string study_uid;
  std::string series_uid;
  std::string sop_instance_uid;
  std::string study_date;
  std::string study_time;
  std::string state;
  std::string reason;
  std::optional<double> pxs;
  std::optional<double> calibrated;
  std::string calibrated_scale;
  std::string model_name;     // empty when not scored
  std::string model_version;
  std::optional<int64_t> score_id;
  int64_t received_at_ms = 0;
  std::optional<int64_t> scored_at_ms;
  bool in_window = true;  // received inside the ExportFilter (else only a possible prior)
};

struct ExportFilter {
  std::optional<int64_t> received_since_ms;  // inclusive
  std::optional<int64_t> received_until_ms;  // exclusive
};

struct LatencyPercentiles {
  int count = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
};

struct Stats {
  static constexpr int kLatencyWindowDays = 7;  // latency percentiles cover this many days
  int64_t patients = 0, studies = 0, instances = 0, pruned_instances = 0;
  std::map<std::string, int64_t> jobs_by_state;     // every state, zeros included
  std::map<std::string, int64_t> reports_by_state;  // deliveries: pending | sent | failed
  // Scores in each of the last 24 whole hours before now, oldest first.
  std::vector<int64_t> scores_per_hour;
  double scores_per_hour_mean = 0;
  LatencyPercentiles receipt_to_score;        // instances.received_at -> scores.scored_at
  LatencyPercentiles receipt_to_report_sent;  // newest instance before the SR -> sent_at
};

struct RecordedFile {
  int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string file_path;  // relative to data_dir
  uint64_t file_size = 0;
  std::string sha256;
};

struct PruneCandidate {
  int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string file_path;
  uint64_t file_size = 0;
  int64_t received_at_ms = 0;
  std::string job_state;
};

// A model that scored on this node, or that the node loaded (Database::RecordModel)
// and has not scored with yet: its scores and when they were made.
struct ScoringModel {
  std::string name;
  std::string version;
  int64_t scores = 0;
  std::optional<int64_t> first_scored_at_ms, last_scored_at_ms;  // none: no score yet
  std::optional<int64_t> loaded_at_ms;         // its last RecordModel (node start); none: never recorded
  std::optional<std::string> metadata_json;   // as recorded; none: never recorded
};

struct AuditEntry {
  int64_t at_ms = 0;
  std::string unix_user;
  std::string action;   // e.g. "retry", "prune"
  std::string details;  // free text or JSON; never patient names
};

class AdminDatabase {
 public:
  static StatusOr<std::unique_ptr<AdminDatabase>> Open(const std::string& path, Database::Mode mode);
  static StatusOr<std::unique_ptr<AdminDatabase>> Open(const DatabaseOptions& options, Database::Mode mode);
  virtual ~AdminDatabase() = default;

  // Patients whose id or name starts with prefix (case-insensitive); all when empty.
  virtual StatusOr<std::vector<PatientSummary>> FindPatients(const std::string& prefix, int limit) = 0;
  // Patients with this PatientID under any issuer (to resolve a missing --issuer).
  virtual StatusOr<std::vector<PatientKey>> PatientsWithId(const std::string& patient_id) = 0;
  virtual StatusOr<std::vector<StudyHistoryEntry>> StudyHistory(const PatientKey& patient) = 0;
  // Every scored instance of the patient (one row per score), the rows the longitudinal
  // library builds the patient's courses from. Empty for a patient without id.
  virtual StatusOr<std::vector<longitudinal::ScoredInstance>> ScoredInstances(const PatientKey& patient) = 0;
  // Every study row with this UID (one per patient it was received for); empty if unknown.
  virtual StatusOr<std::vector<StudyDetails>> Study(const std::string& study_uid) = 0;
  virtual StatusOr<QueueView> Queue(int limit) = 0;
  virtual StatusOr<FailuresView> Failures(int limit) = 0;

  // Failed job of this instance -> queued (attempts reset) and its study's failed
  // report deliveries -> pending now. NotFound if the SOP Instance UID is unknown.
  virtual StatusOr<RetryResult> Retry(const std::string& sop_instance_uid, int64_t now_ms) = 0;
  virtual StatusOr<RetryResult> RetryAllFailed(int64_t now_ms) = 0;

  // Instance rows one patient at a time (studies in date order, then received order),
  // for each patient with at least one instance received inside the window. The
  // patient's rows outside the window come too (in_window false): they may be priors of
  // rows inside it. Memory: one patient's rows.
  virtual Status Export(const ExportFilter& filter,
                        const std::function<void(const std::vector<ExportRow>&)>& emit_patient) = 0;
  virtual StatusOr<Stats> ComputeStats(int64_t now_ms) = 0;

  // Every instance file that has not been pruned, in id order.
  virtual Status ForEachRecordedFile(const std::function<void(const RecordedFile&)>& visit) = 0;
  // SQLite's own consistency check; "ok" or the problems it found.
  virtual StatusOr<std::string> QuickCheck() = 0;
  // The metadata.json of a model recorded by Database::RecordModel, if any.
  virtual StatusOr<std::optional<std::string>> ModelMetadata(const std::string& name,
                                                             const std::string& version) = 0;
  // Every model that scored here or was recorded, by name then version. Counts every
  // score: a scan of the scores (about a second at 1 M on a small machine), so callers
  // that ask often cache it (the web face does).
  virtual StatusOr<std::vector<ScoringModel>> ScoringModels() = 0;

  // Non-pruned instances received before the cutoff whose job is final (scored,
  // skipped or failed): their files may be deleted, results and embeddings stay.
  virtual StatusOr<std::vector<PruneCandidate>> PruneCandidates(int64_t received_before_ms) = 0;
  virtual Status MarkPruned(const std::vector<int64_t>& instance_ids, int64_t now_ms) = 0;

  virtual Status AddAudit(const AuditEntry& entry) = 0;
  virtual StatusOr<std::vector<AuditEntry>> RecentAudit(int limit) = 0;
};

}  // namespace pxs
