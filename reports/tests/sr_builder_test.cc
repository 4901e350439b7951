// Tests of the SR builder against real files: every SR is checked with dicom3tools'
// dciodvfy (0 errors) and DCMTK's dsrdump, and its numbers are read back with
// DSRDocument (ReadStructuredReport) and compared with the inputs.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "pxs/reports/sr_builder.h"
#include "pxs/reports/sr_reader.h"
#include "../../tests/support/dicom_gen.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace pxs {
namespace {

const fs::path kSharedData = fs::path(PXS_SOURCE_DIR) / ".." / "shared" / "data";

using report_tests::CommandResult;
using report_tests::Header;
using report_tests::RunCommand;
using report_tests::TempDir;

// dciodvfy prints "Error - ..." lines for every IOD violation; none are allowed.
void ExpectValidSr(const std::string& path) {
  std::string output;
  EXPECT_EQ(report_tests::DciodvfyErrors(path, &output), 0) << path << ": dciodvfy reports errors:\n" << output;
  CommandResult d = RunCommand("dsrdump '" + path + "'");
  EXPECT_EQ(d.rc, 0) << path << ": dsrdump failed:\n" << d.output;
  EXPECT_NE(d.output.find("Imaging Measurement Report"), std::string::npos) << d.output;
}

std::vector<std::map<std::string, std::string>> ReadCsv(const fs::path& path) {
  std::vector<std::map<std::string, std::string>> rows;
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> header;
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string cell; std::getline(ss, cell, ',');) out.push_back(cell);
    return out;
  };
  if (std::getline(in, line)) header = split(line);
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto cells = split(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size() && i < cells.size(); ++i) row[header[i]] = cells[i];
    rows.push_back(row);
  }
  return rows;
}

SrModelInfo DemoModel(const std::string& version = "1.0.0") {
  SrModelInfo m;
  m.name = "pxs-demo-cxr14";
  m.version = version;
  m.intended_use = "Research demonstration of the PXS pipeline on chest radiographs.";
  m.not_for_clinical_use = true;
  m.trend = PublishedPxsThresholds();
  return m;
}

SrNodeIdentity TestNode() {
  SrNodeIdentity n;
  n.software_version = "0.1.0-test";
  n.device_observer_uid = "2.25.1234567890";
  n.device_observer_name = "pxs-test-node";
  n.station_name = "PXSNODE";
  n.ae_title = "PXSNODE";
  return n;
}

TEST(TrendTest, PublishedScaleReading) {
  // The reading itself is the longitudinal library's (longitudinal/tests); the SR
  // takes its thresholds as they are.
  const TrendThresholds t = PublishedPxsThresholds();
  EXPECT_EQ(t.stable_delta, 1.0);
  EXPECT_EQ(longitudinal::BandFor(t.bands, 2.5), "mild");
}

TEST(TrackingUidTest, StableAcrossCallsAndDistinctPerPatient) {
  const std::string a = TrackingUidForPatient("PXSLONG-001", "PXSLONG");
  EXPECT_EQ(a, TrackingUidForPatient("PXSLONG-001", "PXSLONG"));
  EXPECT_NE(a, TrackingUidForPatient("PXSLONG-002", "PXSLONG"));
  EXPECT_NE(a, TrackingUidForPatient("PXSLONG-001", "OTHER"));
  EXPECT_NE(TrackingUidForPatient("AB", "C"), TrackingUidForPatient("A", "BC"));
  // Each model tracks its own course of the patient.
  EXPECT_NE(TrackingUidForPatient("PXSLONG-001", "PXSLONG", "pxs-demo-cxr14"),
            TrackingUidForPatient("PXSLONG-001", "PXSLONG", "pxs-demo-edema"));
  EXPECT_TRUE(std::regex_match(a, std::regex(R"(2\.25\.(0|[1-9][0-9]*))"))) << a;
  EXPECT_LE(a.size(), 64u);
}

