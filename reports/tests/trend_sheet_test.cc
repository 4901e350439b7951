// Tests of the trend sheet against real tools: each sheet is checked with dicom3tools'
// dciodvfy (0 errors), rendered back to pixels with DCMTK's dcmj2pnm, and the pixels
// are checked where the sheet says it drew (the highlighted study, the bands, SpO2,
// the text of the header and the disclaimer). The source images are synthetic CRs.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "../../tests/support/dicom_gen.h"
#include "test_support.h"
#include "pxs/reports/trend_sheet.h"

namespace fs = std::filesystem;

namespace pxs {
namespace {

using report_tests::CommandResult;
using report_tests::Header;
using report_tests::DciodvfyErrors;
using report_tests::RunCommand;
using report_tests::TempDir;

// A binary PPM (P6) as dcmj2pnm writes RGB images.
struct Image {
  int w = 0, h = 0;
  std::vector<unsigned char> rgb;
  const unsigned char* At(int x, int y) const { return &rgb[(static_cast<size_t>(y) * w + x) * 3]; }
};

bool ReadPpm(const std::string& path, Image* img) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  in >> magic;
  if (magic != "P6") return false;
  auto next_int = [&]() {
    in >> std::ws;
    while (in.peek() == '#') {
      std::string comment;
      std::getline(in, comment);
      in >> std::ws;
    }
    int v = -1;
    in >> v;
    return v;
  };
  img->w = next_int();
  img->h = next_int();
  const int maxval = next_int();
  if (img->w <= 0 || img->h <= 0 || maxval != 255) return false;
  in.get();  // the one whitespace before the samples
  img->rgb.resize(static_cast<size_t>(img->w) * img->h * 3);
  in.read(reinterpret_cast<char*>(img->rgb.data()), static_cast<std::streamsize>(img->rgb.size()));
  return in.gcount() == static_cast<std::streamsize>(img->rgb.size());
}

// Writes the sheet, validates it and renders it back.
void CheckAndRender(const std::string& sheet, const TempDir& tmp, Image* img) {
  std::string out;
  EXPECT_EQ(DciodvfyErrors(sheet, &out), 0) << sheet << ":\n" << out;
  const std::string ppm = (tmp / "sheet.ppm").string();
  CommandResult r = RunCommand("dcmj2pnm --write-raw-pnm '" + sheet + "' '" + ppm + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  ASSERT_TRUE(ReadPpm(ppm, img)) << ppm;
}

bool IsWhite(const unsigned char* p) { return p[0] > 245 && p[1] > 245 && p[2] > 245; }

// Pixels in the rectangle that are dark (text, lines) / near white.
int CountDark(const Image& img, const TrendSheetLayout::Rect& r) {
  int n = 0;
  for (int y = r.y; y < r.y + r.h; ++y) {
    for (int x = r.x; x < r.x + r.w; ++x) {
      const unsigned char* p = img.At(x, y);
      n += p[0] + p[1] + p[2] < 200;
    }
  }
  return n;
}

int CountWhite(const Image& img, const TrendSheetLayout::Rect& r) {
  int n = 0;
  for (int y = r.y; y < r.y + r.h; ++y) {
    for (int x = r.x; x < r.x + r.w; ++x) n += IsWhite(img.At(x, y));
  }
  return n;
}

SrModelInfo DemoModel() {
  SrModelInfo m;
  m.name = "pxs-demo-cxr14";
  m.version = "2.0.0";
  m.not_for_clinical_use = true;
  m.trend = PublishedPxsThresholds();
  return m;
}

SrPriorStudy Prior(const std::string& uid, const std::string& date, double pxs) {
  SrPriorStudy p;
  p.study_uid = uid;
  p.study_date = date;
  p.study_time = "120000";
  p.pxs = pxs;
  p.model_name = "pxs-demo-cxr14";
  p.model_version = "2.0.0";
  return p;
}

ClinicalObservation Obs(const char* code, double value, const char* unit, const std::string& at) {
  return {code, code, value, unit, at};
}

struct Fixture {
  TempDir tmp;
  std::string source;
  SrInput in;
  explicit Fixture(const std::string& patient_name = "DOE^JANE") {
    testing::SyntheticCr cr;
    cr.patient_id = "PXS-SHEET-1";
    cr.study_uid = "2.25.4001";
    cr.series_uid = "2.25.4002";
    cr.sop_uid = "2.25.4003";
    cr.study_date = "20260110";
    cr.patient_name = patient_name;
    source = (tmp / "cr.dcm").string();
    EXPECT_TRUE(testing::WriteSyntheticCr(source, cr));
    in.source_image_path = source;
    in.model = DemoModel();
    in.pxs = 7.0;
    in.version = 2;
    in.node.software_version = "test";
    in.node.station_name = "PXSNODE";
  }
};

TEST(TrendSheetTest, CourseWithBandsThisStudyAndSpO2) {
  Fixture f;
  f.in.priors = {Prior("2.25.11", "20260102", 2.0), Prior("2.25.12", "20260106", 4.5)};
  f.in.observations = {Obs(loinc::kSpO2PulseOximetry, 97, "%", "20260102100000"),
                       Obs(loinc::kSpO2PulseOximetry, 93, "%", "20260106110000"),
                       Obs(loinc::kSaO2Arterial, 89, "%", "20260110113000+0100"),
                       Obs(loinc::kO2Flow, 4, "L/min", "20260110090000"),
                       Obs(loinc::kCrp, 120, "mg/L", "20260109080000"),
                       Obs("bogus", 1, "", "20260110")};
  const std::string path = (f.tmp / "sheet.dcm").string();
  auto r = BuildTrendSheet(f.in, path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->studies_plotted, 3);
  EXPECT_EQ(r->table_rows, 3);
  EXPECT_EQ(r->observations_skipped, 1);
  ASSERT_EQ(r->layout.spo2_points.size(), 3u);
  EXPECT_EQ(Header(path, DCM_SOPClassUID), "1.2.840.10008.5.1.4.1.1.7");
  EXPECT_EQ(Header(path, DCM_PhotometricInterpretation), "RGB");
  EXPECT_EQ(Header(path, DCM_PatientID), "PXS-SHEET-1");
  EXPECT_EQ(Header(path, DCM_PatientName), "DOE^JANE");
  EXPECT_EQ(Header(path, DCM_StudyInstanceUID), "2.25.4001");
  EXPECT_EQ(Header(path, DCM_SeriesInstanceUID), TrendSheetSeriesUidForStudy("2.25.4001"));
  EXPECT_EQ(Header(path, DCM_SOPInstanceUID), r->sop_instance_uid);
  EXPECT_EQ(Header(path, DCM_InstanceNumber), "2");

  Image img;
  ASSERT_NO_FATAL_FAILURE(CheckAndRender(path, f.tmp, &img));
  // Kept for a person to look at (as the dashboard's screenshot).
  fs::create_directories(fs::path(PXS_BINARY_DIR) / "test-artifacts");
  RunCommand("dcmj2pnm +on -il '" + path + "' '" + PXS_BINARY_DIR + "/test-artifacts/trend-sheet.png'");
  EXPECT_EQ(img.w, 1280);
  EXPECT_EQ(img.h, 1024);
  const TrendSheetLayout& l = r->layout;
  // This study is the latest: 5% of the span from the right of the plot.
  ASSERT_TRUE(l.this_study_plotted);
  EXPECT_NEAR(l.this_study_x, l.score_plot.x + l.score_plot.w * (1.05 / 1.10), 2.0);
  // Its marker is drawn in the highlight colour (red, not the blue of the course).
  const unsigned char* hi = img.At(l.this_study_x, l.this_study_y);
  EXPECT_GT(hi[0], 150);
  EXPECT_LT(hi[1], 80);
  // 7.0 is in the "moderate" band (5-9), 2.0 in "normal": the marker is above the
  // middle of the plot, and the plot's bottom edge is shaded, not white.
  EXPECT_LT(l.this_study_y, l.score_plot.y + l.score_plot.h / 2);
  const unsigned char* band = img.At(l.score_plot.x + 30, l.score_plot.y + l.score_plot.h - 4);
  EXPECT_FALSE(IsWhite(band));
  EXPECT_GT(band[1], band[0]);  // the first band is green-tinted
  // SpO2 markers: teal, and the lowest value (89) lowest on the panel.
  for (const auto& [x, y] : l.spo2_points) {
    const unsigned char* p = img.At(x, y);
    EXPECT_LT(p[0], 80) << x << "," << y;
    EXPECT_GT(p[1], 80) << x << "," << y;
    EXPECT_GT(p[2], 80) << x << "," << y;
  }
  EXPECT_GT(l.spo2_points[2].second, l.spo2_points[1].second);
  EXPECT_GT(l.spo2_points[1].second, l.spo2_points[0].second);
  // The SpO2 panel shares the time axis: its last point (11:30 on the study day) is
  // within a few pixels of this study (12:00).
  EXPECT_NEAR(l.spo2_points[2].first, l.this_study_x, 3);
  // Text: the header, the table and the disclaimer are not empty.
  EXPECT_GT(CountDark(img, l.header), 500);
  EXPECT_GT(CountDark(img, l.table), 1000);
  EXPECT_GT(CountWhite(img, l.disclaimer), 500);  // white letters on the dark red bar
  EXPECT_LT(CountWhite(img, l.disclaimer), l.disclaimer.w * l.disclaimer.h / 2);
}

TEST(TrendSheetTest, OnePointNoPriorNoSpO2) {
  Fixture f;
  const std::string path = (f.tmp / "sheet.dcm").string();
  auto r = BuildTrendSheet(f.in, path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->studies_plotted, 1);
  EXPECT_TRUE(r->layout.spo2_points.empty());
  Image img;
  ASSERT_NO_FATAL_FAILURE(CheckAndRender(path, f.tmp, &img));
  const TrendSheetLayout& l = r->layout;
  // A single study sits in the middle of a one-day axis.
  EXPECT_NEAR(l.this_study_x, l.score_plot.x + l.score_plot.w / 2, 2);
  EXPECT_GT(img.At(l.this_study_x, l.this_study_y)[0], 150);
  // "No SpO2 recorded" is written across the middle of the empty panel.
  const TrendSheetLayout::Rect middle{l.spo2_plot.x + l.spo2_plot.w / 4, l.spo2_plot.y + l.spo2_plot.h / 2 - 15,
                                      l.spo2_plot.w / 2, 30};
  EXPECT_GT(CountDark(img, middle), 200);
}

TEST(TrendSheetTest, CalibratedModelPlotsTheCalibratedValue) {
  Fixture f;
  f.in.model.calibration_scale = "RALO extent";
  f.in.model.calibration_unit = "{score}";
  f.in.calibrated = 3.0;
  SrPriorStudy p = Prior("2.25.11", "20260102", 9.0);
  p.calibrated = 6.0;  // higher than this study's 3.0 on the plotted scale
  SrPriorStudy uncalibrated = Prior("2.25.12", "20260105", 5.0);
  f.in.priors = {p, uncalibrated};
  const std::string path = (f.tmp / "sheet.dcm").string();
  auto r = BuildTrendSheet(f.in, path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->studies_plotted, 2);  // the one without a calibrated value is listed, not plotted
  EXPECT_EQ(r->table_rows, 3);
  Image img;
  ASSERT_NO_FATAL_FAILURE(CheckAndRender(path, f.tmp, &img));
  // 3.0 of a 0..6.5 axis: below the middle (a raw plot would put 7.0 above it).
  EXPECT_GT(r->layout.this_study_y, r->layout.score_plot.y + r->layout.score_plot.h / 2);
}

TEST(TrendSheetTest, BadInputIsRefusedOrSkippedNeverACrash) {
  Fixture f;
  const std::string path = (f.tmp / "sheet.dcm").string();
  f.in.pxs = std::nan("");
  auto r = BuildTrendSheet(f.in, path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("cr.dcm"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(fs::exists(path));
  f.in.pxs = 3.0;
  f.in.priors = {Prior("2.25.11", "20260102", std::numeric_limits<double>::infinity())};
  EXPECT_FALSE(BuildTrendSheet(f.in, path).ok());
  f.in.priors = {Prior("2.25.11", "", 1.0), Prior("2.25.12", "2026", 2.0)};  // no / bad dates
  f.in.observations = {Obs(loinc::kSpO2PulseOximetry, std::nan(""), "%", "20260110"),
                       Obs(loinc::kSpO2PulseOximetry, 95, "%", "20261310"),
                       Obs(loinc::kSpO2PulseOximetry, 95, "%", "not a time"),
                       Obs(loinc::kSpO2PulseOximetry, 1e300, "%", "20260110")};
  r = BuildTrendSheet(f.in, path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->observations_skipped, 3);
  std::string out;
  EXPECT_EQ(DciodvfyErrors(path, &out), 0) << out;
  TrendSheetOptions tiny;
  tiny.width = 10;
  r = BuildTrendSheet(f.in, path, tiny);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("10x1024"), std::string::npos) << r.status().ToString();
  f.in.source_image_path = (f.tmp / "missing.dcm").string();
  r = BuildTrendSheet(f.in, path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing.dcm"), std::string::npos);
}

TEST(TrendSheetTest, VeryLongNamesAreShortenedInsideTheSheet) {
  Fixture f(std::string(30, 'W') + "^" + std::string(33, 'M'));  // 64 characters, PN's limit
  f.in.model.name = std::string(400, 'W') + "\xff\x01 broken UTF-8";
  f.in.model.version = std::string(100, '9');
  f.in.model.trend.bands.back().label = std::string(200, 'B');
  f.in.priors = {Prior("2.25.11", "20260102", 20.0)};
  f.in.priors.back().model_name = f.in.model.name;
  f.in.priors.back().model_version = f.in.model.version;
  const std::string path = (f.tmp / "sheet.dcm").string();
  auto r = BuildTrendSheet(f.in, path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->studies_plotted, 2);
  Image img;
  ASSERT_NO_FATAL_FAILURE(CheckAndRender(path, f.tmp, &img));
  // The model line is cut with an ellipsis 20 px from the edge: the margin stays white.
  const TrendSheetLayout::Rect margin{img.w - 16, 0, 16, r->layout.header.h};
  EXPECT_EQ(CountDark(img, margin), 0);
  EXPECT_GT(CountDark(img, r->layout.header), 500);
}

TEST(ClinicalContextTest, TimesCodesAndNearest) {
  EXPECT_TRUE(IsLoincCode("59408-5"));
  EXPECT_TRUE(IsLoincCode("1988-5"));
  EXPECT_FALSE(IsLoincCode("59408"));
  EXPECT_FALSE(IsLoincCode("-5"));
  EXPECT_FALSE(IsLoincCode("12345678-5"));
  EXPECT_FALSE(IsLoincCode("5940a-5"));
  EXPECT_EQ(*ClockSeconds("19700102"), 86400.0);
  EXPECT_EQ(*ClockSeconds("197001020130"), 86400.0 + 5400);
  EXPECT_EQ(*ClockSeconds("19700101000001.5+0100"), 1.5);
  EXPECT_FALSE(ClockSeconds("20260230").has_value());
  EXPECT_FALSE(ClockSeconds("2026011025").has_value());
  EXPECT_FALSE(ClockSeconds("").has_value());
  EXPECT_EQ(*StudyClockSeconds("19700102", "", 0), 86400.0);
  const double at = *ClockSeconds("20260110120000");
  std::vector<ClinicalObservation> all = {Obs("59408-5", 90, "%", "20260110100000"),
                                          Obs("59408-5", 91, "%", "20260110140000"),  // tie: earlier wins
                                          Obs("59408-5", 99, "%", "20260105120000"),  // outside 24 h
                                          Obs("1988-5", 50, "mg/L", "20260108120000"),  // outside
                                          Obs("8867-4", 88, "/min", "20260110115900")};
  const ClinicalObservation* n = NearestObservation(all, {"59408-5"}, at, 86400);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->value, 90);
  EXPECT_EQ(NearestObservation(all, {"1988-5"}, at, 86400), nullptr);
  auto context = ClinicalContextAt(all, at, 86400);
  ASSERT_EQ(context.size(), 2u);
  EXPECT_EQ(context[0].loinc_code, "59408-5");
  EXPECT_EQ(context[0].value, 90);
  EXPECT_EQ(context[1].loinc_code, "8867-4");
}

}  // namespace
}  // namespace pxs
