// pxs::AdminDatabase (pxsctl's view of the database) over the storage seam
// (backend.h): the same portable SQL on SQLite and PostgreSQL.
#include "pxs/storage/admin.h"

#include <algorithm>
#include <cmath>

#include "schema.h"
#include "sqlite.h"

namespace pxs {

using sqlite::Connection;
using sqlite::Query;
using sqlite::Transaction;

namespace {

// Studies without StudyDate sort by the day they were received.
#define PXS_STUDY_ORDER \
  "COALESCE(NULLIF(s.study_date, ''), pxs_utc_day(s.created_at)), s.study_time, s.id"

#define PXS_DELIVERY_COLUMNS                                                                      \
  "SELECT d.id, r.sr_sop_instance_uid, r.study_uid, r.version, r.file_path, d.destination,"     \
  " d.state, d.attempts, d.next_attempt_at, d.last_error, d.sent_at, d.updated_at"              \
  " FROM report_deliveries d JOIN reports r ON r.id = d.report_ref "

// The counts behind `pxsctl patients`, for the patients in a CTE named hit.
#define PXS_PATIENT_SUMMARY                                                                    \
  " SELECT hit.patient_id, hit.issuer, hit.name, count(DISTINCT s.id), count(i.id),"           \
  "  coalesce(sum(CASE WHEN j.state = 'scored' THEN 1 ELSE 0 END), 0), coalesce(max(i.received_at), 0)"                   \
  " FROM hit LEFT JOIN studies s ON s.patient_ref = hit.id"                                    \
  " LEFT JOIN instances i ON i.study_ref = s.id LEFT JOIN jobs j ON j.instance_ref = i.id"     \
  " GROUP BY hit.id, hit.patient_id, hit.issuer, hit.name ORDER BY hit.patient_id IS NULL, hit.patient_id, hit.issuer, hit.id"

ReportDelivery ReadDelivery(const Query& q) {
  ReportDelivery d;
  d.delivery_id = q.Int(0);
  d.sr_sop_instance_uid = q.Text(1);
  d.study_uid = q.Text(2);
  d.version = static_cast<int>(q.Int(3));
  d.file_path = q.Text(4);
  d.destination = q.Text(5);
  d.state = q.Text(6);
  d.attempts = static_cast<int>(q.Int(7));
  d.next_attempt_at_ms = q.Int(8);
  d.last_error = q.Text(9);
  d.sent_at_ms = q.OptInt(10);
  d.updated_at_ms = q.Int(11);
  return d;
}

// Runs q to the end, calling read(q) for each row.
template <typename ReadRow>
Status ForEachRow(Query& q, ReadRow&& read) {
  while (true) {
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
    read(q);
  }
}

Status CollectDeliveries(Query& q, std::vector<ReportDelivery>* out) {
  return ForEachRow(q, [&](const Query& row) { out->push_back(ReadDelivery(row)); });
}

std::string ModelLabel(const std::string& name, const std::string& version) {
  if (name.empty()) return {};
  return version.empty() ? name : name + " " + version;
}

LatencyPercentiles Percentiles(std::vector<double> values) {
  LatencyPercentiles p;
  p.count = static_cast<int>(values.size());
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  auto at = [&](double q) {  // nearest-rank percentile
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
    return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
  };
  p.p50_ms = at(0.50);
  p.p90_ms = at(0.90);
  p.p99_ms = at(0.99);
  p.max_ms = values.back();
  return p;
}

class SqliteAdminDatabase final : public AdminDatabase {
 public:
  explicit SqliteAdminDatabase(std::unique_ptr<Connection> conn) : conn_(std::move(conn)) {}

