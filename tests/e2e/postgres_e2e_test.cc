// Several nodes on one PostgreSQL (issue 16), end to end: a real PostgreSQL 15 started
// by the test (tests/support/postgres_server.h: initdb, pg_ctl, a Unix socket, as
// `nobody` when run as root), two real pxsnode processes with their own data folders and
// [node] ids on it, storescu as the modality and storescp as the PACS, real ralo courses
// (../shared/data/ralo) as the images.
//   - a baseline sent to node A and the follow-up to node B: B's SR compares with A's
//     score (read back with the SR reader and dsrdump), pxsctl sees one timeline;
//   - the baseline sent to B as well: stored once, B says it is another node's copy;
//   - PostgreSQL stopped: a C-STORE is not acknowledged (a failure status, not Success),
//     and the node stores again by itself once the server is back;
//   - a node killed with kill -9 right after acknowledging resumes its own jobs on
//     restart, and the other node never takes them (it has not got the files).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../support/node_process.h"
#include "../support/pacs_peer.h"
#include "../support/postgres_server.h"
#include "../support/shared_data.h"
#include "pxs/reports/sr_reader.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using Json = nlohmann::json;

std::string DemoModelPath() { return std::string(PXS_SOURCE_DIR) + "/models/pxs-demo-cxr14.pt"; }

// One node of the site: its own folder, port and [node] id, the shared database.
struct SiteNode {
  std::string id;
  fs::path dir;
  uint16_t port = FreePort();
  std::unique_ptr<Node> node;
  std::string config;
};

class PostgresEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string data = SharedDataDir();
    if (data.empty() || !fs::exists(data + "/ralo/scores.csv")) {
      GTEST_SKIP() << "SKIPPED: ../shared/data/ralo not found (shared test data is not present on this machine)";
    }
    if (!pg_.available()) GTEST_SKIP() << "SKIPPED: PostgreSQL: " << pg_.why_unavailable();
    url_ = pg_.CreateDatabase("pxs_e2e");
    ASSERT_FALSE(url_.empty()) << pg_.log();
    ralo_ = data + "/ralo";
    ASSERT_TRUE(pacs_.Start((dir_.path() / "storescp.log").string()));
    a_.id = "site-a";
    b_.id = "site-b";
    for (SiteNode* site : {&a_, &b_}) {
      site->dir = dir_.path() / site->id;
      fs::create_directories(site->dir);
      site->config = WriteConfig(*site);
    }
  }
  void TearDown() override {
    if (!HasFailure()) return;
    for (SiteNode* s : {&a_, &b_}) {
      if (s->node) std::cerr << "---- pxsnode " << s->id << " log ----\n" << s->node->Log() << "\n";
    }
    std::cerr << "---- PostgreSQL log ----\n" << pg_.log() << "\n";
  }

  // The node's config: WriteNodeConfig's, with its [node] id and the shared [database].
  std::string WriteConfig(const SiteNode& site) {
    const fs::path path = site.dir / "pxsnode.toml";
    std::ofstream out(path);
    out << "[node]\nid = \"" << site.id << "\"\nae_title = \"PXSNODE\"\nbind = \"127.0.0.1\"\nport = " << site.port
        << "\ndata_dir = \"" << (site.dir / "data").string() << "\"\n"
        << "[database]\nurl = \"" << url_ << "\"\nstatement_timeout_ms = 10000\n"
        << "[scp]\nshutdown_grace_s = 10\nmin_free_gb = 0.0\nmin_free_percent = 0.0\n"
        << "[scoring]\nmodel = \"" << DemoModelPath() << "\"\ndevice = \"cpu\"\nintra_op_threads = 1\nmax_wait_ms = 20\n"
        << pacs_.ConfigTail();
    return path.string();
  }
  void Start(SiteNode& site) {
    site.node = std::make_unique<Node>(site.dir, site.port);
    ASSERT_TRUE(site.node->Start(site.config)) << site.node->Log();
  }
  CommandResult Send(const SiteNode& site, const std::vector<fs::path>& files, const std::string& log_name) {
    std::vector<std::string> argv = {"storescu", "-v", "-aec", "PXSNODE", "127.0.0.1", std::to_string(site.port)};
    for (const fs::path& f : files) argv.push_back(f.string());
    return RunCommand(argv, (dir_.path() / log_name).string());
  }
  // Sends and waits for `srs` more SRs at the PACS.
  void SendAndWaitForSr(const SiteNode& site, const fs::path& file, size_t srs = 1) {
    const size_t before = FilesIn(pacs_.dir()).size();
    CommandResult r = Send(site, {file}, "storescu.log");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_EQ(ParseStorescuLog(r.output).succeeded.size(), 1u) << r.output;
    ASSERT_TRUE(WaitFor([&] { return FilesIn(pacs_.dir()).size() >= before + srs; }, std::chrono::minutes(2)))
        << "no SR for " << file << " from " << site.id;
  }
  std::vector<fs::path> MakeStudies(const std::string& name, const std::vector<std::string>& args) {
    const fs::path out = dir_.path() / name;
    CommandResult made = MakeRaloStudies(out, ralo_, args, (dir_.path() / (name + ".log")).string());
    EXPECT_EQ(made.exit_code, 0) << made.output;
    return FilesIn(out, "", ".dcm");
  }
  static std::string PatientOf(const fs::path& file) {
    const std::string name = file.filename().string();
    return name.substr(0, name.find('_'));
  }
  CommandResult Pxsctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinDir() + "/pxsctl", "--db", url_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, (dir_.path() / "pxsctl.log").string());
  }
  // The SRs at the PACS, read back, by the study they report on.
  std::map<std::string, SrContent> SrsByStudy() {
    std::map<std::string, SrContent> out;
    for (const fs::path& sr : FilesIn(pacs_.dir())) {
      auto content = ReadStructuredReport(sr.string());
      EXPECT_TRUE(content.ok()) << sr << ": " << content.status().ToString();
      if (content.ok()) out[content->study_uid] = std::move(*content);
    }
    return out;
  }

  TempDir dir_{"pxs-pg-e2e"};
  PostgresServer pg_;
  std::string url_;
  std::string ralo_;
  PacsPeer pacs_{dir_.path() / "pacs"};
  SiteNode a_, b_;
};

