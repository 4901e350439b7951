// pxs::ObservationStore (clinical observations over HL7 v2 / FHIR) against real SQLite
// files: one durable transaction per batch, idempotent per (sender, message id), the
// nearest-in-window rules the SR and pxsctl history rely on, read-only refusal.
#include "pxs/storage/observations.h"

#include <gtest/gtest.h>

#include "test_db_util.h"

namespace pxs {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kT0 = 1'764'748'800'000;  // 2025-12-03T08:00:00 (wall clock as if UTC)

Observation Obs(const std::string& patient, const std::string& loinc, double value, int64_t at_ms,
                bool plotted = true) {
  Observation o;
  o.patient = {patient, "HOSP"};
  o.loinc = loinc;
  o.display = loinc;
  o.value = value;
  o.unit = "%";
  o.observed_at_ms = at_ms;
  o.observed_at_text = std::to_string(at_ms);
  o.plotted = plotted;
  o.status = "F";
  return o;
}

ObservationMessage Msg(const std::string& id, std::vector<Observation> obs, const std::string& sender = "MON^ICU",
                       int64_t received_at = kT0) {
  ObservationMessage m;
  m.source = "hl7";
  m.sender = sender;
  m.message_id = id;
  m.message_type = "ORU^R01";
  m.version = "2.5.1";
  m.received_at_ms = received_at;
  m.size_bytes = 100;
  m.observations = std::move(obs);
  return m;
}

// ScratchDir (test_db_util.h): a SQLite file, or a fresh PostgreSQL database when the
// postgres/ ctest entry sets PXS_TEST_BACKEND=postgresql.
class ObservationStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.db();
    auto store = ObservationStore::Open(db_, Database::Mode::kReadWrite);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override { store_.reset(); }
  // A second connection sees only what was committed.
  std::vector<Observation> ReadBack(const std::string& patient) {
    auto reader = ObservationStore::Open(db_, Database::Mode::kReadOnly);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return {};
    auto rows = (*reader)->PatientObservations({patient, "HOSP"}, std::nullopt, std::nullopt);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? *rows : std::vector<Observation>{};
  }

  testing_util::ScratchDir dir_;
  std::string db_;
  std::unique_ptr<ObservationStore> store_;
};

TEST_F(ObservationStoreTest, RecordsABatchDurablyAndReadsItBackWithItsMessage) {
  std::vector<MessageOutcome> out;
  ASSERT_TRUE(store_->RecordMessages({Msg("M1", {Obs("P1", "59408-5", 93, kT0), Obs("P1", "1988-5", 12.5, kT0 + 1)}),
                                      Msg("M2", {Obs("P1", "59408-5", 91, kT0 + kHour)})},
                                     &out)
                  .ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], MessageOutcome::kStored);
  EXPECT_EQ(out[1], MessageOutcome::kStored);
  auto rows = ReadBack("P1");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].loinc, "59408-5");  // oldest first
  EXPECT_DOUBLE_EQ(rows[0].value, 93);
  EXPECT_EQ(rows[0].sender, "MON^ICU");
  EXPECT_EQ(rows[0].message_id, "M1");
  EXPECT_EQ(rows[0].source, "hl7");
  EXPECT_EQ(rows[1].loinc, "1988-5");
  EXPECT_DOUBLE_EQ(rows[1].value, 12.5);
  EXPECT_EQ(rows[2].message_id, "M2");
  EXPECT_TRUE(ReadBack("P2").empty());
}

TEST_F(ObservationStoreTest, AResendIsRecordedOnceAcrossCallsAndWithinABatch) {
  std::vector<MessageOutcome> out;
  ASSERT_TRUE(store_->RecordMessages({Msg("M1", {Obs("P1", "59408-5", 93, kT0)})}, &out).ok());
  ASSERT_EQ(out, std::vector<MessageOutcome>{MessageOutcome::kStored});
  // Same id again (later call), and twice in one batch: each stored once.
  ASSERT_TRUE(store_->RecordMessages({Msg("M1", {Obs("P1", "59408-5", 50, kT0)}),
                                      Msg("M3", {Obs("P1", "59408-5", 94, kT0 + 2)}),
                                      Msg("M3", {Obs("P1", "59408-5", 10, kT0 + 3)})},
                                     &out)
                  .ok());
  EXPECT_EQ(out, (std::vector<MessageOutcome>{MessageOutcome::kDuplicate, MessageOutcome::kStored,
                                              MessageOutcome::kDuplicate}));
  auto rows = ReadBack("P1");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_DOUBLE_EQ(rows[0].value, 93);  // the resend did not replace the first
  EXPECT_DOUBLE_EQ(rows[1].value, 94);
  EXPECT_TRUE(*store_->HasMessage("MON^ICU", "M1"));
  // The same id from another sender is another message.
  EXPECT_FALSE(*store_->HasMessage("LAB^MAIN", "M1"));
  ASSERT_TRUE(store_->RecordMessages({Msg("M1", {Obs("P1", "1988-5", 5, kT0)}, "LAB^MAIN")}, &out).ok());
  EXPECT_EQ(out, std::vector<MessageOutcome>{MessageOutcome::kStored});
  EXPECT_EQ(ReadBack("P1").size(), 3u);
}

