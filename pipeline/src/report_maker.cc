#include "pxs/pipeline/report_maker.h"

#include "pxs/filestore/file_store.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <tuple>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <spdlog/spdlog.h>

#include "pxs/common/metrics.h"
#include "pxs/longitudinal/course.h"
#include "pxs/reports/sr_builder.h"
#include "pxs/reports/trend_sheet.h"
#include "pxs/scoring/model_info.h"
#include "pxs/scoring/scorer.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;

SrModelInfo ToSrModel(const scoring::ModelInfo& m) {
  SrModelInfo out;
  out.name = m.name;
  out.version = m.version;
  out.intended_use = m.intended_use;
  out.not_for_clinical_use = m.not_for_clinical_use;
  if (m.calibration) {
    out.calibration_scale = m.calibration->scale;
    out.calibration_unit = m.calibration->unit;
  }
  // The thresholds are read from the package's metadata by the longitudinal library,
  // the same reading `pxsctl` applies to the copy stored in the database (scoring's
  // ModelInfo does not know stable_delta_calibrated).
  out.trend = longitudinal::ModelTrendFromMetadata(m.metadata_json).value_or(longitudinal::ModelTrend{});
  if (m.finding) {
    out.finding_scheme = m.finding->scheme;
    out.finding_value = m.finding->value;
    out.finding_meaning = m.finding->meaning;
  }
  return out;
}

// A scored instance from the database as the SR's prior row. order: its position in
// PatientHistory, which lists scores by (study date, time, scored_at, score id), so it
// orders equal scoring times as the score id does (and indexes the history).
SrPriorStudy PriorOf(const StudyScore& s, int64_t order) {
  SrPriorStudy p;
  p.study_uid = s.study_uid;
  p.study_date = s.study_date;
  p.study_time = s.study_time;
  p.sop_instance_uid = s.sop_instance_uid;
  p.pxs = s.pxs;
  p.calibrated = s.calibrated;
  p.model_name = s.model_name;
  p.model_version = s.model_version;
  p.scored_at_ms = s.scored_at_ms;
  p.score_id = order;
  return p;
}

// Fills the SR's current value and priors from the patient's scored history by the
// longitudinal rule: the study's value (its latest score by this model), one value per
// earlier study (this model's where it scored the study, else the latest other model's,
// listed as not compared) and the Siamese change to the previous study of this model.
// Returns the SOP Instance UID of the image that stands for the study instead of the
// job's (scored after it: its own report, queued behind this one, carries the study).
std::optional<std::string> ApplyCourse(const std::vector<StudyScore>& history, const Job& job,
                                       const ScoreRecord& score, SrInput* in) {
  std::vector<SrPriorStudy> scores;
  std::vector<longitudinal::ScoredInstance> rows;
  for (size_t i = 0; i < history.size(); ++i) {
    scores.push_back(PriorOf(history[i], static_cast<int64_t>(i)));
    rows.push_back(ToScoredInstance(scores.back()));
  }
  const longitudinal::ModelId this_model{in->model.name, in->model.version};
  const auto courses = longitudinal::BuildCourses(rows, [&](const longitudinal::ModelId&) { return in->model.trend; });
  const longitudinal::Course* course = nullptr;
  for (const auto& c : courses) {
    if (c.model == this_model) course = &c;
  }
  const longitudinal::StudyPoint* point = course ? course->Find(job.study_uid) : nullptr;
  if (point && point->value.sop_instance_uid != job.sop_instance_uid) return point->value.sop_instance_uid;
  const std::vector<float>* embedding = &score.embedding;
  if (point) {
    // The same image, with its latest score if it was scored again: the SR says what
    // `pxsctl history` says.
    in->pxs = point->value.pxs;
    in->calibrated = point->value.calibrated;
    in->scored_at_ms = point->value.scored_at_ms;
    embedding = &history[static_cast<size_t>(point->value.score_id)].embedding;
  }
  std::map<std::string, const longitudinal::ScoredInstance*> value_of_study;
  for (const auto& c : courses) {
    for (const auto& p : c.studies) {
      if (p.value.study_uid == job.study_uid) continue;
      const longitudinal::ScoredInstance*& slot = value_of_study[p.value.study_uid];
      const bool replace = !slot || (!(slot->model == this_model) &&
                                     (c.model == this_model ||
                                      std::tie(p.value.scored_at_ms, p.value.score_id) >
                                          std::tie(slot->scored_at_ms, slot->score_id)));
      if (replace) slot = &p.value;
    }
  }
  const std::string previous_uid =
      point && point->previous ? course->studies[*point->previous].value.study_uid : std::string();
  for (const auto& [uid, value] : value_of_study) {
    SrPriorStudy p = scores[static_cast<size_t>(value->score_id)];
    if (uid == previous_uid && value->model == this_model) {
      p.siamese_change =
          scoring::EmbeddingDistance(*embedding, history[static_cast<size_t>(value->score_id)].embedding);
    }
    in->priors.push_back(std::move(p));
  }
  return std::nullopt;
}

