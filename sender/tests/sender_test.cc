// Sender tests against a real receiver: DCMTK's storescp, started by the test on a free
// loopback port, plays the PACS. The outbox is a real SQLite database (pxs::Database).
#include <arpa/inet.h>
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "pxs/reports/sr_builder.h"
#include "pxs/reports/sr_reader.h"
#include "pxs/sender/dicom_sender.h"
#include "pxs/sender/sender_worker.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"

namespace fs = std::filesystem;

namespace pxs {
namespace {

constexpr const char* kEnhancedSr = "1.2.840.10008.5.1.4.1.1.88.22";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pxs-sender-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

uint16_t FreeLoopbackPort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return ntohs(addr.sin_port);
}

bool CanConnect(uint16_t port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(s);
  return ok;
}

// DCMTK's storescp as a child process; its log (-v) goes to log_path.
class StoreScp {
 public:
  StoreScp(uint16_t port, fs::path out_dir, fs::path log_path, std::vector<std::string> extra = {})
      : port_(port), out_dir_(std::move(out_dir)), log_path_(std::move(log_path)), extra_(std::move(extra)) {}
  ~StoreScp() { Stop(); }

  void Start() {
    fs::create_directories(out_dir_);
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* log = std::fopen(log_path_.c_str(), "a");
      if (log) {
        ::dup2(fileno(log), 1);
        ::dup2(fileno(log), 2);
      }
      std::vector<std::string> args = {"storescp", "-v", "-aet", "PACS", "-od", out_dir_.string()};
      args.insert(args.end(), extra_.begin(), extra_.end());
      args.push_back(std::to_string(port_));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("storescp", argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 100 && !CanConnect(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(CanConnect(port_)) << "storescp did not start listening on port " << port_;
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // SOP Instance UIDs of the files storescp wrote.
  std::multiset<std::string> ReceivedUids() const {
    std::multiset<std::string> uids;
    if (!fs::exists(out_dir_)) return uids;
    for (const auto& entry : fs::directory_iterator(out_dir_)) {
      DcmFileFormat f;
      if (f.loadFile(entry.path().c_str()).bad()) continue;
      OFString uid;
      f.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, uid);
      uids.insert(uid.c_str());
    }
    return uids;
  }

  // Accepted associations only (the readiness probe connects but never negotiates).
  int AssociationsSeen() const {
    std::ifstream in(log_path_);
    int n = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.find("Association Acknowledged") != std::string::npos) ++n;
    }
    return n;
  }

  uint16_t port() const { return port_; }

 private:
  uint16_t port_;
  fs::path out_dir_, log_path_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// A small Enhanced SR (the SOP class the node's reports use); returns its UID.
std::string WriteSr(const fs::path& path, int n) {
  DSRDocument doc(DSRTypes::DT_EnhancedSR);
  doc.getTree().addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container);
  doc.getTree().getCurrentContentItem().setConceptName(DSRCodedEntryValue("126000", "DCM", "Imaging Measurement Report"));
  doc.getTree().addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text, DSRTypes::AM_belowCurrent);
  doc.getTree().getCurrentContentItem().setConceptName(DSRCodedEntryValue("55112-7", "LN", "Document Summary"));
  doc.getTree().getCurrentContentItem().setStringValue(("sender test report " + std::to_string(n)).c_str());
  doc.setPatientID("PXSSEND-001");
  DcmFileFormat f;
  EXPECT_TRUE(doc.write(*f.getDataset()).good());
  EXPECT_TRUE(f.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
  OFString uid;
  doc.getSOPInstanceUID(uid);
  return uid.c_str();
}

TEST(RetryDelayTest, DoublesUpToTheCap) {
  EXPECT_EQ(RetryDelayMs(1, 5, 600), 5000);
  EXPECT_EQ(RetryDelayMs(2, 5, 600), 10000);
  EXPECT_EQ(RetryDelayMs(4, 5, 600), 40000);
  EXPECT_EQ(RetryDelayMs(10, 5, 600), 600000);
  EXPECT_EQ(RetryDelayMs(1000, 5, 600), 600000);
}

TEST(ResolveDestinationTest, ByNameAndCallerAe) {
  std::vector<ReportDestination> dests = {{"pacs", "PACS", "10.0.0.1", 104}, {"viewer", "VIEWER", "10.0.0.2", 11112}};
  auto byname = ResolveDestination("viewer", dests);
  ASSERT_TRUE(byname.ok());
  EXPECT_EQ(byname->host, "10.0.0.2");
  auto caller = ResolveDestination("caller:PACS", dests);
  ASSERT_TRUE(caller.ok());
  EXPECT_EQ(caller->name, "pacs");
  auto unknown = ResolveDestination("caller:MODALITY7", dests);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("MODALITY7"), std::string::npos);
  EXPECT_FALSE(ResolveDestination("archive", dests).ok());
}

