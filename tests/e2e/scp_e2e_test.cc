// End-to-end tests of the Storage SCP: the real pxsnode binary on a free loopback port,
// DCMTK's own echoscu and storescu as senders, the real SQLite database read back.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <dcmtk/dcmnet/scu.h>

#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "pxs/common/files.h"
#include "pxs/imaging/dicom_decoder.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;

class ScpEndToEnd : public ::testing::Test {
 protected:
  void StartNode(const std::string& scp_lines = "", const std::string& tail = "") {
    port_ = FreePort();
    config_ = WriteNodeConfig(dir_.path(), port_, scp_lines, tail);
    node_ = std::make_unique<Node>(dir_.path(), port_);
    ASSERT_TRUE(node_->Start(config_)) << "pxsnode did not start:\n" << node_->Log();
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }

  CommandResult Dcmtk(std::vector<std::string> argv) {
    return RunCommand(argv, (dir_.path() / ("cmd-" + std::to_string(++commands_) + ".log")).string());
  }
  CommandResult Echo(const std::string& calling = "ECHOSCU", const std::string& called = "PXSNODE") {
    return Dcmtk({"echoscu", "-v", "-aet", calling, "-aec", called, "127.0.0.1", std::to_string(port_)});
  }
  // storescu of some files in their own transfer syntaxes.
  CommandResult Store(const std::vector<std::string>& files, const std::string& calling = "STORESCU",
                      bool with_profile = true) {
    std::vector<std::string> argv = {"storescu", "-v", "-nh", "-aet", calling, "-aec", "PXSNODE"};
    std::string data = SharedDataDir();
    if (with_profile && !data.empty()) {
      argv.insert(argv.end(), {"-xf", data + "/dicom/dcmtk-pxs.cfg", "SendAll"});
    }
    argv.insert(argv.end(), {"127.0.0.1", std::to_string(port_)});
    argv.insert(argv.end(), files.begin(), files.end());
    return Dcmtk(argv);
  }
  std::unique_ptr<Database> OpenDb() {
    auto db = Database::Open(DatabasePathFor(node_->data_dir().string()), Database::Mode::kReadOnly);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    return db.ok() ? std::move(*db) : nullptr;
  }
  std::vector<fs::path> StoredFiles() {
    std::vector<fs::path> files;
    for (auto& e : fs::recursive_directory_iterator(node_->data_dir() / "dicom")) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    return files;
  }

  TempDir dir_{"pxs-e2e"};
  uint16_t port_ = 0;
  std::string config_;
  std::unique_ptr<Node> node_;
  int commands_ = 0;
};

// SHA-256 of the decoded stored pixel values, as shared/data/dicom/README.md defines it.
std::string DecodedPixelSha256(const std::string& path) {
  auto img = imaging::DecodeDicomFile(path);
  if (!img.ok()) return "decode failed: " + img.status().ToString();
  std::string bytes;
  if (img->bits_allocated == 8) {
    for (uint16_t v : img->pixels) bytes.push_back(static_cast<char>(v));
  } else {
    for (uint16_t v : img->pixels) {
      bytes.push_back(static_cast<char>(v & 0xff));
      bytes.push_back(static_cast<char>(v >> 8));
    }
  }
  return Sha256Hex(bytes);
}

TEST_F(ScpEndToEnd, EchoWorksAndWrongAeTitlesAreRefused) {
  StartNode("allowed_calling_aes = [\"ECHOSCU\", \"STORESCU\"]\n");
  CommandResult ok = Echo();
  EXPECT_EQ(ok.exit_code, 0) << ok.output;

  CommandResult stranger = Echo("STRANGER");
  EXPECT_NE(stranger.exit_code, 0) << stranger.output;
  EXPECT_NE(stranger.output.find("Calling AE Title Not Recognized"), std::string::npos) << stranger.output;

  CommandResult wrong_called = Echo("ECHOSCU", "NOTPXS");
  EXPECT_NE(wrong_called.exit_code, 0) << wrong_called.output;
  EXPECT_NE(wrong_called.output.find("Called AE Title Not Recognized"), std::string::npos) << wrong_called.output;

  // SIGHUP reloads the allowlist: STRANGER is let in once the file says so.
  std::string text;
  {
    std::ifstream in(config_);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  size_t at = text.find("\"STORESCU\"");
  ASSERT_NE(at, std::string::npos);
  text.insert(at, "\"STRANGER\", ");
  std::ofstream(config_) << text;
  node_->process().Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return node_->Log().find("SIGHUP: reloaded") != std::string::npos; },
                      std::chrono::seconds(10)));
  EXPECT_EQ(Echo("STRANGER").exit_code, 0);
}

