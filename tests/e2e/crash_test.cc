// The crash test: a stream of instances goes to pxsnode while it is killed with SIGKILL
// at random moments (20+ cycles) and restarted each time. At the end every instance
// that got Success is in the database and on disk, every one is scored exactly once,
// none is duplicated, and `pxsctl verify` is clean.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;

TEST(CrashTest, KillNineAtRandomMomentsLosesNothingAcknowledged) {
  TempDir dir("pxs-crash");
  uint16_t port = FreePort();
  std::string config = WriteNodeConfig(dir.path(), port);
  // 30 patients x 4 studies, small images: enough traffic for kills to land mid-stream.
  std::map<std::string, std::string> sop_of_file;
  std::vector<std::string> files;
  for (int p = 0; p < 30; ++p) {
    for (int s = 0; s < 4; ++s) {
      SyntheticCr spec;
      spec.patient_id = "CRASH-" + std::to_string(p);
      spec.study_uid = NewUid();
      spec.series_uid = NewUid();
      spec.sop_uid = NewUid();
      spec.study_date = "2026010" + std::to_string(s + 1);
      spec.rows = spec.cols = 256;
      spec.seed = static_cast<uint32_t>(p * 10 + s);
      fs::path f = dir.path() / "send" / (spec.patient_id + "-" + std::to_string(s) + ".dcm");
      fs::create_directories(f.parent_path());
      ASSERT_TRUE(WriteSyntheticCr(f.string(), spec));
      files.push_back(f.string());
      sop_of_file[f.string()] = spec.sop_uid;
    }
  }

  Node node(dir.path(), port);
  std::mt19937 rng(20261125);
  std::set<std::string> acked;
  size_t next = 0;
  const int kCycles = 20;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    ASSERT_TRUE(node.Start(config)) << "cycle " << cycle << ":\n" << node.Log();
    // Send a chunk (files already acknowledged are sent again now and then: idempotent).
    std::vector<std::string> chunk;
    for (int i = 0; i < 12; ++i) chunk.push_back(files[(next + i) % files.size()]);
    next += 8;
    std::vector<std::string> argv = {"storescu", "-v", "-aet", "CRASHER", "-aec", "PXSNODE", "127.0.0.1",
                                     std::to_string(port)};
    argv.insert(argv.end(), chunk.begin(), chunk.end());
    std::string log = (dir.path() / ("storescu-" + std::to_string(cycle) + ".log")).string();
    Process sender(argv, log);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 700));
    node.process().Kill(SIGKILL);
    sender.Wait(std::chrono::seconds(60));
    for (const std::string& f : ParseStorescuLog(sender.Log()).succeeded) acked.insert(f);
  }
  ASSERT_GT(acked.size(), 10u) << "too few acknowledged instances to mean anything";

  // Last start: let the queue drain, then stop cleanly.
  ASSERT_TRUE(node.Start(config)) << node.Log();
  std::string pxsctl = BinDir() + "/pxsctl";
  auto queue_empty = [&] {
    CommandResult q = RunCommand({pxsctl, "--config", config, "stats", "--json"}, (dir.path() / "stats.log").string());
    auto begin = q.output.find('{');
    if (q.exit_code != 0 || begin == std::string::npos) return false;
    auto j = nlohmann::json::parse(q.output.substr(begin), nullptr, false);
    if (j.is_discarded()) return false;
    auto counts = j.contains("jobs") ? j["jobs"] : j;
    int queued = counts.value("queued", 0) + counts.value("scoring", 0);
    return queued == 0;
  };
  EXPECT_TRUE(WaitFor(queue_empty, std::chrono::minutes(5)));
  // Ingest acknowledges before hashing; the hash worker catches up, across the kills too.
  auto verify_json = [&] {
    CommandResult v = RunCommand({pxsctl, "--config", config, "--json", "verify"}, (dir.path() / "verify.json").string());
    size_t begin = v.output.find('{');
    return begin == std::string::npos ? nlohmann::json() : nlohmann::json::parse(v.output.substr(begin), nullptr, false);
  };
  EXPECT_TRUE(WaitFor([&] { return verify_json().value("not_hashed_yet", -1) == 0; }, std::chrono::minutes(2)));
  node.process().Signal(SIGTERM);
  EXPECT_EQ(node.process().Wait(std::chrono::seconds(60)), 0) << node.Log();

  CommandResult exported =
      RunCommand({pxsctl, "--config", config, "export", "--format", "json"}, (dir.path() / "export.log").string());
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  auto rows = nlohmann::json::parse(exported.output.substr(exported.output.find('[')));
  std::map<std::string, int> seen;
  std::map<std::string, nlohmann::json> by_sop;
  for (const auto& row : rows) {
    std::string sop = row["sop_instance_uid"];
    ++seen[sop];
    by_sop[sop] = row;
  }
  for (const std::string& f : acked) {
    const std::string& sop = sop_of_file[f];
    SCOPED_TRACE(sop);
    ASSERT_EQ(seen[sop], 1) << "acknowledged instance missing or duplicated";
    EXPECT_EQ(by_sop[sop]["state"], "scored");
    EXPECT_FALSE(by_sop[sop]["pxs"].is_null());
  }
  for (const auto& [sop, n] : seen) EXPECT_EQ(n, 1) << sop << " appears " << n << " times";

  CommandResult verify = RunCommand({pxsctl, "--config", config, "verify"}, (dir.path() / "verify.log").string());
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  nlohmann::json report = verify_json();
  EXPECT_EQ(report.value("not_hashed_yet", -1), 0) << report.dump();
  EXPECT_TRUE(report.value("ok", false)) << report.dump();
}

}  // namespace
}  // namespace pxs
