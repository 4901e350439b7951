#include "pxs/hl7/loinc.h"

namespace pxs::hl7 {

const std::vector<LoincEntry>& KnownLoincCodes() {
  // Codes as LOINC publishes them (loinc.org); units are the usual UCUM ones.
  static const std::vector<LoincEntry> kTable = {
      {"59408-5", "spo2", "SpO2 (pulse oximetry)", "%"},
      {"2708-6", "spo2", "Oxygen saturation (arterial)", "%"},
      {"3151-8", "o2_flow", "Inhaled oxygen flow rate", "L/min"},
      {"3150-0", "fio2", "Inhaled oxygen concentration (FiO2)", "%"},
      {"9279-1", "resp_rate", "Respiratory rate", "/min"},
      {"8867-4", "heart_rate", "Heart rate", "/min"},
      {"8310-5", "temperature", "Body temperature", "Cel"},
      {"1988-5", "crp", "C reactive protein", "mg/L"},
      {"30522-7", "crp", "C reactive protein (high sensitivity)", "mg/L"},
      {"48065-7", "d_dimer", "D-dimer (FEU)", "ng/mL{FEU}"},
      {"48066-5", "d_dimer", "D-dimer (DDU)", "ng/mL{DDU}"},
      {"731-0", "lymphocytes", "Lymphocytes (automated count)", "10*3/uL"},
      {"26474-7", "lymphocytes", "Lymphocytes", "10*3/uL"},
      {"6690-2", "wbc", "Leukocytes (automated count)", "10*3/uL"},
      {"26464-8", "wbc", "Leukocytes", "10*3/uL"},
      {"2532-0", "ldh", "Lactate dehydrogenase", "U/L"},
      {"14804-9", "ldh", "Lactate dehydrogenase (lactate to pyruvate)", "U/L"},
      {"2276-4", "ferritin", "Ferritin", "ng/mL"},
      {"33959-8", "procalcitonin", "Procalcitonin", "ng/mL"},
  };
  return kTable;
}

const LoincEntry* FindLoinc(std::string_view code) {
  for (const LoincEntry& e : KnownLoincCodes()) {
    if (code == e.code) return &e;
  }
  return nullptr;
}

std::vector<std::string> CodesOf(std::string_view quantity) {
  std::vector<std::string> out;
  for (const LoincEntry& e : KnownLoincCodes()) {
    if (quantity == e.quantity) out.emplace_back(e.code);
  }
  return out;
}

bool LooksLikeLoinc(std::string_view code) {
  size_t dash = code.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash > 7 || dash + 2 != code.size()) return false;
  std::string_view body = code.substr(0, dash);
  for (char c : body) {
    if (c < '0' || c > '9') return false;
  }
  const char check = code[dash + 1];
  if (check < '0' || check > '9') return false;
  // LOINC's mod-10 check digit: from the right, double every other digit starting with
  // the rightmost, add all digits of the products and the undoubled digits.
  int sum = 0;
  bool twice = true;
  for (size_t i = body.size(); i-- > 0;) {
    int d = body[i] - '0';
    if (twice) {
      d *= 2;
      d = d / 10 + d % 10;
    }
    sum += d;
    twice = !twice;
  }
  return (10 - sum % 10) % 10 == check - '0';
}

}  // namespace pxs::hl7
