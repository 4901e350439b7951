// BuildStructuredReport(): DCMTK's cmr classes make the TID 1500 skeleton (observer,
// procedure, image library, TID 1501 groups with their TID 300 measurements and
// qualitative evaluations); what DCMTK 3.6.7 has no class for (the rest of TID 1502,
// TID 4019 inside TID 1501, the study of each group) is added afterwards through the
// generic document tree API. docs/sr-content.md shows the resulting tree.
#include "pxs/reports/sr_builder.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmsr/cmr/tid1500.h>
#include <dcmtk/dcmsr/codes/dcm.h>
#include <dcmtk/dcmsr/codes/umls.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

#include "pxs/reports/dicom_text.h"
#include "source_image.h"
#include "sr_codes.h"
#include "sr_uids.h"

namespace pxs {
namespace {

namespace codes = sr_codes;
using Measurements = TID1500_MeasurementReport::TID1501_Measurements;

// A fixed series number so that PACS lists the node's SRs together in every study.
constexpr const char* kSrSeriesNumber = "9901";

Status DcmtkError(const std::string& what, const OFCondition& cond) {
  return Status::Internal("SR: " + what + ": " + cond.text());
}

#define PXS_DCMTK_CHECK(what, expr)                  \
  do {                                               \
    OFCondition pxs_cond__ = (expr);                 \
    if (pxs_cond__.bad()) return DcmtkError(what, pxs_cond__); \
  } while (0)

// NUM values: DS text with 10 significant digits (fits the 16 characters of DS) plus
// the exact double in Floating Point Value, so a reader gets the very number back.
std::string FormatDecimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string FormatOneDecimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string FormatSignedOneDecimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f", v);
  return buf;
}

// YYYYMMDD -> YYYY-MM-DD for text; anything else as given.
std::string IsoDate(const std::string& da) {
  if (da.size() == 8 && std::all_of(da.begin(), da.end(), ::isdigit)) {
    return da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2);
  }
  return da.empty() ? std::string("date unknown") : da;
}

Measurements::MeasurementValue NumericValue(double v, const DSRCodedEntryValue& unit) {
  Measurements::MeasurementValue value(FormatDecimal(v).c_str(),
                                       CID7181_AbstractMultiDimensionalImageModelComponentUnits(unit));
  value.setFloatingPointRepresentation(v);
  return value;
}

// The priors to list, oldest first, and the comparison with the previous study, both
// by the longitudinal rule (pxs/longitudinal/course.h): this builder only renders them.
struct PriorPlan {
  std::vector<const SrPriorStudy*> sorted;  // dated strictly before this study
  const SrPriorStudy* compared = nullptr;   // the previous study of the same model
  longitudinal::Comparison comparison;
  longitudinal::ModelTrend trend;           // thresholds in force (override applied)
  std::string band;
  size_t later_studies_left_out = 0;
};

bool SameModel(const SrPriorStudy& p, const SrModelInfo& m) {
  return p.model_name == m.name && p.model_version == m.version;
}

PriorPlan PlanPriors(const SrInput& in, const SourceImage& src) {
  PriorPlan plan;
  const longitudinal::ScoredInstance current = CurrentScoredInstance(in, src);
  std::vector<longitudinal::ScoredInstance> rows = {current};
  const std::string current_time =
      longitudinal::StudyTimeKey(src.study_date, src.study_time, in.scored_at_ms);
  for (const auto& p : in.priors) {
    if (p.study_uid == src.study_uid) continue;  // this study itself is not its own prior
    if (longitudinal::StudyTimeKey(p.study_date, p.study_time, p.scored_at_ms) < current_time) {
      plan.sorted.push_back(&p);
    } else {
      ++plan.later_studies_left_out;
    }
    if (SameModel(p, in.model)) rows.push_back(ToScoredInstance(p));
  }
  std::stable_sort(plan.sorted.begin(), plan.sorted.end(), [](auto* a, auto* b) {
    return longitudinal::StudyTimeKey(a->study_date, a->study_time, a->scored_at_ms) <
           longitudinal::StudyTimeKey(b->study_date, b->study_time, b->scored_at_ms);
  });
  const auto courses = longitudinal::BuildCourses(
      rows, [&](const longitudinal::ModelId&) { return in.model.trend; }, CourseOptionsFor(in));
  const longitudinal::Course& course = courses.front();  // rows hold this model only
  plan.trend = course.trend;
  const longitudinal::StudyPoint* point = course.Find(src.study_uid);
  plan.band = point->band;
  if (point->previous) {
    const std::string& previous_uid = course.studies[*point->previous].value.study_uid;
    for (const SrPriorStudy* p : plan.sorted) {
      if (p->study_uid == previous_uid && SameModel(*p, in.model)) plan.compared = p;
    }
    plan.comparison = point->comparison;
  }
  return plan;
}