  StatusOr<std::vector<PatientSummary>> FindPatients(const std::string& prefix, int limit) override;
  StatusOr<std::vector<PatientKey>> PatientsWithId(const std::string& patient_id) override;
  StatusOr<std::vector<StudyHistoryEntry>> StudyHistory(const PatientKey& patient) override;
  StatusOr<std::vector<longitudinal::ScoredInstance>> ScoredInstances(const PatientKey& patient) override;
  StatusOr<std::vector<StudyDetails>> Study(const std::string& study_uid) override;
  StatusOr<QueueView> Queue(int limit) override;
  StatusOr<FailuresView> Failures(int limit) override;
  StatusOr<RetryResult> Retry(const std::string& sop_instance_uid, int64_t now_ms) override;
  StatusOr<RetryResult> RetryAllFailed(int64_t now_ms) override;
  Status Export(const ExportFilter& filter,
                const std::function<void(const std::vector<ExportRow>&)>& emit_patient) override;
  StatusOr<Stats> ComputeStats(int64_t now_ms) override;
  Status ForEachRecordedFile(const std::function<void(const RecordedFile&)>& visit) override;
  StatusOr<std::string> QuickCheck() override;
  StatusOr<std::optional<std::string>> ModelMetadata(const std::string& name, const std::string& version) override;
  StatusOr<std::vector<ScoringModel>> ScoringModels() override;
  StatusOr<std::vector<PruneCandidate>> PruneCandidates(int64_t received_before_ms) override;
  Status MarkPruned(const std::vector<int64_t>& instance_ids, int64_t now_ms) override;
  Status AddAudit(const AuditEntry& entry) override;
  StatusOr<std::vector<AuditEntry>> RecentAudit(int limit) override;

 private:
  Status RequireWritable(const char* operation) const {
    if (!conn_->read_only()) return Status::Ok();
    return Status::Unsupported(conn_->path() + ": " + operation + ": database is opened read-only");
  }
  StatusOr<int> RequeueFailedDeliveries(const std::string* study_uid, int64_t now_ms);

  std::unique_ptr<Connection> conn_;
};

StatusOr<std::vector<PatientSummary>> SqliteAdminDatabase::FindPatients(const std::string& prefix,
                                                                       int limit) {
  // Pick the patients first (LIMIT before aggregating), then count their data. A
  // prefix is a range [prefix, prefix + 0xFF) on the NOCASE indexes of id and name,
  // so the search stays an index lookup at hundreds of thousands of patients. The one
  // statement that differs by engine: PostgreSQL has no NOCASE (and refuses the 0xFF
  // byte in UTF-8 text); there the prefix is a LIKE on the lower(...) text_pattern_ops
  // indexes (schema.cc).
#define PXS_FIND_PATIENTS_SQL(id_match, name_match, limit)                                       \
  "WITH matched AS (SELECT id, patient_id, issuer, name FROM patients WHERE " id_match            \
  "  UNION SELECT id, patient_id, issuer, name FROM patients WHERE " name_match "),"              \
  " hit AS (SELECT * FROM matched ORDER BY patient_id IS NULL, patient_id, issuer, id LIMIT " limit ")" \
  PXS_PATIENT_SUMMARY
  const bool postgres = conn_->dialect() == sql::Dialect::kPostgres;
  Query q = prefix.empty() ? conn_->Prepare(
                                 "WITH hit AS (SELECT id, patient_id, issuer, name FROM patients"
                                 "  ORDER BY patient_id IS NULL, patient_id, issuer, id LIMIT ?1)"
                                 PXS_PATIENT_SUMMARY)
            : postgres     ? conn_->Prepare(PXS_FIND_PATIENTS_SQL(
                             "lower(patient_id) LIKE lower(?1) || '%' ESCAPE '\\'",
                             "lower(name) LIKE lower(?1) || '%' ESCAPE '\\'", "?2"))
                           : conn_->Prepare(PXS_FIND_PATIENTS_SQL(
                                 "patient_id >= ?1 COLLATE NOCASE AND patient_id < ?2 COLLATE NOCASE",
                                 "name >= ?1 AND name < ?2", "?3"));
#undef PXS_FIND_PATIENTS_SQL
  if (prefix.empty()) {
    q.With(limit);
  } else if (postgres) {
    std::string escaped;  // LIKE's own characters stand for themselves
    for (char c : prefix) {
      if (c == '%' || c == '_' || c == '\\') escaped += '\\';
      escaped += c;
    }
    q.With(escaped, limit);
  } else {
    q.With(prefix, prefix + "\xFF", limit);
  }
  std::vector<PatientSummary> patients;
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
    PatientSummary p;
    p.patient_id = row.Text(0);
    p.issuer = row.Text(1);
    p.name = row.Text(2);
    p.studies = static_cast<int>(row.Int(3));
    p.instances = static_cast<int>(row.Int(4));
    p.scored = static_cast<int>(row.Int(5));
    p.last_received_at_ms = row.Int(6);
    patients.push_back(std::move(p));
  }));
  return patients;
}

StatusOr<std::vector<PatientKey>> SqliteAdminDatabase::PatientsWithId(const std::string& patient_id) {
  Query q = conn_->Prepare("SELECT patient_id, issuer FROM patients WHERE patient_id = ?1 ORDER BY issuer");
  q.With(patient_id);
  std::vector<PatientKey> keys;
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) { keys.push_back({row.Text(0), row.Text(1)}); }));
  return keys;
}

