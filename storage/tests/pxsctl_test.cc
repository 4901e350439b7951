// Runs the built pxsctl binary against a database filled through the C++ API and
// real files in a scratch data_dir.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pxs/common/files.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"
#include "test_db_util.h"

namespace pxs {
namespace {

using Json = nlohmann::json;
using testing_util::MakeInstance;
using testing_util::MakeScore;
using testing_util::ScratchDir;

constexpr int64_t kDayMs = 24 * 3600 * 1000LL;

struct RunResult {
  int exit_code = -1;
  std::string out;
};

RunResult RunPxsctl(const std::string& args) {
  const std::string command = std::string(PXS_BINARY_DIR "/bin/pxsctl ") + args + " 2>/dev/null";
  RunResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) result.out.append(buf, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class PxsctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(PXS_BINARY_DIR "/bin/pxsctl")) << "build the pxsctl target first";
    std::filesystem::create_directories(dir_.path() + "/dicom");
    auto db = Database::Open(dir_.db(), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    const int64_t now = Now();
    // P1: three studies (two old enough to prune), P2: one failed instance, one id-less.
    std::vector<ReceivedInstance> batch = {
        Instance("1.1", "9.1", "P1", "20200101", now - 60 * kDayMs),
        Instance("1.2", "9.2", "P1", "20210101", now - 40 * kDayMs),
        Instance("1.3", "9.3", "P1", "20220101", now - 1 * kDayMs),
        Instance("1.4", "9.4", "P2", "20220101", now - 50 * kDayMs),
        Instance("1.5", "9.5", "", "20220101", now - 2 * kDayMs),
        Instance("1.6", "9.3", "P1", "20220101", now),  // waits in the queue
    };
    ASSERT_TRUE((*db)->RecordInstances(batch, nullptr).ok());
    auto jobs = (*db)->ClaimJobs(5);
    ASSERT_EQ(jobs->size(), 5u);
    const std::map<std::string, double> pxs = {{"1.1", 2.0}, {"1.2", 5.5}, {"1.3", 4.0}, {"1.5", 7.0}};
    for (const Job& job : *jobs) {
      if (job.sop_instance_uid == "1.4") {
        ASSERT_TRUE((*db)->FailJobAttempt(job.id, "cannot decode pixel data", 1).ok());
      } else {
        ASSERT_TRUE((*db)->CompleteJob(MakeScore(job.id, pxs.at(job.sop_instance_uid), now)).ok());
      }
    }
    ASSERT_TRUE((*db)->RecordReport("2.1", "9.3", "pxs", 1, "reports/2.1.dcm", {"PACS"}).ok());
    auto due = (*db)->DueReports(now + 1000, 5);
    ASSERT_EQ(due->size(), 1u);
    ASSERT_TRUE((*db)->MarkReportAttemptFailed((*due)[0].id, "connection refused", now, true).ok());
  }

  ReceivedInstance Instance(const std::string& sop, const std::string& study, const std::string& patient,
                            const std::string& date, int64_t received_at) {
    ReceivedInstance in = MakeInstance(sop, study, patient, date, received_at);
    const std::string path = dir_.path() + "/" + in.file_path;
    std::ofstream(path, std::ios::binary) << "DICM fake pixel data for " << sop;
    in.file_size = std::filesystem::file_size(path);
    in.sha256 = *Sha256HexOfFile(path);
    return in;
  }

  // Quoted: a PostgreSQL URL has '&' and '?' in it.
  // A PostgreSQL database does not say where the files are: --data-dir does.
  std::string Db() const {
    return "--db '" + dir_.db() + "' " + (testing_util::OnPostgres() ? "--data-dir " + dir_.path() + " " : "");
  }
  std::string File(const std::string& sop) const { return dir_.path() + "/dicom/" + sop + ".dcm"; }