TEST_F(ObservationStoreTest, ABadMessageFailsTheBatchAndLeavesNothing) {
  std::vector<MessageOutcome> out;
  Status st = store_->RecordMessages({Msg("OK1", {Obs("P1", "59408-5", 93, kT0)}), Msg("", {Obs("P1", "59408-5", 90, kT0)})},
                                     &out);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("message id"), std::string::npos) << st.ToString();
  st = store_->RecordMessages({Msg("OK2", {Obs("", "59408-5", 93, kT0)})}, &out);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("patient id"), std::string::npos) << st.ToString();
  EXPECT_TRUE(ReadBack("P1").empty());  // rolled back: OK1 is not half-stored
  EXPECT_FALSE(*store_->HasMessage("MON^ICU", "OK1"));
  // And the store still works afterwards.
  ASSERT_TRUE(store_->RecordMessages({Msg("OK1", {Obs("P1", "59408-5", 93, kT0)})}, &out).ok());
  EXPECT_EQ(ReadBack("P1").size(), 1u);
}

TEST_F(ObservationStoreTest, ReadOnlyRefusesWrites) {
  auto reader = ObservationStore::Open(db_, Database::Mode::kReadOnly);
  ASSERT_TRUE(reader.ok());
  std::vector<MessageOutcome> out;
  Status st = (*reader)->RecordMessages({Msg("M1", {Obs("P1", "59408-5", 93, kT0)})}, &out);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("read-only"), std::string::npos) << st.ToString();
}

TEST_F(ObservationStoreTest, NearestInTheWindowPerCodeEarlierOnTiesUnknownCodesLeftOut) {
  const int64_t image = kT0 + 10 * kHour;
  std::vector<MessageOutcome> out;
  ASSERT_TRUE(store_
                  ->RecordMessages({Msg("A", {Obs("P1", "59408-5", 90, image - 2 * kHour),
                                              Obs("P1", "59408-5", 95, image + 2 * kHour),  // tie: earlier wins
                                              Obs("P1", "59408-5", 80, image - 30 * kHour),  // outside
                                              Obs("P1", "1988-5", 40, image + 5 * kHour),
                                              Obs("P1", "1988-5", 60, image + 1 * kHour),
                                              Obs("P1", "99999-9", 1, image, /*plotted=*/false)}),
                                    Msg("B", {Obs("P2", "59408-5", 70, image)})},
                                   &out)
                  .ok());
  auto near = store_->ObservationsNear({"P1", "HOSP"}, image, 24 * kHour);
  ASSERT_TRUE(near.ok()) << near.status().ToString();
  ASSERT_EQ(near->size(), 2u);  // ordered by code; the unplotted code is not there
  EXPECT_EQ((*near)[0].loinc, "1988-5");
  EXPECT_DOUBLE_EQ((*near)[0].value, 60);
  EXPECT_EQ((*near)[1].loinc, "59408-5");
  EXPECT_DOUBLE_EQ((*near)[1].value, 90);
  // A narrow window leaves nothing.
  auto none = store_->ObservationsNear({"P1", "HOSP"}, image, kHour / 2);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // The issuer is part of the key.
  auto other = store_->ObservationsNear({"P1", "OTHER"}, image, 24 * kHour);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->empty());
  // One quantity over several codes (both SpO2 codes); the window edge is inclusive.
  ASSERT_TRUE(store_->RecordMessages({Msg("C", {Obs("P1", "2708-6", 97, image + kHour + 1)})}, &out).ok());
  auto spo2 = store_->NearestObservation({"P1", "HOSP"}, {"59408-5", "2708-6"}, image + 2 * kHour, kHour);
  ASSERT_TRUE(spo2.ok());
  ASSERT_TRUE(spo2->has_value());
  EXPECT_DOUBLE_EQ((*spo2)->value, 95);  // exactly at the time
  auto edge = store_->NearestObservation({"P1", "HOSP"}, {"1988-5"}, image + 3 * kHour, 2 * kHour);
  ASSERT_TRUE(edge.ok());
  ASSERT_TRUE(edge->has_value());
  EXPECT_DOUBLE_EQ((*edge)->value, 60);  // +1 h and +5 h both exactly 2 h away (inside): the earlier
}

TEST(WallClockMs, ReadsDicomDateAndTime) {
  EXPECT_EQ(WallClockMs("20251203", "080000"), kT0);
  EXPECT_EQ(WallClockMs("20251203", "08:00:00.123"), kT0);
  EXPECT_EQ(WallClockMs("20251203", ""), kT0 - 8 * kHour);
  EXPECT_FALSE(WallClockMs("2025120", "080000").has_value());
  EXPECT_FALSE(WallClockMs("20251303", "080000").has_value());
  EXPECT_FALSE(WallClockMs("20251203", "250000").has_value());
}

}  // namespace
}  // namespace pxs
