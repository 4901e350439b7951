// Process-crash durability of the ingest path: a child process records batches from
// two threads (group commit) and reports each acknowledged batch through a pipe; it
// is killed with SIGKILL at a random moment. After every kill the database must hold
// every acknowledged instance, each with exactly one job, and nothing half-written.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <random>
#include <thread>

#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"
#include "test_db_util.h"

namespace pxs {
namespace {

using testing_util::MakeInstance;
using testing_util::ScratchDir;

constexpr int kBatch = 3;

std::string SopUid(int cycle, int thread, int batch, int k) {
  return "1.9." + std::to_string(cycle) + "." + std::to_string(thread) + "." + std::to_string(batch) + "." +
         std::to_string(k);
}

// Child: records batches until killed; writes (thread, batch) after each commit.
[[noreturn]] void RecordUntilKilled(const std::string& db_path, int cycle, int ack_fd) {
  auto db = Database::Open(db_path, Database::Mode::kReadWrite);
  if (!db.ok()) _exit(2);
  auto work = [&](int thread) {
    for (int batch = 0;; ++batch) {
      std::vector<ReceivedInstance> instances;
      for (int k = 0; k < kBatch; ++k) {
        std::string study = std::string("9.9.").append(std::to_string(cycle));
        std::string patient = std::string("P").append(std::to_string(batch % 5));
        instances.push_back(MakeInstance(SopUid(cycle, thread, batch, k), study, patient));
      }
      if (!(*db)->RecordInstances(instances, nullptr).ok()) _exit(3);
      int ack[2] = {thread, batch};
      if (write(ack_fd, ack, sizeof ack) != sizeof ack) _exit(4);
    }
  };
  std::thread second(work, 1);
  work(0);
  second.join();
  _exit(0);
}

TEST(StorageCrashTest, AcknowledgedBatchesSurviveKill9) {
  ScratchDir dir;
  std::mt19937 rng(7);
  int64_t acknowledged_total = 0;
  for (int cycle = 0; cycle < 12; ++cycle) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      RecordUntilKilled(dir.db(), cycle, fds[1]);
    }
    close(fds[1]);
    usleep(static_cast<useconds_t>(std::uniform_int_distribution<int>(30'000, 150'000)(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child ended on its own, exit " << WEXITSTATUS(status);

    std::vector<std::pair<int, int>> acks;
    int ack[2];
    while (read(fds[0], ack, sizeof ack) == sizeof ack) acks.emplace_back(ack[0], ack[1]);
    close(fds[0]);

    auto db = Database::Open(dir.db(), Database::Mode::kReadWrite);  // as pxsnode restarting
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (auto [thread, batch] : acks) {
      for (int k = 0; k < kBatch; ++k) {
        ASSERT_TRUE(*(*db)->HasInstance(SopUid(cycle, thread, batch, k)))
            << "acknowledged instance lost: cycle " << cycle << " thread " << thread << " batch " << batch;
      }
    }
    acknowledged_total += static_cast<int64_t>(acks.size()) * kBatch;
    auto admin = AdminDatabase::Open(dir.db(), Database::Mode::kReadOnly);
    ASSERT_TRUE(admin.ok());
    auto stats = (*admin)->ComputeStats(0);
    ASSERT_TRUE(stats.ok());
    int64_t jobs = 0;
    for (const auto& [state, n] : stats->jobs_by_state) jobs += n;
    EXPECT_EQ(stats->instances, jobs) << "an instance without its job (or the reverse)";
    EXPECT_EQ(stats->instances % kBatch, 0) << "a batch was committed in part";
    EXPECT_GE(stats->instances, acknowledged_total);
    EXPECT_EQ(*(*admin)->QuickCheck(), "ok");
  }
  EXPECT_GT(acknowledged_total, 0) << "the child never committed anything: the test proved nothing";
  std::cout << "acknowledged " << acknowledged_total << " instances across 12 kills\n";
}

}  // namespace
}  // namespace pxs
