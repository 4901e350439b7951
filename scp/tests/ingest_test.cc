// Ingest path tests with a real SQLite database and the shared DICOM files, including
// the broken ones that storescu itself cannot send (PS3.4 statuses per bad/manifest.csv).
#include "pxs/scp/ingest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "../../tests/support/shared_data.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using pxs::testing::ReadManifest;
using pxs::testing::SharedDataDir;
using pxs::testing::TempDir;

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(DatabasePathFor(dir_.str()), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
    IngestOptions options;
    options.data_dir = dir_.str();
    auto ing = Ingester::Create(options, db_.get());
    ASSERT_TRUE(ing.ok()) << ing.status().ToString();
    ingester_ = std::move(*ing);
  }

  // Every regular file below data_dir/dicom.
  std::vector<fs::path> StoredFiles() const {
    std::vector<fs::path> files;
    for (auto& e : fs::recursive_directory_iterator(dir_.path() / "dicom")) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    return files;
  }

  TempDir dir_{"pxs-ingest"};
  std::unique_ptr<Database> db_;
  std::unique_ptr<Ingester> ingester_;
};

TEST(UidSyntax, AcceptsOnlyDicomUids) {
  EXPECT_TRUE(Ingester::IsValidUid("1.2.840.10008.5.1.4.1.1.1"));
  EXPECT_TRUE(Ingester::IsValidUid("2.25.0"));
  EXPECT_FALSE(Ingester::IsValidUid(""));
  EXPECT_FALSE(Ingester::IsValidUid(".."));
  EXPECT_FALSE(Ingester::IsValidUid("../../etc"));
  EXPECT_FALSE(Ingester::IsValidUid("2.25.0123"));
  EXPECT_FALSE(Ingester::IsValidUid("1..2"));
  EXPECT_FALSE(Ingester::IsValidUid("1.2.ABC"));
  EXPECT_FALSE(Ingester::IsValidUid(std::string(65, '1')));
}

TEST_F(IngestTest, GoodFilesAreStoredOnceAndQueuedOrSkippedAsTheManifestSays) {
  std::string data = SharedDataDir();
  PXS_SKIP_WITHOUT_SHARED_DATA(data);
  int expected_jobs = 0, expected_skips = 0;
  for (auto& row : ReadManifest(data + "/dicom/manifest.csv")) {
    std::string path = data + "/dicom/" + row["file"];
    IngestResult r = ingester_->IngestFile(path, {});
    if (row["expected_scp"] != "store") {
      EXPECT_NE(r.dimse_status, dimse_status::kSuccess) << row["file"] << " should be refused";
      continue;
    }
    ASSERT_EQ(r.dimse_status, dimse_status::kSuccess) << row["file"] << ": " << r.error;
    EXPECT_FALSE(r.duplicate);
    bool should_score = row["expected_scoring"].rfind("score", 0) == 0;
    if (should_score) {
      EXPECT_EQ(r.skip_reason, "") << row["file"];
      ++expected_jobs;
    } else if (row["expected_scoring"].rfind("decline", 0) == 0 ||
               row["expected_scoring"].find("FOR PROCESSING") != std::string::npos) {
      EXPECT_NE(r.skip_reason, "") << row["file"];
      ++expected_skips;
    }
    // A second copy is idempotent.
    IngestResult again = ingester_->IngestFile(path, {});
    EXPECT_EQ(again.dimse_status, dimse_status::kSuccess);
    EXPECT_TRUE(again.duplicate) << row["file"];
  }
  EXPECT_EQ(*db_->CountJobs(JobState::kQueued), expected_jobs);
  EXPECT_EQ(*db_->CountJobs(JobState::kSkipped), expected_skips);
  EXPECT_EQ(static_cast<int>(StoredFiles().size()), expected_jobs + expected_skips);
  EXPECT_TRUE(fs::is_empty(dir_.path() / "incoming"));
}

