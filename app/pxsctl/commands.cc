#include "commands.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "pxs/common/files.h"
#include "pxs/longitudinal/course.h"
#include "pxs/filestore/file_store.h"
#include "pxs/storage/admin.h"
#include "pxs/views/format.h"
#include "pxs/views/views.h"

namespace pxs::ctl {
namespace {

// The JSON of every command is pxs::views' (shared with the HTTP API); the tables are ours.
using namespace pxs::views;  // NOLINT: the mapper and the output helpers

std::string PatientLabel(const std::string& patient_id) { return patient_id.empty() ? "(no id)" : patient_id; }

void PrintJson(const Json& j) { std::cout << j.dump(2) << '\n'; }

int Fail(const Context& ctx, int code, const std::string& message) {
  if (ctx.json) {
    PrintJson(Json{{"error", message}});
  }
  std::cerr << "pxsctl: " << message << '\n';
  return code;
}

int Fail(const Context& ctx, const Status& status) { return Fail(ctx, kExitFindings, status.ToString()); }

// Opens read-only unless the command changes something. Failure: exit code 3.
std::unique_ptr<AdminDatabase> OpenOrReport(const Context& ctx, Database::Mode mode, int* exit_code) {
  // A read-write open would create an empty database: never do that from pxsctl. A
  // PostgreSQL database has no file: the read-only open checks that it has the current
  // schema (and refuses an empty one) before a read-write open may migrate anything.
  DatabaseOptions options = ctx.db;
  options.url = ctx.db_path;
  if (IsPostgresUrl(options.url)) {
    if (mode == Database::Mode::kReadWrite) {
      auto probe = AdminDatabase::Open(options, Database::Mode::kReadOnly);
      if (!probe.ok()) {
        *exit_code = Fail(ctx, kExitCannotOpen, "cannot open database: " + probe.status().ToString());
        return nullptr;
      }
    }
  } else {
    struct stat st{};
    if (stat(ctx.db_path.c_str(), &st) != 0) {
      *exit_code = Fail(ctx, kExitCannotOpen, "cannot open database: " + ctx.db_path + ": " + std::strerror(errno));
      return nullptr;
    }
  }
  auto db = AdminDatabase::Open(options, mode);
  if (!db.ok()) {
    *exit_code = Fail(ctx, kExitCannotOpen, "cannot open database: " + db.status().ToString());
    return nullptr;
  }
  return std::move(*db);
}

// Who ran a changing command: the effective Unix user (and the sudo caller, if any).
std::string UnixUser() {
  std::string user;
  if (const passwd* pw = getpwuid(geteuid())) {
    user = pw->pw_name;
  } else {
    user = "uid:" + std::to_string(geteuid());
  }
  if (const char* sudo_user = std::getenv("SUDO_USER"); sudo_user && *sudo_user) {
    user += " (sudo by " + std::string(sudo_user) + ")";
  }
  return user;
}

Status Audit(AdminDatabase& db, const std::string& action, const Json& details) {
  return db.AddAudit({NowMs(), UnixUser(), action, details.dump()});
}

std::optional<double> StableDeltaOverride(const Context& ctx, const std::optional<double>& option) {
  if (option) return option;
  if (ctx.config_stable_delta >= 0) return ctx.config_stable_delta;
  return std::nullopt;
}

// "4.50 geographic extent": the calibrated value with its scale's name, or "-".
std::string CalibratedText(const std::optional<double>& value, const std::string& scale) {
  if (!value) return "-";
  return FormatNumber(value) + (scale.empty() ? "" : " " + scale);
}

void PrintDeliveries(const std::string& title, const std::vector<ReportDelivery>& deliveries) {
  std::cout << title << ": " << deliveries.size() << '\n';
  if (deliveries.empty()) return;
  TextTable table({"SR UID", "V", "DESTINATION", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"});
  for (const auto& d : deliveries) {
    table.AddRow({d.sr_sop_instance_uid, std::to_string(d.version), d.destination, d.state,
                  std::to_string(d.attempts), d.state == "pending" ? FormatTimeShort(d.next_attempt_at_ms) : "-",
                  d.last_error.empty() ? "-" : d.last_error});
  }
  table.Print(std::cout);
}

std::string PercentilesText(const LatencyPercentiles& p) {
  if (p.count == 0) return "no data";
  return "p50 " + FormatDuration(p.p50_ms) + ", p90 " + FormatDuration(p.p90_ms) + ", p99 " +
         FormatDuration(p.p99_ms) + ", max " + FormatDuration(p.max_ms) + " (n=" + std::to_string(p.count) + ")";
}

}  // namespace

int RunPatients(const Context& ctx, const PatientsOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto patients = db->FindPatients(opt.prefix, opt.limit);
  if (!patients.ok()) return Fail(ctx, patients.status());
  if (ctx.json) {
    PrintJson(PatientsJson(*patients));
    return kExitOk;
  }
  TextTable table({"PATIENT ID", "ISSUER", "NAME", "STUDIES", "INSTANCES", "SCORED", "LAST RECEIVED"});
  for (const auto& p : *patients) {
    table.AddRow({PatientLabel(p.patient_id), p.issuer.empty() ? "-" : p.issuer, p.name, std::to_string(p.studies),
                  std::to_string(p.instances), std::to_string(p.scored), FormatTimeShort(p.last_received_at_ms)});
  }
  table.Print(std::cout);
  if (static_cast<int>(patients->size()) == opt.limit) {
    std::cout << "(first " << opt.limit << " shown; narrow the search or raise --limit)\n";
  }
  return kExitOk;
}

int RunHistory(const Context& ctx, const HistoryOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  // Observations (HL7 v2 / FHIR) on their own read-only connection; a database without
  // them only leaves the columns empty.
  auto observations = ObservationStore::Open(ctx.db_path, Database::Mode::kReadOnly);
  if (!observations.ok()) std::cerr << "pxsctl: clinical observations not shown: " << observations.status().message() << "\n";
  auto loaded = LoadHistory(*db, {.patient_id = opt.patient_id,
                                  .issuer = opt.issuer,
                                  .model = opt.model,
                                  .stable_delta_override = StableDeltaOverride(ctx, opt.stable_delta),
                                  .observations = observations.ok() ? observations->get() : nullptr,
                                  .clinical_window_h = opt.clinical_window_h});
  if (!loaded.ok()) {
    const Status& st = loaded.status();
    const bool absent = st.code() == Status::Code::kNotFound || st.code() == Status::Code::kInvalidArgument;
    return absent ? Fail(ctx, kExitFindings, st.message()) : Fail(ctx, st);
  }
  if (ctx.json) {
    PrintJson(HistoryJson(*loaded));
    return kExitOk;
  }
  const PatientKey& key = loaded->key;
  const std::vector<StudyHistoryEntry>* history = &loaded->studies;
  const std::vector<longitudinal::Course>& courses = loaded->courses;
  std::map<std::string, const StudyHistoryEntry*> study_of;
  for (const auto& s : *history) study_of[s.study_uid] = &s;
  auto accession = [&](const std::string& uid) {
    auto it = study_of.find(uid);
    return it == study_of.end() ? std::string() : it->second->accession_number;
  };
  auto series_of = [](const longitudinal::Course& course) {
    std::vector<double> values;
    for (const auto& p : course.studies) values.push_back(p.value.pxs);
    return values;
  };
  std::cout << "Patient " << key.patient_id << (key.issuer.empty() ? "" : " (issuer " + key.issuer + ")") << ": "
            << history->size() << " studies, " << courses.size() << " model" << (courses.size() == 1 ? "" : "s")
            << (opt.model.empty() ? "" : " matching " + opt.model) << '\n';
  for (const auto& course : courses) {
    std::string scale;
    for (const auto& p : course.studies) {
      if (scale.empty()) scale = p.value.calibrated_scale;
    }
    std::cout << "\nModel " << course.model.Label() << ": stable within +/-" << FormatNumber(course.trend.stable_delta)
              << " PXS";
    if (course.trend.stable_delta_calibrated) {
      std::cout << " (+/-" << FormatNumber(course.trend.stable_delta_calibrated) << " "
                << (scale.empty() ? "calibrated" : scale) << " when both studies are calibrated)";
    }
    std::cout << "; compared only with this model's own earlier studies\n";
    TextTable table({"DATE", "ACCESSION", "PXS", "CALIBRATED", "CHANGE", "CAL. CHANGE", "TREND", "BAND", "SPO2", "O2",
                     "CRP", "IMAGES", "STUDY UID"});
    // "91 % -1.5h": the nearest value within the window and when it was taken.
    auto clinical = [&](const std::string& uid, std::optional<Observation> StudyClinical::*which) -> std::string {
      auto c = loaded->clinical.find(uid);
      auto st = study_of.find(uid);
      if (c == loaded->clinical.end() || !(c->second.*which) || st == study_of.end()) return "-";
      const Observation& o = *(c->second.*which);
      const std::optional<int64_t> at = WallClockMs(st->second->study_date, st->second->study_time);
      std::string text = FormatNumber(o.value) + (o.unit.empty() ? "" : " " + o.unit);
      if (at) text += " " + FormatNumber((o.observed_at_ms - *at) / 3'600'000.0, 1, true) + "h";
      return text;
    };
    for (const auto& p : course.studies) {
      auto study = study_of.find(p.value.study_uid);
      const int instances = study == study_of.end() ? p.scored_instances : study->second->instances;
      const std::string acc = accession(p.value.study_uid);
      table.AddRow({FormatDicomDateTime(p.value.study_date, p.value.study_time), acc.empty() ? "-" : acc,
                    FormatNumber(p.value.pxs),
                    CalibratedText(p.value.calibrated, p.value.calibrated_scale),
                    FormatNumber(p.comparison.change, 2, true), FormatNumber(p.comparison.calibrated_change, 2, true),
                    longitudinal::TrendText(p.comparison.trend), p.band.empty() ? "-" : p.band,
                    clinical(p.value.study_uid, &StudyClinical::spo2), clinical(p.value.study_uid, &StudyClinical::o2),
                    clinical(p.value.study_uid, &StudyClinical::crp), std::to_string(p.scored_instances) + "/" + std::to_string(instances), p.value.study_uid});
    }
    table.Print(std::cout);
    const std::vector<double> series = series_of(course);
    if (!series.empty()) {
      auto [lo, hi] = std::minmax_element(series.begin(), series.end());
      std::cout << "PXS over time: " << Sparkline(series) << "  (min " << FormatNumber(*lo) << ", max "
                << FormatNumber(*hi) << ")\n";
    }
  }
  std::vector<std::string> unscored;
  for (const auto& s : *history) {
    if (s.scored == 0) unscored.push_back(FormatDicomDate(s.study_date) + " " + s.study_uid);
  }
  if (!unscored.empty()) {
    std::cout << "\nNot scored (" << unscored.size() << "):";
    for (const auto& u : unscored) std::cout << "  " << u;
    std::cout << '\n';
  }
  return kExitOk;
}

int RunStudy(const Context& ctx, const std::string& study_uid) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto studies = db->Study(study_uid);
  if (!studies.ok()) return Fail(ctx, studies.status());
  if (studies->empty()) return Fail(ctx, kExitFindings, "no study with Study Instance UID " + study_uid);
  if (ctx.json) {
    PrintJson(StudiesJson(*studies));
    return kExitOk;
  }
  for (const auto& s : *studies) {
    std::cout << "Study " << s.study_uid << "\n  patient " << PatientLabel(s.patient.patient_id)
              << (s.patient.issuer.empty() ? "" : " (issuer " + s.patient.issuer + ")") << "  "
              << s.patient_name << "\n  date " << FormatDicomDate(s.study_date) << "  accession "
              << (s.accession_number.empty() ? "-" : s.accession_number) << "\n";
    TextTable table({"SOP INSTANCE UID", "VIEW", "STATE", "PXS", "CALIBRATED", "MODEL", "RECEIVED", "FILE"});
    for (const auto& i : s.instances) {
      std::string state = i.job_state + (i.job_reason.empty() ? "" : " (" + i.job_reason + ")");
      std::string calibrated = i.calibrated ? FormatNumber(i.calibrated) + " " + i.calibrated_scale : "-";
      table.AddRow({i.sop_instance_uid, i.view_position.empty() ? "-" : i.view_position, state, FormatNumber(i.pxs),
                    calibrated, i.model.empty() ? "-" : i.model, FormatTimeShort(i.received_at_ms),
                    i.pruned_at_ms ? "(pruned)" : i.file_path});
    }
    table.Print(std::cout);
    PrintDeliveries("Reports", s.reports);
    std::cout << '\n';
  }
  return kExitOk;
}

int RunQueue(const Context& ctx, const QueueOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto view = db->Queue(opt.limit);
  if (!view.ok()) return Fail(ctx, view.status());
  const int64_t now = NowMs();
  if (ctx.json) {
    PrintJson(QueueJson(*view));
    return kExitOk;
  }
  std::cout << "Scoring queue: " << view->queued << " queued, " << view->scoring << " scoring\n";
  if (!view->jobs.empty()) {
    TextTable table({"JOB", "STATE", "ATTEMPTS", "RECEIVED", "WAITING", "FROM AE", "SOP INSTANCE UID", "LAST REASON"});
    for (const auto& j : view->jobs) {
      table.AddRow({std::to_string(j.job_id), j.state, std::to_string(j.attempts), FormatTimeShort(j.received_at_ms),
                    FormatDuration(static_cast<double>(now - j.received_at_ms)), j.calling_ae.empty() ? "-" : j.calling_ae,
                    j.sop_instance_uid, j.last_reason.empty() ? "-" : j.last_reason});
    }
    table.Print(std::cout);
  }
  PrintDeliveries("Reports waiting to be sent", view->pending_reports);
  if (view->reports_pending > static_cast<int>(view->pending_reports.size())) {
    std::cout << "(" << view->reports_pending << " pending in all)\n";
  }
  return kExitOk;
}

int RunFailures(const Context& ctx, const FailuresOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto view = db->Failures(opt.limit);
  if (!view.ok()) return Fail(ctx, view.status());
  if (ctx.json) {
    PrintJson(FailuresJson(*view));
    return kExitOk;
  }
  std::cout << "Failed scoring jobs: " << view->jobs.size() << '\n';
  if (!view->jobs.empty()) {
    TextTable table({"JOB", "SOP INSTANCE UID", "ATTEMPTS", "FAILED AT", "REASON"});
    for (const auto& f : view->jobs) {
      table.AddRow({std::to_string(f.job_id), f.sop_instance_uid, std::to_string(f.attempts),
                    FormatTimeShort(f.failed_at_ms), f.reason});
    }
    table.Print(std::cout);
  }
  PrintDeliveries("Failed report deliveries", view->reports);
  PrintDeliveries("Report deliveries being retried", view->retrying);
  if (!view->jobs.empty() || !view->reports.empty()) {
    std::cout << "Retry with: pxsctl retry SOP_INSTANCE_UID  or  pxsctl retry --all-failed\n";
  }
  return kExitOk;
}

int RunRetry(const Context& ctx, const RetryOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadWrite, &rc);
  if (!db) return rc;
  const int64_t now = NowMs();
  auto result = opt.all_failed ? db->RetryAllFailed(now) : db->Retry(opt.sop_instance_uid, now);
  Json details = RetryJson(opt.all_failed ? "all-failed" : opt.sop_instance_uid, result);
  // The attempt is audited whether or not it changed anything.
  Status audited = Audit(*db, "retry", details);
  if (!result.ok()) return Fail(ctx, result.status());
  if (!audited.ok()) return Fail(ctx, audited);
  if (ctx.json) {
    PrintJson(details);
  } else {
    std::cout << "Requeued " << result->jobs_requeued << " scoring job(s) and " << result->reports_requeued
              << " report delivery(ies)";
    if (result->skipped_pruned) std::cout << "; " << result->skipped_pruned << " failed job(s) not requeued: file pruned";
    std::cout << '\n';
  }
  if (!opt.all_failed && result->jobs_requeued == 0 && result->reports_requeued == 0) {
    std::cerr << "pxsctl: nothing to retry for " << opt.sop_instance_uid
              << " (its job is not failed and its study has no failed report)\n";
    return kExitFindings;
  }
  return kExitOk;
}

int RunExport(const Context& ctx, const ExportOptions& opt) {
  ExportFilter filter;
  if (!opt.since.empty()) {
    filter.received_since_ms = ParseDateUtcMs(opt.since);
    if (!filter.received_since_ms) return Fail(ctx, kExitUsage, "--since: expected YYYY-MM-DD, got " + opt.since);
  }
  if (!opt.until.empty()) {
    auto day = ParseDateUtcMs(opt.until);
    if (!day) return Fail(ctx, kExitUsage, "--until: expected YYYY-MM-DD, got " + opt.until);
    filter.received_until_ms = *day + 24 * 3600 * 1000;  // the whole --until day is included
  }
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  std::ofstream file;
  if (!opt.output.empty()) {
    file.open(opt.output, std::ios::out | std::ios::trunc);
    if (!file) return Fail(ctx, kExitFindings, opt.output + ": cannot write: " + std::strerror(errno));
  }
  std::ostream& out = opt.output.empty() ? std::cout : file;
  const bool json = opt.format == "json";
  bool first = true;
  if (json) {
    out << "[";
  } else {
    out << "patient_id,issuer,study_uid,series_uid,sop_instance_uid,study_date,state,reason,pxs,calibrated,"
           "calibrated_scale,change_from_prior,calibrated_change_from_prior,trend,stands_for_study,model,"
           "received_at,scored_at\n";
  }
  CourseBuilder builder(*db, StableDeltaOverride(ctx, std::nullopt));
  // Each row's change is its comparison under the longitudinal rule: with the previous
  // study of the same model. The instance that stands for its study carries the
  // study's comparison (the one `pxsctl history` and the SR show); another scored
  // instance of the study is compared with the same previous study.
  Status status = db->Export(filter, [&](const std::vector<ExportRow>& patient_rows) {
    std::vector<longitudinal::ScoredInstance> scored;
    for (const ExportRow& r : patient_rows) {
      if (!r.pxs || !r.score_id || r.patient_id.empty()) continue;  // no id: never linked to other studies
      longitudinal::ScoredInstance s;
      s.study_uid = r.study_uid;
      s.study_date = r.study_date;
      s.study_time = r.study_time;
      s.sop_instance_uid = r.sop_instance_uid;
      s.model = {r.model_name, r.model_version};
      s.pxs = *r.pxs;
      s.calibrated = r.calibrated;
      s.calibrated_scale = r.calibrated_scale;
      s.scored_at_ms = r.scored_at_ms.value_or(0);
      s.score_id = *r.score_id;
      scored.push_back(std::move(s));
    }
    const std::vector<longitudinal::Course> courses = builder.Build(scored);
    size_t next_scored = 0;
    for (const ExportRow& r : patient_rows) {
      longitudinal::Comparison cmp;
      bool stands_for_study = false;
      const bool linked = r.pxs && r.score_id && !r.patient_id.empty();
      if (linked) {
        const longitudinal::ScoredInstance& self = scored[next_scored++];
        for (const auto& course : courses) {
          if (!(course.model == self.model)) continue;
          const longitudinal::StudyPoint* point = course.Find(self.study_uid);
          stands_for_study = point->value.score_id == self.score_id;
          if (stands_for_study) {
            cmp = point->comparison;
          } else if (point->previous) {
            cmp = longitudinal::Compare(self, course.studies[*point->previous].value, course.trend);
          }
        }
      }
      if (!r.in_window) continue;
      const std::string model = r.model_name.empty() ? std::string()
                                                     : longitudinal::ModelId{r.model_name, r.model_version}.Label();
      const bool compared = cmp.trend != longitudinal::Trend::kNotCompared;
      if (json) {
        Json row{{"patient_id", r.patient_id.empty() ? Json(nullptr) : Json(r.patient_id)},
                 {"issuer", r.issuer},
                 {"study_uid", r.study_uid},
                 {"series_uid", r.series_uid},
                 {"sop_instance_uid", r.sop_instance_uid},
                 {"study_date", r.study_date},
                 {"state", r.state},
                 {"reason", r.reason},
                 {"pxs", OptionalJson(r.pxs)},
                 {"calibrated", OptionalJson(r.calibrated)},
                 {"calibrated_scale", r.calibrated_scale},
                 {"change_from_prior", OptionalJson(cmp.change)},
                 {"calibrated_change_from_prior", OptionalJson(cmp.calibrated_change)},
                 {"trend", r.pxs ? Json(longitudinal::TrendText(cmp.trend)) : Json(nullptr)},
                 {"trend_scale", compared ? Json(cmp.on_calibrated_scale ? "calibrated" : "raw") : Json(nullptr)},
                 {"stands_for_study", stands_for_study},
                 {"model", model},
                 {"received_at", FormatTimeIso(r.received_at_ms)},
                 {"scored_at", OptionalTimeJson(r.scored_at_ms)}};
        out << (first ? "\n  " : ",\n  ") << row.dump();
      } else {
        auto num = [](const std::optional<double>& v) { return v ? FormatNumber(v, 6) : std::string(); };
        out << CsvField(r.patient_id) << ',' << CsvField(r.issuer) << ',' << CsvField(r.study_uid) << ','
            << CsvField(r.series_uid) << ',' << CsvField(r.sop_instance_uid) << ',' << CsvField(r.study_date) << ','
            << r.state << ',' << CsvField(r.reason) << ',' << num(r.pxs) << ',' << num(r.calibrated) << ','
            << CsvField(r.calibrated_scale) << ',' << num(cmp.change) << ',' << num(cmp.calibrated_change) << ','
            << (r.pxs ? longitudinal::TrendText(cmp.trend) : "") << ',' << (stands_for_study ? "1" : "0") << ','
            << CsvField(model) << ',' << FormatTimeIso(r.received_at_ms) << ','
            << (r.scored_at_ms ? FormatTimeIso(*r.scored_at_ms) : "") << '\n';
      }
      first = false;
    }
  });
  if (json) out << (first ? "]\n" : "\n]\n");
  out.flush();
  if (!status.ok()) return Fail(ctx, status);
  if (!out) return Fail(ctx, kExitFindings, "export: write failed");
  return kExitOk;
}

int RunStats(const Context& ctx) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto stats = db->ComputeStats(NowMs());
  if (!stats.ok()) return Fail(ctx, stats.status());
  const Stats& s = *stats;
  if (ctx.json) {
    PrintJson(StatsJson(s));
    return kExitOk;
  }
  std::cout << "Patients " << s.patients << ", studies " << s.studies << ", instances " << s.instances << " ("
            << s.pruned_instances << " files pruned)\n";
  std::cout << "Jobs:";
  for (const auto& [state, n] : s.jobs_by_state) std::cout << "  " << state << " " << n;
  std::cout << "\nReport deliveries:";
  for (const auto& [state, n] : s.reports_by_state) std::cout << "  " << state << " " << n;
  std::vector<double> hourly(s.scores_per_hour.begin(), s.scores_per_hour.end());
  std::cout << "\nScores per hour, last 24 h: " << Sparkline(hourly) << "  (mean " << FormatNumber(s.scores_per_hour_mean, 1)
            << ", last hour " << (s.scores_per_hour.empty() ? 0 : s.scores_per_hour.back()) << ")\n";
  std::cout << "Receipt -> score (" << Stats::kLatencyWindowDays << " days): " << PercentilesText(s.receipt_to_score) << '\n';
  std::cout << "Receipt -> report sent (" << Stats::kLatencyWindowDays
            << " days): " << PercentilesText(s.receipt_to_report_sent) << '\n';
  return kExitOk;
}

