// IncomingFile hashes a file while another thread is still writing it (as DCMTK does
// during a C-STORE) and must end with the digest of the complete file.
#include "../src/incoming_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "pxs/common/files.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;

class IncomingFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pxs-incoming-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

std::vector<char> RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<char> bytes(n);
  for (char& b : bytes) b = static_cast<char>(rng());
  return bytes;
}

TEST_F(IncomingFileTest, DigestOfAFileWrittenWhileWatchedIsTheWholeFilesDigest) {
  IncomingFile incoming;
  // Two files in a row through the same watcher, as on one association.
  for (unsigned round = 0; round < 2; ++round) {
    std::string path = (dir_ / ("rx" + std::to_string(round))).string();
    incoming.Begin(path);
    std::vector<char> bytes = RandomBytes(5 * 1024 * 1024 + 12345, round);
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    size_t written = 0;
    const size_t kPdv = 64 * 1024 - 6;  // odd-sized pieces, like PDVs
    while (written < bytes.size()) {
      size_t n = std::min(kPdv, bytes.size() - written);
      ASSERT_EQ(std::fwrite(bytes.data() + written, 1, n, f), n);
      written += n;
      std::fflush(f);
      incoming.Progress(written);
    }
    std::fclose(f);
    IncomingFile::Received received = incoming.Finish();
    EXPECT_EQ(received.dataset_bytes, bytes.size());
    auto expected = Sha256HexOfFile(path);
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(received.sha256, *expected) << "round " << round;
  }
}

TEST_F(IncomingFileTest, SmallFileWithoutWritebackIsStillHashedAndAMissingFileGivesNoDigest) {
  IncomingFile incoming;
  std::string path = (dir_ / "small").string();
  incoming.Begin(path);
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not much", f);
    std::fclose(f);
  }
  incoming.Progress(8);
  IncomingFile::Received received = incoming.Finish();
  EXPECT_EQ(received.sha256, Sha256Hex("not much"));

  incoming.Begin((dir_ / "never-created").string());
  EXPECT_TRUE(incoming.Finish().sha256.empty());
}

}  // namespace
}  // namespace pxs
