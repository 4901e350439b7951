// The web face against the REAL pxsnode over loopback (curl as the client): tokens and
// roles, parameter errors, size limits, health, the history JSON equal to `pxsctl
// history --json` for the same patient, /metrics through `promtool check metrics`, the
// dashboard's files, and an access log without patient ids or names.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "pxs/common/files.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using Json = nlohmann::json;

constexpr const char* kViewer = "viewer-token-0123";
constexpr const char* kAdmin = "admin-token-4567";

bool Have(const std::string& tool) { return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0; }

struct Reply {
  int status = 0;
  std::string body;
};

class HttpEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Have("curl")) GTEST_SKIP() << "SKIPPED: curl not installed (scripts/install-deps.sh installs it)";
    tls_config_ = TlsConfig();
    config_ = WriteConfig(kViewer);
    node_ = std::make_unique<Node>(dir_.path(), node_port_);
    ASSERT_TRUE(node_->Start(config_)) << node_->Log();
    ASSERT_TRUE(WaitFor([&] { return PortOpen(http_port_); }, std::chrono::seconds(10))) << node_->Log();
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }

  // The node's config with these viewer and admin tokens.
  std::string WriteConfig(const std::string& viewer) {
    const std::string tail = "[http]\nenabled = true\nport = " + std::to_string(http_port_) + "\nweb_root = \"" +
                             std::string(PXS_SOURCE_DIR) + "/http/web\"\n"
                             "[[http.tokens]]\nname = \"wall\"\nrole = \"viewer\"\nsha256 = \"" + Sha256Hex(viewer) +
                             "\"\n[[http.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"" + Sha256Hex(kAdmin) + "\"\n";
    return WriteNodeConfig(dir_.path(), node_port_, "", tail + tls_config_);
  }

  // A [tls] section for the node (HTTPS then serves with its certificate); "" plain.
  virtual std::string TlsConfig() { return ""; }

  Reply Curl(const std::string& path, const std::string& token, const std::vector<std::string>& extra = {}) {
    const std::string body_file = (dir_.path() / "body").string();
    std::vector<std::string> argv = {"curl", "-s", "-o", body_file, "-w", "%{http_code}"};
    if (!ca_file_.empty()) argv.insert(argv.end(), {"--cacert", ca_file_});
    if (!token.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back((ca_file_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") + std::to_string(http_port_) + path);
    CommandResult r = RunCommand(argv, (dir_.path() / "curl.log").string());
    Reply reply;
    reply.status = std::atoi(r.output.c_str());
    std::ifstream in(body_file);
    reply.body.assign(std::istreambuf_iterator<char>(in), {});
    return reply;
  }

  void SendStudies(int studies) {
    for (int s = 0; s < studies; ++s) {
      SyntheticCr spec;
      spec.patient_id = "HTTP-1";
      spec.issuer = "TESTS";
      spec.patient_name = "SECRETNAME^PATIENT";
      spec.study_uid = NewUid();
      spec.series_uid = NewUid();
      spec.sop_uid = NewUid();
      spec.study_date = "2026010" + std::to_string(s + 1);
      spec.seed = static_cast<uint32_t>(s + 7);
      const std::string file = (dir_.path() / ("s" + std::to_string(s) + ".dcm")).string();
      ASSERT_TRUE(WriteSyntheticCr(file, spec));
      CommandResult r = RunCommand({"storescu", "-aec", "PXSNODE", "127.0.0.1", std::to_string(node_port_), file},
                                   (dir_.path() / "storescu.log").string());
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }

  TempDir dir_{"pxs-http-e2e"};
  uint16_t node_port_ = FreePort();
  uint16_t http_port_ = FreePort();
  std::string config_;
  std::string ca_file_;  // HTTPS: the certificate curl trusts
  std::string tls_config_;
  std::unique_ptr<Node> node_;
};

// With a [tls] certificate the web face speaks HTTPS only, with that certificate.
class HttpsEndToEnd : public HttpEndToEnd {
 protected:
  std::string TlsConfig() override {
    MakeCertificate();
    return "[tls]\ncertificate = \"" + cert_.string() + "\"\nprivate_key = \"" + key_.string() + "\"\n";
  }
  // A new self-signed certificate and key for 127.0.0.1 over the node's files (a renewal).
  void MakeCertificate() {
    CommandResult made = RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                                     "/CN=pxsnode", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key_.string(),
                                     "-out", cert_.string()},
                                    (dir_.path() / "openssl.log").string());
    EXPECT_EQ(made.exit_code, 0) << made.output;
    ca_file_ = cert_.string();
  }
  // "serial=..." of a PEM file, or of the certificate the HTTPS port presents now.
  std::string FileSerial() {
    return RunCommand({"openssl", "x509", "-noout", "-serial", "-in", cert_.string()},
                      (dir_.path() / "serial.log").string()).output;
  }
  std::string ServedSerial() {
    return RunCommand({"sh", "-c", "openssl s_client -connect 127.0.0.1:" + std::to_string(http_port_) +
                                       " </dev/null 2>/dev/null | openssl x509 -noout -serial"},
                      (dir_.path() / "served.log").string()).output;
  }
  fs::path cert_ = dir_.path() / "node.pem", key_ = dir_.path() / "node.key";
};

TEST_F(HttpsEndToEnd, ServesTheApiOverTlsWithTheNodeCertificate) {
  EXPECT_EQ(Curl("/healthz", "").status, 200);
  Reply patients = Curl("/api/v1/patients", kViewer);
  EXPECT_EQ(patients.status, 200) << patients.body;
  EXPECT_TRUE(Json::parse(patients.body).is_array());
  EXPECT_EQ(Curl("/api/v1/patients", "").status, 401);
  // Plain HTTP on the same port gets no answer.
  const std::string saved = ca_file_;
  ca_file_.clear();
  EXPECT_NE(Curl("/healthz", "").status, 200);
  ca_file_ = saved;
}

// A renewed [tls] certificate reaches HTTPS on SIGHUP: new connections get it, a
// connection opened before the reload is still answered.
TEST_F(HttpsEndToEnd, SighupServesTheRenewedCertificateWithoutDroppingConnections) {
  const std::string first = FileSerial();
  ASSERT_NE(first.find("serial="), std::string::npos) << first;
  ASSERT_EQ(ServedSerial(), first);

  // A connection that is open across the reload: openssl s_client, its request written
  // through a FIFO only after the new certificate is served.
  const fs::path fifo = dir_.path() / "request.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string open_log = (dir_.path() / "open-connection.log").string();
  Process open_connection({"sh", "-c", "exec openssl s_client -ign_eof -connect 127.0.0.1:" +
                                           std::to_string(http_port_) + " < " + fifo.string()},
                          open_log);
  std::ofstream request(fifo);  // opens once s_client's shell has opened the other end
  ASSERT_TRUE(WaitFor([&] { return open_connection.Log().find("Verify return code") != std::string::npos; },
                      std::chrono::seconds(10)))
      << open_connection.Log();

  MakeCertificate();
  const std::string renewed = FileSerial();
  ASSERT_NE(renewed, first);
  node_->process().Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return ServedSerial() == renewed; }, std::chrono::seconds(10)))
      << "still served: " << ServedSerial() << node_->Log();
  EXPECT_NE(node_->Log().find("HTTPS certificate and key reloaded"), std::string::npos);
  EXPECT_EQ(Curl("/api/v1/patients", kViewer).status, 200);  // curl now trusts only the renewed one

  request << "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" << std::flush;
  request.close();
  EXPECT_EQ(open_connection.Wait(std::chrono::seconds(20)), 0) << open_connection.Log();
  EXPECT_NE(open_connection.Log().find("HTTP/1.1 200"), std::string::npos) << open_connection.Log();
}