TEST_F(ScpEndToEnd, DiskGuardRefusesAssociationsTransiently) {
  // A floor of 99% free can never be met here (the test's own files use some space).
  StartNode("min_free_gb = 0.0\nmin_free_percent = 99.0\n");
  CommandResult r = Echo();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Transient"), std::string::npos) << r.output;
  EXPECT_NE(node_->Log().find("disk guard"), std::string::npos);
}

// Memory mappings of a process (each thread stack left unjoined adds two).
size_t MappingCount(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(maps), {}, '\n'));
}

TEST_F(ScpEndToEnd, ManyShortAssociationsNeitherCrashNorLeakThreads) {
  // Refused at once by the disk guard, and bare TCP probes (port scanners, load-balancer
  // health checks) that never send an association request: the fastest ways through an
  // association thread, which once raced DCMTK's thread start into freed memory.
  StartNode("min_free_gb = 0.0\nmin_free_percent = 99.0\n");
  pid_t pid = node_->process().pid();
  size_t mappings_before = MappingCount(pid);
  constexpr int kProbes = 300;
  for (int i = 0; i < kProbes; ++i) ASSERT_TRUE(PortOpen(port_)) << "probe " << i << ":\n" << node_->Log();
  CommandResult refused = Echo();
  EXPECT_NE(refused.output.find("Transient"), std::string::npos) << refused.output;
  // Each association thread used to stay behind unjoined (two mappings, its 8 MB stack);
  // a few more mappings for allocator arenas are fine, one per probe is a leak.
  size_t mappings_after = MappingCount(pid);
  EXPECT_LT(mappings_after, mappings_before + kProbes / 4) << mappings_before << " -> " << mappings_after;
  EXPECT_TRUE(::kill(pid, 0) == 0) << node_->Log();
  // Its threads say what they are (for `top -H` on a busy node).
  std::set<std::string> names;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names.insert(name);
  }
  for (const char* expected : {"pxs-listen", "pxs-commit", "pxs-score", "pxs-report", "pxs-send"}) {
    EXPECT_TRUE(names.count(expected)) << expected << " not among the node's threads";
  }
  node_->process().Signal(SIGTERM);
  EXPECT_EQ(node_->process().Wait(std::chrono::seconds(60)), 0) << node_->Log();
}

TEST_F(ScpEndToEnd, EveryManifestFileIsHandledAsTheManifestSays) {
  std::string data = SharedDataDir();
  PXS_SKIP_WITHOUT_SHARED_DATA(data);
  StartNode();
  auto manifest = ReadManifest(data + "/dicom/manifest.csv");
  std::vector<std::string> files;
  for (auto& row : manifest) files.push_back(data + "/dicom/" + row["file"]);
  CommandResult sent = Store(files);

  auto db = OpenDb();
  ASSERT_TRUE(db);
  int stored = 0;
  for (auto& row : manifest) {
    SCOPED_TRACE(row["file"]);
    // The SOP Instance UID of the file, to look it up.
    DcmFileFormat ff;
    ASSERT_TRUE(ff.loadFile((data + "/dicom/" + row["file"]).c_str(), EXS_Unknown, EGL_noChange, 1024).good());
    OFString sop, study, series;
    ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sop);
    ff.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, study);
    ff.getDataset()->findAndGetOFString(DCM_SeriesInstanceUID, series);
    auto has = db->HasInstance(sop.c_str());
    ASSERT_TRUE(has.ok());
    if (row["expected_scp"] != "store") {
      EXPECT_FALSE(*has) << "should have been rejected";
      continue;
    }
    ++stored;
    ASSERT_TRUE(*has) << "not stored; storescu said:\n" << sent.output;
    fs::path stored_path = node_->data_dir() / "dicom" / study.c_str() / series.c_str() / (std::string(sop.c_str()) + ".dcm");
    ASSERT_TRUE(fs::exists(stored_path)) << stored_path;
    // The stored data set decodes to the same pixels as the manifest says was sent.
    std::string hash = DecodedPixelSha256(stored_path.string());
    if (row["lossless"] == "yes" || row["transfer_syntax_uid"].find("1.2.840.10008.1.2.4") == std::string::npos) {
      EXPECT_EQ(hash, row["decoded_sha256"]);
    } else {
      EXPECT_EQ(hash.rfind("decode failed", 0), std::string::npos) << hash;
    }
  }
  EXPECT_EQ(static_cast<int>(StoredFiles().size()), stored);
  EXPECT_NE(sent.output.find("No presentation context for: (CT)"), std::string::npos)
      << "the CT file should have found no accepted presentation context";
}