TEST(StoreFilesTest, BatchOverOneAssociationArrivesIntact) {
  TempDir tmp;
  StoreScp pacs(FreeLoopbackPort(), tmp.path() / "pacs", tmp.path() / "pacs.log");
  pacs.Start();
  std::vector<std::string> files;
  std::multiset<std::string> uids;
  for (int i = 0; i < 5; ++i) {
    fs::path p = tmp.path() / ("sr" + std::to_string(i) + ".dcm");
    uids.insert(WriteSr(p, i));
    files.push_back(p.string());
  }
  auto results = StoreFiles({"127.0.0.1", pacs.port(), "PACS"}, files, StoreOptions{});
  ASSERT_EQ(results.size(), files.size());
  for (const auto& r : results) {
    EXPECT_TRUE(r.ok) << r.file_path << ": " << r.error;
    EXPECT_EQ(r.dimse_status, 0x0000);
    EXPECT_EQ(r.error, "");
  }
  EXPECT_EQ(pacs.ReceivedUids(), uids);
  EXPECT_EQ(pacs.AssociationsSeen(), 1) << "a batch must reuse one association";
  // DCMTK disables Nagle's algorithm only when TCP_NODELAY is set in the environment.
  ASSERT_NE(std::getenv("TCP_NODELAY"), nullptr);
  EXPECT_NE(std::string(std::getenv("TCP_NODELAY")), "0");
}

TEST(StoreFilesTest, UnreachableReceiverAndUnreadableFileAreReported) {
  TempDir tmp;
  fs::path sr = tmp.path() / "sr.dcm";
  WriteSr(sr, 1);
  std::ofstream(tmp.path() / "junk.dcm") << "junk";
  StoreOptions opts;
  opts.connect_timeout_s = 2;
  auto results = StoreFiles({"127.0.0.1", FreeLoopbackPort(), "PACS"},
                            {sr.string(), (tmp.path() / "junk.dcm").string()}, opts);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].ok);
  EXPECT_NE(results[0].error.find("association"), std::string::npos) << results[0].error;
  EXPECT_FALSE(results[1].ok);
  EXPECT_NE(results[1].error.find("junk.dcm"), std::string::npos) << results[1].error;
}

TEST(StoreFilesTest, ReceiverAbortingMidBatchFailsTheRestWithTheReason) {
  TempDir tmp;
  StoreScp pacs(FreeLoopbackPort(), tmp.path() / "pacs", tmp.path() / "pacs.log", {"--abort-after"});
  pacs.Start();
  std::vector<std::string> files;
  for (int i = 0; i < 3; ++i) {
    fs::path p = tmp.path() / ("sr" + std::to_string(i) + ".dcm");
    WriteSr(p, i);
    files.push_back(p.string());
  }
  auto results = StoreFiles({"127.0.0.1", pacs.port(), "PACS"}, files, StoreOptions{});
  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) {
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.dimse_status, 0xFFFF) << "no response was received";
    EXPECT_FALSE(r.error.empty());
  }
  EXPECT_NE(results[1].error.find("lost"), std::string::npos) << results[1].error;
}

