// The longitudinal rule (pxs/longitudinal/course.h), case by case.
#include "pxs/longitudinal/course.h"

#include <gtest/gtest.h>

namespace pxs::longitudinal {
namespace {

const ModelId kDemo{"pxs-demo-cxr14", "1.0.0"};
const ModelId kNew{"pxs-demo-cxr14", "2.0.0"};

ScoredInstance Row(const std::string& study, const std::string& date, double pxs, const ModelId& model = kDemo,
                   int64_t score_id = 0, int64_t scored_at_ms = 1'700'000'000'000) {
  ScoredInstance r;
  r.study_uid = study;
  r.study_date = date;
  r.study_time = "101500";
  r.sop_instance_uid = study + ".1";
  r.model = model;
  r.pxs = pxs;
  r.scored_at_ms = scored_at_ms;
  r.score_id = score_id;
  return r;
}

TrendLookup Fixed(double stable_delta, std::optional<double> calibrated = std::nullopt) {
  return [=](const ModelId&) {
    ModelTrend t;
    t.stable_delta = stable_delta;
    t.stable_delta_calibrated = calibrated;
    return t;
  };
}

const Course& CourseOf(const std::vector<Course>& courses, const ModelId& model) {
  for (const Course& c : courses) {
    if (c.model == model) return c;
  }
  static const Course none;
  ADD_FAILURE() << "no course for " << model.Label();
  return none;
}

TEST(LongitudinalRule, AChangeEqualToTheThresholdIsStableAndOneBeyondIsNot) {
  // Values exactly representable in binary, so the boundary is exact.
  auto courses = BuildCourses({Row("s1", "20200101", 2.0), Row("s2", "20200102", 2.5), Row("s3", "20200103", 2.0),
                               Row("s4", "20200104", 2.625), Row("s5", "20200105", 2.0)},
                              Fixed(0.5));
  ASSERT_EQ(courses.size(), 1u);
  const auto& s = courses[0].studies;
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].comparison.trend, Trend::kNotCompared);
  EXPECT_FALSE(s[0].comparison.change.has_value());
  EXPECT_EQ(*s[1].comparison.change, 0.5);
  EXPECT_EQ(s[1].comparison.trend, Trend::kStable);   // +0.5 == delta
  EXPECT_EQ(s[2].comparison.trend, Trend::kStable);   // -0.5 == -delta
  EXPECT_EQ(s[3].comparison.trend, Trend::kWorse);  // +0.625
  EXPECT_EQ(s[4].comparison.trend, Trend::kBetter);  // -0.625
  EXPECT_EQ(s[1].comparison.stable_delta_used, 0.5);
  EXPECT_STREQ(TrendText(Trend::kNotCompared), "not compared");
  EXPECT_STREQ(TrendText(Trend::kWorse), "worse");
}

TEST(LongitudinalRule, CalibratedThresholdAppliesOnlyWhenBothValuesAreCalibrated) {
  ScoredInstance a = Row("s1", "20200101", 1.0), b = Row("s2", "20200102", 1.25), c = Row("s3", "20200103", 1.5);
  a.calibrated = 3.0;
  b.calibrated = 4.0;  // +1.0 calibrated == stable_delta_calibrated: stable (raw +0.25 would be worsened)
  // c has no calibrated value: raw comparison with stable_delta
  auto courses = BuildCourses({a, b, c}, Fixed(0.125, 1.0));
  const auto& s = courses[0].studies;
  EXPECT_TRUE(s[1].comparison.on_calibrated_scale);
  EXPECT_EQ(*s[1].comparison.calibrated_change, 1.0);
  EXPECT_EQ(*s[1].comparison.change, 0.25);
  EXPECT_EQ(s[1].comparison.trend, Trend::kStable);
  EXPECT_FALSE(s[2].comparison.on_calibrated_scale);
  EXPECT_FALSE(s[2].comparison.calibrated_change.has_value());
  EXPECT_EQ(s[2].comparison.trend, Trend::kWorse);  // +0.25 > 0.125
  // Without the calibrated threshold the calibrated change is still reported, the trend is raw.
  auto raw = BuildCourses({a, b}, Fixed(0.25));
  EXPECT_FALSE(raw[0].studies[1].comparison.on_calibrated_scale);
  EXPECT_EQ(*raw[0].studies[1].comparison.calibrated_change, 1.0);
  EXPECT_EQ(raw[0].studies[1].comparison.trend, Trend::kStable);  // +0.25 == 0.25
}

