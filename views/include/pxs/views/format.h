// Output helpers for pxsctl and the HTTP API (one owner): aligned text tables, times, CSV fields, sparklines.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace pxs::views {

// A plain text table: columns padded to their widest cell (UTF-8 aware).
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "2026-11-25 10:53:08Z" (tables) and "2026-11-25T10:53:08.123Z" (JSON/CSV), UTC.
std::string FormatTimeShort(int64_t unix_ms);
std::string FormatTimeIso(int64_t unix_ms);
// "20240131" -> "2024-01-31"; anything else is returned as is.
std::string FormatDicomDate(const std::string& da);
// "20240131", "0815..." -> "2024-01-31 08:15" (the date alone when the time is not HHMM...).
std::string FormatDicomDateTime(const std::string& da, const std::string& tm);
// "1h 02m", "35s", "120 ms" for durations.
std::string FormatDuration(double ms);
std::string FormatBytes(uint64_t bytes);  // "1.5 GiB"
std::string FormatNumber(std::optional<double> value, int decimals = 2, bool with_sign = false);
// Start of a UTC day from "YYYY-MM-DD" or "YYYYMMDD"; nullopt when malformed.
std::optional<int64_t> ParseDateUtcMs(const std::string& text);
// A CSV field, quoted when it holds a comma, quote or line break.
std::string CsvField(const std::string& value);
// One block character per value scaled between the smallest and largest value.
std::string Sparkline(const std::vector<double>& values);
int64_t NowMs();

}  // namespace pxs::views
