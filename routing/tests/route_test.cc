#include "pxs/routing/route.h"

#include <gtest/gtest.h>

namespace pxs::routing {
namespace {

InstanceFacts ChestPa() {
  InstanceFacts f;
  f.modality = "DX";
  f.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
  f.body_part = "CHEST";
  f.view_position = "PA";
  f.calling_ae = "CR_ROOM_2";
  f.station_name = "ED-CR1";
  f.rows = 2048;
  f.columns = 2500;
  return f;
}

TEST(RouteTest, DefaultRouteTakesFrontalChestsAndMissingAttributes) {
  const Route r = Route::DefaultChest();
  EXPECT_EQ(WhyNotSelected(r, ChestPa()), "");
  InstanceFacts missing = ChestPa();
  missing.body_part = "";
  missing.view_position = "";
  EXPECT_EQ(WhyNotSelected(r, missing), "");
  InstanceFacts lower = ChestPa();
  lower.body_part = "chest";
  EXPECT_EQ(WhyNotSelected(r, lower), "");
  InstanceFacts hand = ChestPa();
  hand.body_part = "HAND";
  EXPECT_EQ(WhyNotSelected(r, hand), "BodyPartExamined HAND is not one of CHEST, (none)");
  InstanceFacts lateral = ChestPa();
  lateral.view_position = "LL";
  EXPECT_NE(WhyNotSelected(r, lateral).find("ViewPosition LL"), std::string::npos);
}

TEST(RouteTest, EveryConditionMustHold) {
  Route r;
  r.modality = {"CR", "DX"};
  r.calling_ae = {"CR_ROOM_2"};
  r.station_name = {"ED-CR1", "ED-CR2"};
  r.min_rows = 1024;
  r.min_columns = 1024;
  EXPECT_EQ(WhyNotSelected(r, ChestPa()), "");
  InstanceFacts f = ChestPa();
  f.calling_ae = "PACS";
  EXPECT_EQ(WhyNotSelected(r, f), "calling AE PACS is not one of CR_ROOM_2");
  f = ChestPa();
  f.rows = 512;
  EXPECT_EQ(WhyNotSelected(r, f), "Rows 512 below the route's min_rows 1024");
  f = ChestPa();
  f.columns = 100;
  EXPECT_NE(WhyNotSelected(r, f).find("Columns 100"), std::string::npos);
  f = ChestPa();
  f.modality = "CT";
  EXPECT_NE(WhyNotSelected(r, f).find("Modality CT"), std::string::npos);
}

TEST(RouterTest, SelectsEveryMatchingModelInOrderOrSaysWhyNone) {
  Route ed_only = Route::DefaultChest();
  ed_only.station_name = {"ED-CR1"};
  Router router({{"pxs", Route::DefaultChest()}, {"edema", ed_only}});
  Decision both = router.Decide(ChestPa());
  EXPECT_EQ(both.models, (std::vector<std::string>{"pxs", "edema"}));
  EXPECT_TRUE(both.no_model_reason.empty());

  InstanceFacts ward = ChestPa();
  ward.station_name = "WARD-7";
  EXPECT_EQ(router.Decide(ward).models, (std::vector<std::string>{"pxs"}));

  InstanceFacts hand = ChestPa();
  hand.body_part = "HAND";
  Decision none = router.Decide(hand);
  EXPECT_TRUE(none.models.empty());
  EXPECT_NE(none.no_model_reason.find("no model applies"), std::string::npos);
  EXPECT_NE(none.no_model_reason.find("pxs: BodyPartExamined HAND"), std::string::npos);
  EXPECT_NE(none.no_model_reason.find("edema: BodyPartExamined HAND"), std::string::npos);

  EXPECT_NE(Router().Decide(ChestPa()).no_model_reason.find("no model is configured"), std::string::npos);
}

}  // namespace
}  // namespace pxs::routing
