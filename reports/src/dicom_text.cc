#include "pxs/reports/dicom_text.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcspchrs.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <iconv.h>

#include <cerrno>
#include <optional>

namespace pxs {
namespace {

bool IsTextVr(std::string_view vr) { return vr == "ST" || vr == "LT" || vr == "UT"; }

// The VRs whose values depend on (0008,0005) (PS3.5 6.1.2.3); every other string VR is
// restricted to the default repertoire.
bool IsAffectedVr(std::string_view vr) {
  return vr == "SH" || vr == "LO" || vr == "PN" || vr == "UC" || IsTextVr(vr);
}

bool IsAllowedControl(unsigned char c, std::string_view vr) {
  // PS3.5 6.1.3: ST, LT and UT may hold TAB, LF, FF, CR; ESC only introduces ISO 2022
  // code elements and is gone once the value is UTF-8.
  return IsTextVr(vr) && (c == '\t' || c == '\n' || c == '\f' || c == '\r');
}

void AppendEscaped(std::string& out, unsigned char c) {
  static const char* hex = "0123456789ABCDEF";
  out += '%';
  out += hex[c >> 4];
  out += hex[c & 15];
}

// The value with every byte that is not printable ASCII as %HH: what is kept when the
// bytes cannot be decoded. Plain ASCII, so valid in every VR that can hold text.
std::string Escaped(std::string_view raw) {
  std::string out;
  for (unsigned char c : raw) {
    if (c >= 0x20 && c < 0x7F)
      out += static_cast<char>(c);
    else
      AppendEscaped(out, c);
  }
  return out;
}

std::vector<std::string> SplitBackslash(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == '\\')
      out.emplace_back();
    else
      out.back() += c;
  }
  for (auto& v : out) {
    while (!v.empty() && v.back() == ' ') v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
  }
  return out;
}

std::optional<std::string> Iconv(const char* from, const std::string& in) {
  iconv_t cd = ::iconv_open("UTF-8", from);
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  std::string out(in.size() * 4 + 16, '\0');
  char* src = const_cast<char*>(in.data());
  size_t src_left = in.size();
  char* dst = out.data();
  size_t dst_left = out.size();
  size_t r = ::iconv(cd, &src, &src_left, &dst, &dst_left);
  ::iconv_close(cd);
  if (r == static_cast<size_t>(-1) || src_left != 0) return std::nullopt;
  out.resize(out.size() - dst_left);
  return out;
}

// DCMTK 3.6.7 built against glibc iconv (Debian's) cannot open ISO 2022 IR 87 or
// IR 159 (glibc has no iconv name for either code element alone), so Japanese names
// would not decode at all. The DICOM ISO 2022 Japanese code elements map one to one
// onto EUC-JP, which glibc does decode: JIS X 0208 (ESC $ B) is EUC-JP code set 1 with
// the high bits set, JIS X 0212 (ESC $ ( D) is 0x8F + code set 3, JIS X 0201 katakana
// in G1 (ESC ) I) is 0x8E + the byte. JIS X 0201 Roman (ESC ( J) differs from ASCII
// only in 0x5C (the value delimiter in DICOM) and 0x7E, and is read as ASCII.
bool IsIso2022Japanese(const std::vector<std::string>& terms) {
  bool japanese = false;
  for (const std::string& t : terms) {
    if (t == "ISO 2022 IR 87" || t == "ISO 2022 IR 159")
      japanese = true;
    else if (!t.empty() && t != "ISO 2022 IR 6" && t != "ISO 2022 IR 13")
      return false;
  }
  return japanese;
}