StatusOr<std::vector<StudyHistoryEntry>> SqliteAdminDatabase::StudyHistory(const PatientKey& patient) {
  std::vector<StudyHistoryEntry> history;
  if (!patient.has_id()) return history;
  Query q = conn_->Prepare(
      "SELECT s.study_uid, s.study_date, s.study_time, s.accession_number, count(i.id),"
      " coalesce(sum(CASE WHEN j.state = 'scored' THEN 1 ELSE 0 END), 0)"
      " FROM patients p JOIN studies s ON s.patient_ref = p.id"
      " JOIN instances i ON i.study_ref = s.id JOIN jobs j ON j.instance_ref = i.id"
      " WHERE p.patient_id = ?1 AND p.issuer = ?2 GROUP BY s.id ORDER BY " PXS_STUDY_ORDER);
  q.With(patient.patient_id, patient.issuer);
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
    StudyHistoryEntry entry;
    entry.study_uid = row.Text(0);
    entry.study_date = row.Text(1);
    entry.study_time = row.Text(2);
    entry.accession_number = row.Text(3);
    entry.instances = static_cast<int>(row.Int(4));
    entry.scored = static_cast<int>(row.Int(5));
    history.push_back(std::move(entry));
  }));
  return history;
}

StatusOr<std::vector<longitudinal::ScoredInstance>> SqliteAdminDatabase::ScoredInstances(const PatientKey& patient) {
  std::vector<longitudinal::ScoredInstance> rows;
  if (!patient.has_id()) return rows;
  Query q = conn_->Prepare(
      "SELECT s.study_uid, s.study_date, s.study_time, i.sop_instance_uid, sc.model_name, sc.model_version,"
      " sc.pxs, sc.calibrated, sc.calibrated_scale, sc.scored_at, sc.id"
      " FROM patients p JOIN studies s ON s.patient_ref = p.id"
      " JOIN instances i ON i.study_ref = s.id JOIN jobs j ON j.instance_ref = i.id"
      " JOIN scores sc ON sc.job_ref = j.id"
      " WHERE p.patient_id = ?1 AND p.issuer = ?2 ORDER BY sc.id");
  q.With(patient.patient_id, patient.issuer);
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
    longitudinal::ScoredInstance r;
    r.study_uid = row.Text(0);
    r.study_date = row.Text(1);
    r.study_time = row.Text(2);
    r.sop_instance_uid = row.Text(3);
    r.model = {row.Text(4), row.Text(5)};
    r.pxs = row.Real(6);
    r.calibrated = row.OptReal(7);
    r.calibrated_scale = row.Text(8);
    r.scored_at_ms = row.Int(9);
    r.score_id = row.Int(10);
    rows.push_back(std::move(r));
  }));
  return rows;
}

