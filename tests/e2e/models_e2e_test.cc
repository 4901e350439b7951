// Several models per node, end to end (issue 12): the real pxsnode with both demo
// packages, storescu as the modality, storescp as the PACS, dciodvfy and dsrdump on the
// SRs, `pxsctl` on the database.
//
//  * a frontal chest gets one score and one SR per model; each SR has its own tracking
//    identifier/UID and algorithm name/version, and a follow-up study is compared only
//    with the same model's earlier study; `pxsctl history --model` and `export` name
//    the model; a hand radiograph is stored and recorded as "no model applies" with
//    each model's reason;
//  * SIGHUP adds a model, replaces a package by a new version and removes a model while
//    an association keeps sending: the association ends with every C-STORE a Success,
//    and every score records the version that made it;
//  * a package that fails to load (at start, or on SIGHUP in place of a running one)
//    leaves the others running, with the reason logged;
//  * `pxsnode --check-config` refuses an unknown route key, two models with one name
//    and a package whose preprocessing the node cannot do, naming the key.
//
// Needs ../shared/data (ralo for the chest studies, dicom for the hand image) and
// Debian's /usr/bin/python3 with torch (to write package variants); skips without them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "../support/node_process.h"
#include "../support/pacs_peer.h"
#include "../support/shared_data.h"
#include "pxs/reports/sr_reader.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using Json = nlohmann::json;

const std::string kChest = "pxs-demo-cxr14";
const std::string kEdema = "pxs-demo-edema";

std::string DemoPackage(const std::string& name) { return std::string(PXS_SOURCE_DIR) + "/models/" + name + ".pt"; }

// One [[models]] table (no route: the default frontal-chest route).
struct ModelConf {
  std::string name;
  std::string package;
  std::string extra;  // more lines of the table, e.g. a [models.route]
};

class ModelsEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string data = SharedDataDir();
    if (data.empty() || !fs::exists(data + "/ralo/scores.csv")) {
      GTEST_SKIP() << "SKIPPED: ../shared/data (ralo, dicom) not found (shared test data is not present on this machine)";
    }
    data_ = data;
    CommandResult torch = RunCommand({"/usr/bin/python3", "-c", "import torch"}, (dir_.path() / "torch.log").string());
    if (torch.exit_code != 0) GTEST_SKIP() << "SKIPPED: /usr/bin/python3 has no torch (needed to write package variants)";
    ASSERT_TRUE(pacs_.Start((dir_.path() / "storescp.log").string()));
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }

  // The node's config with these [[models]] (and no [scoring] model); scoring starts at
  // once (no yield to ingest), SRs go to the test's storescp.
  std::string WriteConfig(const std::vector<ModelConf>& models) {
    const fs::path path = dir_.path() / "pxsnode.toml";
    std::ofstream out(path.string() + ".tmp");
    out << "[node]\nae_title = \"PXSNODE\"\nbind = \"127.0.0.1\"\nport = " << node_port_ << "\ndata_dir = \""
        << (dir_.path() / "data").string() << "\"\nlog_level = \"info\"\n"
        << "[scp]\nshutdown_grace_s = 10\nmin_free_gb = 0.0\nmin_free_percent = 0.0\n"
        << "[scoring]\ndevice = \"cpu\"\nintra_op_threads = 1\nmax_wait_ms = 20\nyield_to_ingest_ms = 0\n";
    for (const ModelConf& m : models) {
      out << "[[models]]\nname = \"" << m.name << "\"\npackage = \"" << m.package << "\"\n" << m.extra;
    }
    out << pacs_.ConfigTail();
    out.close();
    fs::rename(path.string() + ".tmp", path);  // SIGHUP must never read half a file
    return path.string();
  }
  void StartNode(const std::vector<ModelConf>& models) {
    node_ = std::make_unique<Node>(dir_.path(), node_port_);
    ASSERT_TRUE(node_->Start(WriteConfig(models))) << node_->Log();
  }
  // Rewrites the config, sends SIGHUP and waits for the log to show `expect` (counted
  // past what the log held before, so an earlier identical line does not count).
  void Reload(const std::vector<ModelConf>& models, const std::string& expect) {
    const size_t before = node_->Log().size();
    WriteConfig(models);
    node_->process().Signal(SIGHUP);
    ASSERT_TRUE(WaitFor([&] { return node_->Log().find(expect, before) != std::string::npos; }, std::chrono::seconds(90)))
        << "after SIGHUP the log never said: " << expect;
  }

  // Real ralo courses as DICOM CR studies (AP chest, 224x224), with their index rows.
  std::vector<std::map<std::string, std::string>> MakeStudies(const std::string& name, const std::vector<std::string>& args) {
    const fs::path out = dir_.path() / name;
    CommandResult made = MakeRaloStudies(out, data_ + "/ralo", args, (dir_.path() / (name + ".log")).string());
    EXPECT_EQ(made.exit_code, 0) << made.output;
    auto rows = ReadManifest((out / "index.csv").string());
    for (auto& r : rows) r["path"] = (out / r["file"]).string();
    return rows;
  }
  // A copy of a package with other metadata: `edit` is Python run on the dict `m`.
  std::string PackageVariant(const std::string& from, const std::string& to, const std::string& edit) {
    const std::string script =
        "import json, sys, torch\n"
        "extra = {'metadata.json': ''}\n"
        "mod = torch.jit.load(sys.argv[1], map_location='cpu', _extra_files=extra)\n"
        "m = json.loads(extra['metadata.json'])\n" +
        edit +
        "\n"
        "torch.jit.save(mod, sys.argv[2], _extra_files={'metadata.json': json.dumps(m)})\n";
    CommandResult r = RunCommand({"/usr/bin/python3", "-c", script, from, to}, (dir_.path() / "variant.log").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return to;
  }
  CommandResult Send(const std::vector<std::string>& files, const std::vector<std::string>& options = {}) {
    std::vector<std::string> argv = {"storescu", "-v", "-aec", "PXSNODE"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("127.0.0.1");
    argv.push_back(std::to_string(node_port_));
    argv.insert(argv.end(), files.begin(), files.end());
    return RunCommand(argv, (dir_.path() / "storescu.log").string());
  }
  Json Pxsctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinDir() + "/pxsctl", "--db", (node_->data_dir() / "pxsnode.db").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--json");
    CommandResult r = RunCommand(argv, (dir_.path() / "pxsctl.log").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return Json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  }
  // `pxsctl export --format json` rows of one instance, by model label ("name version").
  std::map<std::string, Json> ScoresOf(const std::string& sop_uid) {
    std::map<std::string, Json> out;
    const Json rows = Pxsctl({"export", "--format", "json"});
    if (!rows.is_array()) return out;
    for (const Json& r : rows) {
      if (r["sop_instance_uid"] == sop_uid && !r["pxs"].is_null()) out[r["model"].get<std::string>()] = r;
    }
    return out;
  }
  bool HasScore(const std::string& sop_uid, const std::string& model_label) {
    return ScoresOf(sop_uid).count(model_label) > 0;
  }
  int QueuedJobs() {
    const Json q = Pxsctl({"queue"});
    return q.is_object() ? q.value("queued", 0) + q.value("scoring", 0) : -1;
  }

  TempDir dir_{"pxs-models-e2e"};
  std::string data_;
  uint16_t node_port_ = FreePort();
  fs::path pacs_dir_ = dir_.path() / "pacs";
  PacsPeer pacs_{pacs_dir_};
  std::unique_ptr<Node> node_;
};

TEST_F(ModelsEndToEnd, AFrontalChestGetsAScoreAndAnSrPerModelAndAHandGetsNoModel) {
  // Two exams of one real course: the second is a follow-up each model compares with
  // its own score of the first.
  auto exams = MakeStudies("ralo", {"--max-subjects", "1", "--min-exams", "2", "--max-exams", "2"});
  ASSERT_EQ(exams.size(), 2u);
  StartNode({{kChest, DemoPackage(kChest), ""}, {kEdema, DemoPackage(kEdema), ""}});
  for (size_t i = 0; i < exams.size(); ++i) {
    CommandResult sent = Send({exams[i]["path"]});
    ASSERT_EQ(sent.exit_code, 0) << sent.output;
    ASSERT_TRUE(WaitFor([&] { return FilesIn(pacs_dir_, "SR").size() >= 2 * (i + 1); }, std::chrono::minutes(2)))
        << "expected one SR per model for exam " << i + 1 << ", have " << FilesIn(pacs_dir_, "SR").size();
  }
  // One score per model, each with the package's version.
  for (const auto& exam : exams) {
    auto scores = ScoresOf(exam.at("sop_instance_uid"));
    EXPECT_EQ(scores.size(), 2u) << exam.at("file");
    EXPECT_TRUE(scores.count(kChest + " 2.0.0")) << exam.at("file");
    EXPECT_TRUE(scores.count(kEdema + " 1.0.0")) << exam.at("file");
  }

  std::map<std::string, std::vector<SrContent>> by_model;  // SRs of each model, in arrival order
  std::set<std::string> tracking_uids_first_model, tracking_uids_second_model;
  for (const fs::path& sr : FilesIn(pacs_dir_, "SR")) {
    SCOPED_TRACE(sr.string());
    CommandResult v = RunCommand({"dciodvfy", sr.string()}, (dir_.path() / "dciodvfy.log").string());
    EXPECT_EQ(v.output.find("Error"), std::string::npos) << v.output;
    CommandResult dump = RunCommand({"dsrdump", sr.string()}, (dir_.path() / "dsrdump.log").string());
    EXPECT_EQ(dump.exit_code, 0) << dump.output;
    EXPECT_NE(dump.output.find("Tracking Identifier"), std::string::npos) << dump.output;
    auto content = ReadStructuredReport(sr.string());
    ASSERT_TRUE(content.ok()) << content.status().ToString();
    ASSERT_FALSE(content->groups.empty());
    const SrMeasurementGroupContent& current = content->groups[0];
    EXPECT_TRUE(current.algorithm_name == kChest || current.algorithm_name == kEdema) << current.algorithm_name;
    EXPECT_EQ(current.algorithm_version, current.algorithm_name == kChest ? "2.0.0" : "1.0.0");
    EXPECT_NE(current.tracking_identifier.find(current.algorithm_name), std::string::npos)
        << "tracking identifier '" << current.tracking_identifier << "' does not name the model";
    EXPECT_NE(dump.output.find(current.algorithm_name), std::string::npos);
    by_model[current.algorithm_name].push_back(*content);
  }
  ASSERT_EQ(by_model.size(), 2u);
  std::map<std::string, std::string> tracking_uid_of;  // model -> the patient's tracking UID
  for (const auto& [model, srs] : by_model) {
    ASSERT_EQ(srs.size(), 2u) << model << ": one SR per study";
    for (const SrContent& sr : srs) {
      const SrMeasurementGroupContent& current = sr.groups[0];
      // One tracking UID per (model, patient): the same in both of a model's SRs.
      if (tracking_uid_of.count(model)) EXPECT_EQ(tracking_uid_of[model], current.tracking_uid) << model;
      tracking_uid_of[model] = current.tracking_uid;
      for (size_t g = 1; g < sr.groups.size(); ++g) {
        // Priors carry this model's own values only (an other-model prior would need a note).
        EXPECT_EQ(sr.groups[g].algorithm_name, model) << "a prior of another model in " << model << "'s SR";
        EXPECT_EQ(sr.groups[g].tracking_uid, current.tracking_uid);
      }
    }
  }
  EXPECT_NE(tracking_uid_of[kChest], tracking_uid_of[kEdema]) << "each model tracks its own finding";

  // The follow-up's change in each model's SR is that model's own difference.
  for (const auto& [model, srs] : by_model) {
    const SrContent* follow_up = nullptr;
    for (const SrContent& sr : srs) {
      if (sr.groups[0].study_uid == exams[1]["study_uid"]) follow_up = &sr;
    }
    ASSERT_NE(follow_up, nullptr) << model;
    ASSERT_TRUE(follow_up->groups[0].pxs_change.has_value()) << model << ": follow-up not compared";
    const std::string label = model + (model == kChest ? " 2.0.0" : " 1.0.0");
    const double first = ScoresOf(exams[0]["sop_instance_uid"])[label]["pxs"].get<double>();
    const double second = ScoresOf(exams[1]["sop_instance_uid"])[label]["pxs"].get<double>();
    EXPECT_NEAR(*follow_up->groups[0].pxs_change, second - first, 1e-9) << model;
  }

  // pxsctl history: one course per model; --model picks one.
  const std::string patient = exams[0]["patient_id"];
  Json history = Pxsctl({"history", patient, "--issuer", "RALO"});
  ASSERT_EQ(history["courses"].size(), 2u) << history.dump(1);
  Json edema_only = Pxsctl({"history", patient, "--issuer", "RALO", "--model", kEdema});
  ASSERT_EQ(edema_only["courses"].size(), 1u) << edema_only.dump(1);
  EXPECT_EQ(edema_only["courses"][0]["model_name"], kEdema);
  ASSERT_EQ(edema_only["courses"][0]["studies"].size(), 2u);
  EXPECT_NE(edema_only["courses"][0]["studies"][1]["trend"], "not compared");
  EXPECT_EQ(Pxsctl({"history", patient, "--issuer", "RALO", "--model", kChest})["courses"][0]["model_name"], kChest);

  // The hand radiograph: stored, no job, recorded as "no model applies" with each
  // model's reason, shown by `pxsctl study`.
  const std::string hand = data_ + "/dicom/cr_hand_not_chest.dcm";
  CommandResult sent = Send({hand});
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  EXPECT_NE(sent.output.find("Received Store Response (Success)"), std::string::npos) << sent.output;
  CommandResult uid = RunCommand({"dcmdump", "+P", "StudyInstanceUID", "-q", hand}, (dir_.path() / "dcmdump.log").string());
  const size_t open = uid.output.find('['), close = uid.output.find(']');
  ASSERT_NE(close, std::string::npos) << uid.output;
  const std::string hand_study = uid.output.substr(open + 1, close - open - 1);
  Json study = Pxsctl({"study", hand_study});
  ASSERT_TRUE(study.is_array() && !study.empty()) << study.dump(1);
  const std::string text = study.dump();
  EXPECT_NE(text.find("no model applies"), std::string::npos) << text;
  EXPECT_NE(text.find(kChest + ": BodyPartExamined HAND"), std::string::npos) << text;
  EXPECT_NE(text.find(kEdema + ": BodyPartExamined HAND"), std::string::npos) << text;
  EXPECT_NE(text.find("skipped"), std::string::npos) << text;
}

TEST_F(ModelsEndToEnd, SighupAddsReplacesAndRemovesModelsWhileAnAssociationSends) {
  // Background: 40 real CR studies sent over and over in one association (repeats are
  // identical re-sends, stored once) while the models change under it.
  auto studies = MakeStudies("ralo", {"--max-subjects", "9", "--min-exams", "5", "--max-exams", "5"});
  ASSERT_GE(studies.size(), 43u);
  auto x = studies[40], y = studies[41], z = studies[42];
  std::vector<std::string> background;
  for (size_t i = 0; i < 40; ++i) background.push_back(studies[i]["path"]);

  // The chest model's package lives in the test folder so it can be replaced in place.
  const std::string chest_pkg = (dir_.path() / "chest.pt").string();
  fs::copy_file(DemoPackage(kChest), chest_pkg);
  const std::string chest_next =
      PackageVariant(DemoPackage(kChest), (dir_.path() / "chest-next.pt").string(), "m['version'] = '2.0.1'");
  const ModelConf chest{kChest, chest_pkg, ""}, edema{kEdema, DemoPackage(kEdema), ""};
  StartNode({chest});

  const std::string bg_log = (dir_.path() / "storescu-background.log").string();
  std::vector<std::string> argv = {"storescu", "-v", "--repeat", "60", "-aec", "PXSNODE", "127.0.0.1",
                                   std::to_string(node_port_)};
  argv.insert(argv.end(), background.begin(), background.end());
  Process sender(argv, bg_log);
  ASSERT_TRUE(WaitFor([&] { return sender.Log().find("Received Store Response (Success)") != std::string::npos; },
                      std::chrono::seconds(60)))
      << sender.Log();

  // Add the edema model: the next image gets a job for both.
  Reload({chest, edema}, "SIGHUP: model " + kEdema + " (");
  ASSERT_EQ(Send({x["path"]}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return HasScore(x["sop_instance_uid"], kEdema + " 1.0.0"); }, std::chrono::minutes(2)));
  EXPECT_TRUE(WaitFor([&] { return HasScore(x["sop_instance_uid"], kChest + " 2.0.0"); }, std::chrono::minutes(2)));

  // Replace the chest package by version 2.0.1 (same path, new file): the next image
  // is scored by 2.0.1, and the version is recorded.
  fs::rename(chest_next, chest_pkg);
  Reload({chest, edema}, "SIGHUP: model " + kChest + " (" + kChest + " 2.0.1)");
  ASSERT_EQ(Send({y["path"]}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return HasScore(y["sop_instance_uid"], kChest + " 2.0.1"); }, std::chrono::minutes(2)))
      << Json(ScoresOf(y["sop_instance_uid"])).dump();

  // Remove the edema model: the next image gets no job for it.
  Reload({chest}, "SIGHUP: model " + kEdema + " unloaded");
  ASSERT_EQ(Send({z["path"]}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return HasScore(z["sop_instance_uid"], kChest + " 2.0.1"); }, std::chrono::minutes(2)));

  // The association was still open through all three reloads, and ends with every
  // C-STORE a Success.
  const int still_running = sender.Wait(std::chrono::milliseconds(0));
  EXPECT_EQ(still_running, -1) << "the background association ended before the reloads were done; the test "
                                  "proves nothing about dropped associations (make --repeat larger)";
  const int rc = still_running == -1 ? sender.Wait(std::chrono::minutes(5)) : still_running;
  const std::string log = sender.Log();
  EXPECT_EQ(rc, 0) << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
  const StorescuOutcomes outcomes = ParseStorescuLog(log);
  EXPECT_EQ(outcomes.succeeded.size(), background.size());
  size_t responses = 0;
  for (size_t at = log.find("Received Store Response"); at != std::string::npos;
       at = log.find("Received Store Response", at + 1)) {
    ++responses;
  }
  size_t successes = 0;
  for (size_t at = log.find("Received Store Response (Success)"); at != std::string::npos;
       at = log.find("Received Store Response (Success)", at + 1)) {
    ++successes;
  }
  EXPECT_EQ(responses, 60 * background.size());
  EXPECT_EQ(successes, responses) << "a C-STORE was not a Success";
  EXPECT_EQ(log.find("Association Aborted"), std::string::npos);

  EXPECT_TRUE(WaitFor([&] { return QueuedJobs() == 0; }, std::chrono::minutes(3))) << Pxsctl({"queue"}).dump(1);
  // Every background image has exactly one chest score, from a version that was loaded
  // (2.0.0 or 2.0.1); z has no edema score or job.
  const Json rows = Pxsctl({"export", "--format", "json"});
  std::map<std::string, int> chest_scores;
  std::set<std::string> versions;
  for (const Json& r : rows) {
    const std::string model = r["model"];
    if (r["pxs"].is_null() || model.rfind(kChest + " ", 0) != 0) continue;
    ++chest_scores[r["sop_instance_uid"]];
    versions.insert(model.substr(kChest.size() + 1));
  }
  for (size_t i = 0; i < 40; ++i) EXPECT_EQ(chest_scores[studies[i]["sop_instance_uid"]], 1) << studies[i]["file"];
  for (const std::string& v : versions) EXPECT_TRUE(v == "2.0.0" || v == "2.0.1") << v;
  EXPECT_FALSE(ScoresOf(z["sop_instance_uid"]).count(kEdema + " 1.0.0"));
  EXPECT_EQ(ScoresOf(x["sop_instance_uid"]).at(kChest + " 2.0.0")["model"], kChest + " 2.0.0");
}