TEST(SrBuilderTest, RefusesMissingAndNonDicomSource) {
  TempDir tmp;
  SrInput in;
  in.model = DemoModel();
  in.node = TestNode();
  in.source_image_path = (tmp.path() / "missing.dcm").string();
  auto r = BuildStructuredReport(in, (tmp.path() / "sr.dcm").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing.dcm"), std::string::npos) << r.status().ToString();
  std::ofstream(tmp.path() / "text.dcm") << "not dicom at all";
  in.source_image_path = (tmp.path() / "text.dcm").string();
  r = BuildStructuredReport(in, (tmp.path() / "sr.dcm").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("text.dcm"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(fs::exists(tmp.path() / "sr.dcm"));
}

// A second model (issue 12): its measurement groups carry its own Finding, tracking
// identifier and tracking UID; the SR stays valid.
TEST(SrBuilderTest, ModelFindingAndTrackingAreThisModels) {
  TempDir tmp;
  std::vector<std::string> files = testing::WriteSyntheticSeries((tmp.path() / "img").string(), 1, 64);
  ASSERT_EQ(files.size(), 1u);
  SrInput in;
  in.source_image_path = files[0];
  in.model = DemoModel();
  in.model.name = "pxs-demo-edema";
  in.model.finding_scheme = "SCT";
  in.model.finding_value = "19242006";
  in.model.finding_meaning = "Pulmonary edema";
  in.tracking_identifier = "pxs-demo-edema score";
  in.node = TestNode();
  in.pxs = 2.5;
  const std::string out = (tmp.path() / "sr.dcm").string();
  auto r = BuildStructuredReport(in, out);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectValidSr(out);
  CommandResult d = RunCommand("dsrdump '" + out + "'");
  EXPECT_NE(d.output.find("(19242006,SCT,\"Pulmonary edema\")"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("pxs-demo-edema score"), std::string::npos) << d.output;
  auto c = ReadStructuredReport(out);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_FALSE(c->groups.empty());
  EXPECT_EQ(c->groups[0].tracking_uid,
            TrackingUidForPatient(Header(files[0], DCM_PatientID), Header(files[0], DCM_IssuerOfPatientID),
                                  "pxs-demo-edema"));
}

TEST(SrBuilderTest, RefusesNonFiniteNumbers) {
  TempDir tmp;
  SrInput in;
  in.model = DemoModel();
  in.source_image_path = (tmp.path() / "any.dcm").string();
  in.pxs = 3.0;
  in.priors = {{"2.25.9", "20260101", "", "", std::nan(""), std::nullopt, "m", "1", std::nullopt}};
  auto r = BuildStructuredReport(in, (tmp.path() / "sr.dcm").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("2.25.9"), std::string::npos) << r.status().ToString();
  in.priors.clear();
  in.pxs = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(BuildStructuredReport(in, (tmp.path() / "sr.dcm").string()).ok());
  EXPECT_FALSE(fs::exists(tmp.path() / "sr.dcm"));
}

// Every scorable file of ../shared/data/dicom, each with one comparable prior and one
// prior of another model version.
TEST(SrBuilderTest, ValidSrForEveryScorableManifestFile) {
  const fs::path dir = kSharedData / "dicom";
  if (!fs::exists(dir / "manifest.csv")) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present on this machine)";
  }
  TempDir tmp;
  int built = 0;
  for (const auto& row : ReadCsv(dir / "manifest.csv")) {
    if (row.at("expected_scoring").rfind("score", 0) != 0) continue;
    const std::string source = (dir / row.at("file")).string();
    SCOPED_TRACE(source);
    SrInput in;
    in.source_image_path = source;
    in.model = DemoModel("1.1.0");
    in.node = TestNode();
    in.pxs = 7.4 + built * 0.01;
    SrPriorStudy same{"2.25.111", "20000302", "101500", "2.25.112", 4.1, std::nullopt,
                      "pxs-demo-cxr14", "1.1.0", 13.75};
    SrPriorStudy other{"2.25.221", "20000305", "090000", "", 6.0, std::nullopt, "pxs-demo-cxr14",
                       "1.0.0", std::nullopt};
    in.priors = {other, same};
    const std::string out = (tmp.path() / (row.at("file") + ".sr.dcm")).string();
    auto r = BuildStructuredReport(in, out);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ExpectValidSr(out);

    auto c = ReadStructuredReport(out);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->sop_instance_uid, r->sop_instance_uid);
    EXPECT_EQ(c->study_uid, Header(source, DCM_StudyInstanceUID));
    EXPECT_EQ(c->patient_id, row.at("patient_id"));
    EXPECT_EQ(Header(out, DCM_Modality), "SR");
    EXPECT_EQ(Header(out, DCM_Manufacturer), "PXS Node");
    EXPECT_EQ(Header(out, DCM_AccessionNumber), Header(source, DCM_AccessionNumber));
    EXPECT_EQ(Header(out, DCM_StudyDate), Header(source, DCM_StudyDate));
    EXPECT_NE(Header(out, DCM_SeriesInstanceUID), Header(source, DCM_SeriesInstanceUID));
    EXPECT_EQ(c->completion_flag, "COMPLETE");
    EXPECT_EQ(c->verification_flag, "UNVERIFIED");
    EXPECT_EQ(c->referenced_image_uids, std::vector<std::string>{Header(source, DCM_SOPInstanceUID)});
    ASSERT_EQ(c->groups.size(), 3u);
    const auto& cur = c->groups[0];
    ASSERT_TRUE(cur.pxs.has_value());
    EXPECT_EQ(*cur.pxs, in.pxs);
    ASSERT_TRUE(cur.pxs_change.has_value());
    EXPECT_DOUBLE_EQ(*cur.pxs_change, in.pxs - 4.1);
    ASSERT_TRUE(cur.siamese_change.has_value());
    EXPECT_EQ(*cur.siamese_change, 13.75);
    EXPECT_EQ(cur.trend, "worse");
    EXPECT_EQ(cur.time_point_order, 3);
    EXPECT_EQ(cur.time_point_type, "Follow-up");
    EXPECT_EQ(cur.algorithm_name, "pxs-demo-cxr14");
    EXPECT_EQ(cur.algorithm_version, "1.1.0");
    ASSERT_EQ(cur.algorithm_parameters.size(), 1u);
    EXPECT_NE(cur.algorithm_parameters[0].find("stable_delta=1"), std::string::npos);
    // Priors oldest first: the comparable one (2000-03-02), then the other model's (03-05).
    EXPECT_EQ(c->groups[1].study_uid, "2.25.111");
    EXPECT_EQ(c->groups[1].pxs, 4.1);
    EXPECT_EQ(c->groups[1].comparison_note, "");
    EXPECT_EQ(c->groups[1].time_point_type, "Baseline");
    EXPECT_EQ(c->groups[2].study_uid, "2.25.221");
    EXPECT_EQ(c->groups[2].pxs, 6.0);
    EXPECT_EQ(c->groups[2].algorithm_version, "1.0.0");
    EXPECT_NE(c->groups[2].comparison_note.find("not comparable"), std::string::npos);
    for (const auto& g : c->groups) EXPECT_EQ(g.tracking_uid, cur.tracking_uid);
    EXPECT_EQ(cur.tracking_uid,
              TrackingUidForPatient(row.at("patient_id"), Header(source, DCM_IssuerOfPatientID), DemoModel().name));
    char expected_summary[128];
    std::snprintf(expected_summary, sizeof expected_summary, "PXS %.1f (moderate; prior 2000-03-02: 4.1; %+.1f, worse)",
                  in.pxs, in.pxs - 4.1);
    EXPECT_EQ(c->summary.rfind(expected_summary, 0), 0u) << c->summary;
    EXPECT_EQ(r->summary, c->summary);
    ++built;
  }
  EXPECT_GE(built, 10) << "expected the manifest to list at least 10 scorable files";
}

TEST(SrBuilderTest, StudiesDatedAfterThisOneAreNotPriors) {
  const fs::path source = kSharedData / "dicom" / "cr_mono2_explicit_le.dcm";
  if (!fs::exists(source)) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present on this machine)";
  }
  const std::string date = Header(source.string(), DCM_StudyDate);
  ASSERT_EQ(date.size(), 8u);
  TempDir tmp;
  SrInput in;
  in.source_image_path = source.string();
  in.model = DemoModel();
  in.node = TestNode();
  in.pxs = 6.0;
  in.priors = {{"2.25.100", "19990101", "", "", 2.0, std::nullopt, "pxs-demo-cxr14", "1.0.0", 4.0},
               {"2.25.200", "29991231", "", "", 9.5, std::nullopt, "pxs-demo-cxr14", "1.0.0", 7.0},
               {Header(source.string(), DCM_StudyInstanceUID), date, "", "", 6.0, std::nullopt,
                "pxs-demo-cxr14", "1.0.0", std::nullopt}};
  const std::string out = (tmp.path() / "sr.dcm").string();
  auto r = BuildStructuredReport(in, out);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectValidSr(out);
  auto c = ReadStructuredReport(out);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->groups.size(), 2u) << "only the 1999 study is a prior";
  EXPECT_EQ(c->groups[1].study_uid, "2.25.100");
  EXPECT_EQ(c->groups[0].time_point_order, 2);
  EXPECT_EQ(c->groups[0].pxs_change, 4.0);
  EXPECT_EQ(c->groups[0].siamese_change, 4.0);
  EXPECT_EQ(c->groups[0].trend, "worse");
}

