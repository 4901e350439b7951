// pxs::reports: the trend sheet, a DICOM Secondary Capture image (SC Image Storage,
// 1.2.840.10008.5.1.4.1.1.7) sent beside each SR version, because PACS viewers show
// images well and SR text poorly. Drawn with cairo: the patient's score over time
// (the calibrated value when the model has a calibration, else the raw PXS) with the
// model's bands and this study highlighted, SpO2 beneath it on the same time axis, the
// values table (date, score, change, trend, band, nearest SpO2 / O2 / CRP), model name
// and version and the clinical-use disclaimer, all burned in.
//
// RGB, 8 bits, uncompressed: every PACS viewer displays RGB SC (it is what commercial
// CXR AI sends), and the colours tell bands, this study and SpO2 apart; the palette
// is also chosen with distinct luminance so that a grayscale reading monitor, which
// shows RGB as luminance, still separates them.
//
// The values come from the SR's own input and the longitudinal rule
// (pxs/longitudinal/course.h): the sheet only draws them.
#pragma once

#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/reports/clinical_context.h"
#include "pxs/reports/sr_builder.h"

namespace pxs {

struct TrendSheetOptions {
  int width = 1280;
  int height = 1024;
  // The table's nearest SpO2 / O2 / CRP: within this many seconds of each study.
  double nearest_window_s = 24 * 3600.0;
};

// Pixel positions of what was drawn (x right, y down, in image pixels), for tests and
// for the log.
struct TrendSheetLayout {
  struct Rect {
    int x = 0, y = 0, w = 0, h = 0;
  };
  Rect score_plot, spo2_plot, table, header, disclaimer;
  int this_study_x = 0, this_study_y = 0;       // centre of the highlighted marker
  bool this_study_plotted = false;               // false: no value on the plotted scale
  std::vector<std::pair<int, int>> spo2_points;  // SpO2 markers drawn
};

struct TrendSheetResult {
  std::string sop_instance_uid;
  std::string series_uid;
  int studies_plotted = 0;
  int table_rows = 0;
  int observations_skipped = 0;  // not usable (bad code, value or time)
  TrendSheetLayout layout;
  // As SrResult::text_problems: source values that could not be copied as they were.
  std::vector<std::string> text_problems;
};

// Builds the sheet for the SR made from `in` (same source image, values, priors,
// version and node; in.observations feed the SpO2 panel and the table) and writes it
// to output_path, not synced (the caller places it with pxs::FileStore). Errors name
// the source file; non-finite scores are refused as the SR refuses them, unusable
// observations are skipped and counted.
StatusOr<TrendSheetResult> BuildTrendSheet(const SrInput& in, const std::string& output_path,
                                           const TrendSheetOptions& options = {});

// The Series Instance UID of the node's trend sheets in a study (every version in it).
std::string TrendSheetSeriesUidForStudy(const std::string& study_uid);

}  // namespace pxs