int RunVerify(const Context& ctx, const VerifyOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto check = db->QuickCheck();
  if (!check.ok()) return Fail(ctx, check.status());
  Json problems = Json::array();
  int64_t checked = 0;
  int64_t not_hashed_yet = 0;  // acknowledged before hashing; the node's hash worker catches up
  Status status = db->ForEachRecordedFile([&](const RecordedFile& f) {
    ++checked;
    if (f.sha256.empty()) ++not_hashed_yet;
    const std::string path = ctx.data_dir + "/" + f.file_path;
    std::string problem;
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) {
      problem = std::string("missing (") + std::strerror(errno) + ")";
    } else if (static_cast<uint64_t>(st.st_size) != f.file_size) {
      problem = "size " + std::to_string(st.st_size) + " != recorded " + std::to_string(f.file_size);
    } else if (opt.hash && !f.sha256.empty()) {
      auto sha = Sha256HexOfFile(path);
      if (!sha.ok()) {
        problem = "unreadable: " + sha.status().message();
      } else if (*sha != f.sha256) {
        problem = "sha256 " + *sha + " != recorded " + f.sha256;
      }
    }
    if (problem.empty()) return;
    problems.push_back({{"sop_instance_uid", f.sop_instance_uid}, {"file_path", f.file_path}, {"problem", problem}});
    if (!ctx.json) std::cout << "BAD  " << f.file_path << "  " << f.sop_instance_uid << ": " << problem << '\n';
  });
  if (!status.ok()) return Fail(ctx, status);
  const bool clean = problems.empty() && *check == "ok";
  if (ctx.json) {
    PrintJson(Json{{"database_check", *check}, {"files_checked", checked}, {"hashes_checked", opt.hash},
                   {"not_hashed_yet", not_hashed_yet}, {"problems", problems}, {"ok", clean}});
  } else {
    std::cout << "Database check: " << *check << "\nFiles checked: " << checked
              << (opt.hash ? " (size and SHA-256)" : " (size only)") << ", problems: " << problems.size() << '\n';
    if (not_hashed_yet > 0) {
      std::cout << "Not hashed yet (size checked only; pxsnode records the SHA-256 when idle): " << not_hashed_yet
                << '\n';
    }
  }
  return clean ? kExitOk : kExitFindings;
}