// The trend follows the longitudinal rule: a change equal to the threshold is stable;
// with calibrated values on both sides and a calibrated threshold, the calibrated
// change decides and both changes are in the SR.
TEST(SrBuilderTest, BoundaryIsStableAndTheCalibratedThresholdDecidesWhenBothAreCalibrated) {
  const fs::path source = kSharedData / "dicom" / "cr_mono2_explicit_le.dcm";
  if (!fs::exists(source)) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present on this machine)";
  }
  TempDir tmp;
  SrInput in;
  in.source_image_path = source.string();
  in.model = DemoModel();
  in.node = TestNode();
  in.pxs = 3.5;  // +1.0 against the prior: exactly stable_delta
  in.priors = {{"2.25.100", "19990101", "", "", 2.5, std::nullopt, "pxs-demo-cxr14", "1.0.0", 1.0}};
  const std::string raw_out = (tmp.path() / "raw.dcm").string();
  ASSERT_TRUE(BuildStructuredReport(in, raw_out).ok());
  auto raw = ReadStructuredReport(raw_out);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->groups[0].pxs_change, 1.0);
  EXPECT_EQ(raw->groups[0].trend, "stable");
  EXPECT_EQ(raw->groups[0].stable_delta, 1.0);
  EXPECT_FALSE(raw->groups[0].stable_delta_calibrated.has_value());

  in.model.calibration_scale = "geographic extent";
  in.model.trend.stable_delta = 0.25;  // raw +1.0 would read worsened
  in.model.trend.stable_delta_calibrated = 0.5;
  in.calibrated = 4.5;
  in.priors[0].calibrated = 4.0;  // +0.5 calibrated == stable_delta_calibrated
  const std::string cal_out = (tmp.path() / "calibrated.dcm").string();
  auto built = BuildStructuredReport(in, cal_out);
  ASSERT_TRUE(built.ok());
  ExpectValidSr(cal_out);
  auto cal = ReadStructuredReport(cal_out);
  ASSERT_TRUE(cal.ok());
  const auto& cur = cal->groups[0];
  EXPECT_EQ(cur.trend, "stable");
  EXPECT_EQ(cur.pxs_change, 1.0);
  EXPECT_EQ(cur.calibrated_change, 0.5);
  EXPECT_EQ(cur.stable_delta_calibrated, 0.5);
  EXPECT_EQ(cur.calibrated, 4.5);
  EXPECT_NE(built->summary.find("[geographic extent 4.5]"), std::string::npos) << built->summary;
  EXPECT_NE(built->summary.find("[geographic extent +0.5], stable"), std::string::npos) << built->summary;
  EXPECT_NE(cur.algorithm_parameters[0].find("stable_delta_calibrated=0.5"), std::string::npos);
}

