// The LOINC codes the node knows: shown on the patient's timeline (pxsctl history, the
// HTTP API) and available to reports. Observations with other codes are stored too
// but flagged not plotted (pxs::Observation::plotted).
//
// Several codes may measure the same thing (SpO2 by pulse oximetry and by blood gas):
// they share a `quantity`, the name the timeline shows them under.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pxs::hl7 {

struct LoincEntry {
  const char* code;       // e.g. "59408-5"
  const char* quantity;   // the timeline's name: "spo2", "o2_flow", "crp", ...
  const char* display;    // LOINC short name
  const char* unit;       // the usual UCUM unit (informative: the sender's unit is stored)
};

// Every known code, in the order docs/hl7.md lists them.
const std::vector<LoincEntry>& KnownLoincCodes();
// nullptr when the code is not in the table.
const LoincEntry* FindLoinc(std::string_view code);
// The codes of one quantity ("spo2" -> {"59408-5", "2708-6"}); empty when unknown.
std::vector<std::string> CodesOf(std::string_view quantity);
// Whether text has the form of a LOINC code (1-7 digits, '-', check digit) with a
// correct mod-10 check digit.
bool LooksLikeLoinc(std::string_view code);

}  // namespace pxs::hl7