StatusOr<std::vector<StudyDetails>> SqliteAdminDatabase::Study(const std::string& study_uid) {
  std::vector<std::pair<int64_t, StudyDetails>> found;
  {
    Query q = conn_->Prepare(
        "SELECT s.id, p.patient_id, p.issuer, p.name, s.study_date, s.study_time, s.accession_number"
        " FROM studies s JOIN patients p ON p.id = s.patient_ref WHERE s.study_uid = ?1 ORDER BY s.id");
    q.With(study_uid);
    PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
      StudyDetails d;
      d.patient = {row.Text(1), row.Text(2)};
      d.patient_name = row.Text(3);
      d.study_uid = study_uid;
      d.study_date = row.Text(4);
      d.study_time = row.Text(5);
      d.accession_number = row.Text(6);
      found.emplace_back(row.Int(0), std::move(d));
    }));
  }
  std::vector<StudyDetails> studies;
  for (auto& found_study : found) {
    // Named references, not a structured binding: the lambda below uses `details`, and
    // clang before 16 cannot capture structured bindings (the fuzz build uses clang 14).
    const int64_t study_ref = found_study.first;
    auto& details = found_study.second;
    Query q = conn_->Prepare(
        "SELECT i.sop_instance_uid, i.series_uid, i.sop_class_uid, i.modality, i.body_part,"
        " i.view_position, i.transfer_syntax_uid, i.file_path, i.file_size, i.sha256, i.calling_ae,"
        " i.peer_address, i.received_at, i.pruned_at, j.state, j.reason, j.attempts, sc.pxs,"
        " sc.raw_distance, sc.calibrated, sc.calibrated_scale, sc.model_name, sc.model_version,"
        " length(sc.embedding), sc.scored_at, sc.queue_ms, sc.decode_ms, sc.inference_ms"
        " FROM instances i JOIN jobs j ON j.instance_ref = i.id LEFT JOIN scores sc ON sc.job_ref = j.id"
        " WHERE i.study_ref = ?1 ORDER BY i.received_at, i.id");
    q.With(study_ref);
    PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
      InstanceDetails i;
      i.sop_instance_uid = row.Text(0);
      i.series_uid = row.Text(1);
      i.sop_class_uid = row.Text(2);
      i.modality = row.Text(3);
      i.body_part = row.Text(4);
      i.view_position = row.Text(5);
      i.transfer_syntax_uid = row.Text(6);
      i.file_path = row.Text(7);
      i.file_size = static_cast<uint64_t>(row.Int(8));
      i.sha256 = row.Text(9);
      i.calling_ae = row.Text(10);
      i.peer_address = row.Text(11);
      i.received_at_ms = row.Int(12);
      i.pruned_at_ms = row.OptInt(13);
      i.job_state = row.Text(14);
      i.job_reason = row.Text(15);
      i.attempts = static_cast<int>(row.Int(16));
      i.pxs = row.OptReal(17);
      i.raw_distance = row.OptReal(18);
      i.calibrated = row.OptReal(19);
      i.calibrated_scale = row.Text(20);
      i.model = ModelLabel(row.Text(21), row.Text(22));
      i.embedding_dim = static_cast<size_t>(row.Int(23)) / sizeof(float);
      i.scored_at_ms = row.OptInt(24);
      i.queue_ms = row.OptReal(25);
      i.decode_ms = row.OptReal(26);
      i.inference_ms = row.OptReal(27);
      details.instances.push_back(std::move(i));
    }));
    Query reports = conn_->Prepare(PXS_DELIVERY_COLUMNS "WHERE r.study_uid = ?1 ORDER BY r.version, d.id");
    reports.With(study_uid);
    PXS_RETURN_IF_ERROR(CollectDeliveries(reports, &details.reports));
    studies.push_back(std::move(details));
  }
  return studies;
}

StatusOr<QueueView> SqliteAdminDatabase::Queue(int limit) {
  QueueView view;
  {
    Query q = conn_->Prepare(
        "SELECT (SELECT count(*) FROM jobs WHERE state = 'queued'),"
        " (SELECT count(*) FROM jobs WHERE state = 'scoring'),"
        " (SELECT count(*) FROM report_deliveries WHERE state = 'pending')");
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    view.queued = static_cast<int>(q.Int(0));
    view.scoring = static_cast<int>(q.Int(1));
    view.reports_pending = static_cast<int>(q.Int(2));
  }
  // One state at a time so each list walks the (state, id) index without sorting.
  for (const char* state : {"scoring", "queued"}) {
    const int room = limit - static_cast<int>(view.jobs.size());
    if (room <= 0) break;
    Query q = conn_->Prepare(
        "SELECT j.id, j.state, i.sop_instance_uid, s.study_uid, i.calling_ae, j.attempts,"
        " i.received_at, j.reason FROM jobs j JOIN instances i ON i.id = j.instance_ref"
        " JOIN studies s ON s.id = i.study_ref WHERE j.state = ?1 ORDER BY j.id LIMIT ?2");
    q.With(state, room);
    PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
      QueueEntry e;
      e.job_id = row.Int(0);
      e.state = row.Text(1);
      e.sop_instance_uid = row.Text(2);
      e.study_uid = row.Text(3);
      e.calling_ae = row.Text(4);
      e.attempts = static_cast<int>(row.Int(5));
      e.received_at_ms = row.Int(6);
      e.last_reason = row.Text(7);
      view.jobs.push_back(std::move(e));
    }));
  }
  Query reports = conn_->Prepare(PXS_DELIVERY_COLUMNS
                                 "WHERE d.state = 'pending' ORDER BY d.next_attempt_at, d.id LIMIT ?1");
  reports.With(limit);
  PXS_RETURN_IF_ERROR(CollectDeliveries(reports, &view.pending_reports));
  return view;
}