std::string BuildSummary(const SrInput& in, const PriorPlan& plan) {
  const bool calibrated = in.calibrated && !in.model.calibration_scale.empty();
  std::string s = "PXS " + FormatOneDecimal(in.pxs);
  if (calibrated) s += " [" + in.model.calibration_scale + " " + FormatOneDecimal(*in.calibrated) + "]";
  s += " (";
  if (!plan.band.empty()) s += plan.band + "; ";
  if (plan.compared) {
    s += "prior " + IsoDate(plan.compared->study_date) + ": " + FormatOneDecimal(plan.compared->pxs) + "; " +
         FormatSignedOneDecimal(*plan.comparison.change);
    if (calibrated && plan.comparison.calibrated_change) {
      s += " [" + in.model.calibration_scale + " " + FormatSignedOneDecimal(*plan.comparison.calibrated_change) + "]";
    }
    s += ", " + std::string(longitudinal::TrendText(plan.comparison.trend)) + ")";
  } else if (plan.sorted.empty()) {
    s += "baseline, no prior)";
  } else {
    s += "no prior scored with this model version)";
  }
  if (in.model.not_for_clinical_use) s += " NOT FOR CLINICAL USE";
  return s;
}

// The SR's coded concept for each trend of the longitudinal vocabulary; "not compared"
// has none (the SR then carries no trend row).
std::optional<DSRCodedEntryValue> TrendCode(longitudinal::Trend t) {
  switch (t) {
    case longitudinal::Trend::kWorse: return codes::TrendWorsened();
    case longitudinal::Trend::kBetter: return codes::TrendImproved();
    case longitudinal::Trend::kStable: return codes::TrendStable();
    case longitudinal::Trend::kNotCompared: break;
  }
  return std::nullopt;
}

// What one measurement group (one time point) says.
struct GroupSpec {
  std::string time_point_text;  // Time Point (TID 1502 row 1)
  int order = 1;
  std::string study_uid, study_date;
  double pxs = 0;
  std::optional<double> calibrated;
  std::string image_class, image_instance;  // source of measurement, when known
  std::string model_name, model_version;
  std::string not_compared_reason;
};

// The unit of the model's calibrated scale (UCUM), {score} when it names none.
DSRCodedEntryValue CalibratedUnit(const SrModelInfo& model) {
  if (model.calibration_unit.empty()) return codes::ScoreUnit();
  return DSRCodedEntryValue(model.calibration_unit.c_str(), "UCUM", model.calibration_unit.c_str());
}

Status FillGroup(Measurements& g, const SrInput& in, const GroupSpec& spec,
                 const std::string& tracking_uid) {
  PXS_DCMTK_CHECK("tracking identifier", g.setTrackingIdentifier(in.tracking_identifier.c_str()));
  PXS_DCMTK_CHECK("tracking UID", g.setTrackingUniqueIdentifier(tracking_uid.c_str()));
  PXS_DCMTK_CHECK("time point", g.setTimePoint(spec.time_point_text.c_str()));
  if (!in.model.finding_scheme.empty()) {
    PXS_DCMTK_CHECK("finding", g.setFinding(DSRCodedEntryValue(in.model.finding_value.c_str(),
                                                               in.model.finding_scheme.c_str(),
                                                               in.model.finding_meaning.c_str())));
  }
  PXS_DCMTK_CHECK("PXS measurement",
                  g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(codes::PxsScore()),
                                   NumericValue(spec.pxs, codes::ScoreUnit())));
  if (!spec.image_instance.empty()) {
    PXS_DCMTK_CHECK("source of measurement",
                    g.getMeasurement().addImage(CODE_DCM_SourceOfMeasurement,
                                                DSRImageReferenceValue(spec.image_class.c_str(),
                                                                       spec.image_instance.c_str())));
  }
  if (spec.calibrated) {
    PXS_DCMTK_CHECK("calibrated measurement",
                    g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(codes::CalibratedPxs()),
                                     NumericValue(*spec.calibrated, CalibratedUnit(in.model))));
  }
  if (!spec.not_compared_reason.empty()) {
    PXS_DCMTK_CHECK("not-compared note",
                    g.addQualitativeEvaluation(codes::NotCompared(), spec.not_compared_reason.c_str()));
  }
  return Status::Ok();
}