TEST(LongitudinalRule, StudiesOfAnotherModelAreNeverCompared) {
  auto courses = BuildCourses({Row("s1", "20200101", 2.0, kDemo), Row("s2", "20200102", 9.0, kNew),
                               Row("s3", "20200103", 2.0, kDemo), Row("s2", "20200102", 4.0, kDemo)},
                              Fixed(1.0));
  ASSERT_EQ(courses.size(), 2u);
  const Course& demo = CourseOf(courses, kDemo);
  const Course& updated = CourseOf(courses, kNew);
  ASSERT_EQ(updated.studies.size(), 1u);
  EXPECT_EQ(updated.studies[0].comparison.trend, Trend::kNotCompared);
  ASSERT_EQ(demo.studies.size(), 3u);
  // s2 has a value in each course: its demo value, not the new model's 9.0.
  EXPECT_EQ(demo.Find("s2")->value.pxs, 4.0);
  EXPECT_EQ(*demo.Find("s3")->comparison.change, -2.0);
}

TEST(LongitudinalRule, ALaterDatedStudySentFirstIsNeverAPrior) {
  // Arrival order: the 2021 study first (scored first), the 2020 one received late.
  auto courses = BuildCourses({Row("late-dated", "20210101", 6.0, kDemo, 1, 1000),
                               Row("early-dated", "20200101", 3.0, kDemo, 2, 2000)},
                              Fixed(1.0));
  const Course& c = courses[0];
  ASSERT_EQ(c.studies.size(), 2u);
  EXPECT_EQ(c.studies[0].value.study_uid, "early-dated");
  EXPECT_FALSE(c.studies[0].previous.has_value());
  EXPECT_EQ(c.studies[0].comparison.trend, Trend::kNotCompared);
  EXPECT_EQ(c.Find("late-dated")->comparison.trend, Trend::kWorse);
  EXPECT_EQ(*c.Find("late-dated")->comparison.change, 3.0);
}

TEST(LongitudinalRule, EachStudyUsesTheThresholdOfTheModelThatScoredIt) {
  // The issue's scenario: two studies by the old package (stable_delta 0.068), then the
  // node restarted with a new package (stable_delta 1.00) and a third study.
  auto lookup = [](const ModelId& m) {
    ModelTrend t;
    t.stable_delta = m == kDemo ? 0.068 : 1.0;
    return t;
  };
  auto courses = BuildCourses({Row("s1", "20230101", 1.10, kDemo), Row("s2", "20230201", 1.42, kDemo),
                               Row("s3", "20230301", 0.49, kNew)},
                              lookup);
  const Course& old_model = CourseOf(courses, kDemo);
  EXPECT_EQ(old_model.Find("s2")->comparison.trend, Trend::kWorse);  // +0.32 against its own 0.068
  EXPECT_EQ(old_model.Find("s2")->comparison.stable_delta_used, 0.068);
  const Course& new_model = CourseOf(courses, kNew);
  EXPECT_EQ(new_model.Find("s3")->comparison.trend, Trend::kNotCompared);  // never against s2 (-0.93)
  EXPECT_FALSE(new_model.Find("s3")->comparison.change.has_value());
  // An override (config [reports] stable_delta) replaces every course's raw threshold.
  auto overridden = BuildCourses({Row("s1", "20230101", 1.10, kDemo), Row("s2", "20230201", 1.42, kDemo)}, lookup,
                                 {.stable_delta_override = 0.5});
  EXPECT_EQ(overridden[0].studies[1].comparison.trend, Trend::kStable);
}

