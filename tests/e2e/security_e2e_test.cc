// The node's listening surface, end to end with the real pxsnode and DCMTK's echoscu /
// storescu: it listens only on the configured address; idle, half-open and slow callers
// do not hold up the others; DICOM TLS with and without client certificates (made here
// with OpenSSL), refused handshakes in the log and the audit log; the plain port beside
// TLS; private file modes and the data-folder check; --check-config on TLS files.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/scu.h>

#include "../../tls/tests/test_certs.h"
#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using Clock = std::chrono::steady_clock;

// A raw TCP client to 127.0.0.1:port (connected, nothing sent yet); -1 on failure.
int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class SecurityEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = dir_.path() / "certs";
    fs::create_directories(certs_);
    MakeCertificate(ca_, "PXS Test CA", nullptr, true);
    WritePem(ca_, C("ca.pem"), "");
    MakeCertificate(other_ca_, "Other CA", nullptr, true);
    MakeCertificate(server_, "pxsnode", &ca_, false);
    WritePem(server_, C("server.pem"), C("server.key"));
    MakeCertificate(client_, "modality", &ca_, false);
    WritePem(client_, C("client.pem"), C("client.key"));
    MakeCertificate(second_client_, "second-modality", &ca_, false);
    WritePem(second_client_, C("second.pem"), C("second.key"));
    MakeCertificate(stranger_, "stranger", &other_ca_, false);
    WritePem(stranger_, C("stranger.pem"), C("stranger.key"));
    MakeCertificate(expired_, "expired", &ca_, false, -7200, -3600);
    WritePem(expired_, C("expired.pem"), C("expired.key"));
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }
  std::string C(const std::string& name) const { return (certs_ / name).string(); }

  std::string TlsSection(bool require_client, int plain_port = 0) const {
    std::string s = "[tls]\ncertificate = \"" + C("server.pem") + "\"\nprivate_key = \"" + C("server.key") +
                    "\"\ntrusted_certificates = \"" + C("ca.pem") + "\"\nrequire_client_certificate = " +
                    (require_client ? "true" : "false") + "\n";
    if (plain_port) s += "plain_port = " + std::to_string(plain_port) + "\n";
    return s;
  }
  void StartNode(const std::string& scp_lines = "", const std::string& tail = "") {
    port_ = FreePort();
    config_ = WriteNodeConfig(dir_.path(), port_, scp_lines, tail);
    node_ = std::make_unique<Node>(dir_.path(), port_);
    ASSERT_TRUE(node_->Start(config_)) << "pxsnode did not start:\n" << node_->Log();
  }
  CommandResult Run(std::vector<std::string> argv) {
    return RunCommand(argv, (dir_.path() / ("cmd-" + std::to_string(++commands_) + ".log")).string());
  }
  CommandResult Echo(uint16_t port, std::vector<std::string> tls_args = {}) {
    std::vector<std::string> argv = {"echoscu", "-v", "-to", "10", "-ta", "10", "-td", "10", "-aet", "ECHOSCU",
                                     "-aec", "PXSNODE"};
    argv.insert(argv.end(), tls_args.begin(), tls_args.end());
    argv.insert(argv.end(), {"127.0.0.1", std::to_string(port)});
    return Run(argv);
  }
  std::vector<std::string> ClientTls(const std::string& name) const {
    return {"+tls", C(name + ".key"), C(name + ".pem"), "+cf", C("ca.pem"), "+px"};
  }
  // A synthetic CR with fresh UIDs in the test folder.
  std::string OneImage(const std::string& name, SyntheticCr* spec) {
    spec->study_uid = NewUid();
    spec->series_uid = NewUid();
    spec->sop_uid = NewUid();
    std::string file = (dir_.path() / name).string();
    EXPECT_TRUE(WriteSyntheticCr(file, *spec));
    return file;
  }
  std::vector<AuditEntry> Audit() {
    auto admin = AdminDatabase::Open(DatabasePathFor(node_->data_dir().string()), Database::Mode::kReadOnly);
    EXPECT_TRUE(admin.ok());
    auto rows = (*admin)->RecentAudit(50);
    return rows.ok() ? *rows : std::vector<AuditEntry>{};
  }

  TempDir dir_{"pxs-sec"};
  fs::path certs_;
  TestKeyPair ca_, other_ca_, server_, client_, second_client_, stranger_, expired_;
  uint16_t port_ = 0;
  std::string config_;
  std::unique_ptr<Node> node_;
  int commands_ = 0;
};