// The synthetic courses of ../shared/data/longitudinal: each study's SR compares with
// the previous studies built so far, as the pipeline does.
TEST(SrBuilderTest, LongitudinalCourses) {
  const fs::path script = kSharedData / "longitudinal" / "make_dicom.py";
  if (!fs::exists(script) || !fs::exists(kSharedData / "cxr14")) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/longitudinal or ../shared/data/cxr14 not found "
                    "(shared test data is not present on this machine)";
  }
  // 4 courses by default (a few seconds); PXS_LONGITUDINAL_PATIENTS=30 runs them all.
  const char* env = std::getenv("PXS_LONGITUDINAL_PATIENTS");
  const int patients = env ? std::max(1, std::atoi(env)) : 4;
  TempDir tmp;
  const fs::path courses = tmp.path() / "courses";
  CommandResult gen = RunCommand("/usr/bin/python3 '" + script.string() + "' '" + courses.string() +
                          "' --max-patients " + std::to_string(patients));
  ASSERT_EQ(gen.rc, 0) << gen.output;
  auto index = ReadCsv(courses / "index.csv");
  ASSERT_GE(index.size(), 3u * patients);
  const std::string file_col = index[0].count("file") ? "file" : index[0].begin()->first;

  std::map<std::string, std::vector<SrPriorStudy>> history;  // patient -> scored so far
  std::map<std::string, std::string> tracking;                // patient -> tracking UID seen
  int built = 0;
  for (const auto& row : index) {
    const std::string source = (courses / row.at(file_col)).string();
    SCOPED_TRACE(source);
    const std::string patient = Header(source, DCM_PatientID);
    // Synthetic scores: rising with the label count, so every trend occurs.
    const int labels = std::stoi(row.at("label_count"));
    const double pxs = 2.0 + 2.5 * labels + 0.05 * static_cast<double>(history[patient].size());
    SrInput in;
    in.source_image_path = source;
    in.model = DemoModel();
    in.model.calibration_scale = "mRALE";
    in.model.calibration_unit = "{score}";
    in.node = TestNode();
    in.pxs = pxs;
    in.calibrated = pxs * 1.5;
    in.priors = history[patient];
    if (!in.priors.empty()) in.priors.back().siamese_change = 10.0 + built;
    const std::string out = (tmp.path() / ("sr_" + std::to_string(built) + ".dcm")).string();
    auto r = BuildStructuredReport(in, out);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ExpectValidSr(out);
    auto c = ReadStructuredReport(out);
    ASSERT_TRUE(c.ok()) << c.status().ToString();

    ASSERT_EQ(c->groups.size(), in.priors.size() + 1);
    const auto& cur = c->groups[0];
    EXPECT_EQ(cur.pxs, pxs);
    EXPECT_EQ(cur.calibrated, pxs * 1.5);
    EXPECT_EQ(cur.time_point_order, static_cast<int>(in.priors.size()) + 1);
    EXPECT_EQ(cur.study_uid, Header(source, DCM_StudyInstanceUID));
    ASSERT_EQ(cur.algorithm_parameters.size(), 1u);
    EXPECT_NE(cur.algorithm_parameters[0].find("calibration=mRALE"), std::string::npos);
    if (in.priors.empty()) {
      EXPECT_EQ(cur.time_point_type, "Baseline");
      EXPECT_FALSE(cur.pxs_change.has_value());
      EXPECT_EQ(cur.trend, "");
    } else {
      const SrPriorStudy& last = in.priors.back();
      ASSERT_TRUE(cur.pxs_change.has_value());
      EXPECT_DOUBLE_EQ(*cur.pxs_change, pxs - last.pxs);
      EXPECT_EQ(cur.siamese_change, last.siamese_change);
      longitudinal::ScoredInstance now_row, prior_row;
      now_row.pxs = pxs;
      prior_row.pxs = last.pxs;
      EXPECT_EQ(cur.trend, longitudinal::TrendText(longitudinal::Compare(now_row, prior_row, in.model.trend).trend));
      for (size_t i = 0; i < in.priors.size(); ++i) {
        EXPECT_EQ(c->groups[i + 1].study_uid, in.priors[i].study_uid);
        EXPECT_EQ(c->groups[i + 1].pxs, in.priors[i].pxs);
        EXPECT_EQ(c->groups[i + 1].time_point_order, static_cast<int>(i) + 1);
      }
    }
    auto [it, inserted] = tracking.emplace(patient, cur.tracking_uid);
    EXPECT_EQ(it->second, cur.tracking_uid) << "tracking UID changed within " << patient;
    EXPECT_EQ(cur.tracking_uid, TrackingUidForPatient(patient, "PXSLONG", DemoModel().name));
    history[patient].push_back(SrPriorStudy{Header(source, DCM_StudyInstanceUID),
                                            Header(source, DCM_StudyDate), Header(source, DCM_StudyTime),
                                            Header(source, DCM_SOPInstanceUID), pxs, pxs * 1.5,
                                            in.model.name, in.model.version, std::nullopt});
    ++built;
  }
  EXPECT_EQ(built, static_cast<int>(index.size()));
  EXPECT_EQ(tracking.size(), static_cast<size_t>(patients));
  std::set<std::string> distinct;
  for (auto& [p, uid] : tracking) distinct.insert(uid);
  EXPECT_EQ(distinct.size(), tracking.size());
}