TEST_F(HttpEndToEnd, ApiAnswersLikePxsctlAndGuardsItsDoors) {
  EXPECT_EQ(Curl("/healthz", "").status, 200);
  EXPECT_EQ(Curl("/readyz", "").status, 200);

  SendStudies(2);
  // Both studies scored: the course has two points.
  ASSERT_TRUE(WaitFor([&] {
    Reply r = Curl("/api/v1/patients/HTTP-1/history?issuer=TESTS", kViewer);
    if (r.status != 200) return false;
    Json h = Json::parse(r.body, nullptr, false);
    return !h.is_discarded() && h["courses"].size() == 1 && h["courses"][0]["studies"].size() == 2;
  }, std::chrono::seconds(120))) << Curl("/api/v1/patients/HTTP-1/history?issuer=TESTS", kViewer).body;

  // One mapper: the API's history is pxsctl's, byte for byte once parsed.
  Reply api = Curl("/api/v1/patients/HTTP-1/history?issuer=TESTS", kViewer);
  CommandResult ctl = RunCommand({BinDir() + "/pxsctl", "--config", config_, "history", "HTTP-1", "--issuer", "TESTS",
                                  "--json"},
                                 (dir_.path() / "pxsctl.log").string());
  ASSERT_EQ(ctl.exit_code, 0) << ctl.output;
  EXPECT_EQ(Json::parse(api.body), Json::parse(ctl.output));
  // Without the issuer the id is unique here, so the same answer.
  EXPECT_EQ(Json::parse(Curl("/api/v1/patients/HTTP-1/history", kViewer).body), Json::parse(ctl.output));

  // Doors: no token, bad token, viewer writing, bad parameters, unknown ids, oversized.
  Reply no_token = Curl("/api/v1/patients", "");
  EXPECT_EQ(no_token.status, 401);
  EXPECT_TRUE(Json::parse(no_token.body).contains("error"));
  EXPECT_EQ(Curl("/api/v1/patients", "not-a-token").status, 401);
  const std::vector<std::string> post_all = {"-X", "POST", "--data", "{\"all_failed\": true}"};
  EXPECT_EQ(Curl("/api/v1/retry", kViewer, post_all).status, 403);
  Reply retried = Curl("/api/v1/retry", kAdmin, post_all);
  EXPECT_EQ(retried.status, 200) << retried.body;
  Json audit = Json::parse(Curl("/api/v1/audit", kViewer).body);
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit[0]["unix_user"], "http:ops");
  EXPECT_EQ(Curl("/api/v1/patients?limit=0", kViewer).status, 400);
  EXPECT_EQ(Curl("/api/v1/patients/NOBODY/history", kViewer).status, 404);
  EXPECT_EQ(Curl("/api/v1/studies/1.2.3.4.5", kViewer).status, 404);
  const fs::path big = dir_.path() / "big.json";
  std::ofstream(big) << std::string(64 * 1024, ' ');
  EXPECT_EQ(Curl("/api/v1/retry", kAdmin, {"-X", "POST", "--data-binary", "@" + big.string()}).status, 413);
  EXPECT_EQ(Curl("/api/v1/patients?prefix=" + std::string(4000, 'x'), kViewer).status, 413);

  // Patient search finds the name; the JSON of the rest is pxsctl's too.
  Json found = Json::parse(Curl("/api/v1/patients?prefix=SECRETN", kViewer).body);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0]["patient_id"], "HTTP-1");
  Json models = Json::parse(Curl("/api/v1/models", kViewer).body);
  ASSERT_EQ(models.size(), 1u);
  EXPECT_TRUE(models[0].contains("not_for_clinical_use"));
  for (const char* what : {"queue", "failures"}) {
    CommandResult c = RunCommand({BinDir() + "/pxsctl", "--config", config_, what, "--json"},
                                 (dir_.path() / "pxsctl.log").string());
    ASSERT_EQ(c.exit_code, 0) << c.output;
    EXPECT_EQ(Json::parse(Curl(std::string("/api/v1/") + what, kViewer).body), Json::parse(c.output)) << what;
  }

  // The dashboard is served by the node itself.
  Reply index = Curl("/", "");
  EXPECT_EQ(index.status, 200);
  EXPECT_NE(index.body.find("/app.js"), std::string::npos);
  EXPECT_EQ(Curl("/app.js", "").status, 200);
  if (fs::exists("/usr/share/javascript/chart.js/chart.min.js")) EXPECT_EQ(Curl("/vendor/chart.min.js", "").status, 200);

  // The access log names route templates only: no patient id, no name, no query.
  const std::string log = node_->Log();
  EXPECT_NE(log.find("http GET /api/v1/patients/{id}/history 200"), std::string::npos);
  EXPECT_NE(log.find("http GET /api/v1/... 401"), std::string::npos) << log;  // unauthenticated: not even the route
  EXPECT_EQ(log.find("SECRETN"), std::string::npos);
  EXPECT_EQ(log.find("NOBODY"), std::string::npos);
  std::istringstream lines(log);
  int access_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find(" info http ") == std::string::npos) continue;
    ++access_lines;
    EXPECT_EQ(line.find("HTTP-1"), std::string::npos) << line;
    EXPECT_EQ(line.find('?'), std::string::npos) << line;
  }
  EXPECT_GT(access_lines, 20);
}

