#include "pxs/hl7/message.h"

#include <cctype>
#include <ctime>

namespace pxs::hl7 {
namespace {

// The i-th (0-based) piece of s split at sep, or "" when there are fewer.
std::string_view Piece(std::string_view s, char sep, size_t i) {
  size_t start = 0;
  for (size_t n = 0; n < i; ++n) {
    size_t at = s.find(sep, start);
    if (at == std::string_view::npos) return {};
    start = at + 1;
  }
  size_t end = s.find(sep, start);
  return s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
}

size_t CountPieces(std::string_view s, char sep) {
  if (s.empty()) return 0;
  size_t n = 1;
  for (char c : s) n += c == sep;
  return n;
}

bool IsValidDelimiter(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u >= 0x21 && u <= 0x7e && !std::isalnum(u);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool Digits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int ToInt(std::string_view s) {
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

}  // namespace

std::string Segment::Get(size_t field, size_t rep, size_t comp, size_t sub) const {
  if (field >= fields.size() || comp == 0 || sub == 0) return {};
  std::string_view f = fields[field];
  if (id == "MSH" && field <= 2) return std::string(f);  // the delimiters themselves
  const Delimiters& d = *delimiters;
  std::string_view r = Piece(f, d.repetition, rep);
  std::string_view c = Piece(r, d.component, comp - 1);
  std::string_view s = Piece(c, d.subcomponent, sub - 1);
  return Unescape(s, d);
}

size_t Segment::Repetitions(size_t field) const {
  if (field >= fields.size()) return 0;
  return CountPieces(fields[field], delimiters->repetition);
}

StatusOr<Message> Message::Parse(std::string text) {
  Message m;
  m.text_ = std::make_unique<std::string>(std::move(text));
  m.delims_ = std::make_unique<Delimiters>();
  std::string_view all = *m.text_;
  // Leading blank lines are tolerated; anything else before MSH is not.
  while (!all.empty() && (all.front() == '\r' || all.front() == '\n')) all.remove_prefix(1);
  if (all.size() < 8 || all.substr(0, 3) != "MSH") {
    return Status::InvalidArgument("the message does not start with an MSH segment");
  }
  Delimiters& d = *m.delims_;
  d.field = all[3];
  if (!IsValidDelimiter(d.field)) {
    return Status::InvalidArgument("MSH-1: field separator '" + std::string(1, all[3]) + "' is not a printable non-alphanumeric character");
  }
  size_t enc_end = all.find(d.field, 4);
  if (enc_end == std::string_view::npos) return Status::InvalidArgument("MSH-2: no field separator after the encoding characters");
  std::string_view enc = all.substr(4, enc_end - 4);
  if (enc.size() != 4 && enc.size() != 5) {
    return Status::InvalidArgument("MSH-2: encoding characters must be 4 (or 5 with the truncation character), got '" +
                                   std::string(enc) + "'");
  }
  std::string seen(1, d.field);
  for (char c : enc) {
    if (!IsValidDelimiter(c)) {
      return Status::InvalidArgument("MSH-2: encoding character '" + std::string(1, c) + "' is not a printable non-alphanumeric character");
    }
    if (seen.find(c) != std::string::npos) {
      return Status::InvalidArgument("MSH-2: encoding characters '" + std::string(enc) + "' repeat a delimiter ('" +
                                     std::string(1, c) + "')");
    }
    seen.push_back(c);
  }
  d.component = enc[0];
  d.repetition = enc[1];
  d.escape = enc[2];
  d.subcomponent = enc[3];
  if (enc.size() == 5) d.truncation = enc[4];

  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) end = all.size();
    std::string_view line = all.substr(pos, end - pos);
    pos = end + 1;
    if (end < all.size() && all[end] == '\r' && pos < all.size() && all[pos] == '\n') ++pos;  // CRLF
    if (line.empty()) continue;
    Segment seg;
    seg.delimiters = m.delims_.get();
    auto split = [&](std::string_view rest) {
      for (size_t start = 0;;) {
        size_t at = rest.find(d.field, start);
        seg.fields.push_back(rest.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
        if (at == std::string_view::npos) return;
        start = at + 1;
      }
    };
    if (m.segments_.empty()) {
      // MSH: field 1 is the separator itself, field 2 the encoding characters.
      seg.fields.push_back(line.substr(0, 3));
      seg.fields.push_back(line.substr(3, 1));
      split(line.substr(4));
    } else {
      split(line);
    }
    seg.id = std::string(seg.fields[0]);
    if (seg.id.size() != 3 || !std::isupper(static_cast<unsigned char>(seg.id[0])) ||
        !std::isalnum(static_cast<unsigned char>(seg.id[1])) || !std::isalnum(static_cast<unsigned char>(seg.id[2]))) {
      std::string shown = seg.id.substr(0, 16);
      for (char& c : shown) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
      }
      return Status::InvalidArgument("segment " + std::to_string(m.segments_.size() + 1) + ": '" + shown +
                                     "' is not a segment id (3 characters, upper case letter first)");
    }
    if (!m.segments_.empty() && seg.id == "MSH") {
      return Status::InvalidArgument("segment " + std::to_string(m.segments_.size() + 1) +
                                     ": a second MSH (batches of messages are not supported: send one message per frame)");
    }
    m.segments_.push_back(std::move(seg));
  }
  return m;
}

std::string Unescape(std::string_view raw, const Delimiters& d) {
  if (raw.find(d.escape) == std::string_view::npos) return std::string(raw);
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != d.escape) {
      out.push_back(raw[i]);
      continue;
    }
    size_t close = raw.find(d.escape, i + 1);
    if (close == std::string_view::npos) {  // a lone escape character: keep it
      out.append(raw.substr(i));
      break;
    }
    std::string_view seq = raw.substr(i + 1, close - i - 1);
    if (seq == "F") out.push_back(d.field);
    else if (seq == "S") out.push_back(d.component);
    else if (seq == "T") out.push_back(d.subcomponent);
    else if (seq == "R") out.push_back(d.repetition);
    else if (seq == "E") out.push_back(d.escape);
    else if (seq == "P" && d.truncation) out.push_back(d.truncation);
    else if (seq == ".br") out.push_back('\n');
    else if (seq == "H" || seq == "N") { /* highlighting: no meaning in stored values */ }
    else if (seq.size() >= 3 && seq[0] == 'X' && seq.size() % 2 == 1) {
      std::string bytes;
      bool ok = true;
      for (size_t k = 1; k + 1 < seq.size(); k += 2) {
        int hi = HexValue(seq[k]), lo = HexValue(seq[k + 1]);
        if (hi < 0 || lo < 0) { ok = false; break; }
        bytes.push_back(static_cast<char>(hi * 16 + lo));
      }
      if (ok) out += bytes;
      else out.append(raw.substr(i, close - i + 1));
    } else {
      out.append(raw.substr(i, close - i + 1));  // unknown: kept as sent
    }
    i = close;
  }
  return out;
}