TEST(StoreFilesTest, SlowReceiverHitsTheDimseTimeout) {
  TempDir tmp;
  StoreScp pacs(FreeLoopbackPort(), tmp.path() / "pacs", tmp.path() / "pacs.log", {"--sleep-during", "4"});
  pacs.Start();
  fs::path sr = tmp.path() / "sr.dcm";
  WriteSr(sr, 1);
  StoreOptions opts;
  opts.dimse_timeout_s = 1;
  // After the timeout DCMTK aborts and waits for the peer to close, up to the ACSE
  // (ARTIM) timeout: the worst case for a hung receiver is DIMSE + ACSE timeout.
  opts.acse_timeout_s = 1;
  const auto started = std::chrono::steady_clock::now();
  auto results = StoreFiles({"127.0.0.1", pacs.port(), "PACS"}, {sr.string()}, opts);
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok);
  EXPECT_FALSE(results[0].error.empty());
  EXPECT_LT(waited, std::chrono::milliseconds(3500)) << "the 1 s DIMSE and ACSE timeouts must cut the wait short; error: "
                                                    << results[0].error;
}

// The node's own SR (reports/ builder) arrives unchanged: same SOP Instance UID, same
// numbers when read back from the receiver's copy.
TEST(StoreFilesTest, BuiltSrArrivesWithItsContent) {
  const fs::path source = fs::path(PXS_SOURCE_DIR) / ".." / "shared" / "data" / "dicom" / "cr_mono2_explicit_le.dcm";
  if (!fs::exists(source)) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present on this machine)";
  }
  TempDir tmp;
  SrInput in;
  in.source_image_path = source.string();
  in.model.name = "pxs-demo-cxr14";
  in.model.version = "1.0.0";
  in.model.trend = PublishedPxsThresholds();
  in.pxs = 5.25;
  in.priors = {{"2.25.42", "20000101", "", "", 3.5, std::nullopt, "pxs-demo-cxr14", "1.0.0", 9.5}};
  in.node.device_observer_uid = "2.25.7";
  const fs::path sr = tmp.path() / "sr.dcm";
  auto built = BuildStructuredReport(in, sr.string());
  ASSERT_TRUE(built.ok()) << built.status().ToString();

  StoreScp pacs(FreeLoopbackPort(), tmp.path() / "pacs", tmp.path() / "pacs.log");
  pacs.Start();
  auto results = StoreFiles({"127.0.0.1", pacs.port(), "PACS"}, {sr.string()}, StoreOptions{});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_TRUE(results[0].ok) << results[0].error;
  EXPECT_EQ(results[0].sop_instance_uid, built->sop_instance_uid);
  pacs.Stop();
  std::vector<fs::path> received;
  for (const auto& e : fs::directory_iterator(tmp.path() / "pacs")) received.push_back(e.path());
  ASSERT_EQ(received.size(), 1u);
  auto content = ReadStructuredReport(received[0].string());
  ASSERT_TRUE(content.ok()) << content.status().ToString();
  EXPECT_EQ(content->sop_instance_uid, built->sop_instance_uid);
  EXPECT_EQ(content->summary, built->summary);
  ASSERT_FALSE(content->groups.empty());
  EXPECT_EQ(content->groups[0].pxs, 5.25);
  EXPECT_EQ(content->groups[0].pxs_change, 5.25 - 3.5);
  EXPECT_EQ(content->groups[0].siamese_change, 9.5);
}

// Outbox fixture: a real database in a temp folder, SR files under data_dir.
class SenderWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open((tmp_.path() / "pxs.db").string(), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
    fs::create_directories(tmp_.path() / "reports");
    port_ = FreeLoopbackPort();
    options_.data_dir = tmp_.path().string();
    options_.destinations = {{"pacs", "PACS", "127.0.0.1", port_}};
    options_.store.connect_timeout_s = 2;
    options_.max_attempts = 3;
    options_.retry_initial_s = 5;
    options_.retry_max_s = 20;
    options_.now_ms = [this] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count() + clock_offset_ms_.load();
    };
  }

  // Writes an SR and queues it for the destinations; returns its SOP Instance UID.
  std::string QueueReport(int n, const std::vector<std::string>& destinations) {
    const std::string rel = "reports/sr" + std::to_string(n) + ".dcm";
    std::string uid = WriteSr(tmp_.path() / rel, n);
    Status s = db_->RecordReport(uid, "2.25.777" + std::to_string(n), "pxs", 1, rel, destinations);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return uid;
  }

  FailuresView Failures() {
    auto admin = AdminDatabase::Open((tmp_.path() / "pxs.db").string(), Database::Mode::kReadOnly);
    EXPECT_TRUE(admin.ok()) << admin.status().ToString();
    auto f = (*admin)->Failures(100);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return *f;
  }

  int DueNow() {
    auto due = db_->DueReports(options_.now_ms(), 1000);
    EXPECT_TRUE(due.ok());
    return static_cast<int>(due->size());
  }

  TempDir tmp_;
  std::unique_ptr<Database> db_;
  uint16_t port_ = 0;
  SenderWorkerOptions options_;
  std::atomic<int64_t> clock_offset_ms_{0};
};

