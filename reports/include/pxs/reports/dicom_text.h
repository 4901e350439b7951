// Text values of received data sets as the node keeps and sends them: decoded from the
// source's Specific Character Set (0008,0005) to UTF-8, padding removed, and nothing in
// them that their VR does not allow (PS3.5 6.1, 6.2). The SCP (what the database
// stores) and the SR builder (what leaves the node) read values through this one
// reader, so the database and the SR say the same thing. docs/conformance.md section 6.
#pragma once

#include <string>
#include <string_view>
#include <vector>

class DcmItem;
class DcmTagKey;

namespace pxs {

struct DicomText {
  std::string utf8;  // valid UTF-8, valid for the VR
  // Empty when the value was read as it is. Otherwise what had to be done to it, naming
  // the character set but never the value (patient data stays out of the log).
  std::string problem;
};

class DicomTextReader {
 public:
  // The declared character set of `item` ((0008,0005), empty: the default repertoire).
  explicit DicomTextReader(DcmItem& item);
  explicit DicomTextReader(std::string specific_character_set);

  const std::string& declared() const { return declared_; }

  // The attribute's value ("" when absent). Leading and trailing padding (spaces, NULs)
  // is removed (leading spaces are kept for ST, LT, UT, where they are significant).
  // Bytes that cannot be decoded, and control characters the VR does not allow, are
  // written as %HH (the byte in hex) and `problem` says so.
  DicomText Get(DcmItem& item, const DcmTagKey& tag) const;

  // One raw value (all its bytes, any embedded NUL included) of the given VR ("PN").
  DicomText Decode(std::string_view raw, std::string_view vr) const;

 private:
  std::string declared_;
};

// Rewrites every string value of `item` and its sequences as DicomTextReader reads it
// and declares ISO_IR 192. Affected values too long to have been loaded (longer than
// max_value_bytes) are removed instead: the item is a private copy used to build the
// SR, and text the node has not decoded must not reach it. Returns the problems.
std::vector<std::string> NormalizeTextToUtf8(DcmItem& item, unsigned long max_value_bytes);

// True if a string value of the item (sequences included) has a byte above 0x7F.
bool HasNonAsciiText(DcmItem& item);

bool IsPlainAscii(std::string_view s);

}  // namespace pxs
