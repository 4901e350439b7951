// pxs::reports: the clinical context of an image (vitals, blood gases, labs) as plain
// rows, so that reports/ needs neither HL7, FHIR nor the database: the pipeline maps
// whatever storage returns for a patient to ClinicalObservation and hands the list to
// the SR builder (the "Clinical Context" container) and to the trend sheet.
//
// Times are clock times as the sender gave them (HL7 TS, FHIR dateTime, DICOM DT),
// compared with StudyDate/StudyTime on the same local clock: studies carry no time
// zone either, and an offset is at most hours on a sheet that spans days.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pxs {

struct ClinicalObservation {
  std::string loinc_code;   // e.g. "59408-5"
  std::string display;      // the sender's (or LOINC's) name, e.g. "SpO2"
  double value = 0;
  std::string unit;         // UCUM where the sender used it, e.g. "%", "mg/L", "L/min"
  // DICOM DT / HL7 TS: YYYYMMDD[HH[MM[SS[.F{1,6}]]]][+|-ZZXX]; the offset is kept in
  // the SR's Observation DateTime and ignored for placing the value on the time axis.
  std::string observed_at;
};

// LOINC codes the sheet and `nearest` columns single out (issue 15).
namespace loinc {
inline constexpr const char* kSpO2PulseOximetry = "59408-5";
inline constexpr const char* kSaO2Arterial = "2708-6";
inline constexpr const char* kO2Flow = "3151-8";
inline constexpr const char* kFiO2 = "3150-0";
inline constexpr const char* kCrp = "1988-5";
}  // namespace loinc

// "NNNNN-N": one to seven digits, a dash, one check digit (the check digit itself is
// not verified: an unknown but well-formed code is still the sender's code).
bool IsLoincCode(std::string_view code);

// Seconds since 1970-01-01 00:00:00 of the same clock for a DT/TS text (also the
// longitudinal StudyTimeKey "YYYYMMDDHHMMSS.ffffff"); nullopt when it is not a valid
// date-time of that form (bad month, hour 25, letters, ...).
std::optional<double> ClockSeconds(std::string_view date_time);

// The time of a study on that clock, by the longitudinal rule (StudyDate + StudyTime,
// else the scoring time).
std::optional<double> StudyClockSeconds(const std::string& study_date, const std::string& study_time,
                                        int64_t scored_at_ms);

// True when the observation can be shown at all: well-formed LOINC code, finite value,
// a valid time.
bool IsUsableObservation(const ClinicalObservation& o);

// Of the usable observations whose code is one of `codes`, the one nearest to `at`
// within window_s (either side; ties: the earlier one, which the image could have
// been read with); nullptr when none.
const ClinicalObservation* NearestObservation(const std::vector<ClinicalObservation>& all,
                                              const std::vector<std::string>& codes, double at,
                                              double window_s);

// The clinical context of an image taken at `at`: for each LOINC code present, the
// nearest usable observation within window_s, ordered by code. Unusable rows are
// skipped; *skipped (when given) counts them.
std::vector<ClinicalObservation> ClinicalContextAt(const std::vector<ClinicalObservation>& all, double at,
                                                   double window_s, int* skipped = nullptr);

}  // namespace pxs