StatusOr<FailuresView> SqliteAdminDatabase::Failures(int limit) {
  FailuresView view;
  Query jobs = conn_->Prepare(
      "SELECT j.id, i.sop_instance_uid, s.study_uid, j.reason, j.attempts, i.received_at, j.updated_at"
      " FROM jobs j JOIN instances i ON i.id = j.instance_ref JOIN studies s ON s.id = i.study_ref"
      " WHERE j.state = 'failed' ORDER BY j.id DESC LIMIT ?1");
  jobs.With(limit);
  PXS_RETURN_IF_ERROR(ForEachRow(jobs, [&](const Query& row) {
    FailedJob f;
    f.job_id = row.Int(0);
    f.sop_instance_uid = row.Text(1);
    f.study_uid = row.Text(2);
    f.reason = row.Text(3);
    f.attempts = static_cast<int>(row.Int(4));
    f.received_at_ms = row.Int(5);
    f.failed_at_ms = row.Int(6);
    view.jobs.push_back(std::move(f));
  }));
  Query failed = conn_->Prepare(PXS_DELIVERY_COLUMNS "WHERE d.state = 'failed' ORDER BY d.id DESC LIMIT ?1");
  failed.With(limit);
  PXS_RETURN_IF_ERROR(CollectDeliveries(failed, &view.reports));
  Query retrying = conn_->Prepare(PXS_DELIVERY_COLUMNS
                                  "WHERE d.state = 'pending' AND d.attempts > 0 ORDER BY d.id DESC LIMIT ?1");
  retrying.With(limit);
  PXS_RETURN_IF_ERROR(CollectDeliveries(retrying, &view.retrying));
  return view;
}

// Failed deliveries (of one study, or all) -> pending, due now, attempts reset so the
// sender's back-off starts again. last_error stays for the record.
StatusOr<int> SqliteAdminDatabase::RequeueFailedDeliveries(const std::string* study_uid, int64_t now_ms) {
  // CAST: PostgreSQL cannot infer the type of a parameter that is only tested for NULL.
  Query q = conn_->Prepare(
      "UPDATE report_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?1,"
      " updated_at = ?1 WHERE state = 'failed'"
      " AND (CAST(?2 AS TEXT) IS NULL OR report_ref IN (SELECT id FROM reports WHERE study_uid = ?2))");
  if (study_uid) q.With(now_ms, *study_uid); else q.With(now_ms, nullptr);
  PXS_RETURN_IF_ERROR(q.Run());
  return conn_->Changes();
}

StatusOr<RetryResult> SqliteAdminDatabase::Retry(const std::string& sop_instance_uid, int64_t now_ms) {
  PXS_RETURN_IF_ERROR(RequireWritable("retry"));
  Transaction tx(conn_.get());
  PXS_RETURN_IF_ERROR(tx.Begin());
  RetryResult result;
  int64_t job_id = 0;
  std::string state, study_uid;
  bool pruned = false;
  {
    Query q = conn_->Prepare(
        "SELECT j.id, j.state, CASE WHEN i.pruned_at IS NULL THEN 0 ELSE 1 END, s.study_uid FROM instances i"
        " JOIN jobs j ON j.instance_ref = i.id JOIN studies s ON s.id = i.study_ref"
        " WHERE i.sop_instance_uid = ?1");
    q.With(sop_instance_uid);
    StatusOr<bool> found = q.Step();
    if (!found.ok()) return found.status();
    if (!*found) return Status::NotFound("no instance with SOP Instance UID " + sop_instance_uid);
    job_id = q.Int(0);
    state = q.Text(1);
    pruned = q.Int(2) != 0;
    study_uid = q.Text(3);
  }
  if (state == "failed" && pruned) {
    result.skipped_pruned = 1;
  } else if (state == "failed") {
    Query q = conn_->Prepare(
        "UPDATE jobs SET state = 'queued', attempts = 0, reason = '', updated_at = ?2"
        " WHERE id = ?1 AND state = 'failed'");
    q.With(job_id, now_ms);
    PXS_RETURN_IF_ERROR(q.Run());
    result.jobs_requeued = conn_->Changes();
  }
  StatusOr<int> reports = RequeueFailedDeliveries(&study_uid, now_ms);
  if (!reports.ok()) return reports.status();
  result.reports_requeued = *reports;
  PXS_RETURN_IF_ERROR(tx.Commit());
  return result;
}