// Adds one item after the tree's current node (on the same level); the cursor moves
// to it, so successive calls keep the given order.
template <typename SetValue>
Status AddNext(DSRDocumentTree& tree, DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type,
               const DSRCodedEntryValue& concept_name, SetValue set_value) {
  PXS_DCMTK_CHECK(std::string("add ") + concept_name.getCodeMeaning().c_str(),
                  tree.addContentItem(rel, type, concept_name));
  PXS_DCMTK_CHECK(std::string("value of ") + concept_name.getCodeMeaning().c_str(),
                  set_value(tree.getCurrentContentItem()));
  return Status::Ok();
}

Status AddText(DSRDocumentTree& tree, DSRTypes::E_RelationshipType rel,
               const DSRCodedEntryValue& concept_name, const std::string& text) {
  return AddNext(tree, rel, DSRTypes::VT_Text, concept_name,
                 [&](DSRContentItem& item) { return item.setStringValue(text.c_str()); });
}

// The rows DCMTK has no class for, added to one TID 1501 group right after its Time
// Point (so all observation context precedes the measurements, as in TID 1501): the
// rest of TID 1502, the study the values come from, TID 4019 algorithm identification.
Status ExtendGroup(DSRDocumentTree& tree, size_t group, const GroupSpec& spec,
                   const std::string& parameters) {
  const auto obs = DSRTypes::RT_hasObsContext;
  const auto mod = DSRTypes::RT_hasConceptMod;
  if (tree.gotoNode(group) == 0 || tree.gotoNamedChildNode(CODE_UMLS_TimePoint) == 0) {
    return Status::Internal("SR: measurement group " + std::to_string(group) + " has no Time Point");
  }
  PXS_RETURN_IF_ERROR(AddNext(tree, obs, DSRTypes::VT_Code, CODE_DCM_TimePointType,
                              [&](DSRContentItem& item) {
                                return item.setCodeValue(spec.order == 1 ? DSRCodedEntryValue(CODE_UMLS_Baseline)
                                                                         : codes::TimePointFollowUp());
                              }));
  PXS_RETURN_IF_ERROR(AddNext(tree, obs, DSRTypes::VT_Num, CODE_DCM_TimePointOrder,
                              [&](DSRContentItem& item) {
                                return item.setNumericValue(DSRNumericMeasurementValue(
                                    std::to_string(spec.order).c_str(), codes::NoUnit()));
                              }));
  PXS_RETURN_IF_ERROR(AddText(tree, obs, CODE_DCM_SubjectTimePointIdentifier,
                              "TP" + std::to_string(spec.order)));
  PXS_RETURN_IF_ERROR(AddNext(tree, obs, DSRTypes::VT_UIDRef, CODE_DCM_ProcedureStudyInstanceUID,
                              [&](DSRContentItem& item) {
                                return item.setStringValue(spec.study_uid.c_str());
                              }));
  if (!spec.study_date.empty()) {
    PXS_RETURN_IF_ERROR(AddNext(tree, obs, DSRTypes::VT_Date, CODE_DCM_StudyDate,
                                [&](DSRContentItem& item) {
                                  return item.setStringValue(spec.study_date.c_str());
                                }));
  }
  PXS_RETURN_IF_ERROR(AddText(tree, mod, CODE_DCM_AlgorithmName, spec.model_name));
  PXS_RETURN_IF_ERROR(AddText(tree, mod, CODE_DCM_AlgorithmVersion, spec.model_version));
  if (!parameters.empty()) {
    PXS_RETURN_IF_ERROR(AddText(tree, mod, CODE_DCM_AlgorithmParameters, parameters));
  }
  return Status::Ok();
}