TEST_F(SenderWorkerTest, ReceiverDownThenUpDeliversEverythingQueuedOnce) {
  std::multiset<std::string> uids;
  for (int i = 0; i < 4; ++i) uids.insert(QueueReport(i, {"pacs"}));
  SenderWorker worker(db_.get(), options_);

  // Receiver down: every report gets a failed attempt and is rescheduled, not lost.
  auto sent = worker.SendDueReports();
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, 0);
  EXPECT_EQ(DueNow(), 0) << "retries must wait for the backoff";
  FailuresView f = Failures();
  EXPECT_EQ(f.retrying.size(), 4u);
  EXPECT_TRUE(f.reports.empty());
  for (const auto& r : f.retrying) {
    EXPECT_EQ(r.attempts, 1);
    EXPECT_NE(r.last_error.find("association"), std::string::npos) << r.last_error;
  }

  // A restart in between: the outbox is in the database, nothing is lost.
  worker.Stop();
  db_.reset();
  auto reopened = Database::Open((tmp_.path() / "pxs.db").string(), Database::Mode::kReadWrite);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  db_ = std::move(*reopened);
  SenderWorker restarted(db_.get(), options_);

  StoreScp pacs(port_, tmp_.path() / "pacs", tmp_.path() / "pacs.log");
  pacs.Start();
  clock_offset_ms_ = 6000;  // past the first backoff (5 s)
  EXPECT_EQ(DueNow(), 4);
  sent = restarted.SendDueReports();
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, 4);
  EXPECT_EQ(pacs.ReceivedUids(), uids);
  EXPECT_EQ(pacs.AssociationsSeen(), 1);
  f = Failures();
  EXPECT_TRUE(f.retrying.empty());
  EXPECT_TRUE(f.reports.empty());

  // Nothing confirmed is sent again, even much later.
  clock_offset_ms_ = 3600 * 1000;
  sent = restarted.SendDueReports();
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, 0);
  EXPECT_EQ(pacs.ReceivedUids().size(), 4u);
}

TEST_F(SenderWorkerTest, OneAssociationPerDestinationAndAMissingFileFailsAlone) {
  const uint16_t viewer_port = FreeLoopbackPort();
  options_.destinations.push_back({"viewer", "VIEWER", "127.0.0.1", viewer_port});
  StoreScp pacs(port_, tmp_.path() / "pacs", tmp_.path() / "pacs.log");
  StoreScp viewer(viewer_port, tmp_.path() / "viewer", tmp_.path() / "viewer.log");
  pacs.Start();
  viewer.Start();
  std::multiset<std::string> both, pacs_only;
  for (int i = 0; i < 3; ++i) both.insert(QueueReport(i, {"pacs", "viewer"}));
  pacs_only.insert(QueueReport(3, {"pacs"}));
  const std::string lost = QueueReport(4, {"pacs"});
  fs::remove(tmp_.path() / "reports" / "sr4.dcm");

  SenderWorker worker(db_.get(), options_);
  auto sent = worker.SendDueReports();
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, 3 + 3 + 1);
  std::multiset<std::string> expected_pacs = both;
  expected_pacs.insert(pacs_only.begin(), pacs_only.end());
  EXPECT_EQ(pacs.ReceivedUids(), expected_pacs);
  EXPECT_EQ(viewer.ReceivedUids(), both);
  EXPECT_EQ(pacs.AssociationsSeen(), 1);
  EXPECT_EQ(viewer.AssociationsSeen(), 1);
  FailuresView f = Failures();
  ASSERT_EQ(f.retrying.size(), 1u);
  EXPECT_EQ(f.retrying[0].sr_sop_instance_uid, lost);
  EXPECT_NE(f.retrying[0].last_error.find("sr4.dcm"), std::string::npos) << f.retrying[0].last_error;
}