// A fixture image written by the test itself (synthetic header, no pixel data needed
// by the builder) in ISO_IR 100, to check the character set handling.
TEST(SrBuilderTest, Latin1SourceIsCopiedAsUtf8AndPredecessorIsReferenced) {
  const fs::path src_file = kSharedData / "dicom" / "cr_mono2_explicit_le.dcm";
  if (!fs::exists(src_file)) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present on this machine)";
  }
  TempDir tmp;
  const std::string latin1 = (tmp.path() / "latin1.dcm").string();
  {
    DcmFileFormat f;
    ASSERT_TRUE(f.loadFile(src_file.c_str()).good());
    DcmDataset* ds = f.getDataset();
    ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100");
    ds->putAndInsertString(DCM_PatientName, "M\xFCller^J\xFCrgen");  // Müller^Jürgen in Latin-1
    ASSERT_TRUE(f.saveFile(latin1.c_str(), EXS_LittleEndianExplicit).good());
  }
  SrInput in;
  in.source_image_path = latin1;
  in.model = DemoModel();
  in.model.intended_use = "Forschung: Schweregrad-Schätzung";  // UTF-8 text of our own
  in.node = TestNode();
  in.pxs = 1.2;
  const std::string v1 = (tmp.path() / "v1.dcm").string();
  auto r1 = BuildStructuredReport(in, v1);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  ExpectValidSr(v1);
  EXPECT_EQ(Header(v1, DCM_SpecificCharacterSet), "ISO_IR 192");
  EXPECT_EQ(Header(v1, DCM_PatientName), "M\xC3\xBCller^J\xC3\xBCrgen");
  auto c1 = ReadStructuredReport(v1);
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1->intended_use, in.model.intended_use);
  EXPECT_EQ(c1->summary.rfind("PXS 1.2 (normal/minimal; baseline, no prior)", 0), 0u) << c1->summary;

  // Two scored images: both in the image library and the evidence, still valid.
  SrInput two = in;
  two.scored_images = {{Header(latin1, DCM_SOPClassUID), Header(latin1, DCM_SOPInstanceUID), ""},
                       {"1.2.840.10008.5.1.4.1.1.1", "2.25.31415926535", ""}};
  const std::string both = (tmp.path() / "two-images.dcm").string();
  ASSERT_TRUE(BuildStructuredReport(two, both).ok());
  ExpectValidSr(both);
  auto c_both = ReadStructuredReport(both);
  ASSERT_TRUE(c_both.ok());
  EXPECT_EQ(c_both->referenced_image_uids,
            (std::vector<std::string>{Header(latin1, DCM_SOPInstanceUID), "2.25.31415926535"}));

  in.version = 2;
  in.predecessor = SrPredecessor{r1->sop_instance_uid, "", r1->series_uid, ""};
  const std::string v2 = (tmp.path() / "v2.dcm").string();
  auto r2 = BuildStructuredReport(in, v2);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  ExpectValidSr(v2);
  auto c2 = ReadStructuredReport(v2);
  ASSERT_TRUE(c2.ok());
  EXPECT_NE(r2->sop_instance_uid, r1->sop_instance_uid);
  EXPECT_EQ(r2->series_uid, r1->series_uid) << "all versions of a study's SR share one series";
  EXPECT_EQ(c2->predecessor_sop_instance_uids, std::vector<std::string>{r1->sop_instance_uid});
  EXPECT_TRUE(c1->predecessor_sop_instance_uids.empty());
  EXPECT_EQ(Header(v2, DCM_InstanceNumber), "2");
}

