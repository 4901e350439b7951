#include "pxs/views/views.h"

#include <cmath>

#include "pxs/hl7/loinc.h"
#include "pxs/views/format.h"

namespace pxs::views {

CourseBuilder::CourseBuilder(AdminDatabase& db, std::optional<double> stable_delta_override) : db_(db) {
  options_.stable_delta_override = stable_delta_override;
}

std::vector<longitudinal::Course> CourseBuilder::Build(const std::vector<longitudinal::ScoredInstance>& rows) {
  return longitudinal::BuildCourses(rows, [this](const longitudinal::ModelId& m) { return TrendOf(m); }, options_);
}

longitudinal::ModelTrend CourseBuilder::TrendOf(const longitudinal::ModelId& model) {
  auto cached = cache_.find(model);
  if (cached != cache_.end()) return cached->second;
  longitudinal::ModelTrend trend;  // a model the node never recorded: the defaults
  auto metadata = db_.ModelMetadata(model.name, model.version);
  if (metadata.ok() && metadata->has_value()) {
    trend = longitudinal::ModelTrendFromMetadata(**metadata).value_or(trend);
  }
  return cache_[model] = trend;
}

bool ModelSelected(const std::string& filter, const longitudinal::ModelId& model) {
  return filter.empty() || filter == model.name || filter == model.Label();
}

StatusOr<History> LoadHistory(AdminDatabase& db, const HistoryQuery& query) {
  History out;
  out.key = PatientKey{query.patient_id, query.issuer.value_or("")};
  if (!query.issuer) {
    auto keys = db.PatientsWithId(query.patient_id);
    if (!keys.ok()) return keys.status();
    if (keys->empty()) return Status::NotFound("no patient with id " + query.patient_id);
    if (keys->size() > 1) {
      std::string issuers;
      for (const auto& k : *keys) issuers += (issuers.empty() ? "" : ", ") + (k.issuer.empty() ? "\"\"" : k.issuer);
      return Status::InvalidArgument("patient id " + query.patient_id + " exists under several issuers (" + issuers +
                                     "): add --issuer");
    }
    out.key = keys->front();
  }
  auto history = db.StudyHistory(out.key);
  if (!history.ok()) return history.status();
  if (history->empty()) {
    return Status::NotFound("no studies for patient " + out.key.patient_id + " (issuer \"" + out.key.issuer + "\")");
  }
  out.studies = std::move(*history);
  auto scores = db.ScoredInstances(out.key);
  if (!scores.ok()) return scores.status();
  std::vector<longitudinal::ScoredInstance> rows;
  for (const auto& r : *scores) {
    if (ModelSelected(query.model, r.model)) rows.push_back(r);
  }
  CourseBuilder builder(db, query.stable_delta_override);
  out.courses = builder.Build(rows);
  if (query.observations) {
    // Codes by quantity from the node's LOINC table (the one HL7 and FHIR intake plot).
    static const std::vector<std::string> kSpo2 = hl7::CodesOf("spo2"), kCrp = hl7::CodesOf("crp");
    static const std::vector<std::string> kO2Flow = hl7::CodesOf("o2_flow"), kFio2 = hl7::CodesOf("fio2");
    const int64_t window_ms = static_cast<int64_t>(query.clinical_window_h * 3'600'000.0);
    out.clinical_window_h = query.clinical_window_h;
    for (const StudyHistoryEntry& s : out.studies) {
      const std::optional<int64_t> at = WallClockMs(s.study_date, s.study_time);
      if (!at) continue;  // no study date: nothing to be near to
      StudyClinical c;
      auto nearest = [&](const std::vector<std::string>& codes) -> StatusOr<std::optional<Observation>> {
        return query.observations->NearestObservation(out.key, codes, *at, window_ms);
      };
      auto spo2 = nearest(kSpo2);
      if (!spo2.ok()) return spo2.status();
      c.spo2 = *spo2;
      auto o2 = nearest(kO2Flow);
      if (!o2.ok()) return o2.status();
      c.o2 = *o2;
      if (!c.o2) {
        auto fio2 = nearest(kFio2);
        if (!fio2.ok()) return fio2.status();
        c.o2 = *fio2;
      }
      auto crp = nearest(kCrp);
      if (!crp.ok()) return crp.status();
      c.crp = *crp;
      out.clinical[s.study_uid] = std::move(c);
    }
  }
  return out;
}

Json ClinicalJson(const std::optional<Observation>& o, const std::string& study_date, const std::string& study_time) {
  if (!o) return Json(nullptr);
  Json j{{"loinc", o->loinc}, {"display", o->display}, {"value", o->value}, {"unit", o->unit},
         {"observed_at", o->observed_at_text}};
  const std::optional<int64_t> at = WallClockMs(study_date, study_time);
  j["hours_from_study"] = at ? Json(std::round((o->observed_at_ms - *at) / 36'000.0) / 100.0) : Json(nullptr);
  return j;
}

Json OptionalJson(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }
Json OptionalTimeJson(const std::optional<int64_t>& ms) { return ms ? Json(FormatTimeIso(*ms)) : Json(nullptr); }

namespace {

Json ComparisonJson(const longitudinal::Comparison& c) {
  const bool compared = c.trend != longitudinal::Trend::kNotCompared;
  return Json{{"change", OptionalJson(c.change)},
              {"calibrated_change", OptionalJson(c.calibrated_change)},
              {"trend", longitudinal::TrendText(c.trend)},
              {"trend_scale", compared ? Json(c.on_calibrated_scale ? "calibrated" : "raw") : Json(nullptr)},
              {"stable_delta_used", compared ? Json(c.stable_delta_used) : Json(nullptr)}};
}

Json PercentilesJson(const LatencyPercentiles& p) {
  return Json{{"count", p.count}, {"p50_ms", p.p50_ms}, {"p90_ms", p.p90_ms}, {"p99_ms", p.p99_ms}, {"max_ms", p.max_ms}};
}

}  // namespace

Json PatientsJson(const std::vector<PatientSummary>& patients) {
  Json out = Json::array();
  for (const auto& p : patients) {
    out.push_back({{"patient_id", p.patient_id.empty() ? Json(nullptr) : Json(p.patient_id)},
                   {"issuer", p.issuer},
                   {"name", p.name},
                   {"studies", p.studies},
                   {"instances", p.instances},
                   {"scored", p.scored},
                   {"last_received_at", p.last_received_at_ms ? Json(FormatTimeIso(p.last_received_at_ms)) : Json(nullptr)}});
  }
  return out;
}

Json HistoryJson(const History& h) {
  std::map<std::string, const StudyHistoryEntry*> study_of;
  for (const auto& s : h.studies) study_of[s.study_uid] = &s;
  auto accession = [&](const std::string& uid) {
    auto it = study_of.find(uid);
    return it == study_of.end() ? std::string() : it->second->accession_number;
  };
  Json studies = Json::array();
  for (const auto& s : h.studies) {
    Json study{{"study_uid", s.study_uid},
               {"study_date", s.study_date},
               {"study_time", s.study_time},
               {"accession_number", s.accession_number},
               {"instances", s.instances},
               {"scored", s.scored}};
    // Clinical context (issue 15): only when it was looked up, so that the JSON of a
    // node without observations stays what it was.
    if (h.clinical_window_h) {
      auto c = h.clinical.find(s.study_uid);
      const StudyClinical none;
      const StudyClinical& v = c == h.clinical.end() ? none : c->second;
      study["clinical"] = {{"window_h", *h.clinical_window_h},
                           {"spo2", ClinicalJson(v.spo2, s.study_date, s.study_time)},
                           {"o2", ClinicalJson(v.o2, s.study_date, s.study_time)},
                           {"crp", ClinicalJson(v.crp, s.study_date, s.study_time)}};
    }
    studies.push_back(std::move(study));
  }
  Json out_courses = Json::array();
  for (const auto& course : h.courses) {
    Json points = Json::array();
    std::string scale;
    std::vector<double> series;
    for (const auto& p : course.studies) {
      if (scale.empty()) scale = p.value.calibrated_scale;
      series.push_back(p.value.pxs);
      Json point{{"study_uid", p.value.study_uid},
                 {"study_date", p.value.study_date},
                 {"study_time", p.value.study_time},
                 {"accession_number", accession(p.value.study_uid)},
                 {"sop_instance_uid", p.value.sop_instance_uid},
                 {"scored_instances", p.scored_instances},
                 {"pxs", p.value.pxs},
                 {"calibrated", OptionalJson(p.value.calibrated)},
                 {"calibrated_scale", p.value.calibrated_scale},
                 {"band", p.band},
                 {"previous_study_uid",
                  p.previous ? Json(course.studies[*p.previous].value.study_uid) : Json(nullptr)}};
      point.update(ComparisonJson(p.comparison));
      points.push_back(std::move(point));
    }
    out_courses.push_back({{"model", course.model.Label()},
                           {"model_name", course.model.name},
                           {"model_version", course.model.version},
                           {"stable_delta", course.trend.stable_delta},
                           {"stable_delta_calibrated", OptionalJson(course.trend.stable_delta_calibrated)},
                           {"calibrated_scale", scale},
                           {"studies", points},
                           {"sparkline", Sparkline(series)}});
  }
  return Json{{"patient_id", h.key.patient_id}, {"issuer", h.key.issuer}, {"studies", studies}, {"courses", out_courses}};
}

Json DeliveryJson(const ReportDelivery& d) {
  return Json{{"sr_sop_instance_uid", d.sr_sop_instance_uid},
              {"study_uid", d.study_uid},
              {"version", d.version},
              {"file_path", d.file_path},
              {"destination", d.destination},
              {"state", d.state},
              {"attempts", d.attempts},
              {"next_attempt_at", FormatTimeIso(d.next_attempt_at_ms)},
              {"last_error", d.last_error},
              {"sent_at", OptionalTimeJson(d.sent_at_ms)}};
}

Json StudiesJson(const std::vector<StudyDetails>& studies) {
  Json out = Json::array();
  for (const auto& s : studies) {
    Json instances = Json::array();
    for (const auto& i : s.instances) {
      instances.push_back({{"sop_instance_uid", i.sop_instance_uid},
                           {"series_uid", i.series_uid},
                           {"sop_class_uid", i.sop_class_uid},
                           {"modality", i.modality},
                           {"body_part", i.body_part},
                           {"view_position", i.view_position},
                           {"transfer_syntax_uid", i.transfer_syntax_uid},
                           {"file_path", i.file_path},
                           {"file_size", i.file_size},
                           {"sha256", i.sha256},
                           {"calling_ae", i.calling_ae},
                           {"peer_address", i.peer_address},
                           {"received_at", FormatTimeIso(i.received_at_ms)},
                           {"pruned_at", OptionalTimeJson(i.pruned_at_ms)},
                           {"state", i.job_state},
                           {"reason", i.job_reason},
                           {"attempts", i.attempts},
                           {"pxs", OptionalJson(i.pxs)},
                           {"raw_distance", OptionalJson(i.raw_distance)},
                           {"calibrated", OptionalJson(i.calibrated)},
                           {"calibrated_scale", i.calibrated_scale},
                           {"model", i.model},
                           {"embedding_dim", i.embedding_dim},
                           {"scored_at", OptionalTimeJson(i.scored_at_ms)},
                           {"queue_ms", OptionalJson(i.queue_ms)},
                           {"decode_ms", OptionalJson(i.decode_ms)},
                           {"inference_ms", OptionalJson(i.inference_ms)}});
    }
    Json reports = Json::array();
    for (const auto& d : s.reports) reports.push_back(DeliveryJson(d));
    out.push_back({{"study_uid", s.study_uid},
                   {"patient_id", s.patient.patient_id.empty() ? Json(nullptr) : Json(s.patient.patient_id)},
                   {"issuer", s.patient.issuer},
                   {"study_date", s.study_date},
                   {"study_time", s.study_time},
                   {"accession_number", s.accession_number},
                   {"instances", instances},
                   {"reports", reports}});
  }
  return out;
}

Json QueueJson(const QueueView& view) {
  Json jobs = Json::array();
  for (const auto& j : view.jobs) {
    jobs.push_back({{"job_id", j.job_id},
                    {"state", j.state},
                    {"sop_instance_uid", j.sop_instance_uid},
                    {"study_uid", j.study_uid},
                    {"calling_ae", j.calling_ae},
                    {"attempts", j.attempts},
                    {"received_at", FormatTimeIso(j.received_at_ms)},
                    {"last_reason", j.last_reason}});
  }
  Json reports = Json::array();
  for (const auto& d : view.pending_reports) reports.push_back(DeliveryJson(d));
  return Json{{"queued", view.queued},
              {"scoring", view.scoring},
              {"reports_pending", view.reports_pending},
              {"jobs", jobs},
              {"pending_reports", reports}};
}

Json FailuresJson(const FailuresView& view) {
  Json jobs = Json::array();
  for (const auto& f : view.jobs) {
    jobs.push_back({{"job_id", f.job_id},
                    {"sop_instance_uid", f.sop_instance_uid},
                    {"study_uid", f.study_uid},
                    {"reason", f.reason},
                    {"attempts", f.attempts},
                    {"received_at", FormatTimeIso(f.received_at_ms)},
                    {"failed_at", FormatTimeIso(f.failed_at_ms)}});
  }
  Json failed = Json::array(), retrying = Json::array();
  for (const auto& d : view.reports) failed.push_back(DeliveryJson(d));
  for (const auto& d : view.retrying) retrying.push_back(DeliveryJson(d));
  return Json{{"jobs", jobs}, {"reports", failed}, {"reports_retrying", retrying}};
}

Json StatsJson(const Stats& s) {
  return Json{{"patients", s.patients},
              {"studies", s.studies},
              {"instances", s.instances},
              {"pruned_instances", s.pruned_instances},
              {"jobs", s.jobs_by_state},
              {"report_deliveries", s.reports_by_state},
              {"scores_per_hour_last_24h", s.scores_per_hour},
              {"scores_per_hour_mean", s.scores_per_hour_mean},
              {"latency_window_days", Stats::kLatencyWindowDays},
              {"receipt_to_score", PercentilesJson(s.receipt_to_score)},
              {"receipt_to_report_sent", PercentilesJson(s.receipt_to_report_sent)}};
}

Json AuditJson(const std::vector<AuditEntry>& entries) {
  Json out = Json::array();
  for (const auto& e : entries) {
    out.push_back({{"at", FormatTimeIso(e.at_ms)}, {"unix_user", e.unix_user}, {"action", e.action}, {"details", e.details}});
  }
  return out;
}

Json RetryJson(const std::string& target, const StatusOr<RetryResult>& result) {
  Json details{{"target", target}};
  if (result.ok()) {
    details["jobs_requeued"] = result->jobs_requeued;
    details["reports_requeued"] = result->reports_requeued;
    details["skipped_pruned"] = result->skipped_pruned;
  } else {
    details["error"] = result.status().ToString();
  }
  return details;
}

Json ModelJson(const std::string& name, const std::string& version, const std::string& metadata_json) {
  Json metadata = Json::parse(metadata_json, nullptr, /*allow_exceptions=*/false);
  if (metadata.is_discarded()) metadata = nullptr;
  bool not_for_clinical_use = false;
  if (metadata.is_object()) {
    auto flag = metadata.find("not_for_clinical_use");
    not_for_clinical_use = flag != metadata.end() && flag->is_boolean() && flag->get<bool>();
  }
  return Json{{"name", name},
              {"version", version},
              {"model", longitudinal::ModelId{name, version}.Label()},
              {"not_for_clinical_use", not_for_clinical_use},
              {"metadata", metadata}};
}

}  // namespace pxs::views