TEST_F(PostgresEndToEnd, FollowUpAtNodeBComparesWithTheBaselineNodeAScoredAndEachInstanceIsStoredOnce) {
  std::vector<fs::path> files = MakeStudies("ralo", {"--max-subjects", "1", "--min-exams", "2", "--max-exams", "2"});
  ASSERT_EQ(files.size(), 2u);
  Start(a_);
  Start(b_);
  SendAndWaitForSr(a_, files[0]);  // the baseline at site A
  SendAndWaitForSr(b_, files[1]);  // the follow-up at site B
  auto srs = SrsByStudy();
  ASSERT_EQ(srs.size(), 2u);

  // A's SR of the baseline is not compared; B's of the follow-up compares with A's score.
  Json history = Json::parse(Pxsctl({"history", PatientOf(files[0]), "--issuer", "RALO", "--json"}).output, nullptr, false);
  ASSERT_TRUE(history.is_object()) << "pxsctl history --db " << url_;
  ASSERT_EQ(history["courses"].size(), 1u) << history.dump(1);
  const Json& course = history["courses"][0]["studies"];
  ASSERT_EQ(course.size(), 2u) << history.dump(1);
  const std::string baseline_study = course[0]["study_uid"], follow_up_study = course[1]["study_uid"];
  const SrContent& baseline = srs.at(baseline_study);
  const SrContent& follow_up = srs.at(follow_up_study);
  ASSERT_FALSE(baseline.groups.empty());
  ASSERT_GE(follow_up.groups.size(), 2u) << "B's SR lists A's study as its prior";
  EXPECT_FALSE(baseline.groups[0].pxs_change.has_value());
  ASSERT_TRUE(follow_up.groups[0].pxs_change.has_value()) << "B's SR is not compared with A's study";
  ASSERT_TRUE(baseline.groups[0].pxs && follow_up.groups[0].pxs);
  EXPECT_NEAR(*follow_up.groups[0].pxs_change, *follow_up.groups[0].pxs - *baseline.groups[0].pxs, 1e-6);
  EXPECT_EQ(follow_up.groups[1].study_uid, baseline_study);
  EXPECT_NEAR(*follow_up.groups[1].pxs, *baseline.groups[0].pxs, 1e-9) << "the prior in B's SR is A's score";
  // dsrdump shows the same: the follow-up's SR names the baseline study's value.
  const fs::path follow_up_file = [&] {
    for (const fs::path& f : FilesIn(pacs_.dir())) {
      auto c = ReadStructuredReport(f.string());
      if (c.ok() && c->study_uid == follow_up_study) return f;
    }
    return fs::path();
  }();
  CommandResult dump = RunCommand({"dsrdump", follow_up_file.string()}, (dir_.path() / "dsrdump.log").string());
  ASSERT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_NE(dump.output.find("Baseline"), std::string::npos) << dump.output;
  EXPECT_NE(dump.output.find("Follow-up"), std::string::npos) << dump.output;
  EXPECT_NE(dump.output.find(baseline_study), std::string::npos) << dump.output;

  // The baseline again, now at B: acknowledged (it is stored), stored once, B says why.
  CommandResult again = Send(b_, {files[0]}, "storescu-again.log");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(ParseStorescuLog(again.output).succeeded.size(), 1u) << again.output;
  EXPECT_TRUE(WaitFor([&] { return b_.node->Log().find("already stored by another node") != std::string::npos; },
                      std::chrono::seconds(10)))
      << b_.node->Log();
  Json export_rows = Json::parse(Pxsctl({"export", "--format", "json"}).output, nullptr, false);
  ASSERT_TRUE(export_rows.is_array());
  EXPECT_EQ(export_rows.size(), 2u) << export_rows.dump(1);
  // No second SR, and B holds no copy of A's file.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(FilesIn(pacs_.dir()).size(), 2u);
  size_t b_files = 0;
  for (auto& e : fs::recursive_directory_iterator(b_.dir / "data" / "dicom")) b_files += e.is_regular_file();
  EXPECT_EQ(b_files, 1u) << "B keeps only the follow-up it received";
  // Every pxsctl command runs on the shared database.
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{{"patients", PatientOf(files[0]), "--json"}, {"queue", "--json"}, {"failures", "--json"},
                                             {"stats", "--json"}, {"audit", "--json"}, {"study", baseline_study, "--json"}}) {
    CommandResult r = Pxsctl(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd[0] << ": " << r.output;
  }
  CommandResult verify = Pxsctl({"--node-id", "site-b", "--data-dir", (b_.dir / "data").string(), "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

TEST_F(PostgresEndToEnd, WithPostgresStoppedNothingIsAcknowledgedAndTheNodeRecoversByItself) {
  std::vector<fs::path> files = MakeStudies("ralo", {"--max-subjects", "1", "--min-exams", "2", "--max-exams", "2"});
  ASSERT_EQ(files.size(), 2u);
  Start(a_);
  SendAndWaitForSr(a_, files[0]);
  ASSERT_TRUE(pg_.Stop());
  CommandResult refused = Send(a_, {files[1]}, "storescu-down.log");
  StorescuOutcomes outcome = ParseStorescuLog(refused.output);
  EXPECT_TRUE(outcome.succeeded.empty()) << "acknowledged while PostgreSQL was down:\n" << refused.output;
  EXPECT_EQ(outcome.out_of_resources.size(), 1u) << refused.output;
  EXPECT_TRUE(WaitFor([&] { return a_.node->Log().find("postgresql") != std::string::npos; }, std::chrono::seconds(5)))
      << "the failure is logged, naming the database";
  ASSERT_TRUE(pg_.Start()) << pg_.log();
  // The same node, not restarted: it connects again on the next C-STORE.
  SendAndWaitForSr(a_, files[1]);
  Json history =
      Json::parse(Pxsctl({"history", PatientOf(files[0]), "--issuer", "RALO", "--json"}).output, nullptr, false);
  ASSERT_TRUE(history.is_object());
  ASSERT_EQ(history["courses"].size(), 1u);
  EXPECT_EQ(history["courses"][0]["studies"].size(), 2u) << history.dump(1);
}

TEST_F(PostgresEndToEnd, ANodeKilledWithKill9ResumesItsOwnJobsAndTheOtherNodeLeavesThem) {
  std::vector<fs::path> files = MakeStudies("ralo", {"--max-subjects", "2", "--min-exams", "4", "--max-exams", "4"});
  ASSERT_EQ(files.size(), 8u);
  Start(a_);
  Start(b_);
  // kill -9 in the middle of the transfer, with acknowledged instances queued or being
  // scored.
  std::vector<std::string> argv = {"storescu", "-v", "-aec", "PXSNODE", "127.0.0.1", std::to_string(a_.port)};
  for (const fs::path& f : files) argv.push_back(f.string());
  const std::string sender_log = (dir_.path() / "storescu-batch.log").string();
  Process sender(argv, sender_log);
  auto stored = [&] {
    const std::string log = a_.node->Log();
    size_t n = 0;
    for (size_t at = log.find("status 0x0000"); at != std::string::npos; at = log.find("status 0x0000", at + 1)) ++n;
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return stored() >= 3; }, std::chrono::seconds(60))) << a_.node->Log();
  a_.node->process().Kill(SIGKILL);
  sender.Wait(std::chrono::seconds(30));
  const size_t acknowledged = ParseStorescuLog(sender.Log()).succeeded.size();
  ASSERT_GE(acknowledged, 3u) << sender.Log();
  const size_t srs_at_kill = FilesIn(pacs_.dir()).size();
  // B runs on: it must not take A's jobs (the files are A's). Give it time to try.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(FilesIn(pacs_.dir()).size(), srs_at_kill) << "B made an SR of A's instances";
  Start(a_);
  // Every instance the database holds (each acknowledged one, maybe one more whose
  // response the kill cut off) is scored by A and gets its SR (one study each).
  Json rows;
  ASSERT_TRUE(WaitFor(
      [&] {
        rows = Json::parse(Pxsctl({"export", "--format", "json"}).output, nullptr, false);
        if (!rows.is_array() || rows.empty()) return false;
        for (const Json& row : rows) {
          if (row["state"] != "scored") return false;
        }
        return FilesIn(pacs_.dir()).size() >= rows.size();
      },
      std::chrono::minutes(3)))
      << "A did not resume its jobs after kill -9: " << rows.dump(1) << "\n" << FilesIn(pacs_.dir()).size() << " SRs";
  EXPECT_GE(rows.size(), acknowledged) << "an acknowledged instance was lost";
  EXPECT_EQ(FilesIn(pacs_.dir()).size(), rows.size());
}

}  // namespace
}  // namespace pxs
