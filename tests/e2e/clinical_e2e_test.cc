// Clinical context end to end (issue 15): the REAL pxsnode with [hl7] enabled over
// loopback, Debian python3-hl7's `mllp_send` as the HL7 sender, storescu for the
// images, the node's own SQLite file read back through a read-only ObservationStore.
// ACK AA only for what was stored; AE/AR with an ERR saying why and nothing stored for
// bad input (wrong encoding characters, non-numeric values, a 10 MB message, a sender
// not allowed, a truncated MLLP frame); a resend (same MSH-10) stored once; unknown
// LOINC codes stored but not plotted; an observation for a patient not seen yet on the
// patient's timeline once the images come; SIGTERM stops cleanly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <tuple>

#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "../support/sr_validators.h"
#include "pxs/common/files.h"
#include "pxs/reports/sr_reader.h"
#include "pxs/storage/observations.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using Json = nlohmann::json;

constexpr const char* kViewer = "ward-token-0123";
constexpr const char* kAdmin = "ehr-token-4567";

bool Have(const std::string& tool) { return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0; }

// An ORU^R01 (segments end in CR) from MONITOR^ICU for patient `pid3`.
std::string Oru(const std::string& control_id, const std::string& pid3, const std::string& obx,
                const std::string& msh2 = "^~\\&", const std::string& sender = "MONITOR|ICU",
                const std::string& type = "ORU^R01^ORU_R01") {
  return "MSH|" + msh2 + "|" + sender + "|PXSNODE|PXS|20260101093000||" + type + "|" + control_id + "|P|2.5.1\r" +
         "PID|1||" + pid3 + "||DOE^JANE\r" + "OBR|1|||VITALS^Vital signs|||20260101090000\r" + obx;
}

std::string Obx(int n, const std::string& type, const std::string& code, const std::string& value,
                const std::string& unit, const std::string& when = "") {
  return "OBX|" + std::to_string(n) + "|" + type + "|" + code + "||" + value + "|" + unit + "|||||F|||" + when + "\r";
}

class ClinicalEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Have("mllp_send")) GTEST_SKIP() << "SKIPPED: mllp_send not installed (python3-hl7; scripts/install-deps.sh)";
    // A PACS (storescp) the SRs and trend sheets go to.
    fs::create_directories(pacs_dir_);
    pacs_ = std::make_unique<Process>(std::vector<std::string>{"storescp", "-aet", "PACS", "-od", pacs_dir_.string(),
                                                               std::to_string(pacs_port_)},
                                      (dir_.path() / "storescp.log").string());
    ASSERT_TRUE(WaitFor([&] { return PortOpen(pacs_port_); }, std::chrono::seconds(10)));
    const std::string tail = "[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = " +
                             std::to_string(pacs_port_) +
                             "\n[reports]\nsend_to = [\"pacs\"]\nretry_initial_s = 1\ntrend_sheet = true\n"
                             "clinical_window_h = 24\n"
                             "[http]\nenabled = true\nport = " + std::to_string(http_port_) +
                             "\n[[http.tokens]]\nname = \"ward\"\nrole = \"viewer\"\nsha256 = \"" + Sha256Hex(kViewer) +
                             "\"\n[[http.tokens]]\nname = \"ehr\"\nrole = \"admin\"\nsha256 = \"" + Sha256Hex(kAdmin) + "\"\n"
                             "[hl7]\nenabled = true\nport = " + std::to_string(hl7_port_) +
                             "\nallowed_senders = [\"MONITOR\", \"LAB^MAIN\"]\n"
                             "[[hl7.patient_authorities]]\nauthority = \"HOSP\"\nissuer = \"TESTS\"\n";
    config_ = WriteNodeConfig(dir_.path(), node_port_, "", tail);
    node_ = std::make_unique<Node>(dir_.path(), node_port_);
    ASSERT_TRUE(node_->Start(config_)) << node_->Log();
    ASSERT_TRUE(WaitFor([&] { return PortOpen(hl7_port_); }, std::chrono::seconds(10))) << node_->Log();
  }
  void TearDown() override {
    if (HasFailure() && node_) std::cerr << "---- pxsnode log ----\n" << node_->Log() << "\n";
  }

  // Sends the messages with mllp_send (one connection, one after the other) and returns
  // each ACK's MSA-1 with the whole ACKs' text.
  std::vector<std::string> Send(const std::vector<std::string>& messages, std::string* acks = nullptr) {
    const fs::path file = dir_.path() / ("msgs" + std::to_string(++sends_) + ".hl7");
    {
      std::ofstream out(file, std::ios::binary);
      for (const std::string& m : messages) out << '\x0b' << m << "\x1c\r";
    }
    CommandResult r = RunCommand({"mllp_send", "--port", std::to_string(hl7_port_), "--file", file.string(), "127.0.0.1"},
                                 (dir_.path() / "mllp_send.log").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    if (acks) *acks = r.output;
    std::vector<std::string> codes;
    static const std::regex kMsa("MSA\\|(A[AER])\\|");
    for (std::sregex_iterator it(r.output.begin(), r.output.end(), kMsa), end; it != end; ++it) codes.push_back((*it)[1]);
    return codes;
  }

  std::vector<Observation> Stored(const std::string& patient, const std::string& issuer = "TESTS") {
    auto store = ObservationStore::Open((node_->data_dir() / "pxsnode.db").string(), Database::Mode::kReadOnly);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return {};
    auto rows = (*store)->PatientObservations({patient, issuer}, std::nullopt, std::nullopt);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? *rows : std::vector<Observation>{};
  }

  struct Reply {
    int status = 0;
    Json body;
  };
  // curl POSTs the JSON to the node's HTTP server.
  Reply Post(const std::string& path, const std::string& body, const std::string& token,
             const std::string& method = "POST") {
    const std::string in = (dir_.path() / "fhir-in.json").string(), out = (dir_.path() / "fhir-out.json").string();
    std::ofstream(in, std::ios::binary) << body;
    std::vector<std::string> argv = {"curl", "-s", "-o", out, "-w", "%{http_code}", "-X", method,
                                     "-H", "Content-Type: application/fhir+json"};
    if (method == "POST") argv.insert(argv.end(), {"--data-binary", "@" + in});
    if (!token.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    argv.push_back("http://127.0.0.1:" + std::to_string(http_port_) + path);
    CommandResult r = RunCommand(argv, (dir_.path() / "curl.log").string());
    Reply reply;
    reply.status = std::atoi(r.output.c_str());
    std::ifstream f(out);
    reply.body = Json::parse(std::string(std::istreambuf_iterator<char>(f), {}), nullptr, false);
    return reply;
  }

  std::vector<fs::path> PacsFiles() {
    std::vector<fs::path> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(pacs_dir_, ec)) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir dir_{"pxs-clinical-e2e"};
  fs::path pacs_dir_ = dir_.path() / "pacs";
  uint16_t pacs_port_ = FreePort();
  std::unique_ptr<Process> pacs_;
  uint16_t node_port_ = FreePort();
  uint16_t hl7_port_ = FreePort();
  uint16_t http_port_ = FreePort();
  std::string config_;
  std::unique_ptr<Node> node_;
  int sends_ = 0;
};

TEST_F(ClinicalEndToEnd, StoresLoincObservationsAcksAfterTheCommitAndAResendOnce) {
  const std::string msg =
      Oru("VIT-1", "P-100^^^HOSP^MR",
          Obx(1, "NM", "59408-5^SpO2^LN", "91", "%^percent^UCUM", "20260101085500") +
              Obx(2, "NM", "3151-8^O2 flow^LN", "4", "L/min") + Obx(3, "SN", "1988-5^CRP^LN", "^48.5", "mg/L") +
              Obx(4, "NM", "8867-4^Heart rate^LN", "104", "/min") +
              Obx(5, "NM", "2345-7^Glucose^LN", "6.1", "mmol/L") +  // real LOINC, not in the node's table
              Obx(6, "ST", "8480-6^BP^LN", "high", ""));           // text: a warning, not kept
  std::string acks;
  EXPECT_EQ(Send({msg}, &acks), std::vector<std::string>{"AA"}) << acks;
  EXPECT_NE(acks.find("MSA|AA|VIT-1"), std::string::npos) << acks;
  EXPECT_NE(acks.find("ERR|"), std::string::npos) << "the text OBX is listed as a warning: " << acks;
  std::vector<Observation> rows = Stored("P-100");  // PID-3.4 HOSP mapped to the images' issuer TESTS
  ASSERT_EQ(rows.size(), 5u);
  std::map<std::string, Observation> by_code;
  for (const Observation& o : rows) by_code[o.loinc] = o;
  EXPECT_DOUBLE_EQ(by_code["59408-5"].value, 91);
  EXPECT_EQ(by_code["59408-5"].unit, "%");
  EXPECT_EQ(by_code["59408-5"].observed_at_text, "20260101085500");  // OBX-14
  EXPECT_EQ(by_code["3151-8"].observed_at_text, "20260101090000");   // OBR-7 when OBX-14 is empty
  EXPECT_DOUBLE_EQ(by_code["1988-5"].value, 48.5);
  EXPECT_TRUE(by_code["1988-5"].plotted);
  EXPECT_FALSE(by_code["2345-7"].plotted);  // stored, not plotted
  EXPECT_EQ(by_code["2345-7"].display, "Glucose");
  EXPECT_EQ(by_code["59408-5"].sender, "MONITOR^ICU");
  EXPECT_TRUE(Stored("P-100", "HOSP").empty());

  // The same MSH-10 again (a sender that lost the ACK): AA, stored once.
  EXPECT_EQ(Send({msg}), std::vector<std::string>{"AA"});
  EXPECT_EQ(Stored("P-100").size(), 5u);

  // SIGTERM: the listener stops with the node, exit 0.
  node_->process().Signal(SIGTERM);
  EXPECT_EQ(node_->process().Wait(std::chrono::seconds(60)), 0) << node_->Log();
  EXPECT_NE(node_->Log().find("pxsnode stopped"), std::string::npos);
}

TEST_F(ClinicalEndToEnd, BadInputIsAnsweredAeOrArWithAReasonAndNothingIsStored) {
  const std::string spo2 = Obx(1, "NM", "59408-5^SpO2^LN", "90", "%", "20260101085500");
  std::string acks;
  std::vector<std::string> codes =
      Send({Oru("BAD-ENC", "P-200^^^HOSP", spo2, "^^\\&"),                                   // repeated delimiter
            Oru("BAD-NUM", "P-200^^^HOSP", Obx(1, "NM", "59408-5^SpO2^LN", "ninety", "%", "20260101")),
            Oru("BAD-TYPE", "P-200^^^HOSP", spo2, "^~\\&", "MONITOR|ICU", "ADT^A01"),
            Oru("BAD-SENDER", "P-200^^^HOSP", spo2, "^~\\&", "INTRUDER|X"),
            Oru("BAD-TIME", "P-200^^^HOSP", Obx(1, "NM", "59408-5^SpO2^LN", "90", "%", "2026130199")),
            Oru("BAD-PID", "^^^HOSP", spo2)},
           &acks);
  EXPECT_EQ(codes, (std::vector<std::string>{"AR", "AE", "AR", "AR", "AE", "AE"})) << acks;
  EXPECT_NE(acks.find("MSH-2"), std::string::npos) << acks;
  EXPECT_NE(acks.find("'ninety' of type NM is not a number"), std::string::npos) << acks;
  EXPECT_NE(acks.find("unsupported message type 'ADT'"), std::string::npos) << acks;
  EXPECT_NE(acks.find("allowed_senders"), std::string::npos) << acks;
  EXPECT_NE(acks.find("2026130199"), std::string::npos) << acks;
  EXPECT_NE(acks.find("PID-3"), std::string::npos) << acks;
  EXPECT_NE(acks.find("ERR|"), std::string::npos) << acks;

  // 10 MB: over [hl7] max_message_bytes (1 MiB by default): AR, the connection goes on.
  std::string big = Oru("BIG", "P-200^^^HOSP", spo2) + "NTE|1||" + std::string(10 << 20, 'x') + "\r";
  codes = Send({big, Oru("AFTER-BIG", "P-201^^^HOSP", spo2)}, &acks);
  EXPECT_EQ(codes, (std::vector<std::string>{"AR", "AA"})) << acks.substr(0, 2000);
  EXPECT_NE(acks.find("max_message_bytes"), std::string::npos) << acks.substr(0, 2000);

  // A truncated MLLP frame (start block, half a message, connection closed): not
  // stored, not acknowledged; the node goes on.
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(hl7_port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string half = "\x0b" + Oru("CUT", "P-200^^^HOSP", spo2).substr(0, 80);
    ASSERT_EQ(::write(fd, half.data(), half.size()), static_cast<ssize_t>(half.size()));
    ::close(fd);
  }
  EXPECT_EQ(Send({Oru("AFTER-CUT", "P-201^^^HOSP", spo2)}), std::vector<std::string>{"AA"});
  EXPECT_TRUE(WaitFor([&] { return node_->Log().find("connection closed inside an MLLP frame") != std::string::npos; },
                      std::chrono::seconds(5)))
      << node_->Log();

  EXPECT_TRUE(Stored("P-200").empty());
  EXPECT_EQ(Stored("P-201").size(), 2u);
  // The log names neither the patient nor the values at the default level.
  EXPECT_EQ(node_->Log().find("DOE"), std::string::npos);
}

TEST_F(ClinicalEndToEnd, AnObservationBeforeTheFirstImageIsOnTheTimelineWhenTheImagesCome) {
  ASSERT_EQ(Send({Oru("EARLY-1", "P-300^^^HOSP^MR", Obx(1, "NM", "59408-5^SpO2^LN", "88", "%", "20260101110000") +
                                                        Obx(2, "NM", "1988-5^CRP^LN", "120", "mg/L", "20251231080000"))}),
            std::vector<std::string>{"AA"});
  // No image yet: pxsctl knows no such patient, the observations are kept all the same.
  CommandResult none = RunCommand({BinDir() + "/pxsctl", "--db", (node_->data_dir() / "pxsnode.db").string(), "--json",
                                   "patients", "P-300"},
                                  (dir_.path() / "pxsctl.log").string());
  EXPECT_EQ(none.output.find("P-300"), std::string::npos) << none.output;
  ASSERT_EQ(Stored("P-300").size(), 2u);

  SyntheticCr spec;
  spec.patient_id = "P-300";
  spec.issuer = "TESTS";
  spec.study_uid = NewUid();
  spec.series_uid = NewUid();
  spec.sop_uid = NewUid();
  spec.study_date = "20260101";  // StudyTime 120000: one hour after the SpO2
  const std::string file = (dir_.path() / "cr.dcm").string();
  ASSERT_TRUE(WriteSyntheticCr(file, spec));
  CommandResult sent = RunCommand({"storescu", "-aec", "PXSNODE", "127.0.0.1", std::to_string(node_port_), file},
                                  (dir_.path() / "storescu.log").string());
  ASSERT_EQ(sent.exit_code, 0) << sent.output;

  Json patients;
  ASSERT_TRUE(WaitFor(
      [&] {
        CommandResult r = RunCommand({BinDir() + "/pxsctl", "--db", (node_->data_dir() / "pxsnode.db").string(), "--json",
                                      "patients", "P-300"},
                                     (dir_.path() / "pxsctl.log").string());
        if (r.exit_code != 0) return false;
        patients = Json::parse(r.output, nullptr, false);
        return patients.is_array() && !patients.empty();
      },
      std::chrono::seconds(30)))
      << node_->Log();
  // The images' key (PatientID + IssuerOfPatientID) finds the observations that came first.
  const PatientKey key{patients[0].value("patient_id", ""), patients[0].value("issuer", "")};
  EXPECT_EQ(key.patient_id, "P-300") << patients.dump();
  EXPECT_EQ(key.issuer, "TESTS") << patients.dump();
  auto store = ObservationStore::Open((node_->data_dir() / "pxsnode.db").string(), Database::Mode::kReadOnly);
  ASSERT_TRUE(store.ok());
  const int64_t image_at = *WallClockMs("20260101", "120000");
  auto near = (*store)->ObservationsNear(key, image_at, 6 * 3'600'000);
  ASSERT_TRUE(near.ok());
  ASSERT_EQ(near->size(), 1u);  // the CRP is 28 h before: outside a 6 h window
  EXPECT_EQ((*near)[0].loinc, "59408-5");
  EXPECT_DOUBLE_EQ((*near)[0].value, 88);

  // The SR and the trend sheet reach the PACS; the SR's "Clinical Context" holds the
  // SpO2 with its own observation time, not the CRP (28 h before: outside 24 h).
  ASSERT_TRUE(WaitFor([&] { return PacsFiles().size() >= 2; }, std::chrono::minutes(2)))
      << PacsFiles().size() << " files at the PACS\n" << node_->Log();
  int srs = 0, sheets = 0;
  for (const fs::path& f : PacsFiles()) {
    SCOPED_TRACE(f.string());
    CommandResult v = RunCommand({"dciodvfy", f.string()}, (dir_.path() / "dciodvfy.log").string());
    EXPECT_EQ(v.output.find("Error"), std::string::npos) << v.output;
    if (f.filename().string().rfind("SR", 0) == 0) {
      ++srs;
    ExpectValidForPixelmed(f, dir_.path() / "pixelmed.log");
      auto content = ReadStructuredReport(f.string());
      ASSERT_TRUE(content.ok()) << content.status().ToString();
      ASSERT_EQ(content->clinical_context.size(), 1u);
      EXPECT_EQ(content->clinical_context[0].loinc_code, "59408-5");
      EXPECT_DOUBLE_EQ(content->clinical_context[0].value, 88);
      EXPECT_EQ(content->clinical_context[0].unit, "%");
      EXPECT_EQ(content->clinical_context[0].observed_at.substr(0, 14), "20260101110000");
      CommandResult dump = RunCommand({"dsrdump", f.string()}, (dir_.path() / "dsrdump.log").string());
      EXPECT_NE(dump.output.find("Clinical Context"), std::string::npos) << dump.output;
    } else {
      ++sheets;  // the Secondary Capture renders (dcmj2pnm reads it back)
      const std::string png = (dir_.path() / "sheet.png").string();
      CommandResult r = RunCommand({"dcmj2pnm", "--write-png", f.string(), png}, (dir_.path() / "dcmj2pnm.log").string());
      EXPECT_EQ(r.exit_code, 0) << r.output;
      EXPECT_GT(fs::file_size(png), 10'000u);
    }
  }
  EXPECT_EQ(srs, 1);
  EXPECT_EQ(sheets, 1);

  // pxsctl history and the REST API: beside the study the nearest SpO2 / O2 / CRP within
  // the window (24 h: no CRP; 30 h: the CRP 28 h before).
  const std::string db = (node_->data_dir() / "pxsnode.db").string();
  auto history = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {BinDir() + "/pxsctl", "--db", db, "history", "P-300"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, (dir_.path() / "history.log").string());
  };
  CommandResult json = history({"--json"});
  ASSERT_EQ(json.exit_code, 0) << json.output;
  Json h = Json::parse(json.output.substr(json.output.find('{')));
  ASSERT_EQ(h["studies"].size(), 1u) << h.dump();
  const Json& clinical = h["studies"][0]["clinical"];
  EXPECT_EQ(clinical["window_h"], 24.0) << clinical.dump();
  EXPECT_EQ(clinical["spo2"]["value"], 88.0) << clinical.dump();
  EXPECT_EQ(clinical["spo2"]["loinc"], "59408-5") << clinical.dump();
  EXPECT_EQ(clinical["spo2"]["hours_from_study"], -1.0) << clinical.dump();
  EXPECT_TRUE(clinical["o2"].is_null()) << clinical.dump();
  EXPECT_TRUE(clinical["crp"].is_null()) << clinical.dump();
  CommandResult wide = history({"--json", "--clinical-window-h", "30"});
  ASSERT_EQ(wide.exit_code, 0) << wide.output;
  EXPECT_EQ(Json::parse(wide.output.substr(wide.output.find('{')))["studies"][0]["clinical"]["crp"]["value"], 120.0)
      << wide.output;
  CommandResult text = history({});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("SPO2"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("88.00 % -1.0h"), std::string::npos) << text.output;
  EXPECT_EQ(history({"--clinical-window-h", "0"}).exit_code, 2);  // out of range: a usage error

  Reply api = Post("/api/v1/patients/P-300/history", "", kViewer, "GET");
  ASSERT_EQ(api.status, 200) << api.body.dump();
  EXPECT_EQ(api.body["studies"][0]["clinical"], clinical) << "the API says what pxsctl says";
  api = Post("/api/v1/patients/P-300/history?clinical_window_h=30", "", kViewer, "GET");
  EXPECT_EQ(api.body["studies"][0]["clinical"]["crp"]["value"], 120.0) << api.body.dump();
  api = Post("/api/v1/patients/P-300/history?clinical_window_h=abc", "", kViewer, "GET");
  EXPECT_EQ(api.status, 400) << api.body.dump();
}

std::string FhirObservation(const std::string& id, const std::string& patient, const std::string& loinc, double value,
                            const std::string& unit, const std::string& when) {
  Json o = {{"resourceType", "Observation"},
            {"identifier", Json::array({{{"system", "urn:ehr:obs"}, {"value", id}}})},
            {"status", "final"},
            {"code", {{"coding", Json::array({{{"system", "http://loinc.org"}, {"code", loinc}}})}}},
            {"subject", {{"identifier", {{"system", "HOSP"}, {"value", patient}}}}},
            {"effectiveDateTime", when},
            {"valueQuantity", {{"value", value}, {"unit", unit}, {"system", "http://unitsofmeasure.org"}, {"code", unit}}}};
  return o.dump();
}

TEST_F(ClinicalEndToEnd, FhirObservationsAndTransactionBundlesAreStoredErrorsAreOperationOutcomes) {
  if (!Have("curl")) GTEST_SKIP() << "SKIPPED: curl not installed";
  ASSERT_TRUE(WaitFor([&] { return PortOpen(http_port_); }, std::chrono::seconds(10))) << node_->Log();
  const std::string one = FhirObservation("o-1", "P-400", "59408-5", 92, "%", "2026-01-01T10:15:00+01:00");
  Reply r = Post("/fhir/Observation", one, kAdmin);
  EXPECT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body.value("resourceType", ""), "OperationOutcome") << r.body.dump();
  std::vector<Observation> rows = Stored("P-400");  // system HOSP mapped to the images' issuer
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].source, "fhir");
  EXPECT_EQ(rows[0].sender, "fhir:ehr");
  EXPECT_DOUBLE_EQ(rows[0].value, 92);
  EXPECT_EQ(rows[0].observed_at_ms, *WallClockMs("20260101", "101500"));  // wall clock, offset kept apart
  ASSERT_TRUE(rows[0].utc_offset_min.has_value());
  EXPECT_EQ(*rows[0].utc_offset_min, 60);
  // A resend (same identifier): 200, stored once.
  r = Post("/fhir/Observation", one, kAdmin);
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(Stored("P-400").size(), 1u);

  // A transaction Bundle: every entry or none.
  Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"id", "b-1"}, {"entry", Json::array()}};
  for (const auto& [id, loinc, value, unit] :
       std::vector<std::tuple<std::string, std::string, double, std::string>>{{"o-2", "1988-5", 35.5, "mg/L"},
                                                                              {"o-3", "3151-8", 2, "L/min"},
                                                                              {"o-4", "2345-7", 5.4, "mmol/L"}}) {
    bundle["entry"].push_back({{"resource", Json::parse(FhirObservation(id, "P-400", loinc, value, unit, "2026-01-01T11:00:00Z"))},
                               {"request", {{"method", "POST"}, {"url", "Observation"}}}});
  }
  r = Post("/fhir", bundle.dump(), kAdmin);
  EXPECT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body.value("type", ""), "transaction-response") << r.body.dump();
  ASSERT_EQ(r.body["entry"].size(), 3u);
  EXPECT_EQ(r.body["entry"][0]["response"]["status"], "201 Created");
  rows = Stored("P-400");
  ASSERT_EQ(rows.size(), 4u);
  int plotted = 0;
  for (const Observation& o : rows) plotted += o.plotted;
  EXPECT_EQ(plotted, 3);  // the glucose is stored, not plotted

  // Errors: OperationOutcome naming the element; nothing of the request stored.
  auto expect_outcome = [&](const Reply& reply, int status, const std::string& expression, const std::string& text) {
    EXPECT_EQ(reply.status, status) << reply.body.dump();
    ASSERT_TRUE(reply.body.is_object()) << "not JSON";
    EXPECT_EQ(reply.body.value("resourceType", ""), "OperationOutcome") << reply.body.dump();
    const Json& issue = reply.body["issue"][0];
    EXPECT_EQ(issue.value("severity", ""), "error") << reply.body.dump();
    if (!expression.empty()) {
      EXPECT_EQ(issue["expression"][0], expression) << reply.body.dump();
    }
    EXPECT_NE(issue.value("diagnostics", "").find(text), std::string::npos) << reply.body.dump();
  };
  expect_outcome(Post("/fhir/Observation", "{not json", kAdmin), 400, "", "not JSON");
  Json no_subject = Json::parse(FhirObservation("o-5", "P-401", "59408-5", 90, "%", "2026-01-01"));
  no_subject["subject"] = {{"reference", "Patient/123"}};
  expect_outcome(Post("/fhir/Observation", no_subject.dump(), kAdmin), 400, "Observation.subject.identifier.value",
                 "is required");
  Json text_value = Json::parse(FhirObservation("o-6", "P-401", "59408-5", 90, "%", "2026-01-01"));
  text_value.erase("valueQuantity");
  text_value["valueString"] = "ninety";
  expect_outcome(Post("/fhir/Observation", text_value.dump(), kAdmin), 400, "Observation.valueString", "numeric");
  Json bad_bundle = bundle;
  bad_bundle["id"] = "b-2";
  bad_bundle["entry"][0]["resource"]["subject"]["identifier"]["value"] = "P-401";
  bad_bundle["entry"][1]["resource"]["effectiveDateTime"] = "2026-13-01";
  expect_outcome(Post("/fhir", bad_bundle.dump(), kAdmin), 400, "Bundle.entry[1].resource.effectiveDateTime",
                 "2026-13-01");
  Json not_transaction = bundle;
  not_transaction["type"] = "collection";
  expect_outcome(Post("/fhir", not_transaction.dump(), kAdmin), 400, "Bundle.type", "collection");
  expect_outcome(Post("/fhir/Observation", one, kViewer), 403, "", "admin");
  expect_outcome(Post("/fhir/Observation", one, ""), 401, "", "bearer token");
  expect_outcome(Post("/fhir/Observation", "", kAdmin, "GET"), 405, "", "POST");
  expect_outcome(Post("/fhir/Observation", std::string(2 << 20, ' '), kAdmin), 413, "", "larger");
  EXPECT_TRUE(Stored("P-401").empty());
  EXPECT_EQ(Stored("P-400").size(), 4u);
}

}  // namespace
}  // namespace pxs
