// The API's answers without sockets: tokens and roles, parameter errors, limits, the
// shared JSON mapper, health and the metrics text.
#include "pxs/http/server.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <nlohmann/json.hpp>

#include "pxs/common/files.h"
#include "pxs/common/metrics.h"
#include "pxs/storage/database.h"
#include "pxs/views/format.h"

namespace pxs::http {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pxs_http_api_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_path_ = (dir_ / "pxsnode.db").string();
    auto db = Database::Open(db_path_, Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ReceivedInstance i;
    i.sop_instance_uid = "1.2.3.1";
    i.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1";
    i.study_uid = "1.2.3";
    i.series_uid = "1.2.3.0";
    i.patient = {"P1", ""};
    i.patient_name = "Doe^Jane";
    i.study_date = "20240101";
    i.file_path = "dicom/x.dcm";
    i.received_at_ms = 1'700'000'000'000;
    std::vector<InsertOutcome> outcomes;
    ASSERT_TRUE((*db)->RecordInstances({i}, &outcomes).ok());
    ASSERT_TRUE((*db)->RecordModel("m", "1", R"({"not_for_clinical_use": true})").ok());
    db_ = std::move(*db);
    Options o;
    o.db_path = db_path_;
    o.data_dir = dir_.string();
    o.web_root = dir_.string();
    o.version = "9.9.9";
    o.models = {{"m", "1", true}};
    o.ready = [this] { return ready_; };
    o.tokens = {{"alice", "viewer", Sha256Hex("viewer-secret")}, {"ops", "admin", Sha256Hex("admin-secret")}};
    options_ = o;
    api_ = std::make_unique<Api>(o);
  }
  // One more instance of patient P1, received now.
  void AddInstance(const std::string& sop_uid) {
    ReceivedInstance i;
    i.sop_instance_uid = sop_uid;
    i.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1";
    i.study_uid = "1.2.3";
    i.patient = {"P1", ""};
    i.file_path = "dicom/" + sop_uid + ".dcm";
    i.received_at_ms = 1'700'000'100'000;
    ASSERT_TRUE(db_->RecordInstances({i}, nullptr).ok());
  }
  static int64_t Instances(const Response& stats) { return Json::parse(stats.body).at("instances").get<int64_t>(); }
  void TearDown() override { fs::remove_all(dir_); }

  Response Get(const std::string& target, const std::string& token = "viewer-secret") {
    return api_->Handle({"GET", target, token.empty() ? "" : "Bearer " + token, ""});
  }

  fs::path dir_;
  std::string db_path_;
  std::unique_ptr<Database> db_;
  Options options_;
  std::unique_ptr<Api> api_;
  bool ready_ = false;
};

TEST_F(ApiTest, TokensAreRequiredAndChecked) {
  EXPECT_EQ(Get("/api/v1/patients", "").status, 401);
  EXPECT_EQ(Get("/api/v1/patients", "wrong").status, 401);
  EXPECT_EQ(api_->Handle({"GET", "/api/v1/patients", "Basic dmlld2VyLXNlY3JldA==", ""}).status, 401);
  Response unauthorised = Get("/metrics", "");
  EXPECT_EQ(unauthorised.status, 401);
  EXPECT_TRUE(Json::parse(unauthorised.body).contains("error"));
  EXPECT_EQ(Get("/api/v1/patients").status, 200);
  EXPECT_EQ(Get("/api/v1/patients", "admin-secret").status, 200);
}

TEST_F(ApiTest, RetryIsForAdminsAndAuditedUnderTheTokenName) {
  Request viewer{"POST", "/api/v1/retry", "Bearer viewer-secret", R"({"all_failed": true})"};
  EXPECT_EQ(api_->Handle(viewer).status, 403);
  Request admin = viewer;
  admin.authorization = "Bearer admin-secret";
  Response r = api_->Handle(admin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::parse(r.body)["jobs_requeued"], 0);
  Response audit = Get("/api/v1/audit");
  ASSERT_EQ(audit.status, 200);
  Json rows = Json::parse(audit.body);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["unix_user"], "http:ops");
  EXPECT_EQ(rows[0]["action"], "retry");
  admin.body = "{}";
  EXPECT_EQ(api_->Handle(admin).status, 400);
  EXPECT_EQ(api_->Handle({"GET", "/api/v1/retry", "Bearer admin-secret", ""}).status, 405);
}

TEST_F(ApiTest, BadParametersUnknownIdsAndOversizedRequests) {
  EXPECT_EQ(Get("/api/v1/patients?limit=0").status, 400);
  EXPECT_EQ(Get("/api/v1/patients?limit=abc").status, 400);
  EXPECT_EQ(Get("/api/v1/queue?limit=-1").status, 400);
  EXPECT_EQ(Get("/api/v1/patients/NOPE/history").status, 404);
  EXPECT_EQ(Get("/api/v1/studies/9.9.9").status, 404);
  EXPECT_EQ(Get("/api/v1/nothing").status, 404);
  EXPECT_EQ(Get("/api/v1/patients?prefix=" + std::string(3000, 'x')).status, 413);
  Request big{"POST", "/api/v1/retry", "Bearer admin-secret", std::string(100 * 1024, ' ')};
  EXPECT_EQ(api_->Handle(big).status, 413);
}