TEST_F(HttpEndToEnd, MetricsPassPromtoolAndCountTheWork) {
  SendStudies(1);
  ASSERT_TRUE(WaitFor([&] { return Curl("/metrics", kViewer).body.find("pxs_jobs_scored_total 1\n") != std::string::npos; },
                      std::chrono::seconds(120)))
      << Curl("/metrics", kViewer).body;
  EXPECT_EQ(Curl("/metrics", "").status, 401);
  Reply m = Curl("/metrics", kViewer);
  EXPECT_NE(m.body.find("pxs_instances_total{outcome=\"stored\",status=\"0000\"} 1\n"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("pxs_associations_total 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("pxs_ready 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("pxs_image_to_sr_seconds_count 1\n"), std::string::npos);
  if (!Have("promtool")) GTEST_SKIP() << "SKIPPED promtool part: Debian package prometheus not installed";
  const fs::path file = dir_.path() / "metrics.txt";
  std::ofstream(file) << m.body;
  CommandResult check = RunCommand({"sh", "-c", "promtool check metrics < " + file.string()},
                                   (dir_.path() / "promtool.log").string());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// Tokens rotate with SIGHUP, without a restart.
TEST_F(HttpEndToEnd, SighupReplacesTheTokens) {
  EXPECT_EQ(Curl("/api/v1/patients", kViewer).status, 200);
  WriteConfig("the-new-viewer-token");
  node_->process().Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return Curl("/api/v1/patients", kViewer).status == 401; }, std::chrono::seconds(10)))
      << node_->Log();
  EXPECT_EQ(Curl("/api/v1/patients", "the-new-viewer-token").status, 200);
  EXPECT_EQ(Curl("/api/v1/patients", kAdmin).status, 200);
}