TEST_F(SecurityEndToEnd, ListensOnlyOnTheConfiguredAddress) {
  StartNode();
  CommandResult ss = Run({"ss", "-ltnH", "sport = :" + std::to_string(port_)});
  ASSERT_EQ(ss.exit_code, 0) << ss.output;
  EXPECT_NE(ss.output.find("127.0.0.1:" + std::to_string(port_)), std::string::npos) << ss.output;
  EXPECT_EQ(ss.output.find("0.0.0.0:" + std::to_string(port_)), std::string::npos) << ss.output;
  EXPECT_EQ(ss.output.find("*:" + std::to_string(port_)), std::string::npos) << ss.output;
}

// systemd socket activation (systemd/pxsnode.socket), with systemd's own test launcher:
// it binds the port and passes the socket; the node listens on that one, not its own.
TEST_F(SecurityEndToEnd, SocketActivationUsesThePassedSocket) {
  if (::access("/usr/bin/systemd-socket-activate", X_OK) != 0) GTEST_SKIP() << "systemd-socket-activate not installed";
  port_ = FreePort();
  // The config names another port: the passed socket must win.
  config_ = WriteNodeConfig(dir_.path(), FreePort());
  Process node({"/usr/bin/systemd-socket-activate", "-l", "127.0.0.1:" + std::to_string(port_),
                BinDir() + "/pxsnode", "--config", config_},
               (dir_.path() / "activated.log").string());
  ASSERT_TRUE(WaitFor([&] { return PortOpen(port_); }, std::chrono::seconds(30)));
  bool echoed = WaitFor([&] { return Echo(port_).exit_code == 0; }, std::chrono::seconds(60));
  EXPECT_TRUE(echoed) << node.Log();
  EXPECT_NE(node.Log().find("the socket systemd passed"), std::string::npos) << node.Log();
  node.Signal(SIGTERM);
  EXPECT_EQ(node.Wait(), 0) << node.Log();
}