std::optional<std::string> DecodeIso2022Japanese(const std::vector<std::string>& terms,
                                                 std::string_view raw,
                                                 std::string_view delimiters) {
  enum class G0 { kAscii, kJis0208, kJis0212 };
  const bool katakana_first = terms.front() == "ISO 2022 IR 13";
  G0 g0 = G0::kAscii;
  bool g1_katakana = katakana_first;
  std::string euc;
  for (size_t i = 0; i < raw.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c == 0x1B) {
      std::string_view rest = raw.substr(i + 1);
      auto starts = [&](std::string_view seq) { return rest.substr(0, seq.size()) == seq; };
      if (starts("(B") || starts("(J")) {
        g0 = G0::kAscii;
        i += 2;
      } else if (starts("$B") || starts("$@")) {
        g0 = G0::kJis0208;
        i += 2;
      } else if (starts("$(D")) {
        g0 = G0::kJis0212;
        i += 3;
      } else if (starts(")I")) {
        g1_katakana = true;
        i += 2;
      } else
        return std::nullopt;
      continue;
    }
    if (g0 != G0::kAscii && c >= 0x21 && c <= 0x7E) {
      if (i + 1 >= raw.size()) return std::nullopt;
      unsigned char c2 = static_cast<unsigned char>(raw[i + 1]);
      if (c2 < 0x21 || c2 > 0x7E) return std::nullopt;
      if (g0 == G0::kJis0212) euc += '\x8F';
      euc += static_cast<char>(c | 0x80);
      euc += static_cast<char>(c2 | 0x80);
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (!g1_katakana || c < 0xA1 || c > 0xDF) return std::nullopt;
      euc += '\x8E';
      euc += static_cast<char>(c);
      continue;
    }
    // PS3.5 6.1.2.5.3: the initial code elements are back in force after each
    // delimiter (and after CR, LF, FF, TAB).
    if (delimiters.find(static_cast<char>(c)) != std::string_view::npos || c == '\r' || c == '\n' ||
        c == '\f' || c == '\t') {
      g0 = G0::kAscii;
      g1_katakana = katakana_first;
    }
    euc += static_cast<char>(c);
  }
  return Iconv("EUC-JP", euc);
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80                          ? 0
               : (c & 0xE0) == 0xC0 && c >= 0xC2 ? 1
               : (c & 0xF0) == 0xE0              ? 2
               : (c & 0xF8) == 0xF0 && c <= 0xF4 ? 3
                                                 : 4;
    if (n == 4 || i + n >= s.size() + (n == 0)) return false;
    for (size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

std::string_view TrimPadding(std::string_view v, bool keep_leading_spaces) {
  while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.remove_suffix(1);
  if (!keep_leading_spaces) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\0')) v.remove_prefix(1);
  }
  return v;
}

}  // namespace

bool IsPlainAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

DicomTextReader::DicomTextReader(std::string specific_character_set)
    : declared_(std::move(specific_character_set)) {
  while (!declared_.empty() && (declared_.back() == ' ' || declared_.back() == '\0'))
    declared_.pop_back();
}

DicomTextReader::DicomTextReader(DcmItem& item) {
  OFString cs;
  if (item.findAndGetOFStringArray(DCM_SpecificCharacterSet, cs, /*searchIntoSub=*/OFFalse)
          .good()) {
    *this = DicomTextReader(std::string(cs.c_str(), cs.length()));
  }
}

DicomText DicomTextReader::Get(DcmItem& item, const DcmTagKey& tag) const {
  DcmElement* e = nullptr;
  if (item.findAndGetElement(tag, e, /*searchIntoSub=*/OFFalse).bad() || e == nullptr ||
      !e->isaString()) {
    return {};
  }
  char* value = nullptr;
  Uint32 length = 0;
  if (e->getString(value, length).bad() || value == nullptr) return {};
  return Decode(std::string_view(value, length), DcmVR(e->ident()).getVRName());
}