TEST_F(ModelsEndToEnd, APackageThatFailsToLoadLeavesTheOthersRunning) {
  auto studies = MakeStudies("ralo", {"--max-subjects", "2", "--min-exams", "1", "--max-exams", "1"});
  ASSERT_EQ(studies.size(), 2u);
  const std::string broken = (dir_.path() / "broken.pt").string();
  std::ofstream(broken) << "not a TorchScript archive";
  const std::string chest_pkg = (dir_.path() / "chest.pt").string();
  fs::copy_file(DemoPackage(kChest), chest_pkg);
  const ModelConf chest{kChest, chest_pkg, ""}, bad{"broken-model", broken, ""};

  // At start: the broken one is logged with its reason, the chest model serves.
  StartNode({chest, bad});
  const std::string log = node_->Log();
  const size_t at = log.find("model not loaded: ");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(line.find("broken-model: "), std::string::npos) << "the reason names the [[models]] entry: " << line;
  EXPECT_NE(line.find(broken), std::string::npos) << "the reason names the package: " << line;
  EXPECT_NE(line.find("TorchScript"), std::string::npos) << "the reason says what is wrong: " << line;
  ASSERT_EQ(Send({studies[0]["path"]}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return HasScore(studies[0]["sop_instance_uid"], kChest + " 2.0.0"); }, std::chrono::minutes(2)));
  EXPECT_EQ(ScoresOf(studies[0]["sop_instance_uid"]).size(), 1u) << "no job for a model that is not loaded";

  // On SIGHUP: the chest package is overwritten by garbage; the running version keeps
  // serving and the reason is logged.
  fs::copy_file(broken, chest_pkg, fs::copy_options::overwrite_existing);
  Reload({chest, bad}, "SIGHUP: model not loaded: " + kChest + ": model package " + chest_pkg);
  EXPECT_NE(node_->Log().find("(version 2.0.0 keeps running)"), std::string::npos);
  ASSERT_EQ(Send({studies[1]["path"]}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return HasScore(studies[1]["sop_instance_uid"], kChest + " 2.0.0"); }, std::chrono::minutes(2)))
      << node_->Log();
  node_->process().Signal(SIGTERM);
  EXPECT_EQ(node_->process().Wait(std::chrono::seconds(60)), 0);
}

