// pxs::ObservationStore: clinical observations (vital signs, lab values) received over
// HL7 v2 (MLLP) and FHIR R4, kept beside the images on one timeline per patient.
//
// Observations are keyed by PatientKey (PatientID + IssuerOfPatientID), never by a
// row of `patients`: an observation may arrive before the patient's first image and
// is linked simply by carrying the same key when the images come.
//
// Times: observed_at_ms is the sender's WALL-CLOCK time read as if it were UTC, the
// same convention as a study's StudyDate + StudyTime (DICOM DA/TM carry no zone), so
// that "nearest SpO2 to this study" compares like with like. A UTC offset the sender
// gave is kept in utc_offset_min but not applied. WallClockMs() converts a DICOM
// date/time to the same scale.
//
// It opens its own connection to the node database (like AdminDatabase): kReadWrite
// for the HL7 listener and the FHIR endpoint (one writer connection behind a mutex),
// kReadOnly for pxsctl, the HTTP API and the report maker.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/storage/database.h"

namespace pxs {

// One numeric observation.
struct Observation {
  PatientKey patient;
  std::string loinc;             // LOINC code, e.g. "59408-5"
  std::string display;           // display name (the node's LOINC table's, else the sender's text)
  double value = 0;
  std::string unit;              // as sent (UCUM in practice, e.g. "%", "L/min", "mg/L")
  int64_t observed_at_ms = 0;    // wall-clock time as if UTC (see above)
  std::optional<int> utc_offset_min;  // the sender's offset, when it gave one
  std::string observed_at_text;  // the sender's own text of the time (HL7 DTM / FHIR dateTime)
  // The code is in the node's LOINC table (pxs/hl7/loinc.h): shown on the timeline and
  // in reports. Unknown codes are stored (plotted=false) but not shown.
  bool plotted = false;
  std::string status;            // HL7 OBX-11 / FHIR status ("F", "final", ...)
  // Filled by the store on reads:
  std::string source;            // "hl7" or "fhir"
  std::string sender;            // the message's sender (see ObservationMessage)
  std::string message_id;
  int64_t received_at_ms = 0;
};

// One received message (an HL7 ORU^R01 or a FHIR request) and its observations.
// (sender, message_id) is unique: a message sent again is recorded once.
struct ObservationMessage {
  std::string source;        // "hl7" or "fhir"
  std::string sender;        // HL7: MSH-3 "^" MSH-4 (application^facility); FHIR: "fhir:<token name>"
  std::string message_id;    // HL7 MSH-10; FHIR: the Bundle's / Observation's identifier or id
  std::string message_type;  // e.g. "ORU^R01", "Bundle", "Observation"
  std::string version;       // HL7 MSH-12, "R4" for FHIR
  int64_t received_at_ms = 0;
  size_t size_bytes = 0;
  std::vector<Observation> observations;
};

enum class MessageOutcome { kStored, kDuplicate };

class ObservationStore {
 public:
  // kReadWrite creates/migrates the schema like Database::Open.
  static StatusOr<std::unique_ptr<ObservationStore>> Open(const std::string& db_path, Database::Mode mode);
  virtual ~ObservationStore() = default;

  // Records every message of the batch (with its observations) in ONE durable
  // transaction (synchronous=FULL): the HL7 ACK / FHIR 201 is sent after this returns
  // Ok. outcomes[i] is kDuplicate when (sender, message_id) was already recorded (by
  // an earlier call or earlier in this batch); then nothing is stored for it.
  // The batching across connections is the caller's (hl7's group committer).
  virtual Status RecordMessages(const std::vector<ObservationMessage>& batch,
                                std::vector<MessageOutcome>* outcomes) = 0;

  // The patient's observations with from_ms <= observed_at_ms < to_ms (unset: open),
  // oldest first (then by code). plotted_only drops codes the node does not know.
  virtual StatusOr<std::vector<Observation>> PatientObservations(const PatientKey& patient,
                                                                 std::optional<int64_t> from_ms,
                                                                 std::optional<int64_t> to_ms,
                                                                 bool plotted_only = false) = 0;

  // For each plotted LOINC code of the patient, the one observation nearest to at_ms
  // with |observed_at_ms - at_ms| <= window_ms (tie: the earlier one, i.e. known at
  // the time of the image). Ordered by code. Empty when none is in the window.
  virtual StatusOr<std::vector<Observation>> ObservationsNear(const PatientKey& patient, int64_t at_ms,
                                                              int64_t window_ms) = 0;

  // The nearest observation of one code (any of `loinc_codes`, e.g. both SpO2 codes)
  // within the window, same tie rule; nullopt when none.
  virtual StatusOr<std::optional<Observation>> NearestObservation(const PatientKey& patient,
                                                                  const std::vector<std::string>& loinc_codes,
                                                                  int64_t at_ms, int64_t window_ms) = 0;

  // Whether (sender, message_id) was recorded (a resend is answered without storing).
  virtual StatusOr<bool> HasMessage(const std::string& sender, const std::string& message_id) = 0;
};

// DICOM DA (YYYYMMDD) + TM (HHMMSS[.F]) -> wall-clock ms as if UTC (missing time:
// midnight). nullopt when the date is missing or malformed.
std::optional<int64_t> WallClockMs(const std::string& dicom_date, const std::string& dicom_time);

}  // namespace pxs
