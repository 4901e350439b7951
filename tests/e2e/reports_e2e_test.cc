// End to end with a PACS: DCMTK's storescp receives the SRs that pxsnode sends back for
// the synthetic longitudinal courses of ../shared/data/longitudinal. Checks that every
// scored study's SR arrives, passes dciodvfy, and carries the numbers the database has
// (this study's PXS, its priors, the change), and that a PACS that is down for a while
// gets everything once it is back.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "../support/sr_validators.h"
#include "pxs/reports/sr_reader.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;

std::vector<fs::path> FilesIn(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class ReportsEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string data = SharedDataDir();
    if (data.empty() || !fs::exists(data + "/longitudinal/make_dicom.py")) {
      GTEST_SKIP() << "SKIPPED: ../shared/data/longitudinal not found (shared test data is not present)";
    }
    // Three synthetic patients' courses, written to our temp folder (never into shared/).
    courses_ = dir_.path() / "courses";
    CommandResult made = RunCommand({"/usr/bin/python3", data + "/longitudinal/make_dicom.py", courses_.string(),
                                     "--max-patients", "3"},
                                    (dir_.path() / "make_dicom.log").string());
    if (made.exit_code != 0) GTEST_SKIP() << "SKIPPED: make_dicom.py could not run here:\n" << made.output;
    for (const fs::path& f : FilesIn(courses_)) {
      if (f.extension() == ".dcm") files_.push_back(f.string());  // names sort by patient, then time point
    }
    ASSERT_GE(files_.size(), 9u);
  }
  void StartPacs() {
    fs::create_directories(pacs_dir_);
    pacs_ = std::make_unique<Process>(std::vector<std::string>{"storescp", "-aet", "PACS", "-od", pacs_dir_.string(),
                                                               std::to_string(pacs_port_)},
                                      (dir_.path() / "storescp.log").string());
    ASSERT_TRUE(WaitFor([&] { return PortOpen(pacs_port_); }, std::chrono::seconds(10)));
  }
  void StartNode() {
    std::string tail = "[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(pacs_port_) + "\n[reports]\nsend_to = [\"pacs\"]\nretry_initial_s = 1\n"
                       "retry_max_s = 2\nmax_attempts = 100\n";
    config_ = WriteNodeConfig(dir_.path(), node_port_, "", tail);
    node_ = std::make_unique<Node>(dir_.path(), node_port_);
    ASSERT_TRUE(node_->Start(config_)) << node_->Log();
  }
  // Sends one course step at a time, in order, as a modality would.
  void SendAll() {
    for (const std::string& f : files_) {
      CommandResult r = RunCommand({"storescu", "-aec", "PXSNODE", "127.0.0.1", std::to_string(node_port_), f},
                                   (dir_.path() / "storescu.log").string());
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }

  TempDir dir_{"pxs-reports-e2e"};
  fs::path courses_;
  std::vector<std::string> files_;
  uint16_t pacs_port_ = FreePort();
  uint16_t node_port_ = FreePort();
  fs::path pacs_dir_ = dir_.path() / "pacs";
  std::unique_ptr<Process> pacs_;
  std::string config_;
  std::unique_ptr<Node> node_;
};

TEST_F(ReportsEndToEnd, EveryStudyGetsAValidSrWithItsPriorsAndTheDatabaseNumbers) {
  StartPacs();
  StartNode();
  SendAll();
  ASSERT_TRUE(WaitFor([&] { return FilesIn(pacs_dir_).size() >= files_.size(); }, std::chrono::minutes(3)))
      << "SRs received: " << FilesIn(pacs_dir_).size() << " of " << files_.size();

  auto db = Database::Open(DatabasePathFor(node_->data_dir().string()), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  int follow_ups = 0;
  int template_checked = 0;  // pixelmed takes seconds per SR: the first two are checked
  for (const fs::path& sr : FilesIn(pacs_dir_)) {
    SCOPED_TRACE(sr.string());
    CommandResult v = RunCommand({"dciodvfy", sr.string()}, (dir_.path() / "dciodvfy.log").string());
    EXPECT_EQ(v.output.find("Error"), std::string::npos) << v.output;
    if (template_checked++ < 2) {
      ExpectValidForPixelmed(sr, dir_.path() / "pixelmed.log");
    }
    CommandResult dump = RunCommand({"dsrdump", sr.string()}, (dir_.path() / "dsrdump.log").string());
    EXPECT_EQ(dump.exit_code, 0) << dump.output;

    auto content = ReadStructuredReport(sr.string());
    ASSERT_TRUE(content.ok()) << content.status().ToString();
    ASSERT_FALSE(content->groups.empty());
    auto history = (*db)->PatientHistory({content->patient_id, "PXSLONG"});
    ASSERT_TRUE(history.ok());
    std::map<std::string, double> pxs_of_study;
    for (const StudyScore& s : *history) pxs_of_study[s.study_uid] = s.pxs;
    ASSERT_FALSE(pxs_of_study.empty()) << "no history for " << content->patient_id << " (issuer?)";
    for (const SrMeasurementGroupContent& g : content->groups) {
      ASSERT_TRUE(pxs_of_study.count(g.study_uid)) << g.study_uid;
      ASSERT_TRUE(g.pxs.has_value());
      EXPECT_NEAR(*g.pxs, pxs_of_study[g.study_uid], 1e-3 * std::max(1.0, std::abs(*g.pxs)));
    }
    const SrMeasurementGroupContent& current = content->groups[0];
    if (content->groups.size() > 1) {
      ++follow_ups;
      ASSERT_TRUE(current.pxs_change.has_value());
      // The change is against the most recent prior (the last group by time point).
      const SrMeasurementGroupContent* latest = nullptr;
      for (size_t i = 1; i < content->groups.size(); ++i) {
        if (!latest || content->groups[i].time_point > latest->time_point) latest = &content->groups[i];
      }
      EXPECT_NEAR(*current.pxs_change, *current.pxs - *latest->pxs, 1e-3);
      EXPECT_TRUE(current.siamese_change.has_value());
      EXPECT_FALSE(current.trend.empty());
    }
  }
  EXPECT_EQ(follow_ups, static_cast<int>(files_.size()) - 3) << "every study but the 3 baselines has priors";
}

TEST_F(ReportsEndToEnd, APacsThatIsDownGetsEverythingQueuedWhenItComesBack) {
  StartNode();  // the PACS is not running yet
  SendAll();
  ASSERT_TRUE(WaitFor([&] { return node_->Log().find("report ") != std::string::npos; }, std::chrono::minutes(2)));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // a few failed attempts
  StartPacs();
  EXPECT_TRUE(WaitFor([&] { return FilesIn(pacs_dir_).size() >= files_.size(); }, std::chrono::minutes(3)))
      << "SRs received: " << FilesIn(pacs_dir_).size() << " of " << files_.size();
}

}  // namespace
}  // namespace pxs
