// pxsctl history and export against a database filled through the C++ API: the
// longitudinal rule as an administrator sees it. Reproduces issue 11: two studies
// scored by one package, a third by the package that replaced it; each course keeps its
// own model's threshold and is never compared across models; a change equal to the
// threshold is stable in the table, the JSON and the export.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "../../../storage/tests/test_db_util.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

using Json = nlohmann::json;
using testing_util::MakeInstance;
using testing_util::MakeScore;
using testing_util::ScratchDir;

std::string Pxsctl(const std::string& args, int* exit_code = nullptr) {
  const std::string command = std::string(PXS_BINARY_DIR "/bin/pxsctl ") + args + " 2>/dev/null";
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  if (exit_code) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class HistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(PXS_BINARY_DIR "/bin/pxsctl")) << "build the pxsctl target first";
    auto db = Database::Open(dir_.db(), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
    // The old package reads changes against 0.25, the new one against 1.0.
    ASSERT_TRUE(db_->RecordModel("pxs-demo", "1.0.0", R"({"trend":{"stable_delta":0.25,)"
                                 R"("bands":[{"upper":1,"label":"low"},{"upper":null,"label":"high"}]}})").ok());
    ASSERT_TRUE(db_->RecordModel("pxs-demo", "2.0.0", R"({"trend":{"stable_delta":1.0}})").ok());
  }
  // One study (one instance) of patient P1 scored by the given model.
  void Scored(const std::string& sop, const std::string& study, const std::string& date, double pxs,
              const std::string& version, int64_t scored_at_ms) {
    ASSERT_TRUE(db_->RecordInstances({MakeInstance(sop, study, "P1", date)}, nullptr).ok());
    auto jobs = db_->ClaimJobs(1);
    ASSERT_EQ(jobs->size(), 1u);
    ScoreRecord s = MakeScore((*jobs)[0].id, pxs, scored_at_ms);
    s.model_name = "pxs-demo";
    s.model_version = version;
    ASSERT_TRUE(db_->CompleteJob(s).ok());
  }
  std::string Db() const { return "--db " + dir_.db() + " "; }

  ScratchDir dir_;
  std::unique_ptr<Database> db_;
};

TEST_F(HistoryTest, EachCourseKeepsItsModelsThresholdAndIsNeverComparedAcrossModels) {
  Scored("1.1", "9.1", "20230101", 1.0, "1.0.0", 1000);
  Scored("1.2", "9.2", "20230201", 1.25, "1.0.0", 2000);  // +0.25 == the old package's threshold: stable
  Scored("1.3", "9.3", "20230301", 1.5, "1.0.0", 3000);   // +0.25 again
  Scored("1.4", "9.4", "20230401", 1.875, "1.0.0", 4000); // +0.375: worse
  Scored("1.5", "9.5", "20230501", 0.5, "2.0.0", 5000);   // the new package: not compared
  int rc = -1;
  Json h = Json::parse(Pxsctl(Db() + "history P1 --json", &rc));
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(h["courses"].size(), 2u);
  const Json& old_course = h["courses"][0];
  const Json& new_course = h["courses"][1];
  EXPECT_EQ(old_course["model"], "pxs-demo 1.0.0");
  EXPECT_EQ(old_course["stable_delta"], 0.25);  // its own, not the newest package's 1.0
  ASSERT_EQ(old_course["studies"].size(), 4u);
  EXPECT_EQ(old_course["studies"][0]["trend"], "not compared");
  EXPECT_EQ(old_course["studies"][1]["trend"], "stable");
  EXPECT_EQ(old_course["studies"][1]["change"], 0.25);
  EXPECT_EQ(old_course["studies"][2]["trend"], "stable");
  EXPECT_EQ(old_course["studies"][3]["trend"], "worse");
  EXPECT_EQ(old_course["studies"][3]["band"], "high");
  EXPECT_EQ(old_course["studies"][0]["band"], "high");  // 1.0 is not below 1
  EXPECT_EQ(new_course["model"], "pxs-demo 2.0.0");
  EXPECT_EQ(new_course["stable_delta"], 1.0);
  ASSERT_EQ(new_course["studies"].size(), 1u);
  EXPECT_EQ(new_course["studies"][0]["trend"], "not compared");
  EXPECT_TRUE(new_course["studies"][0]["change"].is_null());

  const std::string text = Pxsctl(Db() + "history P1");
  EXPECT_NE(text.find("Model pxs-demo 1.0.0: stable within +/-0.25 PXS"), std::string::npos) << text;
  EXPECT_NE(text.find("Model pxs-demo 2.0.0: stable within +/-1.00 PXS"), std::string::npos) << text;
  EXPECT_NE(text.find("+0.25   -            stable"), std::string::npos) << text;

  Json only_new = Json::parse(Pxsctl(Db() + "history P1 --model 'pxs-demo 2.0.0' --json"));
  ASSERT_EQ(only_new["courses"].size(), 1u);
  EXPECT_EQ(only_new["courses"][0]["model_version"], "2.0.0");
  // --stable-delta replaces every model's raw threshold.
  Json wide = Json::parse(Pxsctl(Db() + "history P1 --stable-delta 0.5 --json"));
  EXPECT_EQ(wide["courses"][0]["studies"][3]["trend"], "stable");

  // export: the same comparison per instance.
  Json rows = Json::parse(Pxsctl(Db() + "export --format json"));
  std::map<std::string, Json> by_sop;
  for (const Json& r : rows) by_sop[r["sop_instance_uid"]] = r;
  EXPECT_EQ(by_sop["1.2"]["trend"], "stable");
  EXPECT_EQ(by_sop["1.2"]["change_from_prior"], 0.25);
  EXPECT_EQ(by_sop["1.4"]["trend"], "worse");
  EXPECT_EQ(by_sop["1.5"]["trend"], "not compared");
  EXPECT_TRUE(by_sop["1.5"]["change_from_prior"].is_null());  // never against 1.4 (another model)
}

