// IncomingFile counts the data set bytes DCMTK reports while a file is written (the
// ingester compares them with the file to catch a write cut short).
#include "../src/incoming_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <vector>

namespace pxs {
namespace {

namespace fs = std::filesystem;

TEST(IncomingFileTest, CountsWhatArrivedAcrossWriteBackSteps) {
  fs::path dir = fs::temp_directory_path() / ("pxs-incoming-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  IncomingFile incoming;
  for (int round = 0; round < 2; ++round) {  // two files in a row, as on one association
    std::string path = (dir / ("rx" + std::to_string(round))).string();
    incoming.Begin(path);
    std::vector<char> bytes(3 * 1024 * 1024 + 777 * (round + 1), 'x');
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    size_t written = 0;
    while (written < bytes.size()) {
      size_t n = std::min<size_t>(64 * 1024 - 6, bytes.size() - written);  // odd-sized PDVs
      ASSERT_EQ(std::fwrite(bytes.data() + written, 1, n, f), n);
      written += n;
      std::fflush(f);
      incoming.Progress(written);
    }
    std::fclose(f);
    EXPECT_EQ(incoming.Finish(), bytes.size());
    EXPECT_EQ(fs::file_size(path), bytes.size());
  }
  incoming.Begin((dir / "never-created").string());
  incoming.Progress(2 * 1024 * 1024);  // nothing to open: no crash, still counted
  EXPECT_EQ(incoming.Finish(), 2u * 1024 * 1024);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pxs
