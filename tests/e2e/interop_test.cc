// Interoperability: a second, independent DICOM implementation (dcmjs-dimse, JavaScript,
// from tests/interop) does a C-ECHO and C-STOREs compressed files (JPEG-LS lossless and
// JPEG baseline, in their own transfer syntaxes) to the real pxsnode.
#include <gtest/gtest.h>

#include <filesystem>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>

#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;

std::string Read(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  item.findAndGetOFString(tag, v);
  return v.c_str();
}

TEST(Interop, DcmjsDimseEchoesAndStoresCompressedFiles) {
  std::string interop = std::string(PXS_SOURCE_DIR) + "/tests/interop";
  if (!fs::exists(interop + "/node_modules/dcmjs-dimse")) {
    GTEST_SKIP() << "SKIPPED: tests/interop/node_modules not installed (scripts/install-deps.sh runs npm ci)";
  }
  std::string data = SharedDataDir();
  PXS_SKIP_WITHOUT_SHARED_DATA(data);
  TempDir dir("pxs-interop");
  uint16_t port = FreePort();
  Node node(dir.path(), port);
  ASSERT_TRUE(node.Start(WriteNodeConfig(dir.path(), port))) << node.Log();

  // Every manifest file in a compressed transfer syntax dcmjs-dimse can send unchanged.
  std::vector<std::string> files;
  std::map<std::string, std::string> ts_of;
  for (auto& row : ReadManifest(data + "/dicom/manifest.csv")) {
    const std::string& ts = row["transfer_syntax_uid"];
    if ((ts == "1.2.840.10008.1.2.4.80" || ts == "1.2.840.10008.1.2.4.50") && row["expected_scp"] == "store") {
      files.push_back(data + "/dicom/" + row["file"]);
      ts_of[files.back()] = ts;
    }
  }
  ASSERT_EQ(files.size(), 2u);
  std::vector<std::string> argv = {"node", interop + "/interop.js", "127.0.0.1", std::to_string(port), "PXSNODE"};
  argv.insert(argv.end(), files.begin(), files.end());
  CommandResult r = RunCommand(argv, (dir.path() / "interop.log").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("echo: 0x0000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("done: 3 request(s), 0 failure(s)"), std::string::npos) << r.output;

  auto db = Database::Open(DatabasePathFor(node.data_dir().string()), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok());
  for (const std::string& f : files) {
    DcmFileFormat sent;
    ASSERT_TRUE(sent.loadFile(f.c_str(), EXS_Unknown, EGL_noChange, 1024).good());
    DcmDataset* ds = sent.getDataset();
    std::string sop = Read(*ds, DCM_SOPInstanceUID);
    EXPECT_TRUE(*(*db)->HasInstance(sop)) << f;
    // Stored as sent: still in its compressed transfer syntax.
    fs::path stored = node.data_dir() / "dicom" / Read(*ds, DCM_StudyInstanceUID) / Read(*ds, DCM_SeriesInstanceUID) /
                      (sop + ".dcm");
    DcmFileFormat kept;
    ASSERT_TRUE(kept.loadFile(stored.c_str(), EXS_Unknown, EGL_noChange, 1024).good()) << stored;
    EXPECT_EQ(Read(*kept.getMetaInfo(), DCM_TransferSyntaxUID), ts_of[f]);
    EXPECT_EQ(Read(*kept.getMetaInfo(), DCM_SourceApplicationEntityTitle), "DCMJSSCU");
  }
}

}  // namespace
}  // namespace pxs
