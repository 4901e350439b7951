// libFuzzer target: the HL7 v2 side that faces the network (issue 13's "HL7 parser"):
// the bytes inside an MLLP frame go through the ORU^R01 rules (parser, delimiters, PID-3,
// OBX values and times), and the ACK is built from whatever came back, as the listener
// does; the head of an oversized frame goes through GuessAckContext. Nothing may crash,
// and a refused message must say why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pxs/hl7/oru.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  pxs::hl7::OruOptions options;
  options.allowed_senders = {"MONITOR", "LAB^MAIN"};
  options.patient_authorities = {{"HOSP", "TESTS"}};
  const int64_t now_ms = 1'767'225'600'000;  // fixed: a run must be reproducible
  pxs::hl7::OruResult result = pxs::hl7::InterpretOru(text, options, now_ms);
  // An AE/AR without a reason would leave the sender guessing (docs/hl7.md).
  if (result.ack != pxs::hl7::AckCode::kAA && result.errors.empty()) std::abort();
  const std::string ack = pxs::hl7::BuildAck(result.context, result.ack, result.errors, "ack-1", now_ms);
  if (ack.rfind("MSH", 0) != 0) std::abort();  // an ACK always starts with its MSH
  const pxs::hl7::AckContext guessed = pxs::hl7::GuessAckContext(std::string_view(text).substr(0, 4096));
  (void)pxs::hl7::BuildAck(guessed, pxs::hl7::AckCode::kAR, {}, "ack-2", now_ms);
  return 0;
}
