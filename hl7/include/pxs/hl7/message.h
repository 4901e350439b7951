// pxs::hl7: the HL7 v2 message syntax (ER7, "pipe and hat"): segments, fields,
// repetitions, components, sub-components and escape sequences, with the delimiters a
// message declares in MSH-1/MSH-2.
//
// Hand-written: Debian bookworm packages no maintained C++ HL7 v2 library (HAPI is
// Java, python3-hl7 is Python; the C++ ones on the net are unpackaged and unmaintained),
// and the syntax is small. Only what ORU^R01 ingest needs is here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pxs/common/status.h"

namespace pxs::hl7 {

struct Delimiters {
  char field = '|';
  char component = '^';
  char repetition = '~';
  char escape = '\\';
  char subcomponent = '&';
  char truncation = 0;  // v2.7+: '#' may follow in MSH-2; 0 when absent
};

// One segment's fields, split but not unescaped. fields[0] is the segment id. For MSH,
// fields[1] is MSH-1 (the field separator) and fields[2] MSH-2, so fields[n] is always
// field n of the segment, as the standard numbers them.
struct Segment {
  std::string id;
  std::vector<std::string_view> fields;

  // Field n, repetition rep (0-based), component comp and sub-component sub (1-based,
  // as the standard counts), unescaped. "" when absent. MSH-1 and MSH-2 are returned raw.
  std::string Get(size_t field, size_t rep = 0, size_t comp = 1, size_t sub = 1) const;
  size_t Repetitions(size_t field) const;
  std::string_view Raw(size_t field) const { return field < fields.size() ? fields[field] : std::string_view(); }

  const Delimiters* delimiters = nullptr;
};

// A parsed message. It refers into `text`, which it owns.
class Message {
 public:
  // Parses the ER7 text. Segments end in CR (LF and CRLF are accepted too). Errors
  // (InvalidArgument) say what is wrong and where: no MSH first, a field separator or
  // encoding characters that are missing, repeated or alphanumeric (MSH-2).
  static StatusOr<Message> Parse(std::string text);

  Message(Message&&) = default;
  Message& operator=(Message&&) = default;
  Message(const Message&) = delete;

  const Delimiters& delimiters() const { return *delims_; }
  const std::vector<Segment>& segments() const { return segments_; }
  const Segment& msh() const { return segments_.front(); }

 private:
  Message() = default;
  std::unique_ptr<std::string> text_;  // stable address for the string_views
  std::unique_ptr<Delimiters> delims_;
  std::vector<Segment> segments_;
};

// Resolves the escape sequences of one leaf value: \F\ \S\ \T\ \R\ \E\ (the
// delimiters), \Xhh..\ (bytes), \.br\ (a line break); highlighting (\H\ \N\) and
// unknown sequences are dropped / kept literally as the standard allows.
std::string Unescape(std::string_view raw, const Delimiters& d);
// The reverse, for text the node writes (ACK / ERR texts).
std::string Escape(std::string_view text, const Delimiters& d);

// An HL7 DTM / TS value: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ].
struct DateTime {
  int64_t wall_clock_ms = 0;           // the local time as if UTC (see pxs/storage/observations.h)
  std::optional<int> utc_offset_min;   // when the value carries +/-ZZZZ
};
// At least YYYYMMDD is required (a day: the timeline needs one). InvalidArgument with
// the reason otherwise.
StatusOr<DateTime> ParseDateTime(std::string_view dtm);

// Latin-1 bytes -> UTF-8 (for MSH-18 8859/1 texts).
std::string Latin1ToUtf8(std::string_view s);

}  // namespace pxs::hl7