DicomText DicomTextReader::Decode(std::string_view raw, std::string_view vr) const {
  DicomText out;
  const std::string_view value = TrimPadding(raw, IsTextVr(vr));
  bool needs_decoding = false;
  for (unsigned char c : value) needs_decoding = needs_decoding || c >= 0x80 || c == 0x1B;
  std::string decoded;
  if (!needs_decoding) {
    decoded.assign(value);
  } else if (!IsAffectedVr(vr)) {
    out.problem = std::string(vr) + " value has bytes outside the default repertoire";
    decoded = Escaped(value);
  } else {
    // Delimiters that bring the initial code elements back (PS3.5 6.1.2.5.3).
    const char* delimiters = vr == "PN" ? "\\^=" : IsTextVr(vr) ? "" : "\\";
    const std::vector<std::string> terms = SplitBackslash(declared_);
    std::optional<std::string> converted;
    std::string why;
    if (IsIso2022Japanese(terms)) {
      converted = DecodeIso2022Japanese(terms, value, delimiters);
      if (!converted) why = "not valid ISO 2022 Japanese";
    } else {
      DcmSpecificCharacterSet converter;
      OFCondition cond = converter.selectCharacterSet(declared_.c_str(), "ISO_IR 192");
      OFString utf8;
      if (cond.good()) cond = converter.convertString(value.data(), value.size(), utf8, delimiters);
      if (cond.good())
        converted = std::string(utf8.c_str(), utf8.length());
      else
        why = cond.text();
    }
    if (converted) {
      decoded = std::move(*converted);
    } else {
      out.problem = std::string(vr) + " value not decodable from Specific Character Set '" +
                    declared_ + "' (" + why + ")";
      decoded = Escaped(value);
    }
    if (out.problem.empty() && !IsValidUtf8(decoded)) {
      out.problem = std::string(vr) + " value decoded from '" + declared_ + "' is not valid UTF-8";
      decoded = Escaped(value);
    }
  }
  // Control characters the VR does not allow (an embedded NUL, a stray ESC) cannot be
  // sent on; they are written as %HH.
  std::string& clean = out.utf8;
  bool controls = false;
  for (unsigned char c : decoded) {
    if ((c < 0x20 || c == 0x7F) && !IsAllowedControl(c, vr)) {
      AppendEscaped(clean, c);
      controls = true;
    } else {
      clean += static_cast<char>(c);
    }
  }
  if (controls && out.problem.empty())
    out.problem = std::string(vr) + " value has control characters";
  return out;
}

namespace {

void Normalize(DcmItem& item, const DicomTextReader& inherited, unsigned long max_bytes,
               std::vector<std::string>& problems, int depth) {
  DicomTextReader own(item);
  const DicomTextReader& reader = own.declared().empty() ? inherited : own;
  std::vector<DcmTagKey> drop;
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    if (e == nullptr) continue;
    if (e->ident() == EVR_SQ) {
      auto* seq = static_cast<DcmSequenceOfItems*>(e);
      if (depth >= 8) continue;  // the SR copies nothing that deep
      for (unsigned long k = 0; k < seq->card(); ++k) {
        Normalize(*seq->getItem(k), reader, max_bytes, problems, depth + 1);
      }
      continue;
    }
    if (!e->isaString() || e->getTag() == DCM_SpecificCharacterSet) continue;
    const std::string vr = DcmVR(e->ident()).getVRName();
    if (e->getLength() > max_bytes) {
      if (IsAffectedVr(vr)) drop.push_back(e->getTag());
      continue;
    }
    char* value = nullptr;
    Uint32 length = 0;
    if (e->getString(value, length).bad()) continue;
    const std::string_view raw = value ? std::string_view(value, length) : std::string_view();
    DicomText text = reader.Decode(raw, vr);
    if (!text.problem.empty())
      problems.push_back(std::string(e->getTag().toString().c_str()) + " " + text.problem);
    if (text.utf8 != raw) e->putString(text.utf8.c_str(), static_cast<Uint32>(text.utf8.size()));
  }
  for (const DcmTagKey& tag : drop) item.findAndDeleteElement(tag);
  item.findAndDeleteElement(DCM_SpecificCharacterSet);
}

bool AnyNonAscii(DcmItem& item, int depth) {
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    if (e == nullptr) continue;
    if (e->ident() == EVR_SQ) {
      auto* seq = static_cast<DcmSequenceOfItems*>(e);
      for (unsigned long k = 0; depth < 16 && k < seq->card(); ++k) {
        if (AnyNonAscii(*seq->getItem(k), depth + 1)) return true;
      }
      continue;
    }
    if (!e->isaString() || !e->valueLoaded()) continue;
    char* value = nullptr;
    Uint32 length = 0;
    if (e->getString(value, length).good() && value &&
        !IsPlainAscii(std::string_view(value, length)))
      return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> NormalizeTextToUtf8(DcmItem& item, unsigned long max_value_bytes) {
  std::vector<std::string> problems;
  Normalize(item, DicomTextReader(item), max_value_bytes, problems, 0);
  item.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  return problems;
}

bool HasNonAsciiText(DcmItem& item) { return AnyNonAscii(item, 0); }

}  // namespace pxs
