// End to end over REAL courses: ralo subjects' serial X-rays (the same person over time,
// tools/make_ralo_studies.py) go through the real pxsnode with storescu, the SRs come
// back to a DCMTK storescp, and every SR must agree with `pxsctl history --json` on
// every study it reports: the value, the calibrated value, the change, the calibrated
// change, the trend and the band; the same-model priors it lists carry the values
// history shows. Both sides follow the longitudinal library (pxs/longitudinal/course.h);
// this test fails the day one surface computes them differently.
//
// The second test reproduces issue 11's model update: two studies scored by the demo
// package, the node restarted with another package, a third study sent. Each course
// must keep its own model's threshold and the third study must not be compared.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "../support/node_process.h"
#include "../support/pacs_peer.h"
#include "../support/shared_data.h"
#include "pxs/reports/sr_reader.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using Json = nlohmann::json;

std::string DemoModelPath() { return std::string(PXS_SOURCE_DIR) + "/models/pxs-demo-cxr14.pt"; }

// The same number, allowing for nothing but the last bits of a double's text form.
bool Same(const std::optional<double>& a, const Json& b) {
  if (!a || b.is_null()) return !a && b.is_null();
  const double v = b.get<double>();
  return std::abs(*a - v) <= 1e-12 * std::max(1.0, std::abs(v));
}

std::string Text(const std::optional<double>& v) { return v ? std::to_string(*v) : std::string("none"); }

class LongitudinalEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string data = SharedDataDir();
    if (data.empty() || !fs::exists(data + "/ralo/scores.csv")) {
      GTEST_SKIP() << "SKIPPED: ../shared/data/ralo not found (shared test data is not present on this machine)";
    }
    ralo_ = data + "/ralo";
    ASSERT_TRUE(pacs_.Start((dir_.path() / "storescp.log").string()));
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }

  // DICOM studies of real ralo courses in dir_/name, in exam order (file names sort so).
  std::vector<fs::path> MakeStudies(const std::string& name, const std::vector<std::string>& args) {
    const fs::path out = dir_.path() / name;
    CommandResult made = MakeRaloStudies(out, ralo_, args, (dir_.path() / (name + ".log")).string());
    EXPECT_EQ(made.exit_code, 0) << made.output;
    return FilesIn(out, "", ".dcm");
  }
  void StartNode(const std::string& model) {
    const std::string tail = pacs_.ConfigTail();
    node_ = std::make_unique<Node>(dir_.path(), node_port_);
    ASSERT_TRUE(node_->Start(WriteNodeConfig(dir_.path(), node_port_, "", tail, model))) << node_->Log();
  }
  void StopNode() {
    node_->process().Signal(SIGTERM);
    EXPECT_EQ(node_->process().Wait(std::chrono::seconds(60)), 0);
  }
  // One study at a time, in exam order, as a modality would; waits for its SR, so every
  // SR is made with all of its priors already scored (as in a real course).
  void Send(const std::vector<fs::path>& files) {
    for (const fs::path& f : files) SendStudy({f});
  }
  // The images of one study in one association; waits for its SR (or, with two images,
  // for the second SR or the log saying the first image was superseded).
  void SendStudy(const std::vector<fs::path>& images) {
    const size_t before = FilesIn(pacs_dir_).size();
    std::vector<std::string> argv = {"storescu", "-aec", "PXSNODE", "127.0.0.1", std::to_string(node_port_)};
    for (const fs::path& f : images) argv.push_back(f.string());
    CommandResult r = RunCommand(argv, (dir_.path() / "storescu.log").string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(WaitFor([&] { return FilesIn(pacs_dir_).size() > before; }, std::chrono::minutes(2)))
        << "no SR for " << images[0];
    if (images.size() > 1) {
      EXPECT_TRUE(WaitFor([&] { return FilesIn(pacs_dir_).size() > before + 1 || node_->Log().find("superseded") != std::string::npos; },
                          std::chrono::minutes(1)));
    }
  }
  // A second image of the study of `file`: new SOP Instance UID, mirrored pixels (so it
  // scores differently), written next to it.
  fs::path SecondImageOf(const fs::path& file) {
    const fs::path out = file.parent_path() / "second" / file.filename();
    fs::create_directories(out.parent_path());
    const std::string script =
        "import sys, numpy as np, pydicom\n"
        "ds = pydicom.dcmread(sys.argv[1])\n"
        "ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + '.2'\n"
        "ds.InstanceNumber = 2\n"
        "ds.PixelData = np.ascontiguousarray(np.fliplr(ds.pixel_array)).tobytes()\n"
        "ds.save_as(sys.argv[2])\n";
    CommandResult r = RunCommand({"/usr/bin/python3", "-c", script, file.string(), out.string()},
                                 (dir_.path() / "second.log").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
  }
  Json History(const std::string& patient_id) {
    const fs::path log = dir_.path() / "pxsctl.log";
    CommandResult r = RunCommand({BinDir() + "/pxsctl", "--db", (node_->data_dir() / "pxsnode.db").string(), "history",
                                  patient_id, "--issuer", "RALO", "--json"},
                                 log.string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return Json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  }
  // Every study's newest SR at the PACS (the one no other SR names as predecessor)
  // against `pxsctl history --json`; returns them by study.
  std::map<std::string, SrContent> ExpectSrsAgreeWithHistory() {
    std::map<std::string, SrContent> by_study;
    std::map<std::string, Json> history_of;
    std::vector<SrContent> all;
    std::set<std::string> replaced;
    for (const fs::path& sr : FilesIn(pacs_dir_)) {
      SCOPED_TRACE(sr.string());
      CommandResult v = RunCommand({"dciodvfy", sr.string()}, (dir_.path() / "dciodvfy.log").string());
      EXPECT_EQ(v.output.find("Error"), std::string::npos) << v.output;
      auto content = ReadStructuredReport(sr.string());
      if (!content.ok()) {
        ADD_FAILURE() << content.status().ToString();
        continue;
      }
      for (const std::string& uid : content->predecessor_sop_instance_uids) replaced.insert(uid);
      all.push_back(std::move(*content));
    }
    for (const SrContent& newest : all) {
      if (replaced.count(newest.sop_instance_uid)) continue;
      const SrContent* content = &newest;
      if (!history_of.count(content->patient_id)) history_of[content->patient_id] = History(content->patient_id);
      const Json& history = history_of[content->patient_id];
      const SrMeasurementGroupContent& sr_study = content->groups.at(0);
      const std::string model = sr_study.algorithm_name + " " + sr_study.algorithm_version;
      const Json* course = nullptr;
      for (const Json& c : history["courses"]) {
        if (c["model"] == model) course = &c;
      }
      if (course == nullptr) {
        ADD_FAILURE() << "pxsctl history of " << content->patient_id << " has no course of " << model;
        continue;
      }
      std::map<std::string, const Json*> point_of;
      for (const Json& p : (*course)["studies"]) point_of[p["study_uid"]] = &p;
      if (!point_of.count(sr_study.study_uid)) {
        ADD_FAILURE() << "study " << sr_study.study_uid << " is not in the " << model << " course";
        continue;
      }
      const Json& point = *point_of[sr_study.study_uid];
      const std::string where = content->patient_id + " study " + point["study_date"].get<std::string>() + " " +
                                sr_study.study_uid + ": SR vs pxsctl history: ";
      EXPECT_TRUE(Same(sr_study.pxs, point["pxs"])) << where << "PXS " << Text(sr_study.pxs) << " vs " << point["pxs"];
      EXPECT_TRUE(Same(sr_study.calibrated, point["calibrated"]))
          << where << "calibrated " << Text(sr_study.calibrated) << " vs " << point["calibrated"];
      EXPECT_TRUE(Same(sr_study.pxs_change, point["change"]))
          << where << "change " << Text(sr_study.pxs_change) << " vs " << point["change"];
      EXPECT_TRUE(Same(sr_study.calibrated_change, point["calibrated_change"]))
          << where << "calibrated change " << Text(sr_study.calibrated_change) << " vs " << point["calibrated_change"];
      const std::string sr_trend = sr_study.trend.empty() ? "not compared" : sr_study.trend;
      EXPECT_EQ(sr_trend, point["trend"].get<std::string>()) << where << "trend";
      EXPECT_EQ(sr_study.severity_band, point["band"].get<std::string>()) << where << "band";
      EXPECT_TRUE(Same(sr_study.stable_delta, (*course)["stable_delta"])) << where << "stable_delta";
      // The priors the SR lists with this model's values are the course's studies before it.
      for (size_t i = 1; i < content->groups.size(); ++i) {
        const SrMeasurementGroupContent& prior = content->groups[i];
        if (prior.algorithm_name + " " + prior.algorithm_version != model) {
          EXPECT_FALSE(prior.comparison_note.empty()) << where << "other-model prior without a note";
          continue;
        }
        if (!point_of.count(prior.study_uid)) {
          ADD_FAILURE() << where << "prior " << prior.study_uid << " is not in the course";
          continue;
        }
        EXPECT_TRUE(Same(prior.pxs, (*point_of[prior.study_uid])["pxs"])) << where << "prior " << prior.study_uid;
        EXPECT_LT((*point_of[prior.study_uid])["study_date"].get<std::string>() +
                      (*point_of[prior.study_uid])["study_time"].get<std::string>(),
                  point["study_date"].get<std::string>() + point["study_time"].get<std::string>())
            << where << "a prior dated after the study";
      }
      EXPECT_FALSE(by_study.count(sr_study.study_uid)) << where << "two newest SRs";
      by_study[sr_study.study_uid] = *content;
    }
    return by_study;
  }

  TempDir dir_{"pxs-longitudinal-e2e"};
  std::string ralo_;
  uint16_t node_port_ = FreePort();
  fs::path pacs_dir_ = dir_.path() / "pacs";
  PacsPeer pacs_{pacs_dir_};
  std::unique_ptr<Node> node_;
};

TEST_F(LongitudinalEndToEnd, PxsctlHistoryAndTheSrsAgreeOnEveryStudyOfRealCourses) {
  // Three real courses of 6 exams (hours to days apart).
  std::vector<fs::path> files = MakeStudies("ralo", {"--max-subjects", "3", "--min-exams", "6", "--max-exams", "6"});
  ASSERT_EQ(files.size(), 18u);
  StartNode(DemoModelPath());
  // The third exam of the first course arrives with a second image: the study's value is
  // the later-scored image, in its newest SR and in pxsctl history alike.
  Send({files.begin(), files.begin() + 2});
  SendStudy({files[2], SecondImageOf(files[2])});
  Send({files.begin() + 3, files.end()});
  const auto srs = ExpectSrsAgreeWithHistory();
  EXPECT_EQ(srs.size(), files.size());
  const std::string first = files[0].filename().string().substr(0, files[0].filename().string().find('_'));
  int two_image_studies = 0;
  const Json first_history = History(first);
  for (const Json& point : first_history["courses"][0]["studies"]) {
    if (point["scored_instances"] != 2) continue;
    ++two_image_studies;
    EXPECT_EQ(point["sop_instance_uid"].get<std::string>().substr(point["sop_instance_uid"].get<std::string>().size() - 2), ".2")
        << "the later-scored image stands for the study";
    const SrContent& sr = srs.at(point["study_uid"].get<std::string>());
    EXPECT_EQ(sr.referenced_image_uids, std::vector<std::string>{point["sop_instance_uid"].get<std::string>()});
  }
  EXPECT_EQ(two_image_studies, 1) << first_history.dump(1);
  int compared = 0;
  for (const auto& [study, sr] : srs) compared += sr.groups[0].pxs_change.has_value();
  EXPECT_EQ(compared, 15) << "every study but the 3 first exams is compared";
}

TEST_F(LongitudinalEndToEnd, AfterAModelUpdateEachCourseKeepsItsModelsThresholdAndIsNotComparedAcross) {
  std::vector<fs::path> files = MakeStudies("ralo", {"--max-subjects", "1", "--min-exams", "3", "--max-exams", "3"});
  ASSERT_EQ(files.size(), 3u);
  const std::string patient = files[0].filename().string().substr(0, files[0].filename().string().find('_'));
  StartNode(DemoModelPath());
  Send({files[0], files[1]});
  StopNode();
  StartNode(TestModelPath());  // another package: pxs-test-tiny 0.0.1, stable_delta 1.0
  Send({files[2]});
  const auto srs = ExpectSrsAgreeWithHistory();
  ASSERT_EQ(srs.size(), 3u);

  Json history = History(patient);
  ASSERT_EQ(history["courses"].size(), 2u) << history.dump(2);
  for (const Json& course : history["courses"]) {
    if (course["model_name"] == "pxs-test-tiny") {
      ASSERT_EQ(course["studies"].size(), 1u);
      EXPECT_EQ(course["studies"][0]["trend"], "not compared");  // never against the demo package's studies
      EXPECT_EQ(course["stable_delta"], 1.0);
    } else {
      ASSERT_EQ(course["studies"].size(), 2u);
      // The demo package's own threshold, not the newest package's 1.0.
      EXPECT_LT(course["stable_delta"].get<double>(), 1.0);
      EXPECT_NE(course["studies"][1]["trend"], "not compared");
    }
  }
}

}  // namespace
}  // namespace pxs
