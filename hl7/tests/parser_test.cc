// The HL7 v2 syntax and the ORU^R01 rules (ACK codes, what is kept, what is refused).
#include <gtest/gtest.h>

#include "pxs/hl7/loinc.h"
#include "pxs/hl7/message.h"
#include "pxs/hl7/oru.h"

namespace pxs::hl7 {
namespace {

constexpr int64_t kNow = 1764748800000;  // 2025-12-03T08:00:00Z

std::string Oru(const std::string& version, const std::string& obx, const std::string& pid3 = "P123^^^HOSP^MR",
                const std::string& msh_tail = "") {
  return "MSH|^~\\&|MONITOR|ICU|PXSNODE|PXS|20251203080000||ORU^R01^ORU_R01|MSG0001|P|" + version + msh_tail + "\r" +
         "PID|1||" + pid3 + "||DOE^JANE\r" + "OBR|1|||VITALS|||20251203074500\r" + obx;
}

TEST(Hl7Message, SplitsFieldsRepetitionsComponentsAndUnescapes) {
  auto m = Message::Parse("MSH|^~\\&|A|B\rPID|1||X1^^^H1~X2^^^H2&1.2.3&ISO||A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\\\X41\\\r");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const Segment& pid = m->segments()[1];
  EXPECT_EQ(pid.Repetitions(3), 2u);
  EXPECT_EQ(pid.Get(3, 1, 1), "X2");
  EXPECT_EQ(pid.Get(3, 1, 4, 1), "H2");
  EXPECT_EQ(pid.Get(3, 1, 4, 2), "1.2.3");
  EXPECT_EQ(pid.Get(5), "A|B^C&D~E\\A");
  EXPECT_EQ(m->msh().Get(3), "A");
  EXPECT_EQ(m->msh().Get(2), "^~\\&");
}

TEST(Hl7Message, HonoursTheDeclaredDelimiters) {
  auto m = Message::Parse("MSH#*!@%#A*1#B\nOBX#1#NM#59408-5*SpO2*LN#a*b!c*d\r\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->delimiters().component, '*');
  EXPECT_EQ(m->segments()[1].Get(3, 0, 2), "SpO2");
  EXPECT_EQ(m->segments()[1].Get(4, 1, 2), "d");
  EXPECT_EQ(m->msh().Get(3, 0, 2), "1");
}

TEST(Hl7Message, RefusesBrokenEncodingCharacters) {
  EXPECT_FALSE(Message::Parse("PID|1\r").ok());
  auto repeated = Message::Parse("MSH|^^\\&|A\r");
  ASSERT_FALSE(repeated.ok());
  EXPECT_NE(repeated.status().message().find("MSH-2"), std::string::npos);
  EXPECT_FALSE(Message::Parse("MSH|^~|A\r").ok());
  EXPECT_FALSE(Message::Parse("MSH|A~\\&|A\r").ok());
  EXPECT_FALSE(Message::Parse("MSH|^~\\&|A\rpid|1\r").ok());
}

TEST(Hl7Message, EscapeRoundTrips) {
  Delimiters d;
  const std::string text = "a|b^c&d~e\\f";
  EXPECT_EQ(Unescape(Escape(text, d), d), text);
}

TEST(Hl7DateTime, ReadsPrecisionsOffsetsAndRefusesNonsense) {
  auto t = ParseDateTime("20251203074512.25+0100");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->wall_clock_ms, 1764747912250);  // wall clock as if UTC
  ASSERT_TRUE(t->utc_offset_min.has_value());
  EXPECT_EQ(*t->utc_offset_min, 60);
  EXPECT_EQ(ParseDateTime("20251203")->wall_clock_ms, 1764720000000);
  EXPECT_FALSE(ParseDateTime("2025").ok());
  EXPECT_FALSE(ParseDateTime("20251340").ok());
  EXPECT_FALSE(ParseDateTime("20250229").ok());
  EXPECT_FALSE(ParseDateTime("2025120307451").ok());
  EXPECT_FALSE(ParseDateTime("yesterday").ok());
}

TEST(Loinc, TableCodesHaveValidCheckDigits) {
  for (const LoincEntry& e : KnownLoincCodes()) EXPECT_TRUE(LooksLikeLoinc(e.code)) << e.code;
  EXPECT_FALSE(LooksLikeLoinc("59408-4"));
  EXPECT_FALSE(LooksLikeLoinc("SPO2"));
  EXPECT_EQ(CodesOf("spo2").size(), 2u);
}

TEST(Oru, StoresNumericLoincObservationsWithUnitsAndTimes) {
  const std::string obx =
      "OBX|1|NM|59408-5^SpO2^LN||91|%^percent^UCUM|||||F|||20251203075500\r"
      "OBX|2|NM|3151-8^O2 flow^LN||4.5|L/min|||||F\r"  // no OBX-14: OBR-7
      "OBX|3|SN|1988-5^CRP^LN||=^120|mg/L|||||F|||20251203060000\r";
  for (const char* version : {"2.3", "2.5.1", "2.8"}) {
    OruResult r = InterpretOru(Oru(version, obx), {}, kNow);
    ASSERT_EQ(r.ack, AckCode::kAA) << version << ": " << (r.errors.empty() ? "" : r.errors[0].text);
    ASSERT_EQ(r.message.observations.size(), 3u);
    const auto& spo2 = r.message.observations[0];
    EXPECT_EQ(spo2.patient.patient_id, "P123");
    EXPECT_EQ(spo2.patient.issuer, "HOSP");
    EXPECT_EQ(spo2.loinc, "59408-5");
    EXPECT_DOUBLE_EQ(spo2.value, 91);
    EXPECT_EQ(spo2.unit, "%");
    EXPECT_TRUE(spo2.plotted);
    EXPECT_EQ(spo2.observed_at_text, "20251203075500");
    EXPECT_EQ(r.message.observations[1].observed_at_text, "20251203074500");
    EXPECT_DOUBLE_EQ(r.message.observations[1].value, 4.5);
    EXPECT_DOUBLE_EQ(r.message.observations[2].value, 120);
    EXPECT_EQ(r.message.sender, "MONITOR^ICU");
    EXPECT_EQ(r.message.message_id, "MSG0001");
  }
}

TEST(Oru, UnknownLoincIsStoredNotPlotted_NonLoincAndTextAreWarnings) {
  OruResult r = InterpretOru(Oru("2.5", "OBX|1|NM|99999-9^Something new^LN||7|mmol/L|||||F|||20251203075500\r"
                                        "OBX|2|NM|HR^Heart rate^L||80|/min|||||F|||20251203075500\r"
                                        "OBX|3|ST|8867-4^HR^LN||irregular||||||F|||20251203075500\r"
                                        "OBX|4|SN|1988-5^CRP^LN||<^5|mg/L|||||F|||20251203075500\r"
                                        "OBX|5|NM|8867-4^HR^LN||80|/min|||||X|||20251203075500\r"),
                             {}, kNow);
  ASSERT_EQ(r.ack, AckCode::kAA);
  ASSERT_EQ(r.message.observations.size(), 1u);
  EXPECT_FALSE(r.message.observations[0].plotted);
  EXPECT_EQ(r.message.observations[0].display, "Something new");
  ASSERT_EQ(r.errors.size(), 4u);
  for (const auto& e : r.errors) EXPECT_EQ(e.severity, 'W') << e.text;
  EXPECT_EQ(r.errors[0].segment, "OBX");
  EXPECT_EQ(r.errors[0].sequence, 2);
}

TEST(Oru, NonNumericValueRefusesTheWholeMessage) {
  OruResult r = InterpretOru(Oru("2.5", "OBX|1|NM|59408-5^SpO2^LN||91|%|||||F|||20251203075500\r"
                                        "OBX|2|NM|1988-5^CRP^LN||high|mg/L|||||F|||20251203075500\r"),
                             {}, kNow);
  EXPECT_EQ(r.ack, AckCode::kAE);
  EXPECT_TRUE(r.message.observations.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].code, 102);
  EXPECT_EQ(r.errors[0].sequence, 2);
  EXPECT_EQ(r.errors[0].field, 5);
  EXPECT_NE(r.errors[0].text.find("'high'"), std::string::npos);
}

TEST(Oru, RejectsWhatItDoesNotSupport) {
  auto ack_of = [](const std::string& text, OruOptions o = {}) { return InterpretOru(text, o, kNow); };
  OruResult adt = ack_of("MSH|^~\\&|A|B|||20251203||ADT^A01|1|P|2.5\rPID|1||X\r");
  EXPECT_EQ(adt.ack, AckCode::kAR);
  EXPECT_EQ(adt.errors.at(0).code, 200);
  OruResult v22 = ack_of(Oru("2.2", ""));
  EXPECT_EQ(v22.ack, AckCode::kAR);
  EXPECT_EQ(v22.errors.at(0).code, 203);
  OruResult enc = ack_of("MSH|^^\\&|LAB|H|||20251203||ORU^R01|XYZ|P|2.5\r");
  EXPECT_EQ(enc.ack, AckCode::kAR);
  EXPECT_EQ(enc.context.control_id, "XYZ");  // still named in the ACK
  EXPECT_EQ(enc.errors.at(0).field, 2);
  OruOptions only_lab;
  only_lab.allowed_senders = {"LAB", "MONITOR^OTHER"};
  EXPECT_EQ(ack_of(Oru("2.5", ""), only_lab).ack, AckCode::kAR);
  only_lab.allowed_senders = {"MONITOR^ICU"};
  EXPECT_EQ(ack_of(Oru("2.5", ""), only_lab).ack, AckCode::kAA);
  EXPECT_EQ(ack_of("MSH|^~\\&|A|B|||20251203||ORU^R01||P|2.5\rPID|1||X\r").ack, AckCode::kAE);  // no MSH-10
  EXPECT_EQ(ack_of(Oru("2.5", "", "")).ack, AckCode::kAE);  // no PID-3
  EXPECT_EQ(ack_of("MSH|^~\\&|A|B|||20251203||ORU^R01|1|P|2.5\rOBX|1|NM|8867-4^HR^LN||80\r").ack, AckCode::kAE);
  // No observation time at all.
  EXPECT_EQ(ack_of("MSH|^~\\&|A|B|||20251203||ORU^R01|1|P|2.5\rPID|1||X\rOBR|1\rOBX|1|NM|8867-4^HR^LN||80\r").ack,
            AckCode::kAE);
}

TEST(Oru, MapsAssigningAuthoritiesToIssuers) {
  OruOptions o;
  o.patient_authorities = {{"LABAUTH", "HOSP"}};
  // The mapped repetition wins over the first one.
  OruResult r = InterpretOru(
      Oru("2.5", "OBX|1|NM|8867-4^HR^LN||80|/min|||||F|||20251203075500\r", "N1^^^NATIONAL~77^^^LABAUTH^MR"), o, kNow);
  ASSERT_EQ(r.ack, AckCode::kAA);
  EXPECT_EQ(r.message.observations.at(0).patient.patient_id, "77");
  EXPECT_EQ(r.message.observations.at(0).patient.issuer, "HOSP");
  // Unmapped: the authority as it is.
  r = InterpretOru(Oru("2.5", "OBX|1|NM|8867-4^HR^LN||80|/min|||||F|||20251203075500\r", "N1^^^NATIONAL"), o, kNow);
  EXPECT_EQ(r.message.observations.at(0).patient.issuer, "NATIONAL");
}

TEST(Oru, AckCarriesMsaAndErrInTheSendersVersion) {
  OruResult bad = InterpretOru(Oru("2.5", "OBX|1|NM|1988-5^CRP^LN||high|mg/L|||||F|||20251203075500\r"), {}, kNow);
  std::string ack = BuildAck(bad.context, bad.ack, bad.errors, "ACK1", kNow);
  auto parsed = Message::Parse(ack);
  ASSERT_TRUE(parsed.ok()) << ack;
  ASSERT_EQ(parsed->segments().size(), 3u);
  EXPECT_EQ(parsed->msh().Get(9, 0, 1), "ACK");
  EXPECT_EQ(parsed->msh().Get(12), "2.5");
  EXPECT_EQ(parsed->segments()[1].Get(1), "AE");
  EXPECT_EQ(parsed->segments()[1].Get(2), "MSG0001");
  EXPECT_EQ(parsed->segments()[2].Get(2, 0, 1), "OBX");
  EXPECT_EQ(parsed->segments()[2].Get(3, 0, 1), "102");
  EXPECT_EQ(parsed->segments()[2].Get(4), "E");

  OruResult old = InterpretOru(Oru("2.3", "OBX|1|NM|1988-5^CRP^LN||high|mg/L|||||F|||20251203075500\r"), {}, kNow);
  auto old_ack = Message::Parse(BuildAck(old.context, old.ack, old.errors, "ACK2", kNow));
  ASSERT_TRUE(old_ack.ok());
  EXPECT_EQ(old_ack->segments()[2].Get(1, 0, 1), "OBX");
  EXPECT_EQ(old_ack->segments()[2].Get(1, 0, 4, 1), "102");
}

}  // namespace
}  // namespace pxs::hl7
