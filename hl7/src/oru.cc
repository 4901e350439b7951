#include "pxs/hl7/oru.h"

#include <charconv>
#include <cmath>
#include <ctime>
#include <set>

#include "pxs/hl7/loinc.h"

namespace pxs::hl7 {
namespace {

const std::set<std::string> kVersions = {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"};

std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// HL7 NM: [+|-]digits[.digits] (no exponent), surrounding spaces allowed.
std::optional<double> ParseNumber(const std::string& raw) {
  std::string s = Trim(raw);
  if (s.empty()) return std::nullopt;
  size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  bool digits = false, dot = false;
  for (size_t k = i; k < s.size(); ++k) {
    if (s[k] >= '0' && s[k] <= '9') digits = true;
    else if (s[k] == '.' && !dot) dot = true;
    else return std::nullopt;
  }
  if (!digits) return std::nullopt;
  double v = 0;
  const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
  auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string FormatTs(int64_t now_ms) {
  std::time_t t = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S+0000", &tm);
  return buf;
}

bool SenderAllowed(const std::vector<std::string>& allowed, const std::string& app, const std::string& facility) {
  if (allowed.empty()) return true;
  for (const std::string& a : allowed) {
    size_t hat = a.find('^');
    if (hat == std::string::npos) {
      if (a == app) return true;
    } else if (a.substr(0, hat) == app && a.substr(hat + 1) == facility) {
      return true;
    }
  }
  return false;
}

class Interpreter {
 public:
  Interpreter(const OruOptions& options, int64_t now_ms) : options_(options), now_ms_(now_ms) {}

  OruResult Run(std::string text) {
    const size_t size = text.size();
    // Best-effort ACK context before a full parse: a broken MSH-2 still gets an AR that
    // names the message (MSH-10 read with the field separator alone).
    GuessContext(text);
    StatusOr<Message> parsed = Message::Parse(std::move(text));
    if (!parsed.ok()) {
      const std::string& m = parsed.status().message();
      int field = m.rfind("MSH-1:", 0) == 0 ? 1 : m.rfind("MSH-2:", 0) == 0 ? 2 : 0;
      return Reject(AckCode::kAR, field ? "MSH" : "", field ? 1 : 0, field, field ? 207 : 100, m);
    }
    const Message& msg = *parsed;
    const Segment& msh = msg.msh();
    result_.context.delimiters = msg.delimiters();
    result_.context.sending_application = msh.Get(3);
    result_.context.sending_facility = msh.Get(4);
    result_.context.receiving_application = msh.Get(5);
    result_.context.receiving_facility = msh.Get(6);
    result_.context.control_id = msh.Get(10);
    const std::string processing = msh.Get(11);
    if (!processing.empty()) result_.context.processing_id = processing;
    const std::string version = msh.Get(12);
    if (kVersions.count(version)) result_.context.version = version;

    if (!kVersions.count(version)) {
      return Reject(AckCode::kAR, "MSH", 1, 12, 203,
                    "unsupported version '" + version + "' (this node accepts HL7 v2.3 to v2.8)");
    }
    const std::string type = msh.Get(9, 0, 1), event = msh.Get(9, 0, 2);
    if (type != "ORU") {
      return Reject(AckCode::kAR, "MSH", 1, 9, 200, "unsupported message type '" + type + "' (this node accepts ORU^R01)");
    }
    if (event != "R01") {
      return Reject(AckCode::kAR, "MSH", 1, 9, 201, "unsupported event '" + event + "' (this node accepts ORU^R01)");
    }
    if (!SenderAllowed(options_.allowed_senders, result_.context.sending_application, result_.context.sending_facility)) {
      return Reject(AckCode::kAR, "MSH", 1, 3, 207,
                    "sender '" + SenderKey(result_.context.sending_application, result_.context.sending_facility) +
                        "' is not in [hl7] allowed_senders");
    }
    if (result_.context.control_id.empty()) {
      return Reject(AckCode::kAE, "MSH", 1, 10, 101, "MSH-10 (message control id) is empty: a resend could not be recognised");
    }
    latin1_ = msh.Get(18).find("8859/1") != std::string::npos;

    ObservationMessage& out = result_.message;
    out.source = "hl7";
    out.sender = SenderKey(result_.context.sending_application, result_.context.sending_facility);
    out.message_id = result_.context.control_id;
    out.message_type = "ORU^R01";
    out.version = version;
    out.received_at_ms = now_ms_;
    out.size_bytes = size;

    std::map<std::string, int> seq;
    bool have_patient = false;
    PatientKey patient;
    std::string obr_time;
    int obr_seq = 0;
    for (const Segment& seg : msg.segments()) {
      const int n = ++seq[seg.id];
      if (seg.id == "PID") {
        StatusOr<PatientKey> key = PatientOf(seg, n);
        if (!key.ok()) return Fail();
        patient = *key;
        have_patient = true;
        obr_time.clear();
      } else if (seg.id == "OBR") {
        obr_time = seg.Get(7);
        obr_seq = n;
      } else if (seg.id == "OBX") {
        if (!have_patient) {
          return Reject(AckCode::kAE, "OBX", n, 0, 100, "OBX before any PID segment: whose observation is it?");
        }
        if (!Observation(seg, n, patient, obr_time, obr_seq)) return Fail();
      }
    }
    if (!have_patient) return Reject(AckCode::kAE, "PID", 0, 0, 100, "no PID segment: the message names no patient");
    if (out.observations.empty()) {
      Warn("", 0, 0, 207, "no numeric LOINC-coded OBX in the message: nothing to put on the timeline");
    }
    result_.ack = AckCode::kAA;
    return std::move(result_);
  }

 private:
  void GuessContext(const std::string& text) { result_.context = GuessAckContext(text); }

  StatusOr<PatientKey> PatientOf(const Segment& pid, int n) {
    const size_t reps = pid.Repetitions(3);
    int chosen = -1;
    if (!options_.patient_authorities.empty()) {
      for (size_t r = 0; r < reps && chosen < 0; ++r) {
        if (pid.Get(3, r, 1).empty()) continue;
        if (options_.patient_authorities.count(pid.Get(3, r, 4, 1)) || options_.patient_authorities.count(pid.Get(3, r, 4, 2))) {
          chosen = static_cast<int>(r);
        }
      }
    }
    for (size_t r = 0; r < reps && chosen < 0; ++r) {
      if (!pid.Get(3, r, 1).empty()) chosen = static_cast<int>(r);
    }
    if (chosen < 0) {
      Error(AckCode::kAE, "PID", n, 3, 101, "PID-3 (patient identifier list) has no identifier");
      return Status::InvalidArgument("no PID-3");
    }
    PatientKey key;
    key.patient_id = Text(pid.Get(3, chosen, 1));
    const std::string ns = pid.Get(3, chosen, 4, 1), universal = pid.Get(3, chosen, 4, 2);
    auto mapped = options_.patient_authorities.find(ns);
    if (mapped == options_.patient_authorities.end()) mapped = options_.patient_authorities.find(universal);
    key.issuer = mapped != options_.patient_authorities.end() ? mapped->second : Text(!ns.empty() ? ns : universal);
    if (key.patient_id.size() > 64) {
      Error(AckCode::kAE, "PID", n, 3, 102, "PID-3.1 is longer than 64 characters (DICOM PatientID is at most 64)");
      return Status::InvalidArgument("long id");
    }
    return key;
  }

  // Returns false when the message must be refused (the error is recorded).
  bool Observation(const Segment& obx, int n, const PatientKey& patient, const std::string& obr_time, int obr_seq) {
    const std::string type = obx.Get(2);
    const std::string status = obx.Get(11);
    std::string code = obx.Get(3, 0, 1), text = obx.Get(3, 0, 2), system = obx.Get(3, 0, 3);
    if (system != "LN" && system != "LOINC") {
      const std::string alt_system = obx.Get(3, 0, 6);
      if (alt_system == "LN" || alt_system == "LOINC") {
        code = obx.Get(3, 0, 4);
        text = obx.Get(3, 0, 5);
      } else if (!(system.empty() && LooksLikeLoinc(code))) {
        Warn("OBX", n, 3, 103, "OBX-3 '" + code + "' is not coded in LOINC (coding system '" + system + "'): not kept");
        return true;
      }
    }
    if (code.empty()) {
      Error(AckCode::kAE, "OBX", n, 3, 101, "OBX-3 (observation identifier) is empty");
      return false;
    }
    if (status == "D" || status == "W" || status == "X") {
      Warn("OBX", n, 11, 207, "OBX " + code + " has result status " + status + " (deleted / wrong / not obtained): not kept");
      return true;
    }
    std::optional<double> value;
    if (type == "NM") {
      value = ParseNumber(obx.Get(5));
      if (!value) {
        Error(AckCode::kAE, "OBX", n, 5, 102,
              "OBX " + code + ": value '" + Text(obx.Get(5)).substr(0, 64) + "' of type NM is not a number");
        return false;
      }
    } else if (type == "SN") {
      // Structured numeric: comparator ^ num1 ^ separator/suffix ^ num2. Only a plain
      // number (no comparator other than '=', no range or ratio) is a value to plot.
      const std::string comparator = obx.Get(5, 0, 1), sep = obx.Get(5, 0, 3), num2 = obx.Get(5, 0, 4);
      value = ParseNumber(obx.Get(5, 0, 2));
      if (!value) {
        Error(AckCode::kAE, "OBX", n, 5, 102,
              "OBX " + code + ": value of type SN has no number in its second component ('" + Text(obx.Get(5, 0, 2)).substr(0, 64) + "')");
        return false;
      }
      if ((!comparator.empty() && comparator != "=") || !sep.empty() || !num2.empty()) {
        Warn("OBX", n, 5, 102, "OBX " + code + ": SN value '" + Text(std::string(obx.Raw(5))).substr(0, 64) +
                                   "' has a comparator or a range, not a single value: not kept");
        return true;
      }
    } else {
      Warn("OBX", n, 2, 102, "OBX " + code + ": value type '" + type + "' is not numeric (NM or SN): not kept");
      return true;
    }
    std::string when = obx.Get(14, 0, 1);
    int when_field = 14;
    std::string when_segment = "OBX";
    int when_seq = n;
    if (when.empty()) {
      when = obr_time.substr(0, obr_time.find(result_.context.delimiters.component));
      when_field = 7;
      when_segment = "OBR";
      when_seq = obr_seq;
    }
    if (when.empty()) {
      Error(AckCode::kAE, "OBX", n, 14, 101, "OBX " + code + ": no observation time (OBX-14 and OBR-7 are empty)");
      return false;
    }
    StatusOr<DateTime> dt = ParseDateTime(when);
    if (!dt.ok()) {
      Error(AckCode::kAE, when_segment, when_seq, when_field, 102, "observation time " + dt.status().message());
      return false;
    }
    pxs::Observation o;
    o.patient = patient;
    o.loinc = code;
    const LoincEntry* known = FindLoinc(code);
    o.plotted = known != nullptr;
    o.display = known ? known->display : Text(text);
    o.value = *value;
    o.unit = Text(obx.Get(6, 0, 1));
    if (o.unit.empty()) o.unit = Text(obx.Get(6, 0, 2));
    o.observed_at_ms = dt->wall_clock_ms;
    o.utc_offset_min = dt->utc_offset_min;
    o.observed_at_text = when;
    o.status = status;
    result_.message.observations.push_back(std::move(o));
    return true;
  }

  std::string Text(const std::string& s) const { return latin1_ ? Latin1ToUtf8(s) : s; }

  void Error(AckCode ack, std::string segment, int seq, int field, int code, std::string text) {
    error_ack_ = ack;
    result_.errors.push_back({std::move(segment), seq, field, code, std::move(text), 'E'});
  }
  void Warn(std::string segment, int seq, int field, int code, std::string text) {
    result_.errors.push_back({std::move(segment), seq, field, code, std::move(text), 'W'});
  }
  OruResult Reject(AckCode ack, std::string segment, int seq, int field, int code, std::string text) {
    Error(ack, std::move(segment), seq, field, code, std::move(text));
    return Fail();
  }
  OruResult Fail() {
    result_.ack = error_ack_;
    result_.message = {};
    // Only the errors explain a refusal; warnings about OBX seen before it would mislead.
    std::vector<Hl7Error> errors;
    for (auto& e : result_.errors) {
      if (e.severity == 'E') errors.push_back(std::move(e));
    }
    result_.errors = std::move(errors);
    return std::move(result_);
  }

  const OruOptions& options_;
  int64_t now_ms_;
  bool latin1_ = false;
  AckCode error_ack_ = AckCode::kAE;
  OruResult result_;
};

}  // namespace

AckContext GuessAckContext(std::string_view head) {
  AckContext c;
  const std::string text(head.substr(0, 4096));
  if (text.size() < 4 || text.compare(0, 3, "MSH") != 0) return c;
    const char sep = text[3];
    size_t start = 0;
    std::vector<std::string> f;
    for (int i = 0; i < 12; ++i) {
      size_t at = text.find(sep, start);
      size_t cr = text.find_first_of("\r\n", start);
      size_t end = std::min(at, cr);
      f.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos || end == cr) break;
      start = end + 1;
    }
    // f[0] "MSH", f[1] MSH-2, f[k] MSH-(k+1)
    auto at = [&](size_t msh_field) { return msh_field - 1 < f.size() ? f[msh_field - 1] : std::string(); };
    auto plain = [](std::string s) {
      size_t cut = s.find_first_of("^~\\&");
      return cut == std::string::npos ? s : s.substr(0, cut);
    };
    c.sending_application = plain(at(3));
    c.sending_facility = plain(at(4));
    c.control_id = plain(at(10));
    if (kVersions.count(plain(at(12)))) c.version = plain(at(12));
  return c;
}

namespace {

bool AtLeast25(const std::string& version) { return !(version == "2.3" || version == "2.3.1" || version == "2.4"); }

}  // namespace

const char* AckCodeText(AckCode code) {
  switch (code) {
    case AckCode::kAA: return "AA";
    case AckCode::kAE: return "AE";
    case AckCode::kAR: return "AR";
  }
  return "AR";
}

std::string SenderKey(const std::string& application, const std::string& facility) {
  return application + "^" + facility;
}

OruResult InterpretOru(std::string text, const OruOptions& options, int64_t now_ms) {
  Interpreter interpreter(options, now_ms);
  return interpreter.Run(std::move(text));
}

std::string BuildAck(const AckContext& c, AckCode code, const std::vector<Hl7Error>& errors,
                     const std::string& ack_control_id, int64_t now_ms) {
  const Delimiters& d = c.delimiters;
  const std::string f(1, d.field), cs(1, d.component), ss(1, d.subcomponent);
  auto e = [&](const std::string& s) { return Escape(s, d); };
  const bool v25 = AtLeast25(c.version);
  std::string enc{d.component, d.repetition, d.escape, d.subcomponent};
  std::string out = "MSH" + f + enc + f + "PXSNODE" + f + "PXS" + f + e(c.sending_application) + f +
                    e(c.sending_facility) + f + FormatTs(now_ms) + f + f + "ACK" + cs + "R01" +
                    (c.version == "2.3" ? "" : cs + "ACK") + f + e(ack_control_id) + f + e(c.processing_id) + f +
                    e(c.version) + "\r";
  std::string first_error;
  for (const Hl7Error& err : errors) {
    if (err.severity == 'E') {
      first_error = err.text;
      break;
    }
  }
  out += "MSA" + f + AckCodeText(code) + f + e(c.control_id);
  if (!first_error.empty()) out += f + e(first_error.substr(0, 80));
  out += "\r";
  for (const Hl7Error& err : errors) {
    std::string location = err.segment.empty()
                               ? std::string()
                               : e(err.segment) + cs + (err.sequence ? std::to_string(err.sequence) : "") + cs +
                                     (err.field ? std::to_string(err.field) : "");
    if (v25) {
      out += "ERR" + f + f + location + f + std::to_string(err.code) + cs + e(err.text.substr(0, 250)) + cs + "HL70357" +
             f + std::string(1, err.severity) + f + f + f + f + e(err.text) + "\r";
    } else {
      // v2.3/2.4: ERR-1 "error code and location": segment^sequence^field^code&text&HL70357
      out += "ERR" + f + location + (location.empty() ? cs + cs : "") + cs + std::to_string(err.code) + ss +
             e(err.text.substr(0, 250)) + ss + "HL70357" +
             "\r";
    }
  }
  return out;
}

}  // namespace pxs::hl7