TEST_F(IngestTest, BadFilesGetTheStatusTheManifestExpectsAndLeaveNothingBehind) {
  std::string data = SharedDataDir();
  PXS_SKIP_WITHOUT_SHARED_DATA(data);
  for (auto& row : ReadManifest(data + "/dicom/bad/manifest.csv")) {
    const std::string& expected = row["expected_handling"];
    IngestResult r = ingester_->IngestFile(data + "/dicom/bad/" + row["file"], {});
    SCOPED_TRACE(row["file"] + " -> status " + std::to_string(r.dimse_status) + " " + r.error);
    if (expected.rfind("Success", 0) == 0) {
      EXPECT_EQ(r.dimse_status, dimse_status::kSuccess);
    } else if (expected.find("colour") != std::string::npos) {
      EXPECT_EQ(r.dimse_status, dimse_status::kSuccess);
      EXPECT_NE(r.skip_reason.find("colour"), std::string::npos);
    } else {
      EXPECT_TRUE(r.dimse_status == dimse_status::kDataSetDoesNotMatchSopClass ||
                  r.dimse_status == dimse_status::kCannotUnderstand);
      EXPECT_FALSE(r.error.empty());
    }
  }
  // Nothing escaped data_dir (uid_path_traversal.dcm) and no temp file is left.
  EXPECT_FALSE(fs::exists(dir_.path().parent_path() / "pxs-path-traversal-test"));
  EXPECT_FALSE(fs::exists(dir_.path() / "pxs-path-traversal-test"));
  EXPECT_TRUE(fs::is_empty(dir_.path() / "incoming"));
  for (const fs::path& f : StoredFiles()) {
    EXPECT_EQ(f.extension(), ".dcm");
    EXPECT_EQ(fs::relative(f, dir_.path()).string().find(".."), std::string::npos) << f;
  }
}