std::string ThresholdParameters(const TrendThresholds& t) {
  std::string s = "stable_delta=" + FormatDecimal(t.stable_delta);
  if (t.stable_delta_calibrated) s += "; stable_delta_calibrated=" + FormatDecimal(*t.stable_delta_calibrated);
  if (!t.bands.empty()) {
    s += "; bands:";
    for (const auto& b : t.bands) {
      s += " " + b.label + (b.upper ? " <" + FormatDecimal(*b.upper) : std::string(" above")) + ",";
    }
    s.pop_back();
  }
  return s;
}

// Only writes the file: making it durable (sync, placement, folder sync) is the file
// store's job, which the report maker calls with the written temp file.
Status WriteFile(DcmFileFormat& file, const std::string& output_path) {
  OFCondition cond = file.saveFile(output_path.c_str(), EXS_LittleEndianExplicit);
  if (cond.bad()) {
    std::remove(output_path.c_str());
    return Status::IoError(output_path + ": cannot write SR: " + cond.text());
  }
  return Status::Ok();
}

// The unit of an observation as a UCUM code: the sender's text where it is one, the
// few non-UCUM spellings HL7 feeds commonly use mapped to it; empty: "1" (no unit).
// nullopt: too long for a Code Value (SH, 16), so the item is left out.
std::optional<DSRCodedEntryValue> UcumUnit(const std::string& unit) {
  // Only spellings that mean one thing whatever the code ("C" could be coulomb).
  static const std::pair<const char*, const char*> kSpellings[] = {
      {"bpm", "/min"},   {"beats/min", "/min"}, {"breaths/min", "/min"}, {"\xC2\xB0""C", "Cel"},
      {"degC", "Cel"},   {"l/min", "L/min"},    {"lpm", "L/min"},        {"mg/l", "mg/L"},
      {"mg/dl", "mg/dL"}, {"u/l", "U/L"}};
  if (unit.empty()) return codes::NoUnit();
  std::string code = unit;
  for (const auto& [from, to] : kSpellings) {
    if (unit == from) code = to;
  }
  if (code.size() > 16 || !IsPlainAscii(code)) return std::nullopt;
  return DSRCodedEntryValue(code.c_str(), "UCUM", code.c_str());
}

// A code meaning (LO: 64 characters) from the sender's display text, read as the SR
// reads every text (UTF-8 checked, control characters escaped).
std::string CodeMeaning(const ClinicalObservation& o) {
  std::string text = DicomTextReader("ISO_IR 192").Decode(o.display, "LO").utf8;
  if (text.empty()) text = o.loinc_code;
  size_t chars = 0, i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) >> 6) != 0x2 && ++chars > 64) break;
  }
  return text.substr(0, i);
}