// The dashboard in a real headless Chromium (Debian's chromium): the kiosk link's token
// opens the patient list, the patient's deep link draws one chart per model with a point
// per study, and the not-for-clinical-use banner shows. A screenshot is kept under
// build/test-artifacts/.
TEST_F(HttpEndToEnd, DashboardShowsTheTimelineInChromium) {
  std::string chromium;
  for (const char* c : {"chromium", "chromium-browser"}) {
    if (Have(c)) chromium = c;
  }
  if (chromium.empty()) GTEST_SKIP() << "SKIPPED: chromium not installed (apt-get install chromium)";
  SendStudies(2);
  ASSERT_TRUE(WaitFor([&] {
    Json h = Json::parse(Curl("/api/v1/patients/HTTP-1/history", kViewer).body, nullptr, false);
    return !h.is_discarded() && h.contains("courses") && h["courses"].size() == 1 &&
           h["courses"][0]["studies"].size() == 2;
  }, std::chrono::seconds(120)));
  const std::string base = "http://127.0.0.1:" + std::to_string(http_port_) + "/?token=" + kViewer;
  auto browse = [&](const std::string& url, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                     "--user-data-dir=" + (dir_.path() / "chromium").string(),
                                     "--virtual-time-budget=10000", "--window-size=1200,900"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return RunCommand(argv, (dir_.path() / "chromium.log").string());
  };
  CommandResult list = browse(base + "#/", {"--dump-dom"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("href=\"#/patients/HTTP-1?issuer=TESTS\""), std::string::npos) << list.output;
  CommandResult patient = browse(base + "#/patients/HTTP-1", {"--dump-dom"});
  ASSERT_EQ(patient.exit_code, 0) << patient.output;
  EXPECT_NE(patient.output.find("class=\"course-chart\""), std::string::npos) << patient.output;
  EXPECT_NE(patient.output.find("data-points=\"2\""), std::string::npos) << patient.output;
  EXPECT_NE(patient.output.find("data-bands=\"3\""), std::string::npos);  // the test model's 3 bounded bands
  EXPECT_NE(patient.output.find("data-loaded=\"/patients/HTTP-1\""), std::string::npos);
  EXPECT_NE(patient.output.find("NOT FOR CLINICAL USE"), std::string::npos);  // the test model says so
  const fs::path artefacts = fs::path(PXS_BINARY_DIR) / "test-artifacts";
  fs::create_directories(artefacts);
  const fs::path shot = artefacts / "dashboard-patient.png";
  fs::remove(shot);
  CommandResult png = browse(base + "#/patients/HTTP-1", {"--screenshot=" + shot.string()});
  EXPECT_EQ(png.exit_code, 0) << png.output;
  EXPECT_TRUE(fs::exists(shot) && fs::file_size(shot) > 1000) << png.output;
}

}  // namespace
}  // namespace pxs
