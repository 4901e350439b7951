// Character sets end to end (docs/conformance.md 6): storescu sends pxsnode one CR per
// character set (ISO_IR 100, ISO 2022 IR 87 with the PS3.5 Annex H name, ISO 2022 IR
// 149 with the Annex I name, GB18030, ISO_IR 192) and one whose PatientID is padded with
// a NUL; DCMTK's storescp receives the SRs. Every SR must pass dciodvfy with 0 errors,
// declare ISO_IR 192 exactly when it holds non-ASCII text, and show the name as UTF-8
// in dsrdump; `pxsctl patients --json` must list the same UTF-8 names and clean IDs. A
// name that cannot be decoded is stored and scored, escaped and logged (no value).
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "../support/sr_validators.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;
using namespace std::string_literals;

struct Case {
  std::string charset, raw_name, raw_id;
  std::string name, id;  // what the database and the SR must say (UTF-8)
  std::string shown;     // a part of the name dsrdump must print
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {"ISO_IR 100",
       "M\xFC"
       "ller^J\xFCrgen",
       "CS-LATIN1", "Müller^Jürgen", "CS-LATIN1", "Müller"},
      {"\\ISO 2022 IR 87",
       "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
       "CS-JA", "Yamada^Tarou=山田^太郎=やまだ^たろう", "CS-JA", "山田"},
      {"\\ISO 2022 IR 149",
       "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)"
       "C\xb1\xe6\xb5\xbf",
       "CS-KO", "Hong^Gildong=洪^吉洞=홍^길동", "CS-KO", "洪"},
      {"GB18030", "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab", "CS-GB", "Wang^XiaoDong=王^小东",
       "CS-GB", "王"},
      {"ISO_IR 192", "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1", "CS-UTF8",
       "Wang^XiaoDong=王^小東", "CS-UTF8", "小東"},
      {"", "PADDED^NUL", "CS-NUL\0"s, "PADDED^NUL", "CS-NUL", "PADDED"},
      // Latin-1 bytes without a declaration cannot be decoded: stored, scored, reported
      // with %HH in the database and the SR alike, and the log says so.
      {"",
       "M\xFC"
       "ller^Hans",
       "CS-UNDECLARED", "M%FCller^Hans", "CS-UNDECLARED", "M%FCller"},
  };
  return cases;
}

std::vector<fs::path> FilesIn(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  return out;
}