// The clinical context of the image (docs/sr-content.md "Clinical context"): a
// CONTAINER (DCM 122127 "Clinical Context") as the last child of the TID 1500 root
// (the template is extensible), one NUM per LOINC code with its UCUM unit and its own
// Observation DateTime (0040,A032): when the value was measured, not when the SR was
// made.
Status AddClinicalContext(DSRDocumentTree& tree, const SrInput& in, const SourceImage& src, SrResult* result) {
  const std::optional<double> at = StudyClockSeconds(src.study_date, src.study_time, in.scored_at_ms);
  if (!at || in.observations.empty()) return Status::Ok();
  const std::vector<ClinicalObservation> context =
      ClinicalContextAt(in.observations, *at, in.clinical_context_window_s, &result->observations_skipped);
  struct Item {
    const ClinicalObservation* o;
    DSRCodedEntryValue unit;
  };
  std::vector<Item> items;
  for (const ClinicalObservation& o : context) {
    if (auto unit = UcumUnit(o.unit)) {
      items.push_back({&o, *unit});
    } else {
      ++result->observations_skipped;
    }
  }
  if (items.empty()) return Status::Ok();
  if (tree.gotoRoot() == 0 || tree.goDown() == 0) return Status::Internal("SR: the document tree has no root content");
  while (tree.gotoNext() != 0) {
  }
  PXS_DCMTK_CHECK("clinical context container",
                  tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_ClinicalContext));
  auto mode = DSRTypes::AM_belowCurrent;
  for (const Item& item : items) {
    const ClinicalObservation& o = *item.o;
    const DSRCodedEntryValue name(o.loinc_code.c_str(), "LN", CodeMeaning(o).c_str());
    // The overload with a concept name only adds after the current item; the first
    // NUM goes below the container.
    if (tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Num, mode) == 0) {
      return Status::Internal("SR: cannot add clinical item " + o.loinc_code);
    }
    mode = DSRTypes::AM_afterCurrent;
    DSRNumericMeasurementValue value(FormatDecimal(o.value).c_str(), item.unit);
    value.setFloatingPointRepresentation(o.value);
    DSRContentItem& current = tree.getCurrentContentItem();
    PXS_DCMTK_CHECK("concept of " + o.loinc_code, current.setConceptName(name));
    PXS_DCMTK_CHECK("value of " + o.loinc_code, current.setNumericValue(value));
    PXS_DCMTK_CHECK("observation time of " + o.loinc_code, current.setObservationDateTime(o.observed_at.c_str()));
    ++result->clinical_items;
  }
  return Status::Ok();
}

}  // namespace

longitudinal::ScoredInstance ToScoredInstance(const SrPriorStudy& p) {
  longitudinal::ScoredInstance r;
  r.study_uid = p.study_uid;
  r.study_date = p.study_date;
  r.study_time = p.study_time;
  r.sop_instance_uid = p.sop_instance_uid;
  r.model = {p.model_name, p.model_version};
  r.pxs = p.pxs;
  r.calibrated = p.calibrated;
  r.scored_at_ms = p.scored_at_ms;
  r.score_id = p.score_id;
  return r;
}

std::string SrSeriesUidForStudy(const std::string& study_uid) {
  return UidFromName("PXS\\SR series\\" + study_uid);
}

std::string TrackingUidForPatient(const std::string& patient_id, const std::string& issuer,
                                  const std::string& model_name) {
  // Separators keep ("AB","C") and ("A","BC") apart. Each model tracks its own course, so
  // its name is part of the UID ("" is the one-model era's UID).
  if (model_name.empty()) return UidFromName("PXS\\" + issuer + "\\" + patient_id);
  return UidFromName("PXS\\" + model_name + "\\" + issuer + "\\" + patient_id);
}

// Numbers that cannot be written as DS (NaN, infinity) are refused up front, naming
// which one, rather than producing an SR a PACS would reject.
Status CheckFinite(const SrInput& in) {
  auto bad = [&](const std::string& what) {
    return Status::InvalidArgument(in.source_image_path + ": " + what + " is not a finite number");
  };
  if (!std::isfinite(in.pxs)) return bad("PXS");
  if (in.calibrated && !std::isfinite(*in.calibrated)) return bad("calibrated PXS");
  for (const auto& p : in.priors) {
    if (!std::isfinite(p.pxs)) return bad("PXS of prior study " + p.study_uid);
    if (p.calibrated && !std::isfinite(*p.calibrated)) return bad("calibrated PXS of prior study " + p.study_uid);
    if (p.siamese_change && !std::isfinite(*p.siamese_change)) return bad("Siamese change to " + p.study_uid);
  }
  return Status::Ok();
}