std::string Escape(std::string_view text, const Delimiters& d) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == d.field) out += std::string(1, d.escape) + "F" + d.escape;
    else if (c == d.component) out += std::string(1, d.escape) + "S" + d.escape;
    else if (c == d.subcomponent) out += std::string(1, d.escape) + "T" + d.escape;
    else if (c == d.repetition) out += std::string(1, d.escape) + "R" + d.escape;
    else if (c == d.escape) out += std::string(1, d.escape) + "E" + d.escape;
    else if (c == '\r' || c == '\n') out += std::string(1, d.escape) + ".br" + d.escape;
    else out.push_back(c);
  }
  return out;
}

StatusOr<DateTime> ParseDateTime(std::string_view dtm) {
  std::string_view v = dtm;
  DateTime out;
  size_t zone = v.find_first_of("+-");
  if (zone != std::string_view::npos) {
    std::string_view z = v.substr(zone + 1);
    if (z.size() != 4 || !Digits(z)) return Status::InvalidArgument("'" + std::string(dtm) + "': the UTC offset must be +/-HHMM");
    int minutes = ToInt(z.substr(0, 2)) * 60 + ToInt(z.substr(2, 2));
    if (minutes > 14 * 60) return Status::InvalidArgument("'" + std::string(dtm) + "': UTC offset out of range");
    out.utc_offset_min = v[zone] == '-' ? -minutes : minutes;
    v = v.substr(0, zone);
  }
  std::string_view fraction;
  size_t dot = v.find('.');
  if (dot != std::string_view::npos) {
    fraction = v.substr(dot + 1);
    v = v.substr(0, dot);
    if (fraction.empty() || fraction.size() > 4 || !Digits(fraction) || v.size() != 14) {
      return Status::InvalidArgument("'" + std::string(dtm) + "': a fraction of a second needs YYYYMMDDHHMMSS before it and 1-4 digits");
    }
  }
  if (!Digits(v) || v.size() < 8 || v.size() > 14 || v.size() % 2 != 0) {
    return Status::InvalidArgument("'" + std::string(dtm) + "' is not an HL7 date/time (YYYYMMDD[HH[MM[SS]]], at least a day)");
  }
  std::tm tm{};
  tm.tm_year = ToInt(v.substr(0, 4)) - 1900;
  tm.tm_mon = ToInt(v.substr(4, 2)) - 1;
  tm.tm_mday = ToInt(v.substr(6, 2));
  tm.tm_hour = v.size() >= 10 ? ToInt(v.substr(8, 2)) : 0;
  tm.tm_min = v.size() >= 12 ? ToInt(v.substr(10, 2)) : 0;
  tm.tm_sec = v.size() >= 14 ? ToInt(v.substr(12, 2)) : 0;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > kDays[tm.tm_mon] || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year + 1900 < 1800) {
    return Status::InvalidArgument("'" + std::string(dtm) + "': month, day or time out of range");
  }
  const int year = tm.tm_year + 1900;
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (tm.tm_mon == 1 && tm.tm_mday == 29 && !leap) return Status::InvalidArgument("'" + std::string(dtm) + "': no 29 February that year");
  int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  if (!fraction.empty()) {
    std::string f(fraction);
    while (f.size() < 3) f.push_back('0');
    ms += ToInt(std::string_view(f).substr(0, 3));
  }
  out.wall_clock_ms = ms;
  return out;
}

std::string Latin1ToUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

}  // namespace pxs::hl7
