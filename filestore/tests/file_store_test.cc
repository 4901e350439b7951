// FileStore: layout, placement that never replaces a stored file, one writer per SOP
// Instance UID, and what a power cut or an I/O error at each call leaves behind.
#include "pxs/filestore/file_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "pxs/filestore/fault_injection.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/pxs-filestore-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) ++n;
  }
  return n;
}

const std::string kRel = FileStore::InstancePath("1.2.3", "1.2.3.4", "1.2.3.4.5");

TEST(FileStoreLayout, OneLayoutForInstancesReportsAndTempFiles) {
  EXPECT_EQ(FileStore::InstancePath("1.2", "1.2.3", "1.2.3.4"), "dicom/1.2/1.2.3/1.2.3.4.dcm");
  EXPECT_EQ(FileStore::ReportPath("1.2", "", 3), "reports/1.2/sr-v3.dcm");
  EXPECT_EQ(FileStore::ReportPath("1.2", "pxs-demo-edema", 1), "reports/1.2/pxs-demo-edema-sr-v1.dcm");
  ScratchDir dir;
  FileStore store(dir.str());
  ASSERT_TRUE(store.Open().ok());
  std::string a = store.NewTempPath(), b = store.NewTempPath();
  EXPECT_NE(a, b);
  EXPECT_EQ(fs::path(a).parent_path(), fs::path(dir.str()) / "incoming");
}

TEST(FileStoreLayout, OpenRemovesTempFilesLeftByACrash) {
  ScratchDir dir;
  {
    FileStore store(dir.str());
    ASSERT_TRUE(store.Open().ok());
    WriteText(store.NewTempPath(), "half a data set");
  }
  FileStore store(dir.str());
  auto removed = store.Open();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1);
  EXPECT_EQ(CountFiles(dir.str() + "/incoming"), 0u);
}

TEST(FileStorePlace, LinksDurablyAndNeverReplacesAStoredFile) {
  ScratchDir dir;
  FileStore store(dir.str());
  ASSERT_TRUE(store.Open().ok());
  std::string first = store.NewTempPath();
  WriteText(first, "first copy");
  uint64_t size = 0;
  std::vector<std::string> dirs;
  ASSERT_TRUE(store.Place(first, kRel, /*replace_leftover=*/false, &size, &dirs).ok());
  EXPECT_EQ(size, 10u);
  EXPECT_FALSE(fs::exists(first));  // the temp name is gone
  // study folder's parent, series folder's parent, and the series folder itself
  EXPECT_EQ(dirs.size(), 3u);
  ASSERT_TRUE(store.SyncDirectories(dirs).ok());

  std::string second = store.NewTempPath();
  WriteText(second, "second copy!");
  dirs.clear();
  Status s = store.Place(second, kRel, /*replace_leftover=*/false, &size, &dirs);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  EXPECT_EQ(ReadText(store.Absolute(kRel)), "first copy");
  EXPECT_FALSE(fs::exists(second));
}

TEST(FileStorePlace, ReplacesOnlyALeftoverWhenTold) {
  ScratchDir dir;
  FileStore store(dir.str());
  ASSERT_TRUE(store.Open().ok());
  fs::create_directories(fs::path(store.Absolute(kRel)).parent_path());
  WriteText(store.Absolute(kRel), "leftover");
  std::string temp = store.NewTempPath();
  WriteText(temp, "complete data set");
  uint64_t size = 0;
  std::vector<std::string> dirs;
  ASSERT_TRUE(store.Place(temp, kRel, /*replace_leftover=*/true, &size, &dirs).ok());
  EXPECT_EQ(ReadText(store.Absolute(kRel)), "complete data set");
}

