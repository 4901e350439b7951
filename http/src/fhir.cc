#include "fhir.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "pxs/hl7/loinc.h"

namespace pxs::http {
namespace {

using Json = nlohmann::json;

constexpr const char* kLoincSystem = "http://loinc.org";
constexpr const char* kFhirJson = "application/fhir+json";

Status Invalid(const std::string& where, const std::string& why) { return Status::InvalidArgument(where + ": " + why); }

// A FHIR OperationOutcome with one issue. code: FHIR issue type (invalid, required,
// value, not-supported, security, exception, informational).
Json Outcome(const std::string& severity, const std::string& code, const std::string& diagnostics,
             const std::string& expression = "") {
  Json issue = {{"severity", severity}, {"code", code}, {"diagnostics", diagnostics}};
  if (!expression.empty()) issue["expression"] = Json::array({expression});
  return Json{{"resourceType", "OperationOutcome"}, {"issue", Json::array({issue})}};
}

Response FhirResponse(int status, const Json& body) {
  return Response{status, kFhirJson, body.dump(2) + "\n", "/fhir"};
}

// "<FHIRPath>: why" -> 400 OperationOutcome with the path as the issue's expression.
Response Refused(const Status& st) {
  const std::string& m = st.message();
  const size_t colon = m.find(": ");
  const std::string expression = colon == std::string::npos ? "" : m.substr(0, colon);
  const std::string code = m.find("is required") != std::string::npos ? "required" : "invalid";
  return FhirResponse(400, Outcome("error", code, m, expression));
}

bool Digits(const std::string& s, size_t at, size_t n) {
  if (at + n > s.size()) return false;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// FHIR dateTime / instant: YYYY-MM-DD[Thh:mm[:ss[.fff...]](Z|+hh:mm|-hh:mm)] -> wall
// clock as if UTC (the node's convention, pxs/storage/observations.h) and the offset.
// A day at least: the timeline needs one.
Status ParseFhirDateTime(const std::string& text, const std::string& where, int64_t* wall_ms,
                         std::optional<int>* offset_min) {
  const std::string bad = "'" + text + "' is not a FHIR dateTime with at least a day (YYYY-MM-DD[Thh:mm:ss[.sss]+zz:zz])";
  if (!Digits(text, 0, 4) || text.size() < 10 || text[4] != '-' || !Digits(text, 5, 2) || text[7] != '-' ||
      !Digits(text, 8, 2)) {
    return Invalid(where, bad);
  }
  std::tm tm{};
  tm.tm_year = std::stoi(text.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(text.substr(5, 2)) - 1;
  tm.tm_mday = std::stoi(text.substr(8, 2));
  int millis = 0;
  size_t i = 10;
  if (i < text.size()) {
    if (text[i] != 'T' || !Digits(text, i + 1, 2) || text.size() < i + 6 || text[i + 3] != ':' || !Digits(text, i + 4, 2)) {
      return Invalid(where, bad);
    }
    tm.tm_hour = std::stoi(text.substr(i + 1, 2));
    tm.tm_min = std::stoi(text.substr(i + 4, 2));
    i += 6;
    if (i < text.size() && text[i] == ':') {
      if (!Digits(text, i + 1, 2)) return Invalid(where, bad);
      tm.tm_sec = std::stoi(text.substr(i + 1, 2));
      i += 3;
      if (i < text.size() && text[i] == '.') {
        size_t j = i + 1;
        std::string frac;
        while (j < text.size() && text[j] >= '0' && text[j] <= '9') frac.push_back(text[j++]);
        if (frac.empty()) return Invalid(where, bad);
        while (frac.size() < 3) frac.push_back('0');
        millis = std::stoi(frac.substr(0, 3));
        i = j;
      }
    }
    // A time needs its zone in FHIR; Z or +/-hh:mm.
    if (i < text.size() && text[i] == 'Z' && i + 1 == text.size()) {
      *offset_min = 0;
    } else if (i + 6 == text.size() && (text[i] == '+' || text[i] == '-') && Digits(text, i + 1, 2) &&
               text[i + 3] == ':' && Digits(text, i + 4, 2)) {
      const int m = std::stoi(text.substr(i + 1, 2)) * 60 + std::stoi(text.substr(i + 4, 2));
      if (m > 14 * 60) return Invalid(where, "'" + text + "': UTC offset out of range");
      *offset_min = text[i] == '-' ? -m : m;
    } else {
      return Invalid(where, bad + " (a time needs Z or an offset)");
    }
  }
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const int year = tm.tm_year + 1900;
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > kDays[tm.tm_mon] ||
      (tm.tm_mon == 1 && tm.tm_mday == 29 && !leap) || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
      year < 1800) {
    return Invalid(where, "'" + text + "': month, day or time out of range");
  }
  *wall_ms = static_cast<int64_t>(timegm(&tm)) * 1000 + millis;
  return Status::Ok();
}

std::string Str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// One Observation resource -> one stored observation. where: its FHIRPath.
StatusOr<Observation> ParseObservation(const Json& r, const std::string& where,
                                       const std::map<std::string, std::string>& authorities) {
  if (!r.is_object() || Str(r, "resourceType") != "Observation") {
    return Invalid(where, "is not an Observation (resourceType '" + (r.is_object() ? Str(r, "resourceType") : "") + "')");
  }
  Observation o;
  o.status = Str(r, "status");
  static const std::set<std::string> kStatus = {"registered", "preliminary", "final",  "amended",
                                                "corrected",  "cancelled",   "entered-in-error", "unknown"};
  if (o.status.empty()) return Invalid(where + ".status", "is required");
  if (!kStatus.count(o.status)) return Invalid(where + ".status", "'" + o.status + "' is not an ObservationStatus");
  if (o.status == "cancelled" || o.status == "entered-in-error") {
    return Invalid(where + ".status", "'" + o.status + "': a withdrawn result is not stored");
  }
  // The patient: subject.identifier (system = the assigning authority, value =
  // PatientID), the same key as the images' PatientID + IssuerOfPatientID.
  const Json* subject = r.contains("subject") ? &r["subject"] : nullptr;
  const Json* ident = subject && subject->is_object() && subject->contains("identifier") ? &(*subject)["identifier"] : nullptr;
  if (!ident || !ident->is_object() || Str(*ident, "value").empty()) {
    return Invalid(where + ".subject.identifier.value",
                   "is required (the PatientID; a reference alone cannot be matched to the images)");
  }
  o.patient.patient_id = Str(*ident, "value");
  if (o.patient.patient_id.size() > 64) {
    return Invalid(where + ".subject.identifier.value", "is longer than 64 characters (DICOM PatientID is at most 64)");
  }
  std::string system = Str(*ident, "system");
  if (system.rfind("urn:oid:", 0) == 0) system = system.substr(8);
  auto mapped = authorities.find(system);
  o.patient.issuer = mapped != authorities.end() ? mapped->second : system;
  // code: the LOINC coding.
  const Json* code = r.contains("code") ? &r["code"] : nullptr;
  if (!code || !code->is_object() || !code->contains("coding") || !(*code)["coding"].is_array()) {
    return Invalid(where + ".code.coding", "is required");
  }
  for (const Json& c : (*code)["coding"]) {
    if (c.is_object() && Str(c, "system") == kLoincSystem && !Str(c, "code").empty()) {
      o.loinc = Str(c, "code");
      o.display = Str(c, "display");
      break;
    }
  }
  if (o.loinc.empty()) return Invalid(where + ".code.coding", "has no LOINC coding (system " + std::string(kLoincSystem) + ")");
  if (o.display.empty()) o.display = Str(*code, "text");
  if (const hl7::LoincEntry* known = hl7::FindLoinc(o.loinc)) {
    o.plotted = true;
    o.display = known->display;
  }
  // valueQuantity: a number (JSON number, as FHIR requires) with its unit.
  const Json* q = r.contains("valueQuantity") ? &r["valueQuantity"] : nullptr;
  if (!q) {
    for (const char* other : {"valueString", "valueCodeableConcept", "valueBoolean", "valueInteger", "valueRange",
                              "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod"}) {
      if (r.contains(other)) return Invalid(where + "." + other, "is not a valueQuantity: only numeric results are stored");
    }
    return Invalid(where + ".valueQuantity", "is required (a numeric result)");
  }
  if (!q->is_object() || !q->contains("value") || !(*q)["value"].is_number()) {
    return Invalid(where + ".valueQuantity.value", "must be a JSON number");
  }
  o.value = (*q)["value"].get<double>();
  if (!std::isfinite(o.value)) return Invalid(where + ".valueQuantity.value", "must be finite");
  if (q->contains("comparator")) {
    return Invalid(where + ".valueQuantity.comparator", "a bound ('" + Str(*q, "comparator") + "') is not a value to plot");
  }
  o.unit = Str(*q, "code");
  if (o.unit.empty()) o.unit = Str(*q, "unit");
  // effective[x]: when it was measured.
  std::string when, when_path;
  if (!Str(r, "effectiveDateTime").empty()) {
    when = Str(r, "effectiveDateTime"), when_path = where + ".effectiveDateTime";
  } else if (!Str(r, "effectiveInstant").empty()) {
    when = Str(r, "effectiveInstant"), when_path = where + ".effectiveInstant";
  } else if (r.contains("effectivePeriod") && r["effectivePeriod"].is_object() && !Str(r["effectivePeriod"], "start").empty()) {
    when = Str(r["effectivePeriod"], "start"), when_path = where + ".effectivePeriod.start";
  } else {
    return Invalid(where + ".effectiveDateTime", "is required (effectiveDateTime, effectiveInstant or effectivePeriod.start)");
  }
  PXS_RETURN_IF_ERROR(ParseFhirDateTime(when, when_path, &o.observed_at_ms, &o.utc_offset_min));
  o.observed_at_text = when;
  return o;
}

// A resend is recognised by the resource's business identifier, else its id.
std::string MessageId(const Json& r) {
  if (r.contains("identifier")) {
    const Json& ids = r["identifier"];
    const Json* first = ids.is_array() && !ids.empty() ? &ids[0] : (ids.is_object() ? &ids : nullptr);
    if (first && first->is_object() && !Str(*first, "value").empty()) {
      return Str(*first, "system").empty() ? Str(*first, "value") : Str(*first, "system") + "|" + Str(*first, "value");
    }
  }
  return Str(r, "id");
}

}  // namespace

std::string OperationOutcomeJson(const std::string& severity, const std::string& code, const std::string& diagnostics,
                                 const std::string& expression) {
  return Outcome(severity, code, diagnostics, expression).dump(2) + "\n";
}

StatusOr<ObservationMessage> ParseFhirObservations(const std::string& body, const std::string& path,
                                                   const std::string& sender,
                                                   const std::map<std::string, std::string>& authorities,
                                                   int64_t now_ms) {
  Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Invalid("(body)", "is not JSON");
  if (!doc.is_object()) return Invalid("(body)", "is not a FHIR resource (a JSON object)");
  const std::string type = Str(doc, "resourceType");
  ObservationMessage m;
  m.source = "fhir";
  m.sender = sender;
  m.version = "R4";
  m.received_at_ms = now_ms;
  m.size_bytes = body.size();
  if (path == "/fhir/Observation") {
    if (type != "Observation") return Invalid("resourceType", "POST /fhir/Observation takes an Observation (got '" + type + "')");
    m.message_type = "Observation";
    m.message_id = MessageId(doc);
    if (m.message_id.empty()) {
      return Invalid("Observation.identifier", "is required (or id): a resend is recognised by it");
    }
    auto o = ParseObservation(doc, "Observation", authorities);
    if (!o.ok()) return o.status();
    m.observations.push_back(std::move(*o));
    return m;
  }
  // POST /fhir: a Bundle (FHIR's transaction / batch interaction on the base URL).
  if (type != "Bundle") return Invalid("resourceType", "POST /fhir takes a transaction Bundle (got '" + type + "')");
  const std::string bundle_type = Str(doc, "type");
  if (bundle_type != "transaction" && bundle_type != "batch") {
    return Invalid("Bundle.type", "'" + bundle_type + "': only transaction and batch Bundles are accepted");
  }
  m.message_type = "Bundle";
  m.message_id = MessageId(doc);
  if (m.message_id.empty()) return Invalid("Bundle.identifier", "is required (or id): a resend is recognised by it");
  if (!doc.contains("entry") || !doc["entry"].is_array() || doc["entry"].empty()) {
    return Invalid("Bundle.entry", "is required (at least one Observation)");
  }
  const Json& entries = doc["entry"];
  if (entries.size() > 10000) return Invalid("Bundle.entry", "more than 10000 entries");
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string where = "Bundle.entry[" + std::to_string(i) + "]";
    const Json& e = entries[i];
    if (!e.is_object() || !e.contains("resource")) return Invalid(where + ".resource", "is required");
    if (e.contains("request") && e["request"].is_object()) {
      const std::string method = Str(e["request"], "method");
      if (method != "POST") return Invalid(where + ".request.method", "'" + method + "': only POST (create) is supported");
    }
    // The whole Bundle is all or nothing, batch too: a sender resends it whole.
    auto o = ParseObservation(e["resource"], where + ".resource", authorities);
    if (!o.ok()) return o.status();
    m.observations.push_back(std::move(*o));
  }
  return m;
}

Response HandleFhir(const Request& req, const std::string& path, const Token& token, const Options& o) {
  if (!o.record_observations) {
    return FhirResponse(404, Outcome("error", "not-supported", "this node does not take FHIR observations"));
  }
  if (path != "/fhir" && path != "/fhir/Observation") {
    return FhirResponse(404, Outcome("error", "not-supported",
                                     "no such endpoint: POST /fhir (transaction Bundle) or POST /fhir/Observation"));
  }
  if (req.method != "POST") {
    return FhirResponse(405, Outcome("error", "not-supported", "method not allowed: this endpoint only takes POST"));
  }
  // Observations change what the SRs say: the admin role, as for other writes.
  if (token.role != "admin") {
    return FhirResponse(403, Outcome("error", "security", "storing observations needs an admin token"));
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  auto message = ParseFhirObservations(req.body, path, "fhir:" + token.name, o.fhir_patient_authorities, now);
  if (!message.ok()) {
    spdlog::warn("FHIR {} from token '{}': refused: {}", path, token.name, message.status().message());
    return Refused(message.status());
  }
  const size_t count = message->observations.size();
  const std::string id = message->message_id;
  const bool bundle = message->message_type == "Bundle";
  StatusOr<MessageOutcome> outcome = o.record_observations(std::move(*message));
  if (!outcome.ok()) {
    spdlog::error("FHIR {} {}: not stored: {}", path, id, outcome.status().ToString());
    return FhirResponse(503, Outcome("error", "transient",
                                     "the node could not store the observations (" + outcome.status().message() +
                                         "): send them again later"));
  }
  const bool duplicate = *outcome == MessageOutcome::kDuplicate;
  const std::string said = duplicate ? "already stored (a resend of " + id + "): nothing changed"
                                     : "stored " + std::to_string(count) + " observation(s) of " + id;
  if (!bundle) return FhirResponse(duplicate ? 200 : 201, Outcome("information", "informational", said));
  Json entries = Json::array();
  for (size_t i = 0; i < count; ++i) {
    entries.push_back({{"response", {{"status", duplicate ? "200 OK" : "201 Created"}}}});
  }
  Json reply = {{"resourceType", "Bundle"},
                {"type", Str(Json::parse(req.body), "type") == "batch" ? "batch-response" : "transaction-response"},
                {"entry", entries}};
  reply["entry"][0]["response"]["outcome"] = Outcome("information", "informational", said);
  return FhirResponse(200, reply);
}

}  // namespace pxs::http