TEST_F(ModelsEndToEnd, CheckConfigNamesTheKeyOfABadModelsTable) {
  node_ = std::make_unique<Node>(dir_.path(), node_port_);  // for data_dir only; not started
  auto check = [&](const std::vector<ModelConf>& models) {
    return RunCommand({BinDir() + "/pxsnode", "--check-config", WriteConfig(models)},
                      (dir_.path() / "check.log").string());
  };
  const ModelConf chest{kChest, DemoPackage(kChest), ""}, edema{kEdema, DemoPackage(kEdema), ""};
  CommandResult good = check({chest, edema});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find(kEdema), std::string::npos) << good.output;

  CommandResult unknown_key = check({chest, {kEdema, DemoPackage(kEdema), "[models.route]\nbody_parts = [\"CHEST\"]\n"}});
  EXPECT_EQ(unknown_key.exit_code, 1) << unknown_key.output;
  EXPECT_NE(unknown_key.output.find("body_parts"), std::string::npos) << unknown_key.output;
  EXPECT_NE(unknown_key.output.find("route"), std::string::npos) << unknown_key.output;

  CommandResult same_name = check({chest, {kChest, DemoPackage(kEdema), ""}});
  EXPECT_EQ(same_name.exit_code, 1) << same_name.output;
  EXPECT_NE(same_name.output.find(kChest), std::string::npos) << same_name.output;
  EXPECT_NE(same_name.output.find("name"), std::string::npos) << same_name.output;

  // A package asking for an intensity mapping the node does not have.
  const std::string clahe = PackageVariant(DemoPackage(kEdema), (dir_.path() / "clahe.pt").string(),
                                           "m['preprocessing']['intensity'] = 'clahe'");
  CommandResult bad_pre = check({chest, {kEdema, clahe, ""}});
  EXPECT_EQ(bad_pre.exit_code, 1) << bad_pre.output;
  EXPECT_NE(bad_pre.output.find("intensity"), std::string::npos) << bad_pre.output;
  EXPECT_NE(bad_pre.output.find("clahe"), std::string::npos) << bad_pre.output;
  EXPECT_NE(bad_pre.output.find(kEdema), std::string::npos) << bad_pre.output;
}

}  // namespace
}  // namespace pxs
