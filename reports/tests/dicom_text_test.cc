// DicomTextReader against the PS3.5 examples: every received text becomes UTF-8 from
// its declared character set, padding goes, control characters a VR does not allow
// and bytes that cannot be decoded are written as %HH and reported.
#include "pxs/reports/dicom_text.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <gtest/gtest.h>

#include <string>

namespace pxs {
namespace {

using namespace std::string_literals;

// PS3.5 Annex H (H.3.1), ISO 2022 IR 87.
const std::string kJapaneseRaw =
    "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
const std::string kJapanese = "Yamada^Tarou=山田^太郎=やまだ^たろう";
// PS3.5 Annex I (I.2), ISO 2022 IR 149.
const std::string kKoreanRaw =
    "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
const std::string kKorean = "Hong^Gildong=洪^吉洞=홍^길동";

TEST(DicomTextTest, DecodesEachDeclaredCharacterSetToUtf8) {
  EXPECT_EQ(DicomTextReader("ISO_IR 100").Decode("M\xFCller^J\xFCrgen ", "PN").utf8,
            "Müller^Jürgen");
  DicomText jp = DicomTextReader("\\ISO 2022 IR 87").Decode(kJapaneseRaw, "PN");
  EXPECT_EQ(jp.utf8, kJapanese);
  EXPECT_EQ(jp.problem, "");
  EXPECT_EQ(DicomTextReader("\\ISO 2022 IR 149").Decode(kKoreanRaw, "PN").utf8, kKorean);
  EXPECT_EQ(
      DicomTextReader("GB18030").Decode("Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=", "PN").utf8,
      "Wang^XiaoDong=王^小东=");
  EXPECT_EQ(DicomTextReader("ISO_IR 192")
                .Decode("Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=", "PN")
                .utf8,
            "Wang^XiaoDong=王^小東=");
}

// PS3.5 H.3.2: half-width katakana (ISO 2022 IR 13) first, then JIS X 0208 (IR 87),
// back to JIS X 0201 Roman with ESC ( J. DCMTK with glibc iconv opens neither.
TEST(DicomTextTest, JapaneseWithKatakanaAndJisRoman) {
  const std::string raw =
      "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$"
      "m$&\x1b(J";
  DicomText t = DicomTextReader("ISO 2022 IR 13\\ISO 2022 IR 87").Decode(raw, "PN");
  EXPECT_EQ(t.utf8, "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう");
  EXPECT_EQ(t.problem, "");
}

// The measured bug: escape codes are ASCII bytes, so "only non-ASCII needs decoding"
// let them through raw.
TEST(DicomTextTest, EscapeSequencesAloneAreDecoded) {
  DicomText t = DicomTextReader("\\ISO 2022 IR 87").Decode("\x1b$B;3ED\x1b(B", "LO");
  EXPECT_EQ(t.utf8, "山田");
}

TEST(DicomTextTest, PaddingAndNulsAreRemovedControlCharactersEscaped) {
  DicomTextReader ascii("");
  EXPECT_EQ(ascii.Decode("PID-7\0"s, "LO").utf8, "PID-7");
  EXPECT_EQ(ascii.Decode("PID-7\0\0  \0"s, "LO").problem, "");
  EXPECT_EQ(ascii.Decode("  CHEST ", "CS").utf8, "CHEST");
  DicomText nul = ascii.Decode("AB\0CD"s, "LO");
  EXPECT_EQ(nul.utf8, "AB%00CD");
  EXPECT_NE(nul.problem, "");
  // ST, LT, UT keep leading spaces and the line controls PS3.5 6.1.3 allows.
  EXPECT_EQ(ascii.Decode("  line 1\r\nline 2\tend  ", "LT").utf8, "  line 1\r\nline 2\tend");
  EXPECT_EQ(ascii
                .Decode("a\x07"
                        "b",
                        "LT")
                .utf8,
            "a%07b");
}

// Never an invalid value: bytes the declared set does not have are kept as %HH.
TEST(DicomTextTest, UndecodableBytesAreEscapedAndReported) {
  DicomText latin1_without_declaration = DicomTextReader("").Decode("M\xFCller", "PN");
  EXPECT_EQ(latin1_without_declaration.utf8, "M%FCller");
  EXPECT_NE(latin1_without_declaration.problem.find("not decodable"), std::string::npos)
      << latin1_without_declaration.problem;
  EXPECT_EQ(latin1_without_declaration.problem.find("ller"), std::string::npos)
      << "no patient data in the log";
  EXPECT_EQ(DicomTextReader("ISO_IR 192").Decode("M\xFCller", "PN").utf8, "M%FCller");
  EXPECT_EQ(DicomTextReader("ISO_IR 999").Decode("M\xFCller", "PN").utf8, "M%FCller");
  // An unknown term does not matter to plain ASCII, which is the same in every set.
  EXPECT_EQ(DicomTextReader("ISO_IR 999").Decode("MULLER", "PN").problem, "");
  EXPECT_EQ(DicomTextReader("\\ISO 2022 IR 87").Decode("\x1b$B;", "PN").utf8, "%1B$B;");
  EXPECT_EQ(DicomTextReader("ISO_IR 100").Decode("\xE9t\xE9", "CS").utf8, "%E9t%E9");
}

TEST(DicomTextTest, ReadsTheItemsDeclarationAndNormalizesAWholeHeader) {
  DcmItem item;
  item.putAndInsertString(DCM_SpecificCharacterSet, "\\ISO 2022 IR 87");
  item.putAndInsertString(DCM_PatientName, kJapaneseRaw.c_str());
  item.putAndInsertString(DCM_PatientID, "ID-1\0"s.c_str(), Uint32{5}, OFTrue);
  item.putAndInsertString(DCM_StudyDescription, "\x1b$B;3ED\x1b(B");
  DicomTextReader reader(item);
  EXPECT_EQ(reader.declared(), "\\ISO 2022 IR 87");
  EXPECT_EQ(reader.Get(item, DCM_PatientName).utf8, kJapanese);
  EXPECT_EQ(reader.Get(item, DCM_PatientID).utf8, "ID-1");
  EXPECT_EQ(reader.Get(item, DCM_AccessionNumber).utf8, "");
  EXPECT_TRUE(NormalizeTextToUtf8(item, 4096).empty());
  OFString v;
  item.findAndGetOFStringArray(DCM_SpecificCharacterSet, v);
  EXPECT_EQ(std::string(v.c_str()), "ISO_IR 192");
  item.findAndGetOFStringArray(DCM_PatientName, v);
  EXPECT_EQ(std::string(v.c_str()), kJapanese);
  DcmElement* id = nullptr;
  ASSERT_TRUE(item.findAndGetElement(DCM_PatientID, id).good());
  EXPECT_EQ(id->getLength(), 4u);
  EXPECT_TRUE(HasNonAsciiText(item));
}

}  // namespace
}  // namespace pxs
