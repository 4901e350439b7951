#include "pxs/views/format.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <ostream>

namespace pxs::views {
namespace {

size_t DisplayWidth(const std::string& s) {
  size_t width = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++width;  // count UTF-8 lead bytes only
  }
  return width;
}


}  // namespace

void TextTable::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) widths[c] = DisplayWidth(headers_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      line += cell;
      if (c + 1 < widths.size()) line += std::string(widths[c] - DisplayWidth(cell) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

std::string FormatTimeShort(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  return fmt::format("{:%Y-%m-%d %H:%M:%S}Z", fmt::gmtime(static_cast<std::time_t>(unix_ms / 1000)));
}

std::string FormatTimeIso(int64_t unix_ms) {
  const int millis = static_cast<int>(((unix_ms % 1000) + 1000) % 1000);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(static_cast<std::time_t>(unix_ms / 1000)), millis);
}

std::string FormatDicomDate(const std::string& da) {
  if (da.size() != 8 || !std::all_of(da.begin(), da.end(), ::isdigit)) return da.empty() ? "-" : da;
  return da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2);
}

std::string FormatDicomDateTime(const std::string& da, const std::string& tm) {
  const bool has_time = tm.size() >= 4 && std::all_of(tm.begin(), tm.begin() + 4, ::isdigit);
  return FormatDicomDate(da) + (has_time && !da.empty() ? " " + tm.substr(0, 2) + ":" + tm.substr(2, 2) : "");
}

std::string FormatDuration(double ms) {
  char buf[48];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%.0f ms", ms);
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1f s", ms / 1000);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%.0fm %02.0fs", std::floor(ms / 60'000), std::fmod(ms / 1000, 60));
  } else {
    std::snprintf(buf, sizeof buf, "%.0fh %02.0fm", std::floor(ms / 3'600'000), std::fmod(ms / 60'000, 60));
  }
  return buf;
}

std::string FormatNumber(std::optional<double> value, int decimals, bool with_sign) {
  if (!value) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, with_sign ? "%+.*f" : "%.*f", decimals, *value);
  return buf;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.1f %s", value, kUnits[unit]);
  return buf;
}

std::optional<int64_t> ParseDateUtcMs(const std::string& text) {
  std::string digits;
  for (char c : text) {
    if (c != '-') digits += c;
  }
  const bool dashed = text.size() == 10 && text[4] == '-' && text[7] == '-';
  if (digits.size() != 8 || !std::all_of(digits.begin(), digits.end(), ::isdigit) ||
      (text.size() != 8 && !dashed)) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = std::stoi(digits.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(digits.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(digits.substr(6, 2));
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31) return std::nullopt;
  std::tm check = tm;
  std::time_t seconds = timegm(&check);
  if (check.tm_mday != tm.tm_mday) return std::nullopt;  // e.g. 2024-02-31
  return static_cast<int64_t>(seconds) * 1000;
}

std::string CsvField(const std::string& value) {
  if (value.find_first_of(",\"\r\n") == std::string::npos) return value;
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string Sparkline(const std::vector<double>& values) {
  static const char* const kBlocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  if (values.empty()) return "";
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  std::string line;
  for (double v : values) {
    // A flat series sits at the bottom when it is all zeros, mid-height otherwise.
    int level = *hi > *lo ? static_cast<int>(std::lround((v - *lo) / (*hi - *lo) * 7)) : (v == 0 ? 0 : 3);
    line += kBlocks[std::clamp(level, 0, 7)];
  }
  return line;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace pxs::views