StatusOr<RetryResult> SqliteAdminDatabase::RetryAllFailed(int64_t now_ms) {
  PXS_RETURN_IF_ERROR(RequireWritable("retry"));
  Transaction tx(conn_.get());
  PXS_RETURN_IF_ERROR(tx.Begin());
  RetryResult result;
  {
    Query q = conn_->Prepare(
        "SELECT count(*) FROM jobs j JOIN instances i ON i.id = j.instance_ref"
        " WHERE j.state = 'failed' AND i.pruned_at IS NOT NULL");
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    result.skipped_pruned = static_cast<int>(q.Int(0));
  }
  Query q = conn_->Prepare(
      "UPDATE jobs SET state = 'queued', attempts = 0, reason = '', updated_at = ?1"
      " WHERE state = 'failed'"
      " AND (SELECT pruned_at FROM instances WHERE instances.id = jobs.instance_ref) IS NULL");
  q.With(now_ms);
  PXS_RETURN_IF_ERROR(q.Run());
  result.jobs_requeued = conn_->Changes();
  StatusOr<int> reports = RequeueFailedDeliveries(nullptr, now_ms);
  if (!reports.ok()) return reports.status();
  result.reports_requeued = *reports;
  PXS_RETURN_IF_ERROR(tx.Commit());
  return result;
}

Status SqliteAdminDatabase::Export(const ExportFilter& filter,
                                   const std::function<void(const std::vector<ExportRow>&)>& emit_patient) {
  // Every patient's instances together (the caller needs a patient's earlier studies,
  // also those outside the window, to compare); one patient in memory at a time.
  Query q = conn_->Prepare(
      "SELECT p.id, p.patient_id, p.issuer, s.study_uid, i.series_uid, i.sop_instance_uid,"
      " s.study_date, s.study_time, j.state, j.reason, sc.pxs, sc.calibrated, sc.calibrated_scale,"
      " sc.model_name, sc.model_version, sc.id, i.received_at, sc.scored_at"
      " FROM instances i JOIN studies s ON s.id = i.study_ref"
      " JOIN patients p ON p.id = s.patient_ref JOIN jobs j ON j.instance_ref = i.id"
      " LEFT JOIN scores sc ON sc.job_ref = j.id"
      " ORDER BY p.id, " PXS_STUDY_ORDER ", i.received_at, i.id");
  int64_t patient = -1;
  std::vector<ExportRow> rows;
  bool any_in_window = false;
  auto flush = [&] {
    if (any_in_window) emit_patient(rows);
    rows.clear();
    any_in_window = false;
  };
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
    if (row.Int(0) != patient) {
      flush();
      patient = row.Int(0);
    }
    ExportRow r;
    r.patient_id = row.Text(1);
    r.issuer = row.Text(2);
    r.study_uid = row.Text(3);
    r.series_uid = row.Text(4);
    r.sop_instance_uid = row.Text(5);
    r.study_date = row.Text(6);
    r.study_time = row.Text(7);
    r.state = row.Text(8);
    r.reason = row.Text(9);
    r.pxs = row.OptReal(10);
    r.calibrated = row.OptReal(11);
    r.calibrated_scale = row.Text(12);
    r.model_name = row.Text(13);
    r.model_version = row.Text(14);
    r.score_id = row.OptInt(15);
    r.received_at_ms = row.Int(16);
    r.scored_at_ms = row.OptInt(17);
    r.in_window = !(filter.received_since_ms && r.received_at_ms < *filter.received_since_ms) &&
                  !(filter.received_until_ms && r.received_at_ms >= *filter.received_until_ms);
    any_in_window = any_in_window || r.in_window;
    rows.push_back(std::move(r));
  }));
  flush();
  return Status::Ok();
}

