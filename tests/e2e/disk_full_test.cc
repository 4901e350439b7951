// Disk full: data_dir on a small tmpfs mount. C-STOREs that do not fit get 0xA700
// (Refused: Out of Resources), nothing acknowledged is lost, and the node stores again
// once space returns (the mount is grown). Needs root for mount(8); skips otherwise.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <filesystem>
#include <set>

#include "../support/dicom_gen.h"
#include "../support/node_process.h"
#include "../support/shared_data.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using namespace pxs::testing;

class DiskFull : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_point_ = dir_.path() / "small";
    fs::create_directories(mount_point_);
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=24m") != 0) {
      GTEST_SKIP() << "SKIPPED: cannot mount a small tmpfs here (needs root): " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (node_) node_->process().Kill(SIGKILL);
    if (mounted_) ::umount2(mount_point_.c_str(), MNT_DETACH);
  }
  void Grow(const char* size) {
    std::string opts = std::string("size=") + size;
    ASSERT_EQ(::mount("tmpfs", mount_point_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()), 0) << std::strerror(errno);
  }

  TempDir dir_{"pxs-diskfull"};
  fs::path mount_point_;
  bool mounted_ = false;
  std::unique_ptr<Node> node_;
};

TEST_F(DiskFull, StoresGetA700WhenFullAndSucceedAgainWhenSpaceReturns) {
  // The node's own folder is on the small mount: images, temp files and the database.
  uint16_t port = FreePort();
  fs::path node_dir = mount_point_;
  std::string config = WriteNodeConfig(dir_.path(), port);
  {
    // Point data_dir at the mount (WriteNodeConfig puts it next to the config).
    std::ifstream in(config);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::string from = "data_dir = \"" + (dir_.path() / "data").string() + "\"";
    text.replace(text.find(from), from.size(), "data_dir = \"" + (node_dir / "data").string() + "\"");
    std::ofstream(config) << text;
  }
  node_ = std::make_unique<Node>(dir_.path(), port);
  ASSERT_TRUE(node_->Start(config)) << node_->Log();

  // 20 instances of 2 MiB each: about 40 MiB into a 24 MiB file system.
  std::map<std::string, std::string> sop_of;
  std::vector<std::string> files = WriteSyntheticSeries((dir_.path() / "send").string(), 20, 1024, &sop_of);
  ASSERT_EQ(files.size(), 20u);
  auto store = [&](const std::vector<std::string>& which, const std::string& log) {
    std::vector<std::string> argv = {"storescu", "-v", "-nh", "-aec", "PXSNODE", "127.0.0.1", std::to_string(port)};
    argv.insert(argv.end(), which.begin(), which.end());
    return RunCommand(argv, (dir_.path() / log).string());
  };
  CommandResult first = store(files, "storescu-full.log");
  EXPECT_NE(first.output.find("Refused: OutOfResources"), std::string::npos) << first.output;
  EXPECT_NE(node_->Log().find("0xA700"), std::string::npos);

  StorescuOutcomes outcomes = ParseStorescuLog(first.output);
  const std::set<std::string>& acked = outcomes.succeeded;
  const std::set<std::string>& refused = outcomes.out_of_resources;
  EXPECT_GT(acked.size(), 0u);
  EXPECT_GT(refused.size(), 0u);
  EXPECT_TRUE(fs::is_empty(node_dir / "data" / "incoming")) << "a refused instance left its temp file";

  // Space returns: the refused instances now go in.
  Grow("256m");
  std::vector<std::string> retry(refused.begin(), refused.end());
  CommandResult second = store(retry, "storescu-retry.log");
  EXPECT_EQ(second.output.find("Refused: OutOfResources"), std::string::npos) << second.output;

  node_->process().Signal(SIGTERM);
  EXPECT_EQ(node_->process().Wait(std::chrono::seconds(60)), 0) << node_->Log();
  auto db = Database::Open(DatabasePathFor((node_dir / "data").string()), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  for (const std::string& f : files) {
    EXPECT_TRUE(*(*db)->HasInstance(sop_of[f])) << f << " missing after recovery";
  }
}

}  // namespace
}  // namespace pxs