TEST_F(SecurityEndToEnd, IdleHalfOpenAndSlowCallersDoNotHoldUpOthers) {
  StartNode("acse_timeout_s = 30\n");
  std::vector<int> idle;
  for (int i = 0; i < 30; ++i) {
    int fd = Connect(port_);
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  // Half an A-ASSOCIATE-RQ: a header announcing 200 bytes, then 10 of them.
  int half = Connect(port_);
  ASSERT_GE(half, 0);
  const unsigned char header[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0xC8, 0x00, 0x01, 0x00, 0x00,
                                  'P',  'X',  'S',  'N',  'O',  'D'};
  ASSERT_EQ(::send(half, header, sizeof(header), 0), static_cast<ssize_t>(sizeof(header)));
  // A slow caller: one byte a second.
  std::atomic<bool> stop{false};
  std::thread slow([&] {
    int fd = Connect(port_);
    for (int i = 0; i < 8 && !stop && fd >= 0; ++i) {
      unsigned char b = header[i];
      ::send(fd, &b, 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    if (fd >= 0) ::close(fd);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int round = 0; round < 3; ++round) {
    auto t0 = Clock::now();
    CommandResult echo = Echo(port_);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(echo.exit_code, 0) << echo.output;
    EXPECT_LT(s, 5.0) << "echoscu took " << s << " s beside 30 idle, one half-open and one slow connection";
  }
  stop = true;
  slow.join();
  for (int fd : idle) ::close(fd);
  ::close(half);
}

TEST_F(SecurityEndToEnd, TlsWithClientCertificatesRequired) {
  StartNode("", TlsSection(/*require_client=*/true));
  CommandResult ok = Echo(port_, ClientTls("client"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;

  // Plain DICOM on the TLS port: refused cleanly (and the node keeps serving).
  CommandResult plain = Echo(port_);
  EXPECT_NE(plain.exit_code, 0) << plain.output;
  // No client certificate, one from another CA, an expired one: refused handshakes.
  CommandResult anonymous = Echo(port_, {"+tla", "+cf", C("ca.pem"), "+px"});
  EXPECT_NE(anonymous.exit_code, 0) << anonymous.output;
  CommandResult stranger = Echo(port_, ClientTls("stranger"));
  EXPECT_NE(stranger.exit_code, 0) << stranger.output;
  CommandResult expired = Echo(port_, ClientTls("expired"));
  EXPECT_NE(expired.exit_code, 0) << expired.output;

  // A client that does not trust the node's CA gives up on its side.
  CommandResult distrust = Echo(port_, {"+tls", C("client.key"), C("client.pem"), "+cf", C("stranger.pem"), "+px"});
  EXPECT_NE(distrust.exit_code, 0) << distrust.output;

  CommandResult again = Echo(port_, ClientTls("client"));
  EXPECT_EQ(again.exit_code, 0) << again.output;
  const std::string log = node_->Log();
  EXPECT_NE(log.find("TLS connection from 127.0.0.1 refused"), std::string::npos) << log;
  EXPECT_NE(log.find("not a TLS handshake on a TLS port"), std::string::npos) << log;
  int refused = 0;
  for (const AuditEntry& e : Audit()) {
    if (e.action == "tls_connection_refused") {
      ++refused;
      EXPECT_NE(e.details.find("127.0.0.1"), std::string::npos) << e.details;
    }
  }
  EXPECT_GE(refused, 3);
}

TEST_F(SecurityEndToEnd, TlsWithoutClientCertificatesAndAPlainPortBeside) {
  const uint16_t plain_port = FreePort();
  StartNode("", TlsSection(/*require_client=*/false, plain_port));
  CommandResult anonymous = Echo(port_, {"+tla", "+cf", C("ca.pem"), "+px"});
  EXPECT_EQ(anonymous.exit_code, 0) << anonymous.output;
  CommandResult plain_on_plain = Echo(plain_port);
  EXPECT_EQ(plain_on_plain.exit_code, 0) << plain_on_plain.output;
  CommandResult plain_on_tls = Echo(port_);
  EXPECT_NE(plain_on_tls.exit_code, 0) << plain_on_tls.output;

  // An image over TLS is stored like any other.
  SyntheticCr spec;
  std::string file = OneImage("tls.dcm", &spec);
  std::vector<std::string> argv = {"storescu", "-v", "-aet", "TLSSCU", "-aec", "PXSNODE", "+tla", "+cf", C("ca.pem"),
                                   "+px", "127.0.0.1", std::to_string(port_), file};
  CommandResult stored = Run(argv);
  EXPECT_EQ(stored.exit_code, 0) << stored.output;
  auto db = Database::Open(DatabasePathFor(node_->data_dir().string()), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  EXPECT_TRUE(*(*db)->HasInstance(spec.sop_uid));
}

// The SR goes back over DICOM TLS to a destination with tls = true: DCMTK's storescp
// with +tls as the PACS, requiring the node's certificate.
TEST_F(SecurityEndToEnd, ReportsReachATlsDestination) {
  const uint16_t pacs_port = FreePort();
  fs::path pacs_dir = dir_.path() / "pacs";
  fs::create_directories(pacs_dir);
  Process pacs({"storescp", "-aet", "TLSPACS", "-od", pacs_dir.string(), "+tls", C("client.key"), C("client.pem"),
                "+cf", C("ca.pem"), "+px", "-rc", std::to_string(pacs_port)},
               (dir_.path() / "storescp.log").string());
  ASSERT_TRUE(WaitFor([&] { return PortOpen(pacs_port); }, std::chrono::seconds(10)));
  std::string tail = "[[destinations]]\nname = \"pacs\"\nae_title = \"TLSPACS\"\nhost = \"127.0.0.1\"\nport = " +
                     std::to_string(pacs_port) + "\ntls = true\n[reports]\nsend_to = [\"pacs\"]\nretry_initial_s = 1\n" +
                     TlsSection(/*require_client=*/false);
  StartNode("", tail);
  SyntheticCr spec;
  std::string file = OneImage("for-sr.dcm", &spec);
  CommandResult stored = Run({"storescu", "-aec", "PXSNODE", "+tla", "+cf", C("ca.pem"), "+px", "127.0.0.1",
                              std::to_string(port_), file});
  ASSERT_EQ(stored.exit_code, 0) << stored.output;
  auto sr_arrived = [&] {
    for (auto& e : fs::directory_iterator(pacs_dir)) {
      if (e.path().filename().string().rfind("SR", 0) == 0) return true;
    }
    return false;
  };
  EXPECT_TRUE(WaitFor(sr_arrived, std::chrono::seconds(90))) << node_->Log() << "\n---- storescp ----\n" << pacs.Log();
  EXPECT_TRUE(WaitFor([&] { return node_->Log().find("(TLS) ('pacs'): 1/1 SR(s) stored") != std::string::npos; },
                      std::chrono::seconds(10)))
      << node_->Log();
}

// A sender that stops in the middle of a data set gets its association aborted after
// dimse_timeout_s, not a response; nothing is stored; everyone else carries on.
void StallMidDataSet(void* context, unsigned long bytes) {
  auto* stalled = static_cast<bool*>(context);
  if (!*stalled && bytes > 64 * 1024) {
    *stalled = true;
    std::this_thread::sleep_for(std::chrono::seconds(5));  // node's dimse_timeout_s is 2
  }
}

TEST_F(SecurityEndToEnd, ADataSetThatStallsMidTransferIsAbortedNotAnswered) {
  StartNode("dimse_timeout_s = 2\n");
  SyntheticCr spec;
  spec.rows = spec.cols = 512;  // 512 KB of pixels: many PDVs at a 16 KB PDU
  std::string file = OneImage("stall.dcm", &spec);
  DcmFileFormat image;
  ASSERT_TRUE(image.loadFile(file.c_str()).good());

  T_ASC_Network* net = nullptr;
  ASSERT_TRUE(ASC_initializeNetwork(NET_REQUESTOR, 0, 10, &net).good());
  T_ASC_Parameters* params = nullptr;
  ASSERT_TRUE(ASC_createAssociationParameters(&params, 16384).good());
  ASC_setAPTitles(params, "STALLER", "PXSNODE", nullptr);
  ASC_setPresentationAddresses(params, "localhost", ("127.0.0.1:" + std::to_string(port_)).c_str());
  const char* ts[] = {UID_LittleEndianExplicitTransferSyntax};
  ASC_addPresentationContext(params, 1, UID_ComputedRadiographyImageStorage, ts, 1);
  T_ASC_Association* assoc = nullptr;
  ASSERT_TRUE(ASC_requestAssociation(net, params, &assoc).good());
  ASSERT_EQ(ASC_countAcceptedPresentationContexts(assoc->params), 1);

  T_DIMSE_Message msg{};
  msg.CommandField = DIMSE_C_STORE_RQ;
  T_DIMSE_C_StoreRQ& req = msg.msg.CStoreRQ;
  req.MessageID = 1;
  OFStandard::strlcpy(req.AffectedSOPClassUID, UID_ComputedRadiographyImageStorage, sizeof(req.AffectedSOPClassUID));
  OFStandard::strlcpy(req.AffectedSOPInstanceUID, spec.sop_uid.c_str(), sizeof(req.AffectedSOPInstanceUID));
  req.DataSetType = DIMSE_DATASET_PRESENT;
  req.Priority = DIMSE_PRIORITY_MEDIUM;
  bool stalled = false;
  OFCondition sent = DIMSE_sendMessageUsingMemoryData(assoc, 1, &msg, nullptr, image.getDataset(), StallMidDataSet,
                                                      &stalled, nullptr);
  EXPECT_TRUE(stalled);
  T_DIMSE_Message rsp{};
  DcmDataset* detail = nullptr;
  T_ASC_PresentationContextID pc = 0;
  OFCondition answered = sent.good() ? DIMSE_receiveCommand(assoc, DIMSE_BLOCKING, 0, &pc, &rsp, &detail) : sent;
  EXPECT_TRUE(answered.bad()) << "the node answered a stalled C-STORE (status 0x" << std::hex
                              << rsp.msg.CStoreRSP.DimseStatus << ")";
  delete detail;
  ASC_abortAssociation(assoc);
  ASC_destroyAssociation(&assoc);
  ASC_dropNetwork(&net);

  EXPECT_TRUE(WaitFor([&] { return node_->Log().find("stalled for 2 s mid-transfer") != std::string::npos; },
                      std::chrono::seconds(10)))
      << node_->Log();
  auto db = Database::Open(DatabasePathFor(node_->data_dir().string()), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  EXPECT_FALSE(*(*db)->HasInstance(spec.sop_uid));
  EXPECT_TRUE(fs::is_empty(node_->data_dir() / "incoming"));
  EXPECT_EQ(Echo(port_).exit_code, 0);
}

// [[peers]]: only known callers, each within its own association limit.
TEST_F(SecurityEndToEnd, KnownPeersOnlyEachWithinItsLimit) {
  StartNode("", "[[peers]]\nae_title = \"MOD1\"\naddress = \"127.0.0.0/8\"\nmax_associations = 1\n"
                "[[peers]]\nae_title = \"MOD2\"\naddress = \"127.0.0.1\"\n"
                "[[peers]]\nae_title = \"FARAWAY\"\naddress = \"10.0.0.0/8\"\n");
  auto echo_as = [&](const std::string& ae) {
    return Run({"echoscu", "-aet", ae, "-aec", "PXSNODE", "127.0.0.1", std::to_string(port_)});
  };
  EXPECT_EQ(echo_as("MOD1").exit_code, 0);
  EXPECT_NE(echo_as("STRANGER").exit_code, 0);
  EXPECT_NE(echo_as("FARAWAY").exit_code, 0);  // known, but not from this address
  // MOD1 holds its one association: a second one is refused, MOD2 still gets in.
  DcmSCU held;
  held.setAETitle("MOD1");
  held.setPeerAETitle("PXSNODE");
  held.setPeerHostName("127.0.0.1");
  held.setPeerPort(port_);
  OFList<OFString> ts;
  ts.push_back(UID_LittleEndianImplicitTransferSyntax);
  held.addPresentationContext(UID_VerificationSOPClass, ts);
  ASSERT_TRUE(held.initNetwork().good());
  ASSERT_TRUE(held.negotiateAssociation().good());
  EXPECT_NE(echo_as("MOD1").exit_code, 0);
  EXPECT_EQ(echo_as("MOD2").exit_code, 0);
  held.releaseAssociation();
  EXPECT_TRUE(WaitFor([&] { return echo_as("MOD1").exit_code == 0; }, std::chrono::seconds(10)));
  const std::string log = node_->Log();
  EXPECT_NE(log.find("'STRANGER' is not a known peer"), std::string::npos) << log;
  EXPECT_NE(log.find("'FARAWAY' is not expected from 127.0.0.1"), std::string::npos) << log;
  EXPECT_NE(log.find("refused (transient): peer 'MOD1' already holds its 1 association(s)"), std::string::npos) << log;
}

// Over TLS a known peer may be pinned to its certificate's subject.
TEST_F(SecurityEndToEnd, APeerCanBePinnedToItsCertificateSubject) {
  StartNode("", TlsSection(/*require_client=*/true) +
                    "[[peers]]\nae_title = \"ECHOSCU\"\ncertificate_subject = \"CN=modality\"\n");
  CommandResult pinned = Echo(port_, ClientTls("client"));
  EXPECT_EQ(pinned.exit_code, 0) << pinned.output;
  CommandResult other = Echo(port_, ClientTls("second"));  // trusted CA, other subject
  EXPECT_NE(other.exit_code, 0) << other.output;
  EXPECT_NE(node_->Log().find("presented certificate subject 'CN=second-modality'"), std::string::npos)
      << node_->Log();
}

TEST_F(SecurityEndToEnd, StoredDataIsPrivateAndAWorldWritableDataFolderIsRefused) {
  StartNode();
  SyntheticCr spec;
  std::string file = OneImage("one.dcm", &spec);
  CommandResult stored = Run({"storescu", "-aec", "PXSNODE", "127.0.0.1", std::to_string(port_), file});
  ASSERT_EQ(stored.exit_code, 0) << stored.output;
  for (auto& e : fs::recursive_directory_iterator(node_->data_dir())) {
    struct stat st {};
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0007, 0u) << e.path() << " is accessible to others (mode " << std::oct
                                     << (st.st_mode & 0777) << ")";
  }
  node_->process().Signal(SIGTERM);
  ASSERT_EQ(node_->process().Wait(), 0);

  fs::permissions(node_->data_dir(), fs::perms::others_write, fs::perm_options::add);
  CommandResult refused = Run({BinDir() + "/pxsnode", "--config", config_});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("writable by every user"), std::string::npos) << refused.output;
}

TEST_F(SecurityEndToEnd, CheckConfigNamesBadTlsFiles) {
  const uint16_t port = FreePort();
  auto check = [&](const std::string& tls) {
    std::string config = WriteNodeConfig(dir_.path(), port, "", tls);
    return Run({BinDir() + "/pxsnode", "--check-config", config});
  };
  CommandResult good = check(TlsSection(true));
  EXPECT_EQ(good.exit_code, 0) << good.output;
  std::string expired = "[tls]\ncertificate = \"" + C("expired.pem") + "\"\nprivate_key = \"" + C("expired.key") + "\"\n";
  CommandResult r = check(expired);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("expired.pem: expired"), std::string::npos) << r.output;
  std::string mismatch = "[tls]\ncertificate = \"" + C("server.pem") + "\"\nprivate_key = \"" + C("client.key") + "\"\n";
  r = check(mismatch);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("does not match certificate"), std::string::npos) << r.output;
  std::string unreadable = "[tls]\ncertificate = \"" + C("server.pem") + "\"\nprivate_key = \"" + C("nope.key") + "\"\n";
  r = check(unreadable);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nope.key: cannot be read"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace pxs