TEST_F(SenderWorkerTest, ReceiverRejectingSrEndsFailedWithReasonAfterMaxAttempts) {
  // A PACS that accepts CT images only: SR presentation contexts are refused.
  const fs::path cfg = tmp_.path() / "ct-only.cfg";
  std::ofstream(cfg) << "[[TransferSyntaxes]]\n[Uncompressed]\nTransferSyntax1 = LittleEndianExplicit\n"
                        "TransferSyntax2 = LittleEndianImplicit\n"
                        "[[PresentationContexts]]\n[CTOnly]\nPresentationContext1 = CTImageStorage\\Uncompressed\n"
                        "[[Profiles]]\n[OnlyCT]\nPresentationContexts = CTOnly\n";
  StoreScp pacs(port_, tmp_.path() / "pacs", tmp_.path() / "pacs.log", {"-xf", cfg.string(), "OnlyCT"});
  pacs.Start();
  const std::string uid = QueueReport(1, {"pacs"});
  SenderWorker worker(db_.get(), options_);
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    ASSERT_EQ(DueNow(), 1) << "attempt " << attempt;
    auto sent = worker.SendDueReports();
    ASSERT_TRUE(sent.ok());
    EXPECT_EQ(*sent, 0);
    clock_offset_ms_ += 60 * 1000;  // past any backoff (cap 20 s)
  }
  EXPECT_EQ(DueNow(), 0);
  FailuresView f = Failures();
  ASSERT_EQ(f.reports.size(), 1u);
  EXPECT_EQ(f.reports[0].sr_sop_instance_uid, uid);
  EXPECT_EQ(f.reports[0].state, "failed");
  EXPECT_EQ(f.reports[0].attempts, options_.max_attempts);
  EXPECT_NE(f.reports[0].last_error.find(kEnhancedSr), std::string::npos) << f.reports[0].last_error;
  EXPECT_TRUE(pacs.ReceivedUids().empty());
}

TEST_F(SenderWorkerTest, UnknownCallerIsFailedAtOnceAndKnownCallerIsServed) {
  StoreScp pacs(port_, tmp_.path() / "pacs", tmp_.path() / "pacs.log");
  pacs.Start();
  const std::string to_caller = QueueReport(1, {"caller:PACS"});
  const std::string to_unknown = QueueReport(2, {"caller:MODALITY7"});
  SenderWorker worker(db_.get(), options_);
  auto sent = worker.SendDueReports();
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, 1);
  EXPECT_EQ(pacs.ReceivedUids(), std::multiset<std::string>{to_caller});
  FailuresView f = Failures();
  ASSERT_EQ(f.reports.size(), 1u);
  EXPECT_EQ(f.reports[0].sr_sop_instance_uid, to_unknown);
  EXPECT_NE(f.reports[0].last_error.find("unknown caller AE 'MODALITY7'"), std::string::npos)
      << f.reports[0].last_error;
  EXPECT_TRUE(fs::exists(tmp_.path() / "reports" / "sr2.dcm")) << "the SR must be kept";
}

TEST_F(SenderWorkerTest, LoopSendsPromptlyOnWakeAndStopsCleanly) {
  StoreScp pacs(port_, tmp_.path() / "pacs", tmp_.path() / "pacs.log");
  pacs.Start();
  options_.idle_poll_ms = 60 * 1000;  // only Wake() can make it send within the test
  SenderWorker worker(db_.get(), options_);
  worker.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the first (empty) pass is done
  const std::string uid = QueueReport(1, {"pacs"});
  const auto woken_at = std::chrono::steady_clock::now();
  worker.Wake();
  while (pacs.ReceivedUids().empty() && std::chrono::steady_clock::now() - woken_at < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(pacs.ReceivedUids(), std::multiset<std::string>{uid});
  EXPECT_LT(std::chrono::steady_clock::now() - woken_at, std::chrono::seconds(5));
  const auto stop_at = std::chrono::steady_clock::now();
  worker.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_at, std::chrono::seconds(2)) << "Stop() must not wait for the poll";
  EXPECT_EQ(DueNow(), 0);
}

}  // namespace
}  // namespace pxs