StatusOr<Stats> SqliteAdminDatabase::ComputeStats(int64_t now_ms) {
  Stats stats;
  {
    Query q = conn_->Prepare(
        "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM studies),"
        " (SELECT count(*) FROM instances), (SELECT count(*) FROM instances WHERE pruned_at IS NOT NULL)");
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    stats.patients = q.Int(0);
    stats.studies = q.Int(1);
    stats.instances = q.Int(2);
    stats.pruned_instances = q.Int(3);
  }
  for (const char* state : {"queued", "scoring", "scored", "skipped", "failed"}) stats.jobs_by_state[state] = 0;
  for (const char* state : {"pending", "sent", "failed"}) stats.reports_by_state[state] = 0;
  Query jobs = conn_->Prepare("SELECT state, count(*) FROM jobs GROUP BY state");
  PXS_RETURN_IF_ERROR(ForEachRow(jobs, [&](const Query& row) { stats.jobs_by_state[row.Text(0)] = row.Int(1); }));
  Query reports = conn_->Prepare("SELECT state, count(*) FROM report_deliveries GROUP BY state");
  PXS_RETURN_IF_ERROR(
      ForEachRow(reports, [&](const Query& row) { stats.reports_by_state[row.Text(0)] = row.Int(1); }));

  constexpr int64_t kHourMs = 3600 * 1000;
  const int64_t day_start = now_ms - 24 * kHourMs;
  stats.scores_per_hour.assign(24, 0);
  Query hourly = conn_->Prepare(
      "SELECT (scored_at - ?1) / 3600000, count(*) FROM scores WHERE scored_at >= ?1 AND scored_at < ?2"
      " GROUP BY 1");
  hourly.With(day_start, now_ms);
  int64_t last_day = 0;
  PXS_RETURN_IF_ERROR(ForEachRow(hourly, [&](const Query& row) {
    int64_t bucket = row.Int(0);
    if (bucket >= 0 && bucket < 24) stats.scores_per_hour[static_cast<size_t>(bucket)] = row.Int(1);
    last_day += row.Int(1);
  }));
  stats.scores_per_hour_mean = static_cast<double>(last_day) / 24.0;

  const int64_t window_start = now_ms - Stats::kLatencyWindowDays * 24 * kHourMs;
  std::vector<double> to_score;
  Query scored = conn_->Prepare(
      "SELECT sc.scored_at - i.received_at FROM scores sc JOIN jobs j ON j.id = sc.job_ref"
      " JOIN instances i ON i.id = j.instance_ref WHERE sc.scored_at >= ?1");
  scored.With(window_start);
  PXS_RETURN_IF_ERROR(ForEachRow(scored, [&](const Query& row) { to_score.push_back(row.Real(0)); }));
  stats.receipt_to_score = Percentiles(std::move(to_score));

  // A report answers the newest instance of its study received before it was written.
  std::vector<double> to_sent;
  Query sent = conn_->Prepare(
      "SELECT d.sent_at - (SELECT max(i.received_at) FROM studies s JOIN instances i ON i.study_ref = s.id"
      "   WHERE s.study_uid = r.study_uid AND i.received_at <= r.created_at)"
      " FROM report_deliveries d JOIN reports r ON r.id = d.report_ref"
      " WHERE d.state = 'sent' AND d.sent_at >= ?1");
  sent.With(window_start);
  PXS_RETURN_IF_ERROR(ForEachRow(sent, [&](const Query& row) {
    if (!row.IsNull(0)) to_sent.push_back(row.Real(0));
  }));
  stats.receipt_to_report_sent = Percentiles(std::move(to_sent));
  return stats;
}

Status SqliteAdminDatabase::ForEachRecordedFile(const std::function<void(const RecordedFile&)>& visit) {
  // Pages of 1000, visited outside the statement: hashing takes long and an open read
  // would keep the node's WAL from being checkpointed meanwhile.
  int64_t after = 0;
  while (true) {
    std::vector<RecordedFile> page;
    {
      Query q = conn_->Prepare(
          "SELECT id, sop_instance_uid, file_path, file_size, sha256 FROM local_instances"
          " WHERE id > ?1 AND pruned_at IS NULL ORDER BY id LIMIT 1000");
      q.With(after);
      PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
        page.push_back({row.Int(0), row.Text(1), row.Text(2), static_cast<uint64_t>(row.Int(3)), row.Text(4)});
      }));
    }
    if (page.empty()) return Status::Ok();
    after = page.back().instance_id;
    for (const RecordedFile& file : page) visit(file);
  }
}

StatusOr<std::optional<std::string>> SqliteAdminDatabase::ModelMetadata(const std::string& name,
                                                                      const std::string& version) {
  Query q = conn_->Prepare("SELECT metadata_json FROM models WHERE name = ?1 AND version = ?2");
  q.With(name, version);
  std::optional<std::string> json;
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) { json = row.Text(0); }));
  return json;
}

