// Every code the PXS SR uses, in one place, so that the builder, the reader and
// docs/sr-content.md agree. Standard codes (DCM, SCT, LOINC, UCUM, UMLS as used by
// DICOM CID 6146) where one exists; the private scheme 99PXS where none does.
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmsr/dsrcodvl.h>

namespace pxs::sr_codes {

// Private coding scheme designator of this node (DICOM PS3.16 8.2: "99" prefix).
inline constexpr const char* kPrivateScheme = "99PXS";

inline DSRCodedEntryValue Private(const char* value, const char* meaning) {
  return DSRCodedEntryValue(value, kPrivateScheme, meaning);
}

// --- Procedure reported (TID 1500 row 4) ---
inline DSRCodedEntryValue ChestRadiograph() { return {"399208008", "SCT", "Plain chest X-ray"}; }

// --- Measurements (TID 300 in TID 1501) ---
inline DSRCodedEntryValue PxsScore() { return Private("PXS", "Pulmonary X-ray Severity score"); }
inline DSRCodedEntryValue CalibratedPxs() { return Private("PXSCAL", "Calibrated PXS"); }
inline DSRCodedEntryValue PxsChangeFromPrior() { return Private("PXSDELTA", "PXS change from prior"); }
inline DSRCodedEntryValue SiameseChangeScore() { return Private("PXSSIAM", "Siamese change score"); }
inline DSRCodedEntryValue StableChangeThreshold() {
  return Private("PXSSTABLE", "PXS stable change threshold");
}
inline DSRCodedEntryValue CalibratedChangeFromPrior() {
  return Private("PXSCALDELTA", "Calibrated PXS change from prior");
}
inline DSRCodedEntryValue CalibratedStableChangeThreshold() {
  return Private("PXSCALSTABLE", "Calibrated PXS stable change threshold");
}

// --- Units (UCUM) ---
inline DSRCodedEntryValue ScoreUnit() { return {"{score}", "UCUM", "score"}; }
inline DSRCodedEntryValue NoUnit() { return {"1", "UCUM", "no units"}; }

// --- Qualitative evaluations ---
inline DSRCodedEntryValue PxsTrend() { return Private("PXSTREND", "PXS trend"); }
inline DSRCodedEntryValue TrendWorsened() { return Private("WORSENED", "Worsened"); }
inline DSRCodedEntryValue TrendStable() { return Private("STABLE", "Stable"); }
inline DSRCodedEntryValue TrendImproved() { return Private("IMPROVED", "Improved"); }
inline DSRCodedEntryValue SeverityBand() { return Private("PXSBAND", "PXS severity band"); }
inline DSRCodedEntryValue NotCompared() { return Private("PXSNOCOMP", "Not compared with this study"); }
inline DSRCodedEntryValue IntendedUse() { return Private("INTENDEDUSE", "Intended use"); }
inline DSRCodedEntryValue ClinicalUseRestriction() {
  return Private("CLINUSE", "Clinical use restriction");
}
inline DSRCodedEntryValue Summary() { return {"55112-7", "LN", "Document Summary"}; }

// --- Time point context (TID 1502); CID 6146 has no plain "follow-up" ---
inline DSRCodedEntryValue TimePointFollowUp() { return Private("FOLLOWUP", "Follow-up"); }

}  // namespace pxs::sr_codes