int RunPrune(const Context& ctx, const PruneOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, opt.apply ? Database::Mode::kReadWrite : Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  const int64_t now = NowMs();
  const int64_t cutoff = now - static_cast<int64_t>(opt.older_than_days) * 24 * 3600 * 1000;
  auto candidates = db->PruneCandidates(cutoff);
  if (!candidates.ok()) return Fail(ctx, candidates.status());
  uint64_t bytes = 0;
  for (const auto& c : *candidates) bytes += c.file_size;

  if (!opt.apply) {
    if (ctx.json) {
      Json files = Json::array();
      for (const auto& c : *candidates) files.push_back(c.file_path);
      PrintJson(Json{{"dry_run", true}, {"received_before", FormatTimeIso(cutoff)}, {"files", candidates->size()},
                     {"bytes", bytes}, {"paths", files}});
    } else {
      std::cout << "Dry run: " << candidates->size() << " file(s), " << FormatBytes(bytes) << ", received before "
                << FormatTimeShort(cutoff) << " would be deleted (results and embeddings are kept).\n";
      for (size_t i = 0; i < candidates->size() && i < 20; ++i) std::cout << "  " << (*candidates)[i].file_path << '\n';
      if (candidates->size() > 20) std::cout << "  ...\n";
      std::cout << "Run again with --apply to delete them.\n";
    }
    return kExitOk;
  }

  // Delete first, then mark: a crash in between leaves files already gone but not yet
  // marked, which the next prune run marks (ENOENT counts as deleted).
  std::vector<int64_t> deleted;
  Json errors = Json::array();
  uint64_t deleted_bytes = 0;
  // The node's file store owns the data folder's layout and removal.
  FileStore store(ctx.data_dir);
  for (const auto& c : *candidates) {
    if (Status removed = store.Remove(c.file_path); !removed.ok()) {
      errors.push_back({{"file_path", c.file_path}, {"error", removed.message()}});
      continue;
    }
    deleted.push_back(c.instance_id);
    deleted_bytes += c.file_size;
  }
  Status marked = db->MarkPruned(deleted, now);
  Json details{{"older_than_days", opt.older_than_days},
               {"received_before", FormatTimeIso(cutoff)},
               {"deleted", deleted.size()},
               {"bytes", deleted_bytes},
               {"errors", errors.size()}};
  if (!marked.ok()) details["mark_error"] = marked.ToString();
  Status audited = Audit(*db, "prune", details);
  if (!marked.ok()) return Fail(ctx, marked);
  if (!audited.ok()) return Fail(ctx, audited);
  if (ctx.json) {
    details["error_details"] = errors;
    PrintJson(details);
  } else {
    std::cout << "Deleted " << deleted.size() << " file(s), " << FormatBytes(deleted_bytes) << "; results kept.\n";
    for (const auto& e : errors) {
      std::cout << "FAILED  " << e["file_path"].get<std::string>() << ": " << e["error"].get<std::string>() << '\n';
    }
  }
  return errors.empty() ? kExitOk : kExitFindings;
}

int RunAudit(const Context& ctx, const AuditOptions& opt) {
  int rc = kExitOk;
  auto db = OpenOrReport(ctx, Database::Mode::kReadOnly, &rc);
  if (!db) return rc;
  auto entries = db->RecentAudit(opt.limit);
  if (!entries.ok()) return Fail(ctx, entries.status());
  if (ctx.json) {
    PrintJson(AuditJson(*entries));
    return kExitOk;
  }
  TextTable table({"WHEN", "USER", "ACTION", "DETAILS"});
  for (const auto& e : *entries) table.AddRow({FormatTimeShort(e.at_ms), e.unix_user, e.action, e.details});
  table.Print(std::cout);
  return kExitOk;
}

}  // namespace pxs::ctl