StatusOr<std::vector<ScoringModel>> SqliteAdminDatabase::ScoringModels() {
  // Two plain queries merged here (instead of a FULL OUTER JOIN) so that the SQL stays
  // the same in every dialect.
  std::map<std::pair<std::string, std::string>, ScoringModel> models;
  auto entry = [&](const std::string& name, const std::string& version) -> ScoringModel& {
    ScoringModel& m = models[{name, version}];
    m.name = name;
    m.version = version;
    return m;
  };
  Query scored = conn_->Prepare(
      "SELECT model_name, model_version, count(*), min(scored_at), max(scored_at) FROM scores"
      " GROUP BY model_name, model_version");
  PXS_RETURN_IF_ERROR(ForEachRow(scored, [&](const Query& row) {
    ScoringModel& m = entry(row.Text(0), row.Text(1));
    m.scores = row.Int(2);
    m.first_scored_at_ms = row.Int(3);
    m.last_scored_at_ms = row.Int(4);
  }));
  Query recorded = conn_->Prepare("SELECT name, version, recorded_at, metadata_json FROM models");
  PXS_RETURN_IF_ERROR(ForEachRow(recorded, [&](const Query& row) {
    ScoringModel& m = entry(row.Text(0), row.Text(1));
    m.loaded_at_ms = row.Int(2);
    m.metadata_json = row.Text(3);
  }));
  std::vector<ScoringModel> out;
  for (auto& [key, m] : models) out.push_back(std::move(m));
  return out;
}

StatusOr<std::string> SqliteAdminDatabase::QuickCheck() { return conn_->IntegrityCheck(); }

StatusOr<std::vector<PruneCandidate>> SqliteAdminDatabase::PruneCandidates(int64_t received_before_ms) {
  Query q = conn_->Prepare(
      "SELECT i.id, i.sop_instance_uid, i.file_path, i.file_size, i.received_at, j.state"
      " FROM local_instances i JOIN jobs j ON j.instance_ref = i.id"
      " WHERE i.received_at < ?1 AND i.pruned_at IS NULL AND j.state IN ('scored', 'skipped', 'failed')"
      " ORDER BY i.id");
  q.With(received_before_ms);
  std::vector<PruneCandidate> candidates;
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
    candidates.push_back({row.Int(0), row.Text(1), row.Text(2), static_cast<uint64_t>(row.Int(3)),
                          row.Int(4), row.Text(5)});
  }));
  return candidates;
}

Status SqliteAdminDatabase::MarkPruned(const std::vector<int64_t>& instance_ids, int64_t now_ms) {
  PXS_RETURN_IF_ERROR(RequireWritable("prune"));
  Transaction tx(conn_.get());
  PXS_RETURN_IF_ERROR(tx.Begin());
  for (int64_t id : instance_ids) {
    Query q = conn_->Prepare("UPDATE instances SET pruned_at = ?2 WHERE id = ?1 AND pruned_at IS NULL");
    q.With(id, now_ms);
    PXS_RETURN_IF_ERROR(q.Run());
  }
  return tx.Commit();
}

Status SqliteAdminDatabase::AddAudit(const AuditEntry& entry) {
  PXS_RETURN_IF_ERROR(RequireWritable("audit"));
  Query q = conn_->Prepare("INSERT INTO audit (at, unix_user, action, details) VALUES (?1, ?2, ?3, ?4)");
  q.With(entry.at_ms, entry.unix_user, entry.action, entry.details);
  return q.Run();
}

StatusOr<std::vector<AuditEntry>> SqliteAdminDatabase::RecentAudit(int limit) {
  Query q = conn_->Prepare("SELECT at, unix_user, action, details FROM audit ORDER BY id DESC LIMIT ?1");
  q.With(limit);
  std::vector<AuditEntry> entries;
  PXS_RETURN_IF_ERROR(ForEachRow(q, [&](const Query& row) {
    entries.push_back({row.Int(0), row.Text(1), row.Text(2), row.Text(3)});
  }));
  return entries;
}

}  // namespace

StatusOr<int> ReadSchemaVersion(const std::string& db_path) {
  DatabaseOptions options;
  options.url = db_path;
  StatusOr<std::unique_ptr<Connection>> conn = sqlite::OpenDatabaseConnection(options, /*read_only=*/true);
  if (!conn.ok()) return conn.status();
  return sqlite::ReadVersion(**conn);
}

StatusOr<std::unique_ptr<AdminDatabase>> AdminDatabase::Open(const DatabaseOptions& options, Database::Mode mode) {
  StatusOr<std::unique_ptr<Connection>> conn = sqlite::OpenNodeDatabase(options, mode);
  if (!conn.ok()) return conn.status();
  return std::unique_ptr<AdminDatabase>(new SqliteAdminDatabase(std::move(*conn)));
}

StatusOr<std::unique_ptr<AdminDatabase>> AdminDatabase::Open(const std::string& path, Database::Mode mode) {
  DatabaseOptions options;
  options.url = path;
  return Open(options, mode);
}

}  // namespace pxs
