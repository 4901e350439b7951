// BuildTrendSheet(): cairo draws the sheet into an RGB24 image surface; DCMTK writes it
// as a Secondary Capture with the patient and study copied from the scored image.
// Text uses cairo's own ("toy") text API with DejaVu Sans through fontconfig: the
// sheet's text is short single lines, and Debian's pango development files are not
// among the node's build dependencies (a script without glyphs in DejaVu Sans, e.g. a
// CJK patient name, shows missing-glyph boxes; the header keeps the name correctly).
#include "pxs/reports/trend_sheet.h"

#include <cairo.h>
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/ofstd/ofdatime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include "pxs/longitudinal/course.h"
#include "pxs/reports/dicom_text.h"
#include "source_image.h"
#include "sr_uids.h"

namespace pxs {
namespace {

// Beside the SR series (9901), so PACS lists the node's objects together.
constexpr const char* kSheetSeriesNumber = "9902";

struct Rgb {
  double r, g, b;
};

// Luminance falls band by band (about 0.95, 0.91, 0.83, 0.74) so a grayscale monitor
// still orders them; the hues say the same on a colour one.
constexpr Rgb kBandFill[] = {{0.90, 0.97, 0.90}, {0.99, 0.92, 0.68}, {0.99, 0.80, 0.58}, {0.96, 0.66, 0.66}};
constexpr Rgb kBandMarker[] = {{0.20, 0.60, 0.25}, {0.80, 0.62, 0.00}, {0.85, 0.40, 0.05}, {0.75, 0.10, 0.10}};
constexpr Rgb kInk = {0.10, 0.10, 0.10};
constexpr Rgb kGrid = {0.80, 0.80, 0.80};
constexpr Rgb kScore = {0.10, 0.25, 0.60};
constexpr Rgb kThisStudy = {0.85, 0.00, 0.30};
constexpr Rgb kSpO2 = {0.00, 0.45, 0.45};
constexpr Rgb kDisclaimer = {0.55, 0.00, 0.00};
constexpr Rgb kRowHighlight = {1.00, 0.90, 0.93};

void SetColor(cairo_t* cr, const Rgb& c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

std::string Format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// Valid UTF-8 without control characters: cairo refuses (and stops drawing on) a
// string that is not UTF-8, and a model name from a package is not checked elsewhere.
std::string CleanUtf8(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
    if (!ok) {
      out += '?';
      ++i;
      continue;
    }
    if (n == 1 && (c < 0x20 || c == 0x7F)) {
      out += ' ';
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  return out;
}

// Drops the last UTF-8 character.
void PopCharacter(std::string& s) {
  while (!s.empty() && (static_cast<unsigned char>(s.back()) >> 6) == 0x2) s.pop_back();
  if (!s.empty()) s.pop_back();
}

double TextWidth(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

enum class Align { kLeft, kCenter, kRight };

// One line of text at baseline y, shortened with an ellipsis to max_width.
void Text(cairo_t* cr, double x, double y, const std::string& raw, double size, bool bold, double max_width,
          Align align = Align::kLeft) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  std::string s = CleanUtf8(raw);
  if (max_width > 0 && TextWidth(cr, s) > max_width) {
    const std::string ellipsis = "\xE2\x80\xA6";
    while (!s.empty() && TextWidth(cr, s + ellipsis) > max_width) PopCharacter(s);
    s += ellipsis;
  }
  const double w = TextWidth(cr, s);
  const double left = align == Align::kLeft ? x : align == Align::kCenter ? x - w / 2 : x - w;
  cairo_move_to(cr, left, y);
  cairo_show_text(cr, s.c_str());
}

// "FAMILY^GIVEN^MIDDLE" -> "FAMILY, GIVEN MIDDLE" (the first, alphabetic group).
std::string PersonName(const std::string& pn) {
  std::string first = pn.substr(0, pn.find('='));
  std::string out;
  int part = 0;
  for (char c : first) {
    if (c == '^') {
      ++part;
      out += part == 1 ? ", " : " ";
    } else {
      out += c;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ',')) out.pop_back();
  return out.empty() ? "(no name)" : out;
}

std::string DateText(double clock_s, bool with_time) {
  using namespace std::chrono;
  const double day_f = std::floor(clock_s / 86400.0);
  const year_month_day ymd{sys_days{days{static_cast<int64_t>(day_f)}}};
  const int secs = static_cast<int>(clock_s - day_f * 86400.0);
  char buf[40];
  if (with_time) {
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02d:%02d", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), secs / 3600,
                  (secs / 60) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  }
  return buf;
}

// A "nice" step (1, 2 or 5 times a power of ten) giving about `count` intervals.
double NiceStep(double range, int count) {
  const double raw = range / count;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

struct Axis {
  double lo = 0, hi = 1;   // data range
  double pix_lo = 0, pix_hi = 1;  // pixel positions of lo and hi
  double Map(double v) const { return pix_lo + (v - lo) / (hi - lo) * (pix_hi - pix_lo); }
};

// One plotted study: the longitudinal rule's point plus where it is drawn.
struct SheetPoint {
  longitudinal::StudyPoint point;  // a copy: the courses are Gather()'s
  double t = 0;                 // clock seconds
  std::optional<double> value;  // on the plotted scale
  size_t band_index = 0;
  bool current = false;
};

size_t BandIndex(const longitudinal::ModelTrend& trend, const std::string& label) {
  for (size_t i = 0; i < trend.bands.size(); ++i) {
    if (trend.bands[i].label == label) return i;
  }
  return 0;
}

const Rgb& Cycle(const Rgb* colors, size_t i) { return colors[std::min<size_t>(i, 3)]; }

void Line(cairo_t* cr, double x0, double y0, double x1, double y1) {
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
  cairo_stroke(cr);
}

TrendSheetLayout::Rect RectOf(double x, double y, double w, double h) {
  return {static_cast<int>(std::lround(x)), static_cast<int>(std::lround(y)), static_cast<int>(std::lround(w)),
          static_cast<int>(std::lround(h))};
}

// The time axis shared by both panels; ticks at whole hours/days/weeks/months.
struct TimeAxis {
  double t0 = 0, t1 = 1;
  double step = 86400;
};

TimeAxis MakeTimeAxis(double first, double last) {
  TimeAxis a;
  const double span = last - first;
  if (span < 86400) {
    const double extra = (86400 - span) / 2;
    a.t0 = first - extra;
    a.t1 = last + extra;
  } else {
    a.t0 = first - span * 0.05;
    a.t1 = last + span * 0.05;
  }
  const double steps[] = {3600,       7200,       3 * 3600,    6 * 3600,    12 * 3600,   86400,
                          2 * 86400,  7 * 86400,  14 * 86400,  30 * 86400,  61 * 86400,  91 * 86400,
                          182 * 86400, 365 * 86400, 730 * 86400, 1826 * 86400, 3652 * 86400};
  a.step = steps[std::size(steps) - 1];
  for (double s : steps) {
    if ((a.t1 - a.t0) / s <= 7) {
      a.step = s;
      break;
    }
  }
  return a;
}

void DrawTimeTicks(cairo_t* cr, const TimeAxis& ta, const Axis& x, double top, double bottom, bool labels) {
  cairo_set_line_width(cr, 1);
  for (double t = std::ceil(ta.t0 / ta.step) * ta.step; t <= ta.t1; t += ta.step) {
    const double px = std::round(x.Map(t)) + 0.5;
    SetColor(cr, kGrid);
    Line(cr, px, top, px, bottom);
    if (labels) {
      SetColor(cr, kInk);
      Text(cr, px, bottom + 16, DateText(t, ta.step < 86400), 12, false, ta.step / (ta.t1 - ta.t0) * (x.pix_hi - x.pix_lo),
           Align::kCenter);
    }
  }
}

void DrawValueTicks(cairo_t* cr, const Axis& y, double left, double right, const char* fmt) {
  const double step = NiceStep(y.hi - y.lo, 5);
  cairo_set_line_width(cr, 1);
  for (double v = std::ceil(y.lo / step) * step; v <= y.hi + 1e-9; v += step) {
    const double py = std::round(y.Map(v)) + 0.5;
    SetColor(cr, kGrid);
    Line(cr, left, py, right, py);
    SetColor(cr, kInk);
    Text(cr, left - 6, py + 4, Format(fmt, std::fabs(v) < step * 1e-6 ? 0.0 : v), 12, false, 80, Align::kRight);
  }
}

// Both axes' grid lines and labels, and the plot's frame.
void DrawGrid(cairo_t* cr, const TimeAxis& ta, const Axis& x, const Axis& y, const char* value_format,
              bool time_labels) {
  DrawTimeTicks(cr, ta, x, y.pix_hi, y.pix_lo, time_labels);
  DrawValueTicks(cr, y, x.pix_lo, x.pix_hi, value_format);
  SetColor(cr, kInk);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x.pix_lo + 0.5, y.pix_hi + 0.5, x.pix_hi - x.pix_lo, y.pix_lo - y.pix_hi);
  cairo_stroke(cr);
}

void Marker(cairo_t* cr, double x, double y, double r, const Rgb& fill, const Rgb& edge, double edge_width) {
  cairo_arc(cr, x, y, r, 0, 2 * M_PI);
  SetColor(cr, fill);
  cairo_fill_preserve(cr);
  cairo_set_line_width(cr, edge_width);
  SetColor(cr, edge);
  cairo_stroke(cr);
}

std::string ObservationText(const ClinicalObservation* o) {
  if (!o) return "-";
  return Format("%.4g", o->value) + (o->unit.empty() ? "" : " " + o->unit);
}

// Everything the drawing needs, gathered before cairo is touched.
struct SheetData {
  const SrInput* in = nullptr;
  const SourceImage* src = nullptr;
  bool calibrated_scale = false;
  longitudinal::ModelTrend trend;
  std::vector<SheetPoint> points;  // oldest first, the current one last
  int later_left_out = 0;
  int other_models_left_out = 0;
  std::vector<std::pair<double, double>> spo2;  // (clock s, %), usable rows only
  int observations_skipped = 0;
};

SheetData Gather(const SrInput& in, const SourceImage& src) {
  SheetData d;
  d.in = &in;
  d.src = &src;
  d.calibrated_scale = !in.model.calibration_scale.empty();
  const longitudinal::ScoredInstance current = CurrentScoredInstance(in, src);
  std::vector<longitudinal::ScoredInstance> rows = {current};
  for (const SrPriorStudy& p : in.priors) {
    if (p.study_uid == src.study_uid) continue;
    if (p.model_name == in.model.name && p.model_version == in.model.version) {
      rows.push_back(ToScoredInstance(p));
    } else {
      ++d.other_models_left_out;
    }
  }
  const auto courses = longitudinal::BuildCourses(
      rows, [&](const longitudinal::ModelId&) { return in.model.trend; }, CourseOptionsFor(in));
  const longitudinal::Course& course = courses.front();  // rows hold this model only
  d.trend = course.trend;
  bool seen_current = false;
  for (const longitudinal::StudyPoint& p : course.studies) {
    if (seen_current) {  // dated after this study: not in this version's course (as the SR)
      ++d.later_left_out;
      continue;
    }
    SheetPoint sp;
    sp.point = p;
    sp.current = p.value.study_uid == src.study_uid;
    seen_current = sp.current;
    sp.t = ClockSeconds(p.time_key).value_or(0);
    sp.value = d.calibrated_scale ? p.value.calibrated : std::optional<double>(p.value.pxs);
    sp.band_index = BandIndex(course.trend, p.band);
    d.points.push_back(sp);
  }
  for (const ClinicalObservation& o : in.observations) {
    if (!IsUsableObservation(o)) {
      ++d.observations_skipped;
      continue;
    }
    // A saturation in % is 0-100; anything else (a fraction, a typo) is not drawn.
    if ((o.loinc_code == loinc::kSpO2PulseOximetry || o.loinc_code == loinc::kSaO2Arterial) && o.value >= 0 &&
        o.value <= 100) {
      d.spo2.emplace_back(*ClockSeconds(o.observed_at), o.value);
    }
  }
  return d;
}

struct Canvas {
  cairo_surface_t* surface = nullptr;
  cairo_t* cr = nullptr;
  ~Canvas() {
    if (cr) cairo_destroy(cr);
    if (surface) cairo_surface_destroy(surface);
  }
};

void DrawHeader(cairo_t* cr, const SheetData& d, double w, TrendSheetLayout* layout) {
  const SrInput& in = *d.in;
  DcmDataset* ds = d.src->dataset;
  SetColor(cr, kInk);
  Text(cr, 20, 30, "PXS trend sheet", 22, true, w * 0.45);
  const SheetPoint& cur = d.points.back();
  Text(cr, w - 20, 30, "This study " + DateText(cur.t, true) + "   SR version " + std::to_string(std::max(1, in.version)),
       14, true, w * 0.5, Align::kRight);
  std::string patient = "Patient: " + PersonName(GetString(ds, DCM_PatientName)) + "    ID: " +
                        (d.src->patient_id.empty() ? std::string("(none)") : d.src->patient_id);
  if (!d.src->issuer.empty()) patient += " (" + d.src->issuer + ")";
  const std::string birth = GetString(ds, DCM_PatientBirthDate);
  if (ClockSeconds(birth)) patient += "    Born: " + DateText(*ClockSeconds(birth), false);
  Text(cr, 20, 52, patient, 14, false, w - 40);
  std::string model = "Model: " + in.model.name + " " + in.model.version + "    Plotted: ";
  model += d.calibrated_scale ? in.model.calibration_scale +
                                    (in.model.calibration_unit.empty() ? "" : " (" + in.model.calibration_unit + ")") +
                                    ", calibrated"
                              : std::string("raw PXS");
  Text(cr, 20, 72, model, 14, false, w - 40);
  layout->header = RectOf(0, 0, w, 80);
}

void DrawScorePanel(cairo_t* cr, const SheetData& d, const TimeAxis& ta, double left, double top, double w,
                    double h, TrendSheetLayout* layout) {
  const double right = w - 170;  // room for the band labels
  const double plot_top = top + 24, plot_bottom = top + h - 24;
  Axis x{ta.t0, ta.t1, left, right};
  std::vector<double> values;
  for (const SheetPoint& p : d.points) {
    if (p.value) values.push_back(*p.value);
  }
  double lo = 0, hi = 1;
  if (!values.empty()) {
    lo = std::min(0.0, *std::min_element(values.begin(), values.end()));
    hi = std::max(lo + 1, *std::max_element(values.begin(), values.end()));
  }
  if (!d.calibrated_scale) {
    for (const auto& b : d.trend.bands) {
      if (b.upper && std::isfinite(*b.upper)) hi = std::max(hi, *b.upper * 1.1);
    }
  }
  hi = lo + (hi - lo) * 1.08;
  Axis y{lo, hi, plot_bottom, plot_top};
  layout->score_plot = RectOf(left, plot_top, right - left, plot_bottom - plot_top);

  SetColor(cr, kInk);
  Text(cr, left, top + 14,
       d.calibrated_scale ? "Score over time (" + d.in->model.calibration_scale + "; point colour: band of the raw PXS)"
                          : std::string("PXS over time, with the model's severity bands"),
       14, true, right - left);
  // Bands (raw PXS axis only: they are bounds of the raw score).
  if (!d.calibrated_scale) {
    double below = lo;
    for (size_t i = 0; i < d.trend.bands.size(); ++i) {
      const auto& b = d.trend.bands[i];
      const double upper = b.upper && std::isfinite(*b.upper) ? std::min(*b.upper, hi) : hi;
      if (upper > below) {
        const double y0 = y.Map(upper), y1 = y.Map(below);
        SetColor(cr, Cycle(kBandFill, i));
        cairo_rectangle(cr, left, y0, right - left, y1 - y0);
        cairo_fill(cr);
        SetColor(cr, kInk);
        Text(cr, right + 8, (y0 + y1) / 2 + 5, b.label, 13, false, 160);
      }
      below = std::max(below, upper);
    }
  }
  DrawGrid(cr, ta, x, y, "%.3g", true);

  // The course line, then the markers, this study last and largest.
  SetColor(cr, kScore);
  cairo_set_line_width(cr, 2.5);
  bool started = false;
  for (const SheetPoint& p : d.points) {
    if (!p.value) continue;
    if (!started) {
      cairo_move_to(cr, x.Map(p.t), y.Map(*p.value));
      started = true;
    } else {
      cairo_line_to(cr, x.Map(p.t), y.Map(*p.value));
    }
  }
  cairo_stroke(cr);
  for (const SheetPoint& p : d.points) {
    if (!p.value || p.current) continue;
    Marker(cr, x.Map(p.t), y.Map(*p.value), 5, d.calibrated_scale ? Cycle(kBandMarker, p.band_index) : kScore, kInk, 1);
  }
  const SheetPoint& cur = d.points.back();
  const double cx = x.Map(cur.t);
  // This study: a dashed line through both panels is drawn by the caller; here the marker.
  if (cur.value) {
    const double cy = y.Map(*cur.value);
    Marker(cr, cx, cy, 9, kThisStudy, kInk, 2);
    SetColor(cr, kThisStudy);
    const double label_x = std::min(cx + 12, right - 90);
    Text(cr, label_x, std::max(plot_top + 14, cy - 12), "this study " + Format("%.1f", *cur.value), 13, true, 160);
    layout->this_study_x = static_cast<int>(std::lround(cx));
    layout->this_study_y = static_cast<int>(std::lround(cy));
    layout->this_study_plotted = true;
  } else {
    layout->this_study_x = static_cast<int>(std::lround(cx));
    SetColor(cr, kThisStudy);
    Text(cr, std::min(cx + 8, right - 200), plot_top + 16, "this study: no calibrated value", 13, true, 220);
  }
}

void DrawSpO2Panel(cairo_t* cr, const SheetData& d, const TimeAxis& ta, double left, double top, double w,
                   double h, TrendSheetLayout* layout) {
  const double right = w - 170;
  const double plot_top = top + 24, plot_bottom = top + h - 24;
  Axis x{ta.t0, ta.t1, left, right};
  std::vector<std::pair<double, double>> shown;
  for (const auto& s : d.spo2) {
    if (s.first >= ta.t0 && s.first <= ta.t1) shown.push_back(s);
  }
  std::sort(shown.begin(), shown.end());
  double lo = 85, hi = 100;
  for (const auto& s : shown) {
    lo = std::min(lo, std::floor(s.second) - 2);
    hi = std::max(hi, std::ceil(s.second) + 1);
  }
  Axis y{lo, hi, plot_bottom, plot_top};
  layout->spo2_plot = RectOf(left, plot_top, right - left, plot_bottom - plot_top);
  SetColor(cr, kInk);
  Text(cr, left, top + 14, "SpO2 (%), LOINC 59408-5 / 2708-6", 14, true, right - left);
  DrawGrid(cr, ta, x, y, "%.0f", false);
  if (shown.empty()) {
    SetColor(cr, kInk);
    Text(cr, (left + right) / 2, (plot_top + plot_bottom) / 2 + 6,
         d.spo2.empty() ? "No SpO2 recorded for this patient" : "No SpO2 recorded in this period", 15, false,
         right - left, Align::kCenter);
    return;
  }
  SetColor(cr, kSpO2);
  cairo_set_line_width(cr, 2);
  for (size_t i = 0; i < shown.size(); ++i) {
    const double px = x.Map(shown[i].first), py = y.Map(shown[i].second);
    if (i == 0) cairo_move_to(cr, px, py);
    else cairo_line_to(cr, px, py);
  }
  cairo_stroke(cr);
  for (const auto& s : shown) {
    const double px = x.Map(s.first), py = y.Map(s.second);
    Marker(cr, px, py, 4, kSpO2, kSpO2, 1);
    layout->spo2_points.emplace_back(static_cast<int>(std::lround(px)), static_cast<int>(std::lround(py)));
  }
}

void DrawTable(cairo_t* cr, const SheetData& d, double left, double top, double w, double h,
               double window_s, TrendSheetLayout* layout, int* rows_drawn) {
  const double right = w - 20;
  const double row_h = 20;
  layout->table = RectOf(left, top, right - left, h);
  const char* headings[] = {"Date", d.calibrated_scale ? "Score [PXS]" : "PXS", "Change", "Trend", "Band",
                            "SpO2", "O2 flow / FiO2", "CRP"};
  const double col[] = {0, 0.15, 0.30, 0.40, 0.50, 0.64, 0.75, 0.90, 1.0};
  auto cx = [&](int i) { return left + col[i] * (right - left); };
  SetColor(cr, kInk);
  for (int i = 0; i < 8; ++i) Text(cr, cx(i) + 4, top + 15, headings[i], 13, true, cx(i + 1) - cx(i) - 8);
  cairo_set_line_width(cr, 1);
  Line(cr, left, top + row_h + 0.5, right, top + row_h + 0.5);

  const int capacity = std::max(1, static_cast<int>((h - row_h - 24) / row_h));
  const int n = static_cast<int>(d.points.size());
  const int first = n > capacity ? n - (capacity - 1) : 0;  // the newest rows fit; a note says so
  double y = top + row_h;
  if (first > 0) {
    SetColor(cr, kInk);
    Text(cr, left + 4, y + 15, "(" + std::to_string(first) + " earlier studies not listed)", 13, false, right - left);
    y += row_h;
  }
  for (int i = first; i < n; ++i) {
    const SheetPoint& p = d.points[static_cast<size_t>(i)];
    const longitudinal::StudyPoint& sp = p.point;
    if (p.current) {
      SetColor(cr, kRowHighlight);
      cairo_rectangle(cr, left, y, right - left, row_h);
      cairo_fill(cr);
    }
    std::string score;
    if (d.calibrated_scale) {
      score = (sp.value.calibrated ? Format("%.1f", *sp.value.calibrated) : std::string("-")) + " [" +
              Format("%.1f", sp.value.pxs) + "]";
    } else {
      score = Format("%.1f", sp.value.pxs);
    }
    const auto& cmp = sp.comparison;
    std::string change = "-";
    if (cmp.on_calibrated_scale && cmp.calibrated_change) change = Format("%+.1f", *cmp.calibrated_change);
    else if (d.calibrated_scale && cmp.calibrated_change) change = Format("%+.1f", *cmp.calibrated_change);
    else if (cmp.change) change = Format("%+.1f", *cmp.change) + (d.calibrated_scale ? " PXS" : "");
    const std::vector<ClinicalObservation>& obs = d.in->observations;
    const ClinicalObservation* spo2 =
        NearestObservation(obs, {loinc::kSpO2PulseOximetry, loinc::kSaO2Arterial}, p.t, window_s);
    const ClinicalObservation* o2 = NearestObservation(obs, {loinc::kO2Flow}, p.t, window_s);
    if (!o2) o2 = NearestObservation(obs, {loinc::kFiO2}, p.t, window_s);
    const ClinicalObservation* crp = NearestObservation(obs, {loinc::kCrp}, p.t, window_s);
    const std::string cells[] = {DateText(p.t, true),
                                 score,
                                 change,
                                 longitudinal::TrendText(cmp.trend),
                                 sp.band.empty() ? "-" : sp.band,
                                 ObservationText(spo2),
                                 ObservationText(o2),
                                 ObservationText(crp)};
    SetColor(cr, p.current ? kThisStudy : kInk);
    for (int c = 0; c < 8; ++c) Text(cr, cx(c) + 4, y + 15, cells[c], 13, p.current, cx(c + 1) - cx(c) - 8);
    y += row_h;
    ++*rows_drawn;
  }
  SetColor(cr, kInk);
  std::string note = "Nearest SpO2 / O2 / CRP within " + Format("%.0f", window_s / 3600) + " h of each study.";
  if (d.later_left_out > 0) note += " " + std::to_string(d.later_left_out) + " later-dated studies not shown.";
  if (d.other_models_left_out > 0) {
    note += " " + std::to_string(d.other_models_left_out) + " studies scored by other models not shown.";
  }
  Text(cr, left + 4, top + h - 6, note, 12, false, right - left);
}

void DrawDisclaimer(cairo_t* cr, const SrModelInfo& model, double w, double h, TrendSheetLayout* layout) {
  const double top = h - 48;
  SetColor(cr, kDisclaimer);
  cairo_rectangle(cr, 0, top, w, 48);
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  const std::string text =
      model.not_for_clinical_use
          ? "NOT FOR CLINICAL USE: research result of an unvalidated model; do not base diagnosis or treatment on it."
          : "AI result for decision support" + (model.intended_use.empty() ? "" : " (" + model.intended_use + ")") +
                ": verify against the images; not a diagnosis.";
  Text(cr, w / 2, top + 30, text, 17, true, w - 30, Align::kCenter);
  layout->disclaimer = RectOf(0, top, w, 48);
}

// Patient, Patient Study and General Study attributes copied as the SR copies them
// (the source text already decoded to UTF-8); Type 2 ones are written empty when
// absent.
void CopyPatientAndStudy(DcmItem& from, DcmItem& to) {
  struct Tag {
    DcmTagKey key;
    bool type2;
  };
  const Tag tags[] = {{DCM_PatientName, true},
                      {DCM_PatientID, true},
                      {DCM_IssuerOfPatientID, false},
                      {DCM_IssuerOfPatientIDQualifiersSequence, false},
                      {DCM_PatientBirthDate, true},
                      {DCM_PatientSex, true},
                      {DCM_OtherPatientIDsSequence, false},
                      {DCM_PatientIdentityRemoved, false},
                      {DCM_DeidentificationMethod, false},
                      {DCM_PatientAge, false},
                      {DCM_PatientSize, false},
                      {DCM_PatientWeight, false},
                      {DCM_StudyInstanceUID, true},
                      {DCM_StudyDate, true},
                      {DCM_StudyTime, true},
                      {DCM_ReferringPhysicianName, true},
                      {DCM_StudyID, true},
                      {DCM_AccessionNumber, true},
                      {DCM_IssuerOfAccessionNumberSequence, false},
                      {DCM_StudyDescription, false}};
  for (const Tag& t : tags) {
    DcmElement* e = nullptr;
    if (from.findAndGetElement(t.key, e).good() && e) {
      to.insert(static_cast<DcmElement*>(e->clone()), OFTrue);
    } else if (t.type2) {
      to.insertEmptyElement(t.key);
    }
  }
}

Status DcmtkError(const std::string& what, const OFCondition& cond) {
  return Status::Internal("trend sheet: " + what + ": " + cond.text());
}

#define PXS_SC_CHECK(what, expr)                                    \
  do {                                                              \
    OFCondition pxs_cond__ = (expr);                                \
    if (pxs_cond__.bad()) return DcmtkError(what, pxs_cond__);      \
  } while (0)

Status WriteSecondaryCapture(const SrInput& in, const SourceImage& src, const std::vector<Uint8>& rgb, int w, int h,
                             const std::string& output_path, TrendSheetResult* result) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  CopyPatientAndStudy(*src.dataset, *ds);
  result->series_uid = TrendSheetSeriesUidForStudy(src.study_uid);
  result->sop_instance_uid = RandomUid();
  OFString date, time;
  OFDateTime::getCurrentDateTime().getDate().getISOFormattedDate(date, OFFalse);
  OFDateTime::getCurrentDateTime().getTime().getISOFormattedTime(time, OFTrue, OFFalse, OFFalse, OFFalse);
  const std::string instance = std::to_string(std::max(1, in.version));
  struct Value {
    DcmTagKey key;
    std::string value;
  };
  const Value values[] = {
      {DCM_SOPClassUID, UID_SecondaryCaptureImageStorage},
      {DCM_SOPInstanceUID, result->sop_instance_uid},
      {DCM_InstanceCreationDate, date.c_str()},
      {DCM_InstanceCreationTime, time.c_str()},
      {DCM_Modality, "OT"},
      {DCM_SeriesInstanceUID, result->series_uid},
      {DCM_SeriesNumber, kSheetSeriesNumber},
      {DCM_SeriesDescription, "PXS trend sheet"},
      {DCM_Manufacturer, in.node.manufacturer},
      {DCM_ManufacturerModelName, in.node.model_name},
      {DCM_SoftwareVersions, in.node.software_version},
      {DCM_StationName, in.node.station_name},
      {DCM_ConversionType, "SYN"},  // synthetic: drawn, not digitised
      {DCM_SecondaryCaptureDeviceManufacturer, in.node.manufacturer},
      {DCM_SecondaryCaptureDeviceManufacturerModelName, in.node.model_name},
      {DCM_SecondaryCaptureDeviceSoftwareVersions, in.node.software_version},
      {DCM_DateOfSecondaryCapture, date.c_str()},
      {DCM_TimeOfSecondaryCapture, time.c_str()},
      {DCM_InstanceNumber, instance},
      {DCM_ContentDate, date.c_str()},
      {DCM_ContentTime, time.c_str()},
      {DCM_ImageType, "DERIVED\\SECONDARY"},
      {DCM_DerivationDescription, "PXS course drawn by PXS Node from the scores of this patient's studies"},
      // Study dates, the patient's name and ID are drawn: de-identification must know.
      {DCM_BurnedInAnnotation, "YES"},
      {DCM_RecognizableVisualFeatures, "NO"},
      {DCM_LossyImageCompression, "00"},
      {DCM_PhotometricInterpretation, "RGB"},
  };
  for (const Value& v : values) {
    if (v.value.empty()) continue;  // optional node details not configured
    PXS_SC_CHECK(DcmTag(v.key).getTagName(), ds->putAndInsertString(v.key, v.value.c_str()));
  }
  // Type 2C in General Image and General Series: a sheet has no orientation or side.
  PXS_SC_CHECK("patient orientation", ds->insertEmptyElement(DCM_PatientOrientation));
  PXS_SC_CHECK("laterality", ds->insertEmptyElement(DCM_Laterality));
  // The scored image this sheet is about.
  DcmItem* ref = nullptr;
  PXS_SC_CHECK("referenced image", ds->findOrCreateSequenceItem(DCM_ReferencedImageSequence, ref, 0));
  PXS_SC_CHECK("referenced image class", ref->putAndInsertString(DCM_ReferencedSOPClassUID, src.sop_class_uid.c_str()));
  PXS_SC_CHECK("referenced image instance",
               ref->putAndInsertString(DCM_ReferencedSOPInstanceUID, src.sop_instance_uid.c_str()));
  PXS_SC_CHECK("samples", ds->putAndInsertUint16(DCM_SamplesPerPixel, 3));
  PXS_SC_CHECK("planar configuration", ds->putAndInsertUint16(DCM_PlanarConfiguration, 0));
  PXS_SC_CHECK("rows", ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(h)));
  PXS_SC_CHECK("columns", ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(w)));
  PXS_SC_CHECK("bits allocated", ds->putAndInsertUint16(DCM_BitsAllocated, 8));
  PXS_SC_CHECK("bits stored", ds->putAndInsertUint16(DCM_BitsStored, 8));
  PXS_SC_CHECK("high bit", ds->putAndInsertUint16(DCM_HighBit, 7));
  PXS_SC_CHECK("pixel representation", ds->putAndInsertUint16(DCM_PixelRepresentation, 0));
  PXS_SC_CHECK("pixel data", ds->putAndInsertUint8Array(DCM_PixelData, rgb.data(), static_cast<unsigned long>(rgb.size())));
  // As the SR: ISO_IR 192 as soon as one value is not plain ASCII, none otherwise.
  if (HasNonAsciiText(*ds)) {
    PXS_SC_CHECK("character set", ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192"));
  }
  OFCondition cond = file.saveFile(output_path.c_str(), EXS_LittleEndianExplicit);
  if (cond.bad()) {
    std::remove(output_path.c_str());
    return Status::IoError(output_path + ": cannot write trend sheet: " + cond.text());
  }
  return Status::Ok();
}

}  // namespace

std::string TrendSheetSeriesUidForStudy(const std::string& study_uid) {
  return UidFromName("PXS\\trend sheet series\\" + study_uid);
}

StatusOr<TrendSheetResult> BuildTrendSheet(const SrInput& in, const std::string& output_path,
                                           const TrendSheetOptions& options) {
  const std::string where = in.source_image_path + ": ";
  if (options.width < 640 || options.width > 4096 || options.height < 600 || options.height > 4096 ||
      options.width % 2 != 0) {
    return Status::InvalidArgument(where + "trend sheet size " + std::to_string(options.width) + "x" +
                                   std::to_string(options.height) + " (want an even width 640-4096, height 600-4096)");
  }
  if (!std::isfinite(options.nearest_window_s) || options.nearest_window_s < 0) {
    return Status::InvalidArgument(where + "trend sheet nearest window is not a non-negative number");
  }
  PXS_RETURN_IF_ERROR(CheckFinite(in));
  auto loaded = LoadSource(in.source_image_path);
  if (!loaded.ok()) return loaded.status();
  const SourceImage& src = **loaded;
  const SheetData data = Gather(in, src);

  const int w = options.width, h = options.height;
  Canvas canvas;
  canvas.surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  canvas.cr = cairo_create(canvas.surface);
  cairo_t* cr = canvas.cr;
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
    return Status::Internal(where + "trend sheet: cairo: " + cairo_status_to_string(cairo_status(cr)));
  }
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  TrendSheetResult result;
  TrendSheetLayout& layout = result.layout;
  double first = data.points.front().t, last = data.points.back().t;
  for (const SheetPoint& p : data.points) first = std::min(first, p.t);
  const TimeAxis ta = MakeTimeAxis(first, last);
  const double content_top = 84, content_h = h - 48 - content_top;
  const double score_h = std::floor(content_h * 0.44), spo2_h = std::floor(content_h * 0.22);
  const double left = 90;
  DrawHeader(cr, data, w, &layout);
  DrawScorePanel(cr, data, ta, left, content_top, w, score_h, &layout);
  DrawSpO2Panel(cr, data, ta, left, content_top + score_h, w, spo2_h, &layout);
  // This study's time through both panels.
  {
    const Axis x{ta.t0, ta.t1, left, static_cast<double>(w - 170)};
    const double px = std::round(x.Map(data.points.back().t)) + 0.5;
    const double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    SetColor(cr, kThisStudy);
    Line(cr, px, layout.score_plot.y, px, layout.score_plot.y + layout.score_plot.h);
    Line(cr, px, layout.spo2_plot.y, px, layout.spo2_plot.y + layout.spo2_plot.h);
    cairo_set_dash(cr, nullptr, 0, 0);
  }
  DrawTable(cr, data, 20, content_top + score_h + spo2_h + 6, w, content_h - score_h - spo2_h - 6,
            options.nearest_window_s, &layout, &result.table_rows);
  DrawDisclaimer(cr, in.model, w, h, &layout);
  cairo_surface_flush(canvas.surface);
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
    return Status::Internal(where + "trend sheet: cairo: " + cairo_status_to_string(cairo_status(cr)));
  }

  // RGB24 keeps each pixel as a native 32-bit 0x00RRGGBB; DICOM RGB wants R, G, B bytes.
  const unsigned char* pixels = cairo_image_surface_get_data(canvas.surface);
  const int stride = cairo_image_surface_get_stride(canvas.surface);
  std::vector<Uint8> rgb(static_cast<size_t>(w) * h * 3);
  for (int yy = 0; yy < h; ++yy) {
    const auto* row = reinterpret_cast<const uint32_t*>(pixels + static_cast<size_t>(yy) * stride);
    for (int xx = 0; xx < w; ++xx) {
      const uint32_t p = row[xx];
      Uint8* out = &rgb[(static_cast<size_t>(yy) * w + xx) * 3];
      out[0] = static_cast<Uint8>(p >> 16);
      out[1] = static_cast<Uint8>(p >> 8);
      out[2] = static_cast<Uint8>(p);
    }
  }
  for (const SheetPoint& p : data.points) result.studies_plotted += p.value ? 1 : 0;
  result.observations_skipped = data.observations_skipped;
  result.text_problems = src.text_problems;
  PXS_RETURN_IF_ERROR(WriteSecondaryCapture(in, src, rgb, w, h, output_path, &result));
  return result;
}

}  // namespace pxs