// A stored observation as the reports' plain row. The time is written as a DICOM DT
// from the wall-clock ms (HL7 and FHIR texts differ; DT is what the SR's Observation
// DateTime takes), with the sender's UTC offset when it gave one.
ClinicalObservation ToClinical(const Observation& o) {
  ClinicalObservation c;
  c.loinc_code = o.loinc;
  c.display = o.display;
  c.value = o.value;
  c.unit = o.unit;
  const std::time_t secs = static_cast<std::time_t>(o.observed_at_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  c.observed_at = buf;
  if (const int64_t ms = o.observed_at_ms % 1000; ms > 0) {
    std::snprintf(buf, sizeof buf, ".%03d", static_cast<int>(ms));
    c.observed_at += buf;
  }
  if (o.utc_offset_min) {
    const int off = *o.utc_offset_min;
    std::snprintf(buf, sizeof buf, "%c%02d%02d", off < 0 ? '-' : '+', std::abs(off) / 60, std::abs(off) % 60);
    c.observed_at += buf;
  }
  return c;
}

// The node's Device Observer UID must stay the same across restarts (it identifies this
// installation in every SR), so it is generated once and kept in data_dir/node-uid.
std::string DeviceObserverUid(const std::string& data_dir) {
  fs::path file = fs::path(data_dir) / "node-uid";
  std::ifstream in(file);
  std::string uid;
  if (in && std::getline(in, uid) && !uid.empty()) return uid;
  char buf[100];
  dcmGenerateUniqueIdentifier(buf, SITE_INSTANCE_UID_ROOT);
  uid = buf;
  std::ofstream(file) << uid << "\n";
  return uid;
}

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "pxsnode";
  return buf;
}

}  // namespace

ReportMaker::ReportMaker(const ReportMakerOptions& options, Database* db, ModelLookup models,
                         std::function<void()> on_recorded)
    : options_(options), db_(db), models_(std::move(models)), on_recorded_(std::move(on_recorded)),
      device_observer_uid_(DeviceObserverUid(options.data_dir)),
      own_store_(options.file_store ? nullptr : std::make_unique<FileStore>(options.data_dir)),
      store_(options.file_store ? options.file_store : own_store_.get()) {}

ReportMaker::~ReportMaker() = default;

void ReportMaker::SetSendTo(const std::vector<std::string>& send_to) {
  std::lock_guard<std::mutex> lock(mu_);
  options_.send_to = send_to;
}

