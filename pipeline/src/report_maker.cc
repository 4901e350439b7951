#include "pxs/pipeline/report_maker.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <spdlog/spdlog.h>

#include "pxs/reports/sr_builder.h"
#include "pxs/scoring/model_info.h"
#include "pxs/scoring/scorer.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;

// The AE that sent an instance, as the SCP wrote it into the file meta information
// (Source Application Entity Title), for [reports] send_to = "caller".
std::string CallingAeOf(const std::string& path) {
  DcmFileFormat file;
  if (file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 256, ERM_metaOnly).bad()) return {};
  OFString ae;
  file.getMetaInfo()->findAndGetOFString(DCM_SourceApplicationEntityTitle, ae);
  std::string s(ae.c_str());
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

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
  out.trend.stable_delta = m.trend.stable_delta;
  for (const scoring::TrendBand& b : m.trend.bands) out.trend.bands.push_back({b.upper, b.label});
  return out;
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

ReportMaker::ReportMaker(const ReportMakerOptions& options, Database* db, const scoring::ModelInfo* model,
                         std::function<void()> on_recorded)
    : options_(options), db_(db), model_(model), on_recorded_(std::move(on_recorded)),
      device_observer_uid_(DeviceObserverUid(options.data_dir)) {}

void ReportMaker::SetSendTo(const std::vector<std::string>& send_to) {
  std::lock_guard<std::mutex> lock(mu_);
  options_.send_to = send_to;
}

StatusOr<std::string> ReportMaker::MakeReport(const Job& job, const ScoreRecord& score) {
  std::string source = (fs::path(options_.data_dir) / job.file_path).string();

  SrInput in;
  in.source_image_path = source;
  in.model = ToSrModel(*model_);
  in.pxs = score.pxs;
  in.calibrated = score.calibrated;
  in.stable_delta_override = options_.stable_delta_override;

  // Priors: the patient's other scored studies. The most recent one scored by this same
  // model gets the Siamese change (distance between the two embeddings).
  if (job.patient.has_id()) {
    auto history = db_->PatientHistory(job.patient);
    if (!history.ok()) return history.status();
    const StudyScore* latest_same_model = nullptr;
    auto later = [](const StudyScore& a, const StudyScore& b) {
      return std::tie(a.study_date, a.study_time, a.scored_at_ms) > std::tie(b.study_date, b.study_time, b.scored_at_ms);
    };
    // This study's own date/time: only studies before it are priors (a study sent late
    // is compared with what came before it, not with later ones).
    std::string this_date, this_time;
    for (const StudyScore& s : *history) {
      if (s.study_uid == job.study_uid) {
        this_date = s.study_date;
        this_time = s.study_time;
      }
    }
    auto before_this = [&](const StudyScore& s) {
      if (this_date.empty() || s.study_date.empty()) return s.scored_at_ms < score.scored_at_ms;
      return std::tie(s.study_date, s.study_time) < std::tie(this_date, this_time);
    };
    // PatientHistory returns every scored instance; keep one (the latest scored) per study.
    std::map<std::string, const StudyScore*> per_study;
    for (const StudyScore& s : *history) {
      if (s.study_uid == job.study_uid || !before_this(s)) continue;
      auto& slot = per_study[s.study_uid];
      if (!slot || s.scored_at_ms > slot->scored_at_ms) slot = &s;
    }
    for (const auto& [uid, s] : per_study) {
      if (s->model_name == model_->name && s->model_version == model_->version &&
          (!latest_same_model || later(*s, *latest_same_model))) {
        latest_same_model = s;
      }
    }
    for (const auto& [uid, s] : per_study) {
      SrPriorStudy p;
      p.study_uid = s->study_uid;
      p.study_date = s->study_date;
      p.study_time = s->study_time;
      p.sop_instance_uid = s->sop_instance_uid;
      p.pxs = s->pxs;
      p.calibrated = s->calibrated;
      p.model_name = s->model_name;
      p.model_version = s->model_version;
      if (s == latest_same_model) p.siamese_change = scoring::EmbeddingDistance(score.embedding, s->embedding);
      in.priors.push_back(std::move(p));
    }
  }

  auto previous = db_->LatestReport(job.study_uid);
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

  fs::path rel = fs::path("reports") / job.study_uid / ("sr-v" + std::to_string(in.version) + ".dcm");
  fs::path out = fs::path(options_.data_dir) / rel;
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  if (ec) return Status::IoError("cannot create " + out.parent_path().string() + ": " + ec.message());
  auto built = BuildStructuredReport(in, out.string());
  if (!built.ok()) return built.status();

  std::vector<std::string> destinations;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : options_.send_to) {
      if (name == "caller") {
        std::string caller = CallingAeOf(source);
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
  Status recorded = db_->RecordReport(built->sop_instance_uid, job.study_uid, in.version, rel.string(), destinations);
  if (!recorded.ok()) return recorded;
  spdlog::info("report {} v{} for study {}: {} -> {} destination(s)", built->sop_instance_uid, in.version,
               job.study_uid, built->summary, destinations.size());
  if (on_recorded_) on_recorded_();
  return built->sop_instance_uid;
}

}  // namespace pxs