TEST(FileStoreClaim, OneWriterPerSopInstanceUid) {
  ScratchDir dir;
  FileStore store(dir.str());
  std::atomic<int> inside{0}, max_inside{0}, done{0};
  auto worker = [&](const std::string& uid) {
    for (int i = 0; i < 200; ++i) {
      FileStore::Claim claim = store.ClaimInstance(uid);
      int now = ++inside;
      int seen = max_inside.load();
      while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::yield();
      --inside;
    }
    ++done;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, "1.2.3");
  for (auto& t : threads) t.join();
  EXPECT_EQ(done.load(), 4);
  EXPECT_EQ(max_inside.load(), 1);  // never two holders of one UID at once

  // Different UIDs do not wait for each other.
  FileStore::Claim a = store.ClaimInstance("1.1");
  FileStore::Claim b = store.ClaimInstance("1.2");
  SUCCEED();
}

// Power-cut model: data not synced and names whose folder was not synced are lost.
TEST(FaultInjection, PowerCutKeepsOnlyWhatWasSynced) {
  ScratchDir dir;
  FileStore plain(dir.str());
  ASSERT_TRUE(plain.Open().ok());
  FaultInjectionFileSystem faults(dir.str());
  FileStore store(dir.str(), &faults);

  std::string durable = store.NewTempPath();
  WriteText(durable, "durable bytes");
  uint64_t size = 0;
  std::vector<std::string> dirs;
  ASSERT_TRUE(store.Place(durable, kRel, false, &size, &dirs).ok());
  ASSERT_TRUE(store.SyncDirectories(dirs).ok());

  const std::string rel2 = FileStore::InstancePath("1.2.3", "1.2.3.4", "1.2.3.4.6");
  std::string unsynced_name = store.NewTempPath();
  WriteText(unsynced_name, "synced data, name not synced");
  dirs.clear();
  ASSERT_TRUE(store.Place(unsynced_name, rel2, false, &size, &dirs).ok());

  std::string never_synced = store.NewTempPath();
  WriteText(never_synced, "still arriving");

  faults.PowerCut();
  EXPECT_EQ(ReadText(store.Absolute(kRel)), "durable bytes");
  EXPECT_FALSE(fs::exists(store.Absolute(rel2)));
  EXPECT_FALSE(fs::exists(never_synced));
}

// An I/O error or a full disk at any call of Place: a clear status, and neither the temp
// file nor anything at the destination is left behind.
TEST(FaultInjection, ErrorAtEachCallOfPlaceLeavesNothingHalfWritten) {
  for (int err : {EIO, ENOSPC}) {
    for (int call = 1; call <= 6; ++call) {
      ScratchDir dir;
      FileStore plain(dir.str());
      ASSERT_TRUE(plain.Open().ok());
      FaultInjectionFileSystem faults(dir.str());
      faults.FailCall(call, err);
      FileStore store(dir.str(), &faults);
      std::string temp = store.NewTempPath();
      WriteText(temp, "data set");
      uint64_t size = 0;
      std::vector<std::string> dirs;
      Status s = store.Place(temp, kRel, false, &size, &dirs);
      if (s.ok()) s = store.SyncDirectories(dirs);
      if (call > faults.calls()) {
        EXPECT_TRUE(s.ok()) << s.ToString();
        continue;
      }
      if (s.ok()) {
        // Only the removal of the temp name may fail without failing the placement: the
        // stored file is complete and the temp name is a leftover that Open() removes.
        EXPECT_EQ(ReadText(store.Absolute(kRel)), "data set");
        EXPECT_TRUE(fs::exists(temp));
        FileStore reopened(dir.str());
        ASSERT_TRUE(reopened.Open().ok());
        EXPECT_FALSE(fs::exists(temp));
        continue;
      }
      EXPECT_NE(s.message().find(err == ENOSPC ? "No space" : "Input/output"), std::string::npos) << s.ToString();
      if (err == ENOSPC && s.code() != Status::Code::kOk) {
        EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.ToString();
      }
      EXPECT_FALSE(fs::exists(temp)) << "call " << call << ": " << s.ToString();
      // A failure before the link leaves no file at the destination; a failed folder
      // sync after it leaves a complete (synced) file the database never heard of.
      if (fs::exists(store.Absolute(kRel))) {
        EXPECT_EQ(ReadText(store.Absolute(kRel)), "data set");
      }
    }
  }
}

}  // namespace
}  // namespace pxs