StatusOr<std::string> ReportMaker::MakeReport(const Job& job, const ScoreRecord& score) {
  std::string source = (fs::path(options_.data_dir) / job.file_path).string();

  std::shared_ptr<const scoring::ModelInfo> model = models_ ? models_(score.model_name, score.model_version) : nullptr;
  if (!model) {
    return Status::NotFound("model " + score.model_name + " " + score.model_version +
                            " is not loaded in this node; no SR for study " + job.study_uid);
  }
  SrInput in;
  in.source_image_path = source;
  in.model = ToSrModel(*model);
  in.tracking_identifier = model->name + " score";  // each model's own course (its tracking UID too)
  in.pxs = score.pxs;
  in.calibrated = score.calibrated;
  in.scored_at_ms = score.scored_at_ms;
  in.stable_delta_override = options_.stable_delta_override;

  // A patient without id is never linked to other studies: no priors.
  if (job.patient.has_id()) {
    auto history = db_->PatientHistory(job.patient);
    if (!history.ok()) return history.status();
    if (auto superseding = ApplyCourse(*history, job, score, &in)) {
      spdlog::info("report for study {}: image {} is superseded by the later-scored {}; no SR for it",
                   job.study_uid, job.sop_instance_uid, *superseding);
      return std::string();
    }
  }

  // Every plotted observation of the patient: the SR keeps the nearest per code to this
  // image, the trend sheet plots SpO2 across the whole course. An unreadable store only
  // leaves the context out (the score is the report's point), and says so.
  if (options_.observations && job.patient.has_id()) {
    auto observed = options_.observations->PatientObservations(job.patient, std::nullopt, std::nullopt,
                                                               /*plotted_only=*/true);
    if (observed.ok()) {
      for (const Observation& o : *observed) in.observations.push_back(ToClinical(o));
    } else {
      spdlog::warn("report for study {}: clinical observations not read, the SR goes without them: {}",
                   job.study_uid, observed.status().ToString());
    }
  }
  in.clinical_context_window_s = options_.clinical_window_s;

  auto previous = db_->LatestReport(job.study_uid, score.model_name);
  if (!previous.ok()) return previous.status();
  in.version = previous->has_value() ? (*previous)->version + 1 : 1;
  if (previous->has_value()) {
    SrPredecessor pred;
    pred.sop_instance_uid = (*previous)->sr_sop_instance_uid;
    pred.study_uid = job.study_uid;
    in.predecessor = pred;
  }
  in.node.software_version = options_.software_version;
  in.node.station_name = options_.ae_title;
  in.node.ae_title = options_.ae_title;
  in.node.device_observer_name = HostName();
  in.node.device_observer_uid = device_observer_uid_;

  // The SR is written to a temp file and placed durably (synced, linked, folder synced)
  // by the file store before the database records it, so a recorded report always has
  // its file, even after a power cut.
  const std::string rel = FileStore::ReportPath(job.study_uid, score.model_name, in.version);
  PXS_RETURN_IF_ERROR(store_->EnsureFolders());  // three stat()s; the data folder may be new
  const std::string temp = store_->NewTempPath();
  auto built = BuildStructuredReport(in, temp);
  if (!built.ok()) {
    store_->RemoveQuietly(temp);
    return built.status();
  }
  uint64_t size = 0;
  std::vector<std::string> dirs;
  // A file already at this version's name was never recorded (the database answers
  // LatestReport), so it is a crash's leftover and may be replaced.
  PXS_RETURN_IF_ERROR(store_->Place(temp, rel, /*replace_leftover=*/true, &size, &dirs));
  PXS_RETURN_IF_ERROR(store_->SyncDirectories(dirs));

  std::vector<std::string> destinations;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : options_.send_to) {
      if (name == "caller") {
        const std::string& caller = job.calling_ae;  // recorded at ingest
        if (caller.empty()) {
          spdlog::warn("report for study {}: the sending AE is unknown; SR kept, not sent to the caller", job.study_uid);
          continue;
        }
        destinations.push_back("caller:" + caller);
      } else {
        destinations.push_back(name);
      }
    }
  }
  Status recorded =
      db_->RecordReport(built->sop_instance_uid, job.study_uid, score.model_name, in.version, rel, destinations);
  if (!recorded.ok()) return recorded;
  metrics::Global().image_to_sr_seconds.ObserveSinceUnixMs(job.received_at_ms);
  if (options_.trend_sheet) MakeTrendSheet(in, job, score, rel, destinations);
  spdlog::info("report {} v{} for study {}: {} -> {} destination(s)", built->sop_instance_uid, in.version,
               job.study_uid, built->summary, destinations.size());
  if (on_recorded_) on_recorded_();
  return built->sop_instance_uid;
}

// The trend sheet of an SR version ([reports] trend_sheet): built from the SR's own
// input, placed durably beside the SR and queued to the same destinations as an outbox
// row of its own under the model name "trend-sheet:<model>" (so the model's SR chain,
// LatestReport, is not touched). It is recorded after the SR: a sheet that cannot be
// made is logged and leaves the SR as it is, since the SR is the report of record.
void ReportMaker::MakeTrendSheet(const SrInput& in, const Job& job, const ScoreRecord& score,
                                 const std::string& sr_rel, const std::vector<std::string>& destinations) {
  std::string rel = sr_rel;
  if (size_t at = rel.rfind("sr-v"); at != std::string::npos) rel.replace(at, 4, "sheet-v");
  const std::string temp = store_->NewTempPath();
  TrendSheetOptions sheet_options;
  sheet_options.nearest_window_s = options_.clinical_window_s;
  auto sheet = BuildTrendSheet(in, temp, sheet_options);
  if (!sheet.ok()) {
    store_->RemoveQuietly(temp);
    spdlog::error("trend sheet for study {} v{}: not made: {}", job.study_uid, in.version, sheet.status().ToString());
    return;
  }
  uint64_t size = 0;
  std::vector<std::string> dirs;
  Status placed = store_->Place(temp, rel, /*replace_leftover=*/true, &size, &dirs);
  if (placed.ok()) placed = store_->SyncDirectories(dirs);
  if (placed.ok()) {
    placed = db_->RecordReport(sheet->sop_instance_uid, job.study_uid, "trend-sheet:" + score.model_name, in.version,
                               rel, destinations);
  }
  if (!placed.ok()) {
    spdlog::error("trend sheet for study {} v{}: not recorded: {}", job.study_uid, in.version, placed.ToString());
    return;
  }
  spdlog::info("trend sheet {} v{} for study {}: {} studies, {} table rows -> {} destination(s)",
               sheet->sop_instance_uid, in.version, job.study_uid, sheet->studies_plotted, sheet->table_rows,
               destinations.size());
}

}  // namespace pxs
