// The node database's clinical observations (pxs/storage/observations.h). Its own
// connection, like AdminDatabase: the HL7 listener's group committer writes through it,
// so observation commits wait only for SQLite's write lock, never for the DICOM side's
// mutex. Portable SQL (?N, RETURNING id, ON CONFLICT DO NOTHING) only.
#include "pxs/storage/observations.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <set>

#include "sqlite.h"  // before schema.h: the names it uses
#include "schema.h"

namespace pxs {

using sqlite::Connection;
using sqlite::Query;
using sqlite::Transaction;

std::optional<int64_t> WallClockMs(const std::string& date, const std::string& time) {
  if (date.size() != 8 || date.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  std::tm tm{};
  tm.tm_year = std::atoi(date.substr(0, 4).c_str()) - 1900;
  tm.tm_mon = std::atoi(date.substr(4, 2).c_str()) - 1;
  tm.tm_mday = std::atoi(date.substr(6, 2).c_str());
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31) return std::nullopt;
  // TM: HH[MM[SS[.F]]] (the old HH:MM:SS form too).
  std::string t;
  for (char c : time) {
    if (c == '.') break;
    if (c >= '0' && c <= '9') t.push_back(c);
  }
  if (t.size() >= 2) tm.tm_hour = std::atoi(t.substr(0, 2).c_str());
  if (t.size() >= 4) tm.tm_min = std::atoi(t.substr(2, 2).c_str());
  if (t.size() >= 6) tm.tm_sec = std::atoi(t.substr(4, 2).c_str());
  if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) return std::nullopt;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

namespace {

#define PXS_OBSERVATION_COLUMNS                                                                                  \
  "o.patient_id, o.issuer, o.loinc, o.display, o.value, o.unit, o.observed_at, o.utc_offset_min,"           \
  " o.observed_at_text, o.plotted, o.status, m.source, m.sender, m.message_id, m.received_at, o.id"

Observation ReadObservation(const Query& q) {
  Observation o;
  o.patient.patient_id = q.Text(0);
  o.patient.issuer = q.Text(1);
  o.loinc = q.Text(2);
  o.display = q.Text(3);
  o.value = q.Real(4);
  o.unit = q.Text(5);
  o.observed_at_ms = q.Int(6);
  if (!q.IsNull(7)) o.utc_offset_min = static_cast<int>(q.Int(7));
  o.observed_at_text = q.Text(8);
  o.plotted = q.Int(9) != 0;
  o.status = q.Text(10);
  o.source = q.Text(11);
  o.sender = q.Text(12);
  o.message_id = q.Text(13);
  o.received_at_ms = q.Int(14);
  return o;
}

class SqliteObservationStore final : public ObservationStore {
 public:
  explicit SqliteObservationStore(std::unique_ptr<Connection> conn) : conn_(std::move(conn)) {}

