#include "source_image.h"

#include <dcmtk/dcmdata/dcdeftag.h>

#include <limits>

#include "pxs/reports/dicom_text.h"
#include "pxs/reports/sr_builder.h"

namespace pxs {

namespace {
constexpr Uint32 kLoadedValueBytes = 4096;

}  // namespace

std::string GetString(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item->findAndGetOFStringArray(tag, v).bad()) return {};
  return v.c_str();
}

StatusOr<std::unique_ptr<SourceImage>> LoadSource(const std::string& path) {
  auto src = std::make_unique<SourceImage>();
  // Only the header is needed: values over 4 kB (Pixel Data) are left on disk.
  OFCondition cond = src->file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, kLoadedValueBytes);
  if (cond.bad()) return Status::Corrupt(path + ": cannot read as DICOM: " + cond.text());
  src->dataset = src->file.getDataset();
  // Every text the SR copies from the source (patient and study modules, image
  // library descriptors) is decoded from the source's declared character set to UTF-8
  // and cleaned for its VR by the same reader the SCP used for the database, so the SR
  // and the database say the same thing and our own UTF-8 text can sit beside it. Only
  // header values are loaded (Pixel Data stays on disk). What could not be decoded is
  // kept as %HH and reported, never copied as raw bytes (docs/conformance.md 6).
  src->text_problems = NormalizeTextToUtf8(*src->dataset, kLoadedValueBytes);
  DcmDataset* ds = src->dataset;
  src->study_uid = GetString(ds, DCM_StudyInstanceUID);
  src->study_date = GetString(ds, DCM_StudyDate);
  src->study_time = GetString(ds, DCM_StudyTime);
  src->sop_class_uid = GetString(ds, DCM_SOPClassUID);
  src->sop_instance_uid = GetString(ds, DCM_SOPInstanceUID);
  src->patient_id = GetString(ds, DCM_PatientID);
  src->issuer = GetString(ds, DCM_IssuerOfPatientID);
  src->modality = GetString(ds, DCM_Modality);
  if (src->study_uid.empty()) return Status::InvalidArgument(path + ": no StudyInstanceUID");
  if (src->sop_instance_uid.empty() || src->sop_class_uid.empty()) {
    return Status::InvalidArgument(path + ": no SOPClassUID/SOPInstanceUID");
  }
  return src;
}

longitudinal::ScoredInstance CurrentScoredInstance(const SrInput& in, const SourceImage& src) {
  longitudinal::ScoredInstance current;
  current.study_uid = src.study_uid;
  current.study_date = src.study_date;
  current.study_time = src.study_time;
  current.sop_instance_uid = src.sop_instance_uid;
  current.model = {in.model.name, in.model.version};
  current.pxs = in.pxs;
  current.calibrated = in.calibrated;
  current.scored_at_ms = in.scored_at_ms;
  current.score_id = std::numeric_limits<int64_t>::max();  // the newest score of this study
  return current;
}

longitudinal::CourseOptions CourseOptionsFor(const SrInput& in) {
  longitudinal::CourseOptions options;
  if (in.stable_delta_override >= 0) options.stable_delta_override = in.stable_delta_override;
  return options;
}

}  // namespace pxs