StatusOr<SrResult> BuildStructuredReport(const SrInput& in, const std::string& output_path) {
  PXS_RETURN_IF_ERROR(CheckFinite(in));
  auto loaded = LoadSource(in.source_image_path);
  if (!loaded.ok()) return loaded.status();
  SourceImage& src = **loaded;
  const PriorPlan plan = PlanPriors(in, src);
  const int order = in.time_point_order > 0 ? in.time_point_order
                                            : static_cast<int>(plan.sorted.size()) + 1;
  std::string tracking_uid = in.tracking_uid;
  if (tracking_uid.empty()) {
    tracking_uid = src.patient_id.empty() ? UidFromName("PXS\\study\\" + src.study_uid)
                                          : TrackingUidForPatient(src.patient_id, src.issuer, in.model.name);
  }
  const std::string where = in.source_image_path + ": ";

  // --- TID 1500 skeleton with DCMTK's cmr classes ---
  TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
  PXS_DCMTK_CHECK("language", report.setLanguage(CID5000_Languages::English));
  PXS_DCMTK_CHECK("device observer",
                  report.getObservationContext().addDeviceObserver(
                      in.node.device_observer_uid.c_str(), in.node.device_observer_name.c_str(),
                      in.node.manufacturer.c_str(), in.node.model_name.c_str(),
                      in.node.device_serial_number.c_str(), "",
                      TID1001_ObservationContext::DeviceParticipatingRolesList(), in.node.ae_title.c_str()));
  PXS_DCMTK_CHECK("procedure reported",
                  report.addProcedureReported(CID100_QuantitativeDiagnosticImagingProcedures(
                      codes::ChestRadiograph())));

  // Image library: the scored image(s), with descriptors from the source header.
  std::vector<SrScoredImage> images = in.scored_images;
  if (images.empty()) images.push_back({src.sop_class_uid, src.sop_instance_uid, ""});
  PXS_DCMTK_CHECK("image library", report.getImageLibrary().createNewImageLibrary());
  PXS_DCMTK_CHECK("image library group", report.getImageLibrary().addImageGroup());
  for (const auto& image : images) {
    if (image.sop_instance_uid == src.sop_instance_uid) {
      PXS_DCMTK_CHECK("image library entry",
                      report.getImageLibrary().addImageEntry(*src.dataset,
                                                             TID1600_ImageLibrary::withAllDescriptors));
    } else {
      DcmItem ref;
      ref.putAndInsertString(DCM_SOPClassUID, image.sop_class_uid.c_str());
      ref.putAndInsertString(DCM_SOPInstanceUID, image.sop_instance_uid.c_str());
      ref.putAndInsertString(DCM_Modality, src.modality.c_str());
      PXS_DCMTK_CHECK("image library entry",
                      report.getImageLibrary().addImageEntry(ref, TID1600_ImageLibrary::withoutDescriptors));
    }
  }

  // Measurement group of this study, then one per prior (oldest first), all with the
  // same tracking UID so a viewer can line the time points up.
  std::vector<GroupSpec> specs;
  GroupSpec current;
  current.time_point_text = IsoDate(src.study_date);
  current.order = order;
  current.study_uid = src.study_uid;
  current.study_date = src.study_date;
  current.pxs = in.pxs;
  current.calibrated = in.calibrated;
  current.image_class = images.front().sop_class_uid;
  current.image_instance = images.front().sop_instance_uid;
  current.model_name = in.model.name;
  current.model_version = in.model.version;
  specs.push_back(current);
  for (size_t i = 0; i < plan.sorted.size(); ++i) {
    const SrPriorStudy& p = *plan.sorted[i];
    GroupSpec g;
    g.time_point_text = IsoDate(p.study_date);
    g.order = static_cast<int>(i) + 1;
    g.study_uid = p.study_uid;
    g.study_date = p.study_date;
    g.pxs = p.pxs;
    g.calibrated = (p.model_name == in.model.name && p.model_version == in.model.version)
                       ? p.calibrated : std::nullopt;
    g.model_name = p.model_name;
    g.model_version = p.model_version;
    if (p.model_name != in.model.name || p.model_version != in.model.version) {
      g.not_compared_reason = "scored by model " + p.model_name + " " + p.model_version +
                              ", this study by " + in.model.name + " " + in.model.version +
                              ": values are not comparable";
    }
    specs.push_back(g);
  }

  for (size_t i = 0; i < specs.size(); ++i) {
    if (i > 0) PXS_DCMTK_CHECK("measurement group", report.addIndividualMeasurements());
    Measurements& g = report.getIndividualMeasurements();
    PXS_RETURN_IF_ERROR(FillGroup(g, in, specs[i], tracking_uid));
    if (i != 0) continue;
    // The current group also carries the comparison with the previous study.
    PXS_DCMTK_CHECK("stable threshold",
                    g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(codes::StableChangeThreshold()),
                                     NumericValue(plan.trend.stable_delta, codes::ScoreUnit())));
    if (plan.compared) {
      const longitudinal::Comparison& cmp = plan.comparison;
      if (cmp.on_calibrated_scale) {
        PXS_DCMTK_CHECK("calibrated stable threshold",
                        g.addMeasurement(
                            CID7469_GenericIntensityAndSizeMeasurements(codes::CalibratedStableChangeThreshold()),
                            NumericValue(cmp.stable_delta_used, CalibratedUnit(in.model))));
      }
      PXS_DCMTK_CHECK("PXS change",
                      g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(codes::PxsChangeFromPrior()),
                                       NumericValue(*cmp.change, codes::ScoreUnit())));
      if (cmp.calibrated_change && !in.model.calibration_scale.empty()) {
        PXS_DCMTK_CHECK("calibrated change",
                        g.addMeasurement(
                            CID7469_GenericIntensityAndSizeMeasurements(codes::CalibratedChangeFromPrior()),
                            NumericValue(*cmp.calibrated_change, CalibratedUnit(in.model))));
      }
      if (plan.compared->siamese_change) {
        PXS_DCMTK_CHECK("Siamese change",
                        g.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(codes::SiameseChangeScore()),
                                         NumericValue(*plan.compared->siamese_change, codes::NoUnit())));
      }
      if (auto code = TrendCode(cmp.trend)) {
        PXS_DCMTK_CHECK("trend", g.addQualitativeEvaluation(codes::PxsTrend(), *code));
      }
    }
    if (!plan.band.empty()) {
      PXS_DCMTK_CHECK("severity band", g.addQualitativeEvaluation(codes::SeverityBand(), plan.band.c_str()));
    }
  }

  const std::string summary = BuildSummary(in, plan);
  PXS_DCMTK_CHECK("summary", report.addQualitativeEvaluation(codes::Summary(), summary.c_str()));
  if (!in.model.intended_use.empty()) {
    PXS_DCMTK_CHECK("intended use",
                    report.addQualitativeEvaluation(codes::IntendedUse(), in.model.intended_use.c_str()));
  }
  if (in.model.not_for_clinical_use) {
    PXS_DCMTK_CHECK("clinical use restriction",
                    report.addQualitativeEvaluation(
                        codes::ClinicalUseRestriction(),
                        "NOT FOR CLINICAL USE: research result of an unvalidated model; do not "
                        "base diagnosis or treatment on it."));
  }

  // --- the document ---
  // The document type follows the TID 1500 root template: Enhanced SR (by-value
  // relationships only, no 3D coordinates), which everything here fits.
  DSRDocument doc;
  PXS_DCMTK_CHECK("patient/study modules from " + in.source_image_path, doc.readStudyData(*src.dataset));
  doc.createNewSeries();
  PXS_DCMTK_CHECK("TID 1500 tree", doc.setTreeFromRootTemplate(report, OFTrue /*expand*/));

  // Rows beyond DCMTK's classes, group by group (groups are in the order created).
  DSRDocumentTree& tree = doc.getTree();
  std::vector<size_t> group_nodes;
  for (size_t id = tree.gotoNamedNode(CODE_DCM_MeasurementGroup); id != 0;
       id = tree.gotoNextNamedNode(CODE_DCM_MeasurementGroup)) {
    group_nodes.push_back(id);
  }
  if (group_nodes.size() != specs.size()) {
    return Status::Internal(where + "SR tree has " + std::to_string(group_nodes.size()) +
                            " measurement groups, expected " + std::to_string(specs.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string params;
    if (i == 0) {
      params = ThresholdParameters(plan.trend);
      if (!in.model.calibration_scale.empty()) params += "; calibration=" + in.model.calibration_scale;
    }
    PXS_RETURN_IF_ERROR(ExtendGroup(tree, group_nodes[i], specs[i], params));
  }

  SrResult result;
  PXS_RETURN_IF_ERROR(AddClinicalContext(tree, in, src, &result));

  PXS_DCMTK_CHECK("manufacturer", doc.setManufacturer(in.node.manufacturer.c_str()));
  PXS_DCMTK_CHECK("model name", doc.setManufacturerModelName(in.node.model_name.c_str()));
  if (!in.node.software_version.empty()) {
    PXS_DCMTK_CHECK("software version", doc.setSoftwareVersions(in.node.software_version.c_str()));
  }
  if (!in.node.device_serial_number.empty()) {
    PXS_DCMTK_CHECK("serial number", doc.setDeviceSerialNumber(in.node.device_serial_number.c_str()));
  }
  PXS_DCMTK_CHECK("series description", doc.setSeriesDescription("PXS AI result"));
  PXS_DCMTK_CHECK("series number", doc.setSeriesNumber(kSrSeriesNumber));
  PXS_DCMTK_CHECK("instance number", doc.setInstanceNumber(std::to_string(std::max(1, in.version)).c_str()));
  if (in.predecessor) {
    const SrPredecessor& p = *in.predecessor;
    const std::string study = p.study_uid.empty() ? src.study_uid : p.study_uid;
    const std::string series = p.series_uid.empty() ? SrSeriesUidForStudy(study) : p.series_uid;
    const std::string sop_class = p.sop_class_uid.empty()
                                      ? DSRTypes::documentTypeToSOPClassUID(doc.getDocumentType())
                                      : p.sop_class_uid;
    PXS_DCMTK_CHECK("predecessor", doc.getPredecessorDocuments().addItem(
                                       study.c_str(), series.c_str(), sop_class.c_str(),
                                       p.sop_instance_uid.c_str()));
  }
  // Every image referenced in the content must be listed as evidence (dciodvfy checks).
  const std::string source_series = GetString(src.dataset, DCM_SeriesInstanceUID);
  for (const auto& image : images) {
    PXS_DCMTK_CHECK("evidence", doc.getCurrentRequestedProcedureEvidence().addItem(
                                    src.study_uid.c_str(),
                                    (image.series_uid.empty() ? source_series : image.series_uid).c_str(),
                                    image.sop_class_uid.c_str(), image.sop_instance_uid.c_str()));
  }
  // Declare the private coding scheme so that receivers can look it up.
  PXS_DCMTK_CHECK("coding scheme", doc.getCodingSchemeIdentification().addItem(
                                       codes::kPrivateScheme,
                                       UidFromName("PXS\\coding scheme\\99PXS").c_str(),
                                       "PXS Node private codes (docs/sr-content.md)", "PXS Node"));
  PXS_DCMTK_CHECK("completion flag", doc.completeDocument());

  DcmFileFormat out;
  DcmDataset* ds = out.getDataset();
  PXS_DCMTK_CHECK("write SR data set", doc.write(*ds));
  // UIDs of our own: every version of a study's SR in one series (derived from the
  // study), each SR a fresh random 2.25 UID.
  result.series_uid = SrSeriesUidForStudy(src.study_uid);
  result.sop_instance_uid = RandomUid();
  PXS_DCMTK_CHECK("series UID", ds->putAndInsertString(DCM_SeriesInstanceUID, result.series_uid.c_str()));
  PXS_DCMTK_CHECK("SOP instance UID",
                  ds->putAndInsertString(DCM_SOPInstanceUID, result.sop_instance_uid.c_str()));
  if (!in.node.station_name.empty()) {
    PXS_DCMTK_CHECK("station name", ds->putAndInsertString(DCM_StationName, in.node.station_name.c_str()));
  }
  // The character set is declared from what the SR really holds: ISO_IR 192 as soon as
  // one value (copied or our own) is not plain ASCII, none otherwise.
  if (HasNonAsciiText(*ds)) {
    PXS_DCMTK_CHECK("character set", ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192"));
  } else {
    ds->findAndDeleteElement(DCM_SpecificCharacterSet);
  }
  result.summary = summary;
  result.text_problems = src.text_problems;
  PXS_RETURN_IF_ERROR(WriteFile(out, output_path));
  return result;
}

}  // namespace pxs