TEST_F(ScpEndToEnd, BadFilesGetTheManifestStatusOverTheNetwork) {
  std::string data = SharedDataDir();
  PXS_SKIP_WITHOUT_SHARED_DATA(data);
  StartNode();
  for (auto& row : ReadManifest(data + "/dicom/bad/manifest.csv")) {
    if (row["dcmtk_storescu"].rfind("sent", 0) != 0) continue;  // storescu cannot send it (tested in scp_ingest_test)
    SCOPED_TRACE(row["file"]);
    CommandResult r = Store({data + "/dicom/bad/" + row["file"]}, "STORESCU", /*with_profile=*/false);
    const std::string& expected = row["expected_handling"];
    if (expected.rfind("Success", 0) == 0 || expected.find("colour") != std::string::npos) {
      EXPECT_NE(r.output.find("Received Store Response (Success)"), std::string::npos) << r.output;
    } else {
      bool refused = r.output.find("DataSetDoesNotMatchSOPClass") != std::string::npos ||
                     r.output.find("CannotUnderstand") != std::string::npos ||
                     r.output.find("0xa900") != std::string::npos || r.output.find("0xc000") != std::string::npos;
      EXPECT_TRUE(refused) << r.output;
    }
  }
  EXPECT_FALSE(fs::exists(dir_.path() / "pxs-path-traversal-test"));
  EXPECT_FALSE(fs::exists(dir_.path().parent_path() / "pxs-path-traversal-test"));
  for (const fs::path& f : StoredFiles()) {
    EXPECT_EQ(fs::relative(f, node_->data_dir()).string().find(".."), std::string::npos) << f;
  }
  // The node is still up and well.
  EXPECT_EQ(Echo().exit_code, 0);
}

TEST_F(ScpEndToEnd, EightConcurrentSendersWithTwentyFiveFilesEachAllLand) {
  StartNode("max_associations = 8\n");
  const int kSenders = 8, kFiles = 25;
  std::vector<std::vector<std::string>> batches(kSenders);
  std::set<std::string> sops;
  for (int s = 0; s < kSenders; ++s) {
    std::string study = NewUid();
    std::string series = NewUid();
    for (int f = 0; f < kFiles; ++f) {
      SyntheticCr spec;
      spec.patient_id = "CONC-" + std::to_string(s);
      spec.study_uid = study;
      spec.series_uid = series;
      spec.sop_uid = NewUid();
      spec.seed = static_cast<uint32_t>(s * 100 + f);
      fs::path p = dir_.path() / "send" / std::to_string(s) / (std::to_string(f) + ".dcm");
      fs::create_directories(p.parent_path());
      ASSERT_TRUE(WriteSyntheticCr(p.string(), spec));
      batches[s].push_back(p.string());
      sops.insert(spec.sop_uid);
    }
  }
  std::vector<std::thread> threads;
  std::vector<CommandResult> results(kSenders);
  for (int s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] { results[s] = Store(batches[s], "SENDER" + std::to_string(s), false); });
  }
  for (auto& t : threads) t.join();
  for (int s = 0; s < kSenders; ++s) EXPECT_EQ(results[s].exit_code, 0) << results[s].output;

  auto db = OpenDb();
  ASSERT_TRUE(db);
  for (const std::string& sop : sops) EXPECT_TRUE(*db->HasInstance(sop)) << sop;
  EXPECT_EQ(StoredFiles().size(), sops.size());
}

