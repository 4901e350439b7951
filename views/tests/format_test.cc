// pxsctl's output helpers: CSV quoting, date parsing, times, sparklines, tables.
#include "pxs/views/format.h"

#include <gtest/gtest.h>

#include <sstream>

namespace pxs::views {
namespace {

TEST(FormatTest, CsvFieldQuotesOnlyWhenNeeded) {
  EXPECT_EQ(CsvField("1.2.840.1"), "1.2.840.1");
  EXPECT_EQ(CsvField(""), "");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvField("two\nlines"), "\"two\nlines\"");
}

TEST(FormatTest, ParsesUtcDaysAndRejectsMalformedOnes) {
  EXPECT_EQ(ParseDateUtcMs("1970-01-02"), 86'400'000);
  EXPECT_EQ(ParseDateUtcMs("19700102"), 86'400'000);
  EXPECT_EQ(ParseDateUtcMs("2024-02-29"), ParseDateUtcMs("20240229"));
  EXPECT_FALSE(ParseDateUtcMs("2023-02-29"));  // not a leap year
  EXPECT_FALSE(ParseDateUtcMs("2024-13-01"));
  EXPECT_FALSE(ParseDateUtcMs("2024-1-01"));
  EXPECT_FALSE(ParseDateUtcMs("yesterday"));
  EXPECT_FALSE(ParseDateUtcMs("2024--0101"));
  EXPECT_FALSE(ParseDateUtcMs(""));
}

TEST(FormatTest, TimesAreUtc) {
  EXPECT_EQ(FormatTimeIso(86'400'123), "1970-01-02T00:00:00.123Z");
  EXPECT_EQ(FormatTimeShort(1'700'000'000'000), "2023-11-14 22:13:20Z");
  EXPECT_EQ(FormatTimeShort(0), "-");
  EXPECT_EQ(FormatDicomDate("20240131"), "2024-01-31");
  EXPECT_EQ(FormatDicomDate(""), "-");
  EXPECT_EQ(FormatDicomDateTime("20240131", "081530.5"), "2024-01-31 08:15");
  EXPECT_EQ(FormatDicomDateTime("20240131", ""), "2024-01-31");
}

TEST(FormatTest, NumbersDurationsAndBytes) {
  EXPECT_EQ(FormatNumber(std::nullopt), "-");
  EXPECT_EQ(FormatNumber(3.14159), "3.14");
  EXPECT_EQ(FormatNumber(1.5, 2, true), "+1.50");
  EXPECT_EQ(FormatNumber(-1.5, 2, true), "-1.50");
  EXPECT_EQ(FormatDuration(250), "250 ms");
  EXPECT_EQ(FormatDuration(2500), "2.5 s");
  EXPECT_EQ(FormatDuration(3'900'000), "1h 05m");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
}

TEST(FormatTest, SparklineSpansLowestToHighestBlock) {
  EXPECT_EQ(Sparkline({}), "");
  EXPECT_EQ(Sparkline({1, 8}), "▁█");
  EXPECT_EQ(Sparkline({0, 0, 0}), "▁▁▁");
  EXPECT_EQ(Sparkline({5, 5}), "▄▄");
  EXPECT_EQ(Sparkline({2, 5.5, 4}), "▁█▅");
}

TEST(FormatTest, TablePadsColumnsByDisplayWidth) {
  TextTable table({"A", "BB"});
  table.AddRow({"▁█", "x"});
  table.AddRow({"long", "y"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(), "A     BB\n▁█    x\nlong  y\n");
}

}  // namespace
}  // namespace pxs::views