// Data sets generated here: each defect in isolation.
TEST_F(IngestTest, GeneratedDefectsGetPreciseStatuses) {
  auto make = [](Uint16 rows, Uint16 cols, size_t pixel_bytes) {
    auto ds = std::make_unique<DcmDataset>();
    ds->putAndInsertString(DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.1");
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5.6");
    ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.3.4");
    ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4.5");
    ds->putAndInsertString(DCM_PatientID, "P1");
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    ds->putAndInsertUint16(DCM_Rows, rows);
    ds->putAndInsertUint16(DCM_Columns, cols);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_HighBit, 11);
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    if (pixel_bytes > 0) {
      std::vector<Uint16> px(pixel_bytes / 2, 100);
      ds->putAndInsertUint16Array(DCM_PixelData, px.data(), px.size());
    }
    return ds;
  };
  const int xfer = EXS_LittleEndianExplicit;
  {
    auto ds = make(16, 16, 16 * 16 * 2);
    IngestResult r = ingester_->Ingest(*ds, xfer, {"MOD", "127.0.0.1", "1.2.840.10008.5.1.4.1.1.1", "1.2.3.4.5.6"});
    EXPECT_EQ(r.dimse_status, dimse_status::kSuccess) << r.error;
  }
  {
    auto ds = make(16, 16, 0);
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5.7");
    IngestResult r = ingester_->Ingest(*ds, xfer, {});
    EXPECT_EQ(r.dimse_status, dimse_status::kDataSetDoesNotMatchSopClass);
    EXPECT_NE(r.error.find("missing Pixel Data"), std::string::npos) << r.error;
  }
  {
    auto ds = make(60000, 60000, 64);
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5.8");
    IngestResult r = ingester_->Ingest(*ds, xfer, {});
    EXPECT_EQ(r.dimse_status, dimse_status::kDataSetDoesNotMatchSopClass);
    EXPECT_NE(r.error.find("impossible dimensions"), std::string::npos) << r.error;
  }
  {
    auto ds = make(16, 16, 512);
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5.9");
    IngestResult r = ingester_->Ingest(*ds, xfer, {"MOD", "", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.9"});
    EXPECT_EQ(r.dimse_status, dimse_status::kDataSetDoesNotMatchSopClass) << "SOP class differs from command";
  }
  {
    auto ds = make(16, 16, 512);
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5.10");
    ds->putAndInsertString(DCM_ViewPosition, "LL");
    IngestResult r = ingester_->Ingest(*ds, xfer, {});
    EXPECT_EQ(r.dimse_status, dimse_status::kSuccess);
    EXPECT_NE(r.skip_reason.find("no model applies (model: ViewPosition LL is not one of PA, AP, (none))"), std::string::npos)
        << r.skip_reason;
  }
  EXPECT_EQ(*db_->CountJobs(JobState::kQueued), 1);
  EXPECT_EQ(*db_->CountJobs(JobState::kSkipped), 1);
}

// The database keeps UTF-8 decoded from each instance's declared character set, and
// the same cleaned PatientID the SR gets: escape codes alone (ISO 2022 IR 87) and a
// NUL-padded PatientID reached it raw or cut before. An undecodable name is stored,
// scored and escaped, never refused.
TEST_F(IngestTest, PatientTextIsStoredAsUtf8FromTheDeclaredCharacterSet) {
  using namespace std::string_literals;
  struct Case {
    std::string charset, raw_name, raw_id, want_name, want_id;
  };
  const std::vector<Case> cases = {
      {"\\ISO 2022 IR 87",
       "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
       "JP-1\0"s, "Yamada^Tarou=山田^太郎=やまだ^たろう", "JP-1"},
      {"ISO_IR 100", "M\xFCller^J\xFCrgen", "DE-1", "Müller^Jürgen", "DE-1"},
      {"\\ISO 2022 IR 149",
       "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
       "KR-1", "Hong^Gildong=洪^吉洞=홍^길동", "KR-1"},
      {"", "M\xFCller", "XX-1", "M%FCller", "XX-1"},
  };
  int n = 0;
  for (const Case& c : cases) {
    auto ds = std::make_unique<DcmDataset>();
    const std::string sop = "1.2.3.99." + std::to_string(++n);
    ds->putAndInsertString(DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.1");
    ds->putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
    ds->putAndInsertString(DCM_StudyInstanceUID, ("1.2.3.98." + std::to_string(n)).c_str());
    ds->putAndInsertString(DCM_SeriesInstanceUID, ("1.2.3.97." + std::to_string(n)).c_str());
    if (!c.charset.empty()) ds->putAndInsertString(DCM_SpecificCharacterSet, c.charset.c_str());
    ds->putAndInsertString(DCM_PatientName, c.raw_name.data(), static_cast<Uint32>(c.raw_name.size()), OFTrue);
    ds->putAndInsertString(DCM_PatientID, c.raw_id.data(), static_cast<Uint32>(c.raw_id.size()), OFTrue);
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    ds->putAndInsertUint16(DCM_Rows, 16);
    ds->putAndInsertUint16(DCM_Columns, 16);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_HighBit, 11);
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    std::vector<Uint16> px(16 * 16, 100);
    ds->putAndInsertUint16Array(DCM_PixelData, px.data(), px.size());
    IngestResult r = ingester_->Ingest(*ds, EXS_LittleEndianExplicit, {});
    ASSERT_EQ(r.dimse_status, dimse_status::kSuccess) << r.error;
    EXPECT_EQ(r.skip_reason, "") << "a name that cannot be decoded does not stop scoring";
  }
  auto admin = AdminDatabase::Open(DatabasePathFor(dir_.str()), Database::Mode::kReadOnly);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  auto patients = (*admin)->FindPatients("", 100);
  ASSERT_TRUE(patients.ok());
  std::map<std::string, std::string> name_of;
  for (const PatientSummary& p : *patients) name_of[p.patient_id] = p.name;
  for (const Case& c : cases) {
    ASSERT_TRUE(name_of.count(c.want_id)) << c.want_id;
    EXPECT_EQ(name_of[c.want_id], c.want_name) << c.charset;
  }
  EXPECT_EQ(name_of.size(), cases.size());
}

}  // namespace
}  // namespace pxs