  ScratchDir dir_;
};

TEST_F(PxsctlTest, ExportJsonHasEveryFieldAndNullsWhereUnscored) {
  RunResult r = RunPxsctl(Db() + "export --format json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  Json rows = Json::parse(r.out);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 6u);
  std::map<std::string, Json> by_sop;
  for (const Json& row : rows) {
    for (const char* key : {"patient_id", "issuer", "study_uid", "series_uid", "sop_instance_uid", "study_date",
                            "state", "reason", "pxs", "calibrated", "calibrated_scale", "change_from_prior",
                            "calibrated_change_from_prior", "trend", "stands_for_study", "model", "received_at",
                            "scored_at"}) {
      EXPECT_TRUE(row.contains(key)) << key << " missing in " << row.dump();
    }
    by_sop[row["sop_instance_uid"]] = row;
  }
  EXPECT_EQ(by_sop["1.1"]["pxs"], 2.0);
  EXPECT_TRUE(by_sop["1.1"]["change_from_prior"].is_null());  // first study
  EXPECT_DOUBLE_EQ(by_sop["1.2"]["change_from_prior"].get<double>(), 3.5);
  EXPECT_DOUBLE_EQ(by_sop["1.3"]["change_from_prior"].get<double>(), -1.5);
  EXPECT_EQ(by_sop["1.2"]["trend"], "worse");  // +3.5 against the default 1.0
  EXPECT_EQ(by_sop["1.1"]["trend"], "not compared");
  EXPECT_EQ(by_sop["1.3"]["stands_for_study"], true);
  EXPECT_EQ(by_sop["1.3"]["model"], "pxs-densenet121 1.0");
  EXPECT_TRUE(by_sop["1.4"]["pxs"].is_null());
  EXPECT_EQ(by_sop["1.4"]["state"], "failed");
  EXPECT_EQ(by_sop["1.4"]["reason"], "cannot decode pixel data");
  EXPECT_TRUE(by_sop["1.4"]["scored_at"].is_null());
  EXPECT_TRUE(by_sop["1.5"]["patient_id"].is_null());
  EXPECT_TRUE(by_sop["1.5"]["change_from_prior"].is_null());
  EXPECT_EQ(by_sop["1.6"]["state"], "queued");
  EXPECT_EQ(by_sop["1.2"]["study_date"], "20210101");
  EXPECT_EQ(by_sop["1.2"]["issuer"], "HOSP");
  EXPECT_EQ(by_sop["1.2"]["received_at"].get<std::string>().back(), 'Z');
}

TEST_F(PxsctlTest, ExportCsvAndDateWindow) {
  RunResult all = RunPxsctl(Db() + "export --format csv");
  ASSERT_EQ(all.exit_code, 0);
  EXPECT_EQ(all.out.substr(0, all.out.find('\n')),
            "patient_id,issuer,study_uid,series_uid,sop_instance_uid,study_date,state,reason,pxs,calibrated,"
            "calibrated_scale,change_from_prior,calibrated_change_from_prior,trend,stands_for_study,model,"
            "received_at,scored_at");
  EXPECT_EQ(std::count(all.out.begin(), all.out.end(), '\n'), 7);
  // Received within the last 10 days: 1.3, 1.5, 1.6. The prior of 1.3 lies outside.
  std::time_t since = static_cast<std::time_t>((Now() - 10 * kDayMs) / 1000);
  char day[16];
  std::strftime(day, sizeof day, "%Y-%m-%d", gmtime(&since));
  RunResult recent = RunPxsctl(Db() + "export --json --since " + day);
  ASSERT_EQ(recent.exit_code, 0) << recent.out;
  Json rows = Json::parse(recent.out);
  ASSERT_EQ(rows.size(), 3u);
  for (const Json& row : rows) {
    if (row["sop_instance_uid"] == "1.3") {
      EXPECT_DOUBLE_EQ(row["change_from_prior"].get<double>(), -1.5);
    }
  }
  RunResult none = RunPxsctl(Db() + "export --format json --until 2000-01-01");
  ASSERT_EQ(none.exit_code, 0);
  EXPECT_TRUE(Json::parse(none.out).empty());
  EXPECT_EQ(RunPxsctl(Db() + "export --since 2024-13-01").exit_code, 2);
}

TEST_F(PxsctlTest, VerifyIsCleanThenDetectsModifiedAndMissingFiles) {
  RunResult clean = RunPxsctl(Db() + "verify");
  EXPECT_EQ(clean.exit_code, 0) << clean.out;
  EXPECT_NE(clean.out.find("Files checked: 6"), std::string::npos) << clean.out;

  {  // same size, one byte different: only the hash can tell
    std::fstream f(File("1.2"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.put('X');
  }
  std::filesystem::remove(File("1.3"));
  RunResult bad = RunPxsctl(Db() + "verify --json");
  EXPECT_EQ(bad.exit_code, 1) << bad.out;
  Json report = Json::parse(bad.out);
  EXPECT_FALSE(report["ok"].get<bool>());
  ASSERT_EQ(report["problems"].size(), 2u);
  EXPECT_EQ(report["problems"][0]["sop_instance_uid"], "1.2");
  EXPECT_NE(report["problems"][0]["problem"].get<std::string>().find("sha256"), std::string::npos);
  EXPECT_EQ(report["problems"][1]["sop_instance_uid"], "1.3");
  EXPECT_NE(report["problems"][1]["problem"].get<std::string>().find("missing"), std::string::npos);
  // Size-only mode cannot see the modified byte, but still the missing file.
  Json quick = Json::parse(RunPxsctl(Db() + "verify --no-hash --json").out);
  EXPECT_EQ(quick["problems"].size(), 1u);
}

TEST_F(PxsctlTest, PruneIsADryRunUntilApplied) {
  RunResult dry = RunPxsctl(Db() + "prune --older-than 30 --json");
  ASSERT_EQ(dry.exit_code, 0) << dry.out;
  Json plan = Json::parse(dry.out);
  EXPECT_TRUE(plan["dry_run"].get<bool>());
  EXPECT_EQ(plan["files"], 3);  // 1.1, 1.2 (scored), 1.4 (failed); not the recent ones
  EXPECT_TRUE(std::filesystem::exists(File("1.1")));

  RunResult applied = RunPxsctl(Db() + "prune --older-than 30 --apply");
  ASSERT_EQ(applied.exit_code, 0) << applied.out;
  EXPECT_FALSE(std::filesystem::exists(File("1.1")));
  EXPECT_FALSE(std::filesystem::exists(File("1.2")));
  EXPECT_FALSE(std::filesystem::exists(File("1.4")));
  EXPECT_TRUE(std::filesystem::exists(File("1.3")));
  EXPECT_TRUE(std::filesystem::exists(File("1.6")));
  // Pruned files are no longer expected by verify; results stay.
  EXPECT_EQ(RunPxsctl(Db() + "verify").exit_code, 0);
  Json rows = Json::parse(RunPxsctl(Db() + "export --format json").out);
  for (const Json& row : rows) {
    if (row["sop_instance_uid"] == "1.1") {
      EXPECT_EQ(row["pxs"], 2.0);
    }
  }
  Json again = Json::parse(RunPxsctl(Db() + "prune --older-than 30 --json").out);
  EXPECT_EQ(again["files"], 0);

  auto admin = AdminDatabase::Open(dir_.db(), Database::Mode::kReadOnly);
  ASSERT_TRUE(admin.ok());
  auto audit = (*admin)->RecentAudit(10);
  ASSERT_EQ(audit->size(), 1u);  // the dry runs wrote nothing
  EXPECT_EQ((*audit)[0].action, "prune");
  EXPECT_FALSE((*audit)[0].unix_user.empty());
  EXPECT_EQ(Json::parse((*audit)[0].details)["deleted"], 3);
}

TEST_F(PxsctlTest, RetryRequeuesFailedWorkAndIsAudited) {
  Json failures = Json::parse(RunPxsctl(Db() + "failures --json").out);
  ASSERT_EQ(failures["jobs"].size(), 1u);
  EXPECT_EQ(failures["jobs"][0]["sop_instance_uid"], "1.4");
  ASSERT_EQ(failures["reports"].size(), 1u);
  EXPECT_EQ(failures["reports"][0]["last_error"], "connection refused");

  EXPECT_EQ(RunPxsctl(Db() + "retry 1.3").exit_code, 0);  // its study's failed report
  EXPECT_EQ(RunPxsctl(Db() + "retry 9.9.9").exit_code, 1);  // unknown UID
  RunResult all = RunPxsctl(Db() + "retry --all-failed --json");
  ASSERT_EQ(all.exit_code, 0) << all.out;
  EXPECT_EQ(Json::parse(all.out)["jobs_requeued"], 1);

  Json queue = Json::parse(RunPxsctl(Db() + "queue --json").out);
  EXPECT_EQ(queue["queued"], 2);
  EXPECT_EQ(queue["reports_pending"], 1);
  failures = Json::parse(RunPxsctl(Db() + "failures --json").out);
  EXPECT_TRUE(failures["jobs"].empty());
  EXPECT_TRUE(failures["reports"].empty());

  Json audit = Json::parse(RunPxsctl(Db() + "audit --json").out);
  ASSERT_EQ(audit.size(), 3u);
  for (const Json& entry : audit) EXPECT_EQ(entry["action"], "retry");
  EXPECT_NE(audit[0]["details"].get<std::string>().find("all-failed"), std::string::npos);
}

TEST_F(PxsctlTest, HistoryShowsChangeTrendAndSparkline) {
  RunResult r = RunPxsctl(Db() + "history P1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  Json h = Json::parse(r.out);
  ASSERT_EQ(h["studies"].size(), 3u);
  EXPECT_EQ(h["studies"][2]["scored"], 1);
  EXPECT_EQ(h["studies"][2]["instances"], 2);  // 1.6 still queued
  ASSERT_EQ(h["courses"].size(), 1u);  // one model
  const Json& course = h["courses"][0]["studies"];
  ASSERT_EQ(course.size(), 3u);
  EXPECT_EQ(course[0]["trend"], "not compared");
  EXPECT_EQ(course[1]["trend"], "worse");  // +3.5
  EXPECT_EQ(course[2]["trend"], "better");  // -1.5
  EXPECT_EQ(course[2]["previous_study_uid"], "9.2");
  EXPECT_EQ(h["courses"][0]["sparkline"], "▁█▅");
  RunResult text = RunPxsctl(Db() + "history P1");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("+3.50"), std::string::npos) << text.out;
  EXPECT_EQ(RunPxsctl(Db() + "history NOBODY").exit_code, 1);
  EXPECT_EQ(RunPxsctl(Db() + "history P1 --issuer OTHER").exit_code, 1);
  EXPECT_EQ(RunPxsctl(Db() + "study 9.3 --json").exit_code, 0);
  EXPECT_EQ(RunPxsctl(Db() + "patients DOE --json").exit_code, 0);
  EXPECT_EQ(Json::parse(RunPxsctl(Db() + "patients doe^p2 --json").out).size(), 1u);
  Json stats = Json::parse(RunPxsctl(Db() + "stats --json").out);
  EXPECT_EQ(stats["jobs"]["scored"], 4);
  EXPECT_EQ(stats["jobs"]["failed"], 1);
  EXPECT_EQ(stats["receipt_to_score"]["count"], 4);
}

TEST_F(PxsctlTest, ExitCodes) {
  EXPECT_EQ(RunPxsctl("").exit_code, 2);
  EXPECT_EQ(RunPxsctl(Db() + "frobnicate").exit_code, 2);
  EXPECT_EQ(RunPxsctl(Db() + "retry").exit_code, 2);
  EXPECT_EQ(RunPxsctl(Db() + "prune").exit_code, 2);
  for (const char* cmd : {"patients", "history", "study", "queue", "failures", "retry", "export", "stats", "verify",
                          "prune", "audit"}) {
    RunResult help = RunPxsctl(std::string(cmd) + " --help");
    EXPECT_EQ(help.exit_code, 0) << cmd;
    EXPECT_NE(help.out.find("--json"), std::string::npos) << cmd;
  }
  const std::string missing = dir_.path() + "/missing.db";
  EXPECT_EQ(RunPxsctl("--db " + missing + " queue").exit_code, 3);
  EXPECT_EQ(RunPxsctl("--db " + missing + " retry --all-failed").exit_code, 3);
  EXPECT_FALSE(std::filesystem::exists(missing));
  EXPECT_EQ(RunPxsctl("--config " + dir_.path() + "/none.toml queue").exit_code, 3);
}

TEST_F(PxsctlTest, FindsTheDatabaseThroughTheNodeConfiguration) {
  // The smallest configuration LoadConfig accepts: data_dir and an existing model file.
  const std::string config = dir_.path() + "/pxsnode.toml";
  std::ofstream(dir_.path() + "/model.pt") << "placeholder";
  std::ofstream(config) << "[node]\ndata_dir = \"" << dir_.path() << "\"\n[scoring]\nmodel = \"model.pt\"\n"
                         << (testing_util::OnPostgres() ? "[database]\nurl = \"" + dir_.db() + "\"\n" : "");
  RunResult r = RunPxsctl("--config " + config + " queue --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(Json::parse(r.out)["queued"], 1);
  // verify resolves recorded paths against the configured data_dir.
  EXPECT_EQ(RunPxsctl("-c " + config + " verify").exit_code, 0);
}

TEST_F(PxsctlTest, RefusesANewerSchema) {
  // Bump the version the way a newer pxsnode's migration would.
  if (testing_util::OnPostgres()) {
    std::string out;
    ASSERT_TRUE(testing::PostgresServer::Shared().Psql(
        dir_.pg_database(), "UPDATE pxs_schema SET version = " + std::to_string(kSchemaVersion + 1), &out))
        << out;
  } else {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.db().c_str(), &raw), SQLITE_OK);
    const std::string bump = "PRAGMA user_version = " + std::to_string(kSchemaVersion + 1);
    ASSERT_EQ(sqlite3_exec(raw, bump.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  EXPECT_EQ(RunPxsctl(Db() + "queue").exit_code, 3);
  EXPECT_EQ(RunPxsctl(Db() + "retry --all-failed").exit_code, 3);
  EXPECT_EQ(*ReadSchemaVersion(dir_.db()), kSchemaVersion + 1);  // untouched
}

}  // namespace
}  // namespace pxs