  Status RecordMessages(const std::vector<ObservationMessage>& batch, std::vector<MessageOutcome>* outcomes) override {
    if (conn_->read_only()) return Status::Unsupported(conn_->path() + ": RecordMessages: database is opened read-only");
    std::lock_guard guard(mutex_);
    Transaction tx(conn_.get());
    PXS_RETURN_IF_ERROR(tx.Begin());
    std::vector<MessageOutcome> results;
    results.reserve(batch.size());
    for (const ObservationMessage& m : batch) {
      if (m.sender.empty() || m.message_id.empty()) {
        return Status::InvalidArgument("an observation message needs a sender and a message id");
      }
      Query insert = conn_->Prepare(
          "INSERT INTO observation_messages (source, sender, message_id, message_type, version, size_bytes,"
          " observations, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
          " ON CONFLICT (sender, message_id) DO NOTHING RETURNING id");
      insert.With(m.source, m.sender, m.message_id, m.message_type, m.version, static_cast<int64_t>(m.size_bytes),
                  static_cast<int64_t>(m.observations.size()), m.received_at_ms);
      StatusOr<bool> row = insert.Step();
      if (!row.ok()) return row.status();
      if (!*row) {  // (sender, message_id) is there already: a resend
        results.push_back(MessageOutcome::kDuplicate);
        continue;
      }
      const int64_t message_ref = insert.Int(0);
      PXS_RETURN_IF_ERROR(insert.Run());  // finish the statement before the next
      for (const Observation& o : m.observations) {
        if (o.patient.patient_id.empty()) return Status::InvalidArgument("an observation without a patient id");
        Query q = conn_->Prepare(
            "INSERT INTO observations (message_ref, patient_id, issuer, loinc, display, value, unit, observed_at,"
            " utc_offset_min, observed_at_text, status, plotted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
        std::optional<int64_t> offset;
        if (o.utc_offset_min) offset = *o.utc_offset_min;
        q.With(message_ref, o.patient.patient_id, o.patient.issuer, o.loinc, o.display, o.value, o.unit,
               o.observed_at_ms, offset, o.observed_at_text, o.status, static_cast<int64_t>(o.plotted ? 1 : 0));
        PXS_RETURN_IF_ERROR(q.Run());
      }
      results.push_back(MessageOutcome::kStored);
    }
    PXS_RETURN_IF_ERROR(tx.Commit());
    if (outcomes) *outcomes = std::move(results);
    return Status::Ok();
  }

  StatusOr<std::vector<Observation>> PatientObservations(const PatientKey& patient, std::optional<int64_t> from_ms,
                                                         std::optional<int64_t> to_ms, bool plotted_only) override {
    std::lock_guard guard(mutex_);
    Query q = conn_->Prepare(
        "SELECT " PXS_OBSERVATION_COLUMNS " FROM observations o JOIN observation_messages m ON m.id = o.message_ref"
        " WHERE o.patient_id = ?1 AND o.issuer = ?2 AND o.observed_at >= ?3 AND o.observed_at < ?4"
        " AND o.plotted >= ?5 ORDER BY o.observed_at, o.loinc, o.id");
    q.With(patient.patient_id, patient.issuer, from_ms.value_or(INT64_MIN), to_ms.value_or(INT64_MAX),
           static_cast<int64_t>(plotted_only ? 1 : 0));
    std::vector<Observation> out;
    for (;;) {
      StatusOr<bool> row = q.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      out.push_back(ReadObservation(q));
    }
    return out;
  }

  StatusOr<std::vector<Observation>> ObservationsNear(const PatientKey& patient, int64_t at_ms,
                                                      int64_t window_ms) override {
    auto rows = PatientObservations(patient, at_ms - window_ms, at_ms + window_ms + 1, /*plotted_only=*/true);
    if (!rows.ok()) return rows.status();
    std::map<std::string, Observation> best;
    for (Observation& o : *rows) {
      auto it = best.find(o.loinc);
      if (it == best.end() || Better(o, it->second, at_ms)) best[o.loinc] = std::move(o);
    }
    std::vector<Observation> out;
    for (auto& [code, o] : best) out.push_back(std::move(o));
    return out;
  }

  StatusOr<std::optional<Observation>> NearestObservation(const PatientKey& patient,
                                                          const std::vector<std::string>& codes, int64_t at_ms,
                                                          int64_t window_ms) override {
    auto rows = PatientObservations(patient, at_ms - window_ms, at_ms + window_ms + 1, /*plotted_only=*/false);
    if (!rows.ok()) return rows.status();
    const std::set<std::string> wanted(codes.begin(), codes.end());
    std::optional<Observation> best;
    for (Observation& o : *rows) {
      if (!wanted.count(o.loinc)) continue;
      if (!best || Better(o, *best, at_ms)) best = std::move(o);
    }
    return best;
  }

  StatusOr<bool> HasMessage(const std::string& sender, const std::string& message_id) override {
    std::lock_guard guard(mutex_);
    Query q = conn_->Prepare("SELECT 1 FROM observation_messages WHERE sender = ?1 AND message_id = ?2");
    q.With(sender, message_id);
    return q.Step();
  }

 private:
  // Nearer wins; at equal distance the earlier one (known when the image was taken);
  // at the same time the one received later (a corrected result replaces the first).
  static bool Better(const Observation& a, const Observation& b, int64_t at_ms) {
    const int64_t da = std::llabs(a.observed_at_ms - at_ms), db = std::llabs(b.observed_at_ms - at_ms);
    if (da != db) return da < db;
    if (a.observed_at_ms != b.observed_at_ms) return a.observed_at_ms < b.observed_at_ms;
    return a.received_at_ms >= b.received_at_ms;
  }

  std::unique_ptr<Connection> conn_;
  std::mutex mutex_;
};

}  // namespace

StatusOr<std::unique_ptr<ObservationStore>> ObservationStore::Open(const std::string& db_path, Database::Mode mode) {
  StatusOr<std::unique_ptr<Connection>> conn = sqlite::OpenNodeDatabase(db_path, mode);
  if (!conn.ok()) return conn.status();
  return std::unique_ptr<ObservationStore>(new SqliteObservationStore(std::move(*conn)));
}

}  // namespace pxs