bool IsPlainAsciiName(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

bool HaveTool(const std::string& tool, const fs::path& log) {
  return RunCommand({"sh", "-c", "command -v " + tool}, log.string()).exit_code == 0;
}

// The raw bytes of a header value, or "<absent>".
std::string Raw(const fs::path& file, const DcmTagKey& tag) {
  DcmFileFormat f;
  if (f.loadFile(file.c_str()).bad()) return "<unreadable>";
  DcmElement* e = nullptr;
  if (f.getDataset()->findAndGetElement(tag, e).bad() || e == nullptr) return "<absent>";
  char* v = nullptr;
  Uint32 n = 0;
  if (e->getString(v, n).bad() || v == nullptr) return "";
  return std::string(v, n);
}

TEST(CharsetEndToEnd, EveryCharacterSetReachesTheSrAndTheDatabaseAsUtf8) {
  TempDir dir("pxs-charset-e2e");
  for (const char* tool : {"storescu", "storescp", "dsrdump", "dciodvfy"}) {
    if (!HaveTool(tool, dir.path() / "which.log"))
      GTEST_SKIP() << "SKIPPED: " << tool << " is not installed";
  }
  const fs::path images = dir.path() / "images";
  fs::create_directories(images);
  std::vector<std::string> files;
  int n = 0;
  for (const Case& c : Cases()) {
    SyntheticCr spec;
    spec.study_uid = NewUid();
    spec.series_uid = NewUid();
    spec.sop_uid = NewUid();
    spec.specific_character_set = c.charset;
    spec.patient_name = c.raw_name;
    spec.patient_id = c.raw_id;
    spec.seed = static_cast<uint32_t>(++n);
    files.push_back((images / (c.id + ".dcm")).string());
    ASSERT_TRUE(WriteSyntheticCr(files.back(), spec));
  }

  const uint16_t pacs_port = FreePort(), node_port = FreePort();
  const fs::path pacs_dir = dir.path() / "pacs";
  fs::create_directories(pacs_dir);
  Process pacs({"storescp", "-aet", "PACS", "-od", pacs_dir.string(), std::to_string(pacs_port)},
               (dir.path() / "storescp.log").string());
  ASSERT_TRUE(WaitFor([&] { return PortOpen(pacs_port); }, std::chrono::seconds(10)));
  const std::string tail =
      "[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = " +
      std::to_string(pacs_port) + "\n[reports]\nsend_to = [\"pacs\"]\nretry_initial_s = 1\n";
  const std::string config = WriteNodeConfig(dir.path(), node_port, "", tail);
  Node node(dir.path(), node_port);
  ASSERT_TRUE(node.Start(config)) << node.Log();

  std::vector<std::string> send = {"storescu", "-aec", "PXSNODE", "127.0.0.1",
                                   std::to_string(node_port)};
  send.insert(send.end(), files.begin(), files.end());
  CommandResult sent = RunCommand(send, (dir.path() / "storescu.log").string());
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  // storescp writes each SR under its final name while it receives it: wait until all
  // are there, every one parses and no file grew since the last look, so that a file
  // still being written is not read.
  uintmax_t last_bytes = 0;
  auto all_received = [&] {
    std::vector<fs::path> srs = FilesIn(pacs_dir);
    if (srs.size() < files.size()) return false;
    uintmax_t bytes = 0;
    for (const fs::path& sr : srs) {
      std::error_code ec;
      bytes += fs::file_size(sr, ec);
      DcmFileFormat f;
      if (f.loadFile(sr.c_str()).bad()) return false;
    }
    const bool settled = bytes == last_bytes;
    last_bytes = bytes;
    return settled;
  };
  ASSERT_TRUE(WaitFor(all_received, std::chrono::minutes(3)))
      << "SRs received: " << FilesIn(pacs_dir).size() << " of " << files.size() << "\n"
      << node.Log();

  std::map<std::string, fs::path> sr_of;  // PatientID in the SR -> SR
  for (const fs::path& sr : FilesIn(pacs_dir)) sr_of[Raw(sr, DCM_PatientID)] = sr;
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.id);
    ASSERT_TRUE(sr_of.count(c.id))
        << "no SR whose PatientID is exactly '" << c.id << "' (NUL or padding kept?)";
    const fs::path& sr = sr_of[c.id];
    EXPECT_EQ(Raw(sr, DCM_PatientName), c.name);
    // ISO_IR 192 exactly when something in the SR is not ASCII (here: the name).
    EXPECT_EQ(Raw(sr, DCM_SpecificCharacterSet),
              IsPlainAsciiName(c.name) ? "<absent>" : "ISO_IR 192");
    CommandResult v = RunCommand({"dciodvfy", sr.string()}, (dir.path() / "dciodvfy.log").string());
    int errors = 0;
    std::istringstream lines(v.output);
    for (std::string line; std::getline(lines, line);)
      errors += line.find("Error") != std::string::npos;
    EXPECT_EQ(errors, 0) << v.output;
    ExpectValidForPixelmed(sr, dir.path() / "pixelmed.log");
    CommandResult dump =
        RunCommand({"dsrdump", sr.string()}, (dir.path() / "dsrdump.log").string());
    EXPECT_EQ(dump.exit_code, 0) << dump.output;
    EXPECT_NE(dump.output.find(c.shown), std::string::npos) << dump.output;
  }

  // One warning, for the undeclared Latin-1 name only, and without the name in it.
  const std::string log = node.Log();
  const std::string warning = "text kept with %HH escapes";
  EXPECT_NE(log.find(warning), std::string::npos) << log;
  EXPECT_EQ(log.find(warning), log.rfind(warning)) << log;
  EXPECT_EQ(log.find("ller^Hans"), std::string::npos) << "a patient name in the log";

  CommandResult listed =
      RunCommand({BinDir() + "/pxsctl", "--config", config, "--json", "patients"},
                 (dir.path() / "patients.json").string());
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  nlohmann::json patients =
      nlohmann::json::parse(listed.output, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(patients.is_array()) << listed.output;
  std::map<std::string, std::string> name_of;
  for (const auto& p : patients) {
    if (p["patient_id"].is_string())
      name_of[p["patient_id"].get<std::string>()] = p["name"].get<std::string>();
  }
  for (const Case& c : Cases()) {
    EXPECT_EQ(name_of[c.id], c.name) << c.id << " in:\n" << listed.output;
  }
  EXPECT_EQ(name_of.size(), Cases().size()) << listed.output;
}

}  // namespace
}  // namespace pxs