TEST(LongitudinalRule, TheLatestScoredInstanceStandsForTheStudyTiesByScoreId) {
  ScoredInstance first = Row("s1", "20200101", 2.0, kDemo, 10, 5000);
  ScoredInstance rescored = Row("s1", "20200101", 3.0, kDemo, 11, 5000);  // same time, higher id
  ScoredInstance older = Row("s1", "20200101", 9.0, kDemo, 12, 4000);     // higher id, scored earlier
  first.sop_instance_uid = "a";
  rescored.sop_instance_uid = "b";
  older.sop_instance_uid = "c";
  auto courses = BuildCourses({rescored, older, first}, Fixed(1.0));
  ASSERT_EQ(courses[0].studies.size(), 1u);
  EXPECT_EQ(courses[0].studies[0].value.sop_instance_uid, "b");
  EXPECT_EQ(courses[0].studies[0].scored_instances, 3);
}

TEST(LongitudinalRule, AStudyWithoutDateIsPlacedAtItsScoringTime) {
  // 1'600'000'000'000 ms = 2020-09-13T12:26:40Z
  EXPECT_EQ(StudyTimeKey("", "", 1'600'000'000'000), "20200913122640.000000");
  EXPECT_EQ(StudyTimeKey("20200101", "", 0), "20200101000000.000000");
  EXPECT_EQ(StudyTimeKey("20200101", "0815", 0), "20200101081500.000000");
  EXPECT_EQ(StudyTimeKey("20200101", "08:15:30.25", 0), "20200101081530.250000");
  EXPECT_EQ(StudyTimeKey("2020", "081500", 1'600'000'000'000), "20200913122640.000000");  // bad DA
  auto courses = BuildCourses({Row("dated", "20200901", 2.0), Row("undated", "", 4.0, kDemo, 2, 1'600'000'000'000),
                               Row("after", "20201001", 4.0)},
                              Fixed(1.0));
  const Course& c = courses[0];
  EXPECT_EQ(c.studies[1].value.study_uid, "undated");
  EXPECT_EQ(c.studies[c.studies[1].previous.value()].value.study_uid, "dated");
  EXPECT_EQ(c.Find("after")->comparison.change, 0.0);  // compared with the undated one
}

TEST(LongitudinalRule, StudiesAtTheSameTimeAreNotPriorsOfEachOther) {
  auto courses = BuildCourses({Row("a", "20200101", 2.0, kDemo, 1), Row("b", "20200101", 4.0, kDemo, 2),
                               Row("c", "20200102", 5.0, kDemo, 3)},
                              Fixed(1.0));
  const Course& c = courses[0];
  EXPECT_EQ(c.Find("a")->comparison.trend, Trend::kNotCompared);
  EXPECT_EQ(c.Find("b")->comparison.trend, Trend::kNotCompared);
  EXPECT_EQ(c.Find("c")->comparison.change, 1.0);  // against b: same time as a, scored later
}

TEST(LongitudinalRule, BandsAndMetadata) {
  const ModelTrend t = PublishedPxsTrend();
  EXPECT_EQ(BandFor(t.bands, 0.3), "normal/minimal");
  EXPECT_EQ(BandFor(t.bands, 2.5), "mild");  // upper bounds are exclusive
  EXPECT_EQ(BandFor(t.bands, 9.0), "severe");
  EXPECT_EQ(BandFor({{1.0, "low"}}, 3.0), "");  // beyond the last bounded band: none
  EXPECT_EQ(BandFor({}, 3.0), "");

  auto m = ModelTrendFromMetadata(
      R"({"name":"x","trend":{"stable_delta":0.07,"stable_delta_calibrated":0.5,)"
      R"("bands":[{"upper":1,"label":"low"},{"upper":null,"label":"high"}]}})");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->stable_delta, 0.07);
  EXPECT_EQ(m->stable_delta_calibrated, 0.5);
  ASSERT_EQ(m->bands.size(), 2u);
  EXPECT_EQ(m->bands[1].label, "high");
  EXPECT_FALSE(m->bands[1].upper.has_value());
  auto old = ModelTrendFromMetadata(R"({"trend":{"stable_delta":2}})");
  EXPECT_EQ(old->stable_delta, 2.0);
  EXPECT_FALSE(old->stable_delta_calibrated.has_value());
  EXPECT_EQ(ModelTrendFromMetadata(R"({})")->stable_delta, 1.0);
  EXPECT_FALSE(ModelTrendFromMetadata("not json").has_value());
}

}  // namespace
}  // namespace pxs::longitudinal