TEST_F(HistoryTest, ALaterDatedStudySentFirstIsNeverAPriorAndCalibratedValuesAreShown) {
  ASSERT_TRUE(db_->RecordModel("pxs-demo", "3.0.0",
                               R"({"trend":{"stable_delta":0.01,"stable_delta_calibrated":1.0}})").ok());
  // The 2023-03 study arrives and is scored first; the 2023-01 one comes late.
  for (const auto& [sop, study, date, pxs, calibrated, at] :
       std::vector<std::tuple<std::string, std::string, std::string, double, double, int64_t>>{
           {"2.3", "8.3", "20230301", 0.75, 5.0, 1000}, {"2.1", "8.1", "20230101", 0.5, 4.0, 2000}}) {
    ASSERT_TRUE(db_->RecordInstances({MakeInstance(sop, study, "P1", date)}, nullptr).ok());
    auto jobs = db_->ClaimJobs(1);
    ScoreRecord s = MakeScore((*jobs)[0].id, pxs, at);
    s.model_name = "pxs-demo";
    s.model_version = "3.0.0";
    s.calibrated = calibrated;
    s.calibrated_scale = "geographic extent";
    ASSERT_TRUE(db_->CompleteJob(s).ok());
  }
  Json h = Json::parse(Pxsctl(Db() + "history P1 --json"));
  const Json& course = h["courses"][0]["studies"];
  ASSERT_EQ(course.size(), 2u);
  EXPECT_EQ(course[0]["study_uid"], "8.1");
  EXPECT_EQ(course[0]["trend"], "not compared");
  EXPECT_EQ(course[1]["previous_study_uid"], "8.1");
  EXPECT_EQ(course[1]["calibrated"], 5.0);
  EXPECT_EQ(course[1]["calibrated_scale"], "geographic extent");
  EXPECT_EQ(course[1]["calibrated_change"], 1.0);
  EXPECT_EQ(course[1]["trend"], "stable");  // +1.0 calibrated == stable_delta_calibrated (raw +0.25 >> 0.01)
  EXPECT_EQ(course[1]["trend_scale"], "calibrated");
  const std::string text = Pxsctl(Db() + "history P1");
  EXPECT_NE(text.find("5.00 geographic extent"), std::string::npos) << text;
  const std::string csv = Pxsctl(Db() + "export --format csv");
  EXPECT_NE(csv.find(",0.750000,5.000000,geographic extent,0.250000,1.000000,stable,1,"), std::string::npos) << csv;
}

}  // namespace
}  // namespace pxs