TEST_F(ApiTest, PatientsAreSearchedAndPaged) {
  Response r = Get("/api/v1/patients?prefix=do");
  ASSERT_EQ(r.status, 200);
  Json rows = Json::parse(r.body);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["patient_id"], "P1");
  EXPECT_EQ(rows[0]["name"], "Doe^Jane");
  EXPECT_EQ(Json::parse(Get("/api/v1/patients?prefix=zz").body).size(), 0u);
  EXPECT_EQ(Json::parse(Get("/api/v1/patients?offset=1").body).size(), 0u);
  Response history = Get("/api/v1/patients/P1/history");
  ASSERT_EQ(history.status, 200) << history.body;
  EXPECT_EQ(Json::parse(history.body)["studies"].size(), 1u);
  EXPECT_EQ(history.route, "/api/v1/patients/{id}/history");  // the access log never sees the id
}

// Every model that scored here (an older version too), with its counts and whether the
// node scores with it now; the loaded one says it is not for clinical use.
TEST_F(ApiTest, ModelsListEveryModelThatScoredAndWhichIsLoaded) {
  auto jobs = db_->ClaimJobs(10);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  ScoreRecord score;
  score.job_id = (*jobs)[0].id;
  score.pxs = score.raw_distance = 3.5;
  score.model_name = "m";
  score.model_version = "0";  // scored by the version before the loaded one
  score.scored_at_ms = 1'700'000'060'000;
  ASSERT_TRUE(db_->CompleteJob(score).ok());

  Response r = Get("/api/v1/models");
  ASSERT_EQ(r.status, 200) << r.body;
  Json models = Json::parse(r.body);
  ASSERT_TRUE(models.is_array());
  ASSERT_EQ(models.size(), 2u) << models.dump(2);
  const Json& old = models[0];
  EXPECT_EQ(old["version"], "0");
  EXPECT_EQ(old["loaded"], false);
  EXPECT_EQ(old["scores"], 1);
  EXPECT_EQ(old["first_scored_at"], views::FormatTimeIso(1'700'000'060'000));
  EXPECT_EQ(old["last_scored_at"], old["first_scored_at"]);
  EXPECT_TRUE(old["metadata"].is_null());  // never recorded by this database
  const Json& now = models[1];
  EXPECT_EQ(now["version"], "1");
  EXPECT_EQ(now["loaded"], true);
  EXPECT_EQ(now["scores"], 0);
  EXPECT_TRUE(now["first_scored_at"].is_null());
  EXPECT_FALSE(now["last_loaded_at"].is_null());
  EXPECT_EQ(now["not_for_clinical_use"], true);
  EXPECT_EQ(now["metadata"]["not_for_clinical_use"], true);
}

// Stats come from a kept copy refreshed in the background once older than
// aggregate_max_age (whole-table counts are slow at millions of instances); 0 computes
// every time.
TEST_F(ApiTest, StatsAreKeptAndRefreshedInTheBackground) {
  options_.aggregate_max_age = std::chrono::milliseconds(200);
  Api cached(options_);
  options_.aggregate_max_age = std::chrono::milliseconds(0);
  Api uncached(options_);
  auto stats = [](Api& api) { return api.Handle({"GET", "/api/v1/stats", "Bearer viewer-secret", ""}); };
  ASSERT_EQ(stats(cached).status, 200) << stats(cached).body;
  EXPECT_EQ(Instances(stats(cached)), 1);
  AddInstance("1.2.3.2");
  EXPECT_EQ(Instances(stats(uncached)), 2);
  EXPECT_EQ(Instances(stats(cached)), 1);  // the kept copy, younger than 200 ms
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int64_t seen = 1;
  while (seen != 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    seen = Instances(stats(cached));  // a stale answer starts the refresh; a later one sees it
  }
  EXPECT_EQ(seen, 2);
}

TEST_F(ApiTest, HealthNeedsNoTokenAndReadinessFollowsTheNode) {
  EXPECT_EQ(Get("/healthz", "").status, 200);
  EXPECT_EQ(Get("/readyz", "").status, 503);
  ready_ = true;
  EXPECT_EQ(Get("/readyz", "").status, 200);
}

TEST_F(ApiTest, MetricsCarryGaugesAndBuildInfo) {
  metrics::Global().ObserveStore(0xA700, 0.003);
  Response r = Get("/metrics");
  EXPECT_NE(r.body.find("pxs_instances_total{outcome=\"refused\",status=\"A700\"} 1\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("pxs_cstore_ack_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos);
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("text/plain"), std::string::npos);
  EXPECT_NE(r.body.find("pxs_queue_depth{state=\"queued\"} 1\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("pxs_build_info{version=\"9.9.9\"} 1"), std::string::npos);
  EXPECT_NE(r.body.find("not_for_clinical_use=\"true\""), std::string::npos);
  EXPECT_NE(r.body.find("pxs_scoring_batch_seconds_bucket{le=\"+Inf\"}"), std::string::npos);
}

TEST(ConstantTimeEquals, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

}  // namespace
}  // namespace pxs::http