// Character sets (docs/conformance.md 6), on synthetic sources written here: what the SR
// copies is UTF-8 whatever the source declared, declared as ISO_IR 192 exactly when
// something is not ASCII, and valid for its VR (dciodvfy). Escape codes alone (ISO 2022
// IR 87) and a PatientID padded with NUL were both copied raw before.
struct CharsetCase {
  std::string name, charset, raw_name, raw_id;
  std::string want_name, want_id, want_charset;
  bool want_problem = false;
};

TEST(SrBuilderTest, CopiedTextIsUtf8AndValidForItsVrWhateverTheSourceCharacterSet) {
  using namespace std::string_literals;
  const std::vector<CharsetCase> cases = {
      {"japanese", "\\ISO 2022 IR 87",
       "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B", "PID-JP\0"s,
       "Yamada^Tarou=山田^太郎=やまだ^たろう", "PID-JP", "ISO_IR 192"},
      {"latin1", "ISO_IR 100", "M\xFCller^J\xFCrgen", "PID-DE", "Müller^Jürgen", "PID-DE", "ISO_IR 192"},
      {"ascii", "ISO_IR 100", "SMITH^JOHN", "PID-EN\0"s, "SMITH^JOHN", "PID-EN", ""},
      // Latin-1 bytes without a declaration: not valid in the default repertoire, so
      // not copied as they are; the SR stays valid (ASCII with %HH) and says nothing else.
      {"undeclared", "", "M\xFCller", "PID-X", "M%FCller", "PID-X", "", true},
  };
  TempDir tmp;
  for (const CharsetCase& c : cases) {
    SCOPED_TRACE(c.name);
    testing::SyntheticCr spec;
    spec.study_uid = testing::NewUid();
    spec.series_uid = testing::NewUid();
    spec.sop_uid = testing::NewUid();
    spec.specific_character_set = c.charset;
    spec.patient_name = c.raw_name;
    spec.patient_id = c.raw_id;
    const std::string source = (tmp.path() / (c.name + "-src.dcm")).string();
    ASSERT_TRUE(testing::WriteSyntheticCr(source, spec));
    SrInput in;
    in.source_image_path = source;
    in.model = DemoModel();
    in.node = TestNode();
    in.pxs = 3.5;
    const std::string sr = (tmp.path() / (c.name + "-sr.dcm")).string();
    auto r = BuildStructuredReport(in, sr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ExpectValidSr(sr);
    EXPECT_EQ(Header(sr, DCM_SpecificCharacterSet), c.want_charset);
    EXPECT_EQ(Header(sr, DCM_PatientName), c.want_name);
    DcmFileFormat f;
    ASSERT_TRUE(f.loadFile(sr.c_str()).good());
    DcmElement* id = nullptr;
    ASSERT_TRUE(f.getDataset()->findAndGetElement(DCM_PatientID, id).good());
    char* id_value = nullptr;
    Uint32 id_length = 0;
    ASSERT_TRUE(id->getString(id_value, id_length).good());
    EXPECT_EQ(std::string(id_value, id_length), c.want_id) << "no NUL or padding in the SR's PatientID";
    EXPECT_EQ(r->text_problems.empty(), !c.want_problem);
    auto content = ReadStructuredReport(sr);
    ASSERT_TRUE(content.ok());
    EXPECT_EQ(content->patient_id, c.want_id);
    // The tracking UID is derived from the cleaned PatientID, the one the database has.
    EXPECT_EQ(content->groups[0].tracking_uid, TrackingUidForPatient(c.want_id, spec.issuer, DemoModel().name));
  }
}

// Clinical context (issue 15): per LOINC code the observation nearest to the study time
// within the window, as NUM items with UCUM units and their own observation times in a
// "Clinical Context" container; what cannot be written is left out and counted.
TEST(SrBuilderTest, ClinicalContextContainerHoldsTheNearestObservationPerCode) {
  TempDir tmp;
  testing::SyntheticCr spec;
  spec.study_uid = "2.25.5001";
  spec.series_uid = "2.25.5002";
  spec.sop_uid = "2.25.5003";
  spec.study_date = "20260101";  // StudyTime 120000
  const std::string source = (tmp.path() / "cr.dcm").string();
  ASSERT_TRUE(testing::WriteSyntheticCr(source, spec));
  SrInput in;
  in.source_image_path = source;
  in.model = DemoModel();
  in.node = TestNode();
  in.pxs = 4.0;
  const std::string long_display(200, 'D');
  in.observations = {
      {"59408-5", "SpO2", 90, "%", "20260101100000"},
      {"59408-5", "SpO2", 99, "%", "20251225120000"},          // a week earlier: not this image's
      {"1988-5", "CRP", 120.5, "mg/L", "20251231180000+0100"},  // 18 h before
      {"8867-4", "Heart rate", 88, "bpm", "202601011130"},      // bpm is /min in UCUM
      {"99999-9", long_display, 5, "", "20260101"},             // unknown code: kept, no unit
      {"2708-6", "SaO2", 91, std::string(20, 'u'), "20260101120000"},  // unit too long
      {"abc", "bad code", 1, "%", "20260101120000"},
      {"3151-8", "O2 flow", std::nan(""), "L/min", "20260101120000"},
      {"3150-0", "FiO2", 40, "%", "yesterday"}};
  const std::string out = (tmp.path() / "sr.dcm").string();
  auto r = BuildStructuredReport(in, out);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectValidSr(out);
  EXPECT_EQ(r->clinical_items, 4);
  EXPECT_EQ(r->observations_skipped, 4);
  CommandResult d = RunCommand("dsrdump '" + out + "'");
  EXPECT_NE(RunCommand("dsrdump +Pc '" + out + "'").output.find("(122127,DCM,\"Clinical Context\")"), std::string::npos) << d.output;
  auto c = ReadStructuredReport(out);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->clinical_context.size(), 4u);
  const auto& cc = c->clinical_context;  // ordered by code
  EXPECT_EQ(cc[0].loinc_code, "1988-5");
  EXPECT_EQ(cc[0].value, 120.5);
  EXPECT_EQ(cc[0].unit, "mg/L");
  EXPECT_EQ(cc[0].observed_at, "20251231180000+0100");
  EXPECT_EQ(cc[1].loinc_code, "59408-5");
  EXPECT_EQ(cc[1].value, 90);
  EXPECT_EQ(cc[1].display, "SpO2");
  EXPECT_EQ(cc[1].observed_at, "20260101100000");
  EXPECT_EQ(cc[2].loinc_code, "8867-4");
  EXPECT_EQ(cc[2].unit, "/min");
  EXPECT_EQ(cc[3].loinc_code, "99999-9");
  EXPECT_EQ(cc[3].unit, "1");
  EXPECT_EQ(cc[3].display, std::string(64, 'D'));  // LO: 64 characters
  // The measurements are still there and still first.
  ASSERT_FALSE(c->groups.empty());
  EXPECT_EQ(c->groups[0].pxs, 4.0);

  // No observation near the study: no container at all.
  in.observations = {{"59408-5", "SpO2", 97, "%", "20250101120000"}};
  r = BuildStructuredReport(in, out);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->clinical_items, 0);
  c = ReadStructuredReport(out);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->clinical_context.empty());
  EXPECT_EQ(RunCommand("dsrdump '" + out + "'").output.find("Clinical Context"), std::string::npos);
}

}  // namespace
}  // namespace pxs