// A sender retrying after a timeout sends an instance again while the first copy is
// still being stored. Four associations (different calling AEs) send the same SOP
// Instance UIDs at once, each with its own pixels of equal size; for every UID exactly
// one association's copy is "stored" (the others are "duplicate ... first copy kept"),
// and the bytes on disk are that copy's, which `pxsctl verify` confirms by hash.
TEST_F(ScpEndToEnd, SameInstanceFromFourAssociationsAtOnceKeepsTheAcknowledgedCopy) {
  StartNode("max_associations = 8\n");
  constexpr int kSenders = 4, kRounds = 4, kFiles = 8;
  // version[sender][sop] = path of that sender's copy
  std::vector<std::map<std::string, std::string>> version(kSenders);
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<std::string>> batches(kSenders);
    std::vector<SyntheticCr> specs(kFiles);
    for (int f = 0; f < kFiles; ++f) {
      specs[f].patient_id = "RACE-" + std::to_string(round);
      specs[f].study_uid = NewUid();
      specs[f].series_uid = NewUid();
      specs[f].sop_uid = NewUid();
    }
    for (int s = 0; s < kSenders; ++s) {
      for (int f = 0; f < kFiles; ++f) {
        SyntheticCr spec = specs[f];
        spec.seed = static_cast<uint32_t>(1000 * round + 10 * f + s + 1);
        fs::path p = dir_.path() / "race" / std::to_string(round) / std::to_string(s) / (std::to_string(f) + ".dcm");
        fs::create_directories(p.parent_path());
        ASSERT_TRUE(WriteSyntheticCr(p.string(), spec));
        batches[s].push_back(p.string());
        version[s][spec.sop_uid] = p.string();
      }
    }
    std::vector<std::thread> threads;
    std::vector<CommandResult> results(kSenders);
    for (int s = 0; s < kSenders; ++s) {
      threads.emplace_back([&, s] { results[s] = Store(batches[s], "RACER" + std::to_string(s), false); });
    }
    for (auto& t : threads) t.join();
    for (int s = 0; s < kSenders; ++s) ASSERT_EQ(results[s].exit_code, 0) << results[s].output;
  }
  // The node's log names, per instance, the association whose copy was stored.
  const std::string log = node_->Log();
  auto db = OpenDb();
  ASSERT_TRUE(db);
  int checked = 0;
  for (const auto& [sop, unused] : version[0]) {
    int winner = -1, winners = 0;
    for (int s = 0; s < kSenders; ++s) {
      if (log.find("instance " + sop + " from RACER" + std::to_string(s) + ": status 0x0000 stored") !=
          std::string::npos) {
        winner = s;
        ++winners;
      }
    }
    ASSERT_EQ(winners, 1) << sop << " was stored " << winners << " times\n" << log;
    auto stored = db->FindStoredFile(sop);
    ASSERT_TRUE(stored.ok() && stored->has_value()) << sop;
    fs::path on_disk = node_->data_dir() / (*stored)->file_path;
    EXPECT_EQ(DecodedPixelSha256(on_disk.string()), DecodedPixelSha256(version[winner][sop]))
        << sop << ": the file on disk is not the copy of RACER" << winner << ", whose copy the log says was stored";
    ++checked;
  }
  EXPECT_EQ(checked, kRounds * kFiles);
  // Let the hash worker record every SHA-256, then verify hashes, sizes and presence.
  std::string pxsctl = BinDir() + "/pxsctl";
  CommandResult verify;
  ASSERT_TRUE(WaitFor(
      [&] {
        verify = Dcmtk({pxsctl, "--config", config_, "verify"});
        return verify.exit_code == 0 && verify.output.find("Not hashed yet") == std::string::npos;
      },
      std::chrono::seconds(60)))
      << verify.output;
  EXPECT_EQ(verify.output.find("BAD"), std::string::npos) << verify.output;
}

