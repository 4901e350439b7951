#include "pxs/reports/sr_reader.h"

#include "pxs/longitudinal/course.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmsr/codes/dcm.h>
#include <dcmtk/dcmsr/codes/umls.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <cmath>
#include <cstdlib>

#include "sr_codes.h"

namespace pxs {
namespace {

namespace codes = sr_codes;

bool Is(const DSRCodedEntryValue& a, const DSRCodedEntryValue& b) {
  return a.getCodeValue() == b.getCodeValue() && a.getCodingSchemeDesignator() == b.getCodingSchemeDesignator();
}

// The exact double when the SR has a Floating Point Value, else the DS text.
std::optional<double> NumberOf(const DSRContentItem& item) {
  const DSRNumericMeasurementValue& num = item.getNumericValue();
  Float64 exact = 0;
  if (num.getFloatingPointRepresentation(exact).good()) return exact;
  const OFString& text = num.getNumericValue();
  if (text.empty()) return std::nullopt;
  return std::strtod(text.c_str(), nullptr);
}

void ReadGroupChild(const DSRContentItem& item, SrMeasurementGroupContent& g) {
  const DSRCodedEntryValue& name = item.getConceptName();
  const std::string text = item.getStringValue().c_str();
  if (Is(name, CODE_DCM_TrackingIdentifier)) g.tracking_identifier = text;
  else if (Is(name, CODE_DCM_TrackingUniqueIdentifier)) g.tracking_uid = text;
  else if (Is(name, CODE_UMLS_TimePoint)) g.time_point = text;
  else if (Is(name, CODE_DCM_TimePointType)) g.time_point_type = item.getCodeValue().getCodeMeaning().c_str();
  else if (Is(name, CODE_DCM_TimePointOrder)) {
    if (auto v = NumberOf(item)) g.time_point_order = static_cast<int>(*v);
  } else if (Is(name, CODE_DCM_ProcedureStudyInstanceUID)) g.study_uid = text;
  else if (Is(name, codes::PxsScore())) g.pxs = NumberOf(item);
  else if (Is(name, codes::CalibratedPxs())) g.calibrated = NumberOf(item);
  else if (Is(name, codes::PxsChangeFromPrior())) g.pxs_change = NumberOf(item);
  else if (Is(name, codes::SiameseChangeScore())) g.siamese_change = NumberOf(item);
  else if (Is(name, codes::CalibratedChangeFromPrior())) g.calibrated_change = NumberOf(item);
  else if (Is(name, codes::StableChangeThreshold())) g.stable_delta = NumberOf(item);
  else if (Is(name, codes::CalibratedStableChangeThreshold())) g.stable_delta_calibrated = NumberOf(item);
  else if (Is(name, codes::SeverityBand())) g.severity_band = text;
  else if (Is(name, codes::PxsTrend())) {
    const DSRCodedEntryValue& v = item.getCodeValue();
    using longitudinal::Trend;
    if (Is(v, codes::TrendWorsened())) g.trend = longitudinal::TrendText(Trend::kWorse);
    else if (Is(v, codes::TrendImproved())) g.trend = longitudinal::TrendText(Trend::kBetter);
    else if (Is(v, codes::TrendStable())) g.trend = longitudinal::TrendText(Trend::kStable);
  } else if (Is(name, CODE_DCM_AlgorithmName)) g.algorithm_name = text;
  else if (Is(name, CODE_DCM_AlgorithmVersion)) g.algorithm_version = text;
  else if (Is(name, CODE_DCM_AlgorithmParameters)) g.algorithm_parameters.push_back(text);
  else if (Is(name, codes::NotCompared())) g.comparison_note = text;
}

}  // namespace

StatusOr<SrContent> ReadStructuredReport(const std::string& path) {
  DcmFileFormat file;
  OFCondition cond = file.loadFile(path.c_str());
  if (cond.bad()) return Status::Corrupt(path + ": cannot read as DICOM: " + cond.text());
  DSRDocument doc;
  cond = doc.read(*file.getDataset());
  if (cond.bad()) return Status::Corrupt(path + ": not a readable SR: " + cond.text());

  SrContent c;
  OFString v;
  doc.getSOPInstanceUID(v); c.sop_instance_uid = v.c_str();
  doc.getSeriesInstanceUID(v); c.series_uid = v.c_str();
  doc.getStudyInstanceUID(v); c.study_uid = v.c_str();
  doc.getPatientID(v); c.patient_id = v.c_str();
  c.completion_flag = DSRTypes::completionFlagToEnumeratedValue(doc.getCompletionFlag());
  c.verification_flag = DSRTypes::verificationFlagToEnumeratedValue(doc.getVerificationFlag());
  DSRSOPInstanceReferenceList& preds = doc.getPredecessorDocuments();
  if (preds.gotoFirstItem().good()) {
    do {
      OFString uid;
      preds.getSOPInstanceUID(uid);
      c.predecessor_sop_instance_uids.push_back(uid.c_str());
    } while (preds.gotoNextItem().good());
  }

  DSRDocumentTree& tree = doc.getTree();
  // Image references (the image library and sources of measurement), summary, intended use.
  for (size_t id = tree.gotoRoot(); id != 0; id = tree.iterate()) {
    const DSRContentItem& item = tree.getCurrentContentItem();
    if (item.getValueType() == DSRTypes::VT_Image) {
      const DSRImageReferenceValue& ref = item.getImageReference();
      std::string uid = ref.getSOPInstanceUID().c_str();
      bool seen = false;
      for (const auto& u : c.referenced_image_uids) seen = seen || u == uid;
      if (!seen) c.referenced_image_uids.push_back(uid);
    }
    const DSRCodedEntryValue& name = item.getConceptName();
    if (Is(name, codes::Summary())) c.summary = item.getStringValue().c_str();
    if (Is(name, codes::IntendedUse())) c.intended_use = item.getStringValue().c_str();
  }

  std::vector<size_t> groups;
  for (size_t id = tree.gotoNamedNode(CODE_DCM_MeasurementGroup); id != 0;
       id = tree.gotoNextNamedNode(CODE_DCM_MeasurementGroup)) {
    groups.push_back(id);
  }
  for (size_t group : groups) {
    SrMeasurementGroupContent g;
    tree.gotoNode(group);
    for (size_t id = tree.goDown(); id != 0; id = tree.gotoNext()) {
      ReadGroupChild(tree.getCurrentContentItem(), g);
    }
    c.groups.push_back(std::move(g));
  }
  if (tree.gotoNamedNode(CODE_DCM_ClinicalContext) != 0) {
    for (size_t id = tree.goDown(); id != 0; id = tree.gotoNext()) {
      const DSRContentItem& item = tree.getCurrentContentItem();
      if (item.getValueType() != DSRTypes::VT_Num) continue;
      ClinicalObservation o;
      o.loinc_code = item.getConceptName().getCodeValue().c_str();
      o.display = item.getConceptName().getCodeMeaning().c_str();
      o.value = NumberOf(item).value_or(std::nan(""));
      o.unit = item.getNumericValue().getMeasurementUnit().getCodeValue().c_str();
      o.observed_at = item.getObservationDateTime().c_str();
      c.clinical_context.push_back(std::move(o));
    }
  }
  if (c.groups.empty()) return Status::Corrupt(path + ": SR has no PXS measurement group");
  return c;
}

}  // namespace pxs
