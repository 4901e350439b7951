// ORU^R01 (HL7 v2.3 to v2.8) -> the node's observations, and the ACK that answers it.
// Conformance and the ACK rules: docs/hl7.md.
//
// Rules in short:
//  - AR (rejected, nothing stored): MSH unreadable (segment order, field separator,
//    encoding characters), a message type other than ORU^R01, a version outside
//    2.3..2.8, a sender not in [hl7] allowed_senders, storage unavailable.
//  - AE (error, nothing stored): the content is wrong: no MSH-10, no PID-3 id, an OBX
//    of value type NM/SN whose value is not a number, no observation time (OBX-14 or
//    OBR-7) or an unreadable one, an OBX before any PID.
//  - AA (stored): every numeric LOINC-coded OBX is stored (codes outside the node's
//    table with plotted=false). OBX the node does not keep (text value types, codes not
//    in LOINC, results with status D/W/X, SN with a comparator or a range) are listed
//    in ERR segments of severity W, not errors.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pxs/hl7/message.h"
#include "pxs/storage/observations.h"

namespace pxs::hl7 {

enum class AckCode { kAA, kAE, kAR };
const char* AckCodeText(AckCode code);  // "AA", "AE", "AR"

// One ERR segment: where (segment id, its 1-based sequence among the message's
// segments of that id, field), an HL7 table 0357 code and a text.
struct Hl7Error {
  std::string segment;  // "" when the position is not known
  int sequence = 0;
  int field = 0;
  int code = 207;       // 100 segment sequence, 101 required field missing, 102 data type,
                        // 103 table value not found, 200 message type, 201 event, 203 version,
                        // 207 application internal error
  std::string text;
  char severity = 'E';  // E error, W warning (AA with things not kept)
};

// What the ACK needs from the incoming MSH (best effort when MSH itself is broken).
struct AckContext {
  Delimiters delimiters;
  std::string sending_application, sending_facility;
  std::string receiving_application, receiving_facility;
  std::string control_id;   // MSH-10
  std::string processing_id = "P";
  std::string version = "2.5";
};

struct OruOptions {
  // "APP" (MSH-3, any facility) or "APP^FACILITY" (MSH-3 and MSH-4); empty: everyone.
  std::vector<std::string> allowed_senders;
  // PID-3.4 assigning authority (namespace id or universal id) -> IssuerOfPatientID.
  // Unmapped authorities are used as the issuer as they are.
  std::map<std::string, std::string> patient_authorities;
};

struct OruResult {
  AckCode ack = AckCode::kAR;
  AckContext context;
  ObservationMessage message;        // meaningful when ack == kAA
  std::vector<Hl7Error> errors;      // E for AE/AR, W for AA
};

// Interprets one message (the bytes inside an MLLP frame). Never throws.
OruResult InterpretOru(std::string text, const OruOptions& options, int64_t now_ms);

// The ACK (ER7, segments ending in CR) for a result, in the sender's delimiters and
// version; ack_control_id becomes the ACK's own MSH-10.
std::string BuildAck(const AckContext& context, AckCode code, const std::vector<Hl7Error>& errors,
                     const std::string& ack_control_id, int64_t now_ms);

// The ACK context read from the first bytes of a message that cannot be parsed
// whole (a frame over the size limit): the field separator, MSH-3, MSH-4, MSH-10.
AckContext GuessAckContext(std::string_view head);

// The sender key stored with the message: MSH-3 "^" MSH-4.
std::string SenderKey(const std::string& application, const std::string& facility);

}  // namespace pxs::hl7