TEST_F(ScpEndToEnd, SigtermDuringATransferLosesNothingAcknowledgedAndLeavesNoPartialFile) {
  StartNode();
  // 2 MB each: the stream outlasts the listener's 1 s accept timeout after SIGTERM, so the
  // pool is shutting down while this association still runs.
  std::vector<std::string> files = WriteSyntheticSeries((dir_.path() / "send").string(), 60, 1024);
  ASSERT_EQ(files.size(), 60u);
  std::vector<std::string> argv = {"storescu", "-v", "-aet", "STORESCU", "-aec", "PXSNODE", "127.0.0.1",
                                   std::to_string(port_)};
  argv.insert(argv.end(), files.begin(), files.end());
  std::string log = (dir_.path() / "storescu-sigterm.log").string();
  Process sender(argv, log);
  // Let some instances through, then stop the node in the middle of the stream.
  ASSERT_TRUE(WaitFor([&] { return sender.Log().find("Received Store Response (Success)") != std::string::npos; },
                      std::chrono::seconds(30)));
  node_->process().Signal(SIGTERM);
  int node_exit = node_->process().Wait(std::chrono::seconds(60));
  EXPECT_EQ(node_exit, 0) << node_->Log();
  int sender_exit = sender.Wait(std::chrono::seconds(60));
  // The association that was running may finish (within the 30 s grace): all 60 land.
  EXPECT_EQ(sender_exit, 0) << sender.Log();

  // Every "Success" storescu saw is a file that is in the database and on disk.
  std::string out = sender.Log();
  size_t acked = 0;
  for (size_t pos = 0; (pos = out.find("Received Store Response (Success)", pos)) != std::string::npos; ++pos) ++acked;
  EXPECT_EQ(acked, files.size()) << out;
  auto db = Database::Open(DatabasePathFor(node_->data_dir().string()), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  size_t in_db = 0;
  for (const std::string& f : files) {
    DcmFileFormat ff;
    ff.loadFile(f.c_str(), EXS_Unknown, EGL_noChange, 1024);
    OFString sop;
    ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sop);
    if (*(*db)->HasInstance(sop.c_str())) ++in_db;
  }
  EXPECT_GE(in_db, acked) << out;
  // No partial file: every stored file parses completely, and no temp file is left.
  std::vector<fs::path> stored = StoredFiles();
  EXPECT_EQ(stored.size(), in_db);
  for (const fs::path& p : stored) {
    DcmFileFormat ff;
    EXPECT_TRUE(ff.loadFile(p.c_str()).good() && ff.getDataset()->loadAllDataIntoMemory().good()) << p;
  }
  EXPECT_TRUE(fs::is_empty(node_->data_dir() / "incoming"));
}

TEST_F(ScpEndToEnd, SigtermLetsARunningAssociationFinish) {
  StartNode();
  std::vector<std::string> files = WriteSyntheticSeries((dir_.path() / "send").string(), 2, 256);
  ASSERT_EQ(files.size(), 2u);
  // A sender that keeps its association open across the SIGTERM (DCMTK's SCU class:
  // storescu cannot pause between files).
  DcmSCU scu;
  scu.setAETitle("SLOWSCU");
  scu.setPeerHostName("127.0.0.1");
  scu.setPeerPort(port_);
  scu.setPeerAETitle("PXSNODE");
  OFList<OFString> syntaxes;
  syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
  scu.addPresentationContext(UID_ComputedRadiographyImageStorage, syntaxes);
  ASSERT_TRUE(scu.initNetwork().good());
  ASSERT_TRUE(scu.negotiateAssociation().good()) << node_->Log();
  Uint16 status = 0xFFFF;
  ASSERT_TRUE(scu.sendSTORERequest(0, files[0].c_str(), nullptr, status).good());
  EXPECT_EQ(status, 0x0000);

  node_->process().Signal(SIGTERM);
  // Longer than the listener's accept timeout (1 s): the pool is shutting down now.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_EQ(::kill(node_->process().pid(), 0), 0) << "pxsnode exited with an association running:\n" << node_->Log();
  status = 0xFFFF;
  EXPECT_TRUE(scu.sendSTORERequest(0, files[1].c_str(), nullptr, status).good()) << node_->Log();
  EXPECT_EQ(status, 0x0000);
  scu.releaseAssociation();
  EXPECT_EQ(node_->process().Wait(std::chrono::seconds(60)), 0) << node_->Log();
  EXPECT_EQ(StoredFiles().size(), 2u);
}

}  // namespace
}  // namespace pxs
