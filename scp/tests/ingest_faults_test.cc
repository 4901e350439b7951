// The write path under faults and races, with the real Ingester, a real SQLite database
// and a fault-injecting file system under the FileStore:
//   - a power cut at every file-system call of ingest (everything not synced is lost),
//     then a restart: every acknowledged instance is intact, the database and the files
//     agree, and what was not acknowledged can be sent again;
//   - EIO and ENOSPC at every call: a clear 0xA700 for the instance that hit it and
//     nothing half-written left in the data folder;
//   - four threads storing the same SOP Instance UID with different content at once, many
//     rounds: exactly one copy wins and its bytes are the ones stored;
//   - the re-send policy (keep_first / replace), with its audit rows.
// SQLite's own writes are not under the power-cut model (its durability with
// synchronous=FULL is SQLite's contract); what is modelled is everything the node orders.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "../../tests/support/dicom_gen.h"
#include "../../tests/support/shared_data.h"
#include "pxs/common/files.h"
#include "pxs/filestore/fault_injection.h"
#include "pxs/filestore/file_store.h"
#include "pxs/scp/ingest.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using pxs::testing::NewUid;
using pxs::testing::SyntheticCr;
using pxs::testing::TempDir;
using pxs::testing::WriteSyntheticCr;

struct SourceFile {
  std::string path;
  std::string sop;
};

// `count` synthetic CRs of one study; each file's pixels differ (seed).
std::vector<SourceFile> MakeSources(const std::string& folder, int count) {
  fs::create_directories(folder);
  SyntheticCr spec;
  spec.study_uid = NewUid();
  spec.series_uid = NewUid();
  std::vector<SourceFile> out;
  for (int i = 0; i < count; ++i) {
    spec.sop_uid = NewUid();
    spec.seed = static_cast<uint32_t>(i + 1);
    std::string path = folder + "/" + std::to_string(i) + ".dcm";
    EXPECT_TRUE(WriteSyntheticCr(path, spec));
    out.push_back({path, spec.sop_uid});
  }
  return out;
}

// The Pixel Data bytes of a DICOM file (what must survive exactly).
std::string PixelBytes(const std::string& path) {
  DcmFileFormat file;
  if (file.loadFile(path.c_str()).bad()) return "<unreadable " + path + ">";
  const Uint8* data = nullptr;
  unsigned long count = 0;
  if (file.getDataset()->findAndGetUint8Array(DCM_PixelData, data, &count).bad() || data == nullptr) return "<no pixels>";
  return std::string(reinterpret_cast<const char*>(data), count);
}

std::vector<fs::path> FilesUnder(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  return files;
}

// One node's ingest stack on data_dir, optionally over a fault-injecting file system.
struct Stack {
  explicit Stack(const std::string& data_dir, FileSystem* file_system = nullptr,
                 ConflictPolicy policy = ConflictPolicy::kKeepFirst)
      : store(data_dir, file_system) {
    auto opened = Database::Open(DatabasePathFor(data_dir), Database::Mode::kReadWrite);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    db = std::move(*opened);
    IngestOptions options;
    options.data_dir = data_dir;
    options.file_store = &store;
    options.on_conflict = policy;
    auto created = Ingester::Create(options, db.get());
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    ingester = std::move(*created);
  }
  FileStore store;
  std::unique_ptr<Database> db;
  std::unique_ptr<Ingester> ingester;
};

// Every instance the database knows has its file, of the recorded size; every stored
// file below dicom/ is known to the database (no half-written or orphaned file).
void ExpectFilesAndDatabaseAgree(const std::string& data_dir, const std::vector<SourceFile>& sources,
                                 const std::string& context) {
  auto db = Database::Open(DatabasePathFor(data_dir), Database::Mode::kReadOnly);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  std::set<std::string> known_paths;
  for (const SourceFile& src : sources) {
    auto stored = (*db)->FindStoredFile(src.sop);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    if (!stored->has_value()) continue;
    fs::path file = fs::path(data_dir) / (*stored)->file_path;
    known_paths.insert(file.string());
    ASSERT_TRUE(fs::exists(file)) << context << ": " << src.sop << " is recorded but its file is gone";
    EXPECT_EQ(fs::file_size(file), (*stored)->file_size) << context << ": " << src.sop;
  }
  for (const fs::path& f : FilesUnder(fs::path(data_dir) / "dicom")) {
    EXPECT_TRUE(known_paths.count(f.string())) << context << ": " << f << " is on disk but not recorded";
  }
}

// How many file-system calls ingesting `sources` makes (to crash or fail at each one).
int CountCalls(const std::vector<SourceFile>& sources) {
  TempDir dir("pxs-ingest-count");
  { FileStore(dir.str()).Open().value(); }
  FaultInjectionFileSystem faults(dir.str());
  Stack stack(dir.str(), &faults);
  const int before = faults.calls();
  for (const SourceFile& src : sources) {
    EXPECT_EQ(stack.ingester->IngestFile(src.path, {}).dimse_status, dimse_status::kSuccess);
  }
  return faults.calls() - before;
}

TEST(IngestPowerCut, EveryAcknowledgedInstanceSurvivesACutAtAnyStep) {
  TempDir src_dir("pxs-ingest-src");
  const std::vector<SourceFile> sources = MakeSources(src_dir.str(), 3);
  const int total_calls = CountCalls(sources);
  ASSERT_GT(total_calls, 6);
  for (int crash_at = 1; crash_at <= total_calls + 1; ++crash_at) {
    const std::string context = "power cut at call " + std::to_string(crash_at) + " of " + std::to_string(total_calls);
    TempDir dir("pxs-ingest-cut");
    { ASSERT_TRUE(FileStore(dir.str()).Open().ok()); }
    std::map<std::string, std::string> acknowledged;  // sop -> pixel bytes of the source
    {
      FaultInjectionFileSystem faults(dir.str());
      Stack stack(dir.str(), &faults);
      faults.CrashAtCall(faults.calls() + crash_at);
      for (const SourceFile& src : sources) {
        IngestResult r = stack.ingester->IngestFile(src.path, {});
        if (r.dimse_status == dimse_status::kSuccess) acknowledged[src.sop] = PixelBytes(src.path);
        else EXPECT_EQ(r.dimse_status, dimse_status::kOutOfResources) << context << ": " << r.error;
      }
      // A cut after the last acknowledgement, too: nothing acknowledged may depend on
      // data still in the page cache.
      if (!faults.crashed()) faults.PowerCut();
    }
    if (crash_at > total_calls) {
      EXPECT_EQ(acknowledged.size(), sources.size()) << context;
    }
    // Restart on the real file system.
    Stack restarted(dir.str());
    for (const auto& [sop, pixels] : acknowledged) {
      auto stored = restarted.db->FindStoredFile(sop);
      ASSERT_TRUE(stored.ok() && stored->has_value()) << context << ": acknowledged " << sop << " is not recorded";
      EXPECT_EQ(PixelBytes(dir.str() + "/" + (*stored)->file_path), pixels) << context << ": " << sop << " damaged";
    }
    EXPECT_TRUE(FilesUnder(dir.path() / "incoming").empty()) << context;
    ExpectFilesAndDatabaseAgree(dir.str(), sources, context);
    // What was not acknowledged goes through when the sender tries again.
    for (const SourceFile& src : sources) {
      IngestResult r = restarted.ingester->IngestFile(src.path, {});
      EXPECT_EQ(r.dimse_status, dimse_status::kSuccess) << context << ": resend of " << src.sop << ": " << r.error;
      EXPECT_EQ(r.duplicate, acknowledged.count(src.sop) == 1) << context << ": " << src.sop;
    }
    ExpectFilesAndDatabaseAgree(dir.str(), sources, context + " (after resend)");
  }
}

TEST(IngestFaults, EioOrEnospcAtAnyCallGivesA700AndLeavesNothingHalfWritten) {
  TempDir src_dir("pxs-ingest-src");
  const std::vector<SourceFile> sources = MakeSources(src_dir.str(), 3);
  const int total_calls = CountCalls(sources);
  for (int err : {EIO, ENOSPC}) {
    for (int call = 1; call <= total_calls; ++call) {
      const std::string context = std::string(err == EIO ? "EIO" : "ENOSPC") + " at call " + std::to_string(call);
      TempDir dir("pxs-ingest-err");
      { ASSERT_TRUE(FileStore(dir.str()).Open().ok()); }
      int failed = 0;
      {
        FaultInjectionFileSystem faults(dir.str());
        Stack stack(dir.str(), &faults);
        faults.FailCall(faults.calls() + call, err);
        for (const SourceFile& src : sources) {
          IngestResult r = stack.ingester->IngestFile(src.path, {});
          if (r.dimse_status == dimse_status::kSuccess) continue;
          ++failed;
          EXPECT_EQ(r.dimse_status, dimse_status::kOutOfResources) << context;
          EXPECT_NE(r.error.find(err == EIO ? "Input/output error" : "No space left"), std::string::npos)
              << context << ": " << r.error;
        }
      }
      // Only a failed removal of a temp name (after the file was stored) passes quietly.
      EXPECT_LE(failed, 1) << context;
      ExpectFilesAndDatabaseAgree(dir.str(), sources, context);
      Stack restarted(dir.str());  // removes any temp leftover
      EXPECT_TRUE(FilesUnder(dir.path() / "incoming").empty()) << context;
    }
  }
}

TEST(IngestRace, SameSopInstanceUidFromFourThreadsStoresExactlyTheWinnersBytes) {
  TempDir src_dir("pxs-race-src");
  TempDir dir("pxs-race");
  Stack stack(dir.str());
  constexpr int kThreads = 4, kRounds = 25;
  for (int round = 0; round < kRounds; ++round) {
    // Four copies of one instance with different pixels (and so equal sizes).
    SyntheticCr spec;
    spec.study_uid = NewUid();
    spec.series_uid = NewUid();
    spec.sop_uid = NewUid();
    std::vector<std::string> paths;
    for (int t = 0; t < kThreads; ++t) {
      spec.seed = static_cast<uint32_t>(100 * round + t + 1);
      paths.push_back(src_dir.str() + "/r" + std::to_string(round) + "t" + std::to_string(t) + ".dcm");
      ASSERT_TRUE(WriteSyntheticCr(paths.back(), spec));
    }
    std::vector<IngestResult> results(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] { results[t] = stack.ingester->IngestFile(paths[t], {}); });
    }
    for (auto& th : threads) th.join();
    int winners = 0, winner = -1;
    for (int t = 0; t < kThreads; ++t) {
      ASSERT_EQ(results[t].dimse_status, dimse_status::kSuccess) << results[t].error;
      if (!results[t].duplicate) {
        ++winners;
        winner = t;
      }
    }
    ASSERT_EQ(winners, 1) << "round " << round;
    auto stored = stack.db->FindStoredFile(spec.sop_uid);
    ASSERT_TRUE(stored.ok() && stored->has_value());
    EXPECT_EQ(PixelBytes(dir.str() + "/" + (*stored)->file_path), PixelBytes(paths[winner]))
        << "round " << round << ": the stored bytes are not the acknowledged first copy's";
  }
}

class ResendPolicy : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticCr spec;
    spec.study_uid = NewUid();
    spec.series_uid = NewUid();
    spec.sop_uid = sop_ = NewUid();
    spec.seed = 1;
    ASSERT_TRUE(WriteSyntheticCr(first_ = src_.str() + "/first.dcm", spec));
    ASSERT_TRUE(WriteSyntheticCr(same_ = src_.str() + "/same.dcm", spec));
    spec.seed = 2;
    ASSERT_TRUE(WriteSyntheticCr(other_ = src_.str() + "/other.dcm", spec));
  }
  std::vector<AuditEntry> Audit() {
    auto admin = AdminDatabase::Open(DatabasePathFor(dir_.str()), Database::Mode::kReadOnly);
    EXPECT_TRUE(admin.ok());
    auto rows = (*admin)->RecentAudit(10);
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? *rows : std::vector<AuditEntry>{};
  }
  std::string StoredPixels(Stack& stack) {
    auto stored = stack.db->FindStoredFile(sop_);
    EXPECT_TRUE(stored.ok() && stored->has_value());
    return PixelBytes(dir_.str() + "/" + (*stored)->file_path);
  }
  TempDir src_{"pxs-resend-src"};
  TempDir dir_{"pxs-resend"};
  std::string sop_, first_, same_, other_;
};

TEST_F(ResendPolicy, IdenticalResendIsAPlainDuplicate) {
  Stack stack(dir_.str());
  ASSERT_EQ(stack.ingester->IngestFile(first_, {}).dimse_status, dimse_status::kSuccess);
  IngestResult again = stack.ingester->IngestFile(same_, {.calling_ae = "RETRYING"});
  EXPECT_EQ(again.dimse_status, dimse_status::kSuccess);
  EXPECT_TRUE(again.duplicate);
  EXPECT_NE(again.note.find("identical"), std::string::npos) << again.note;
  EXPECT_TRUE(Audit().empty());
  EXPECT_EQ(*stack.db->CountJobs(JobState::kQueued), 1);
}

TEST_F(ResendPolicy, KeepFirstKeepsTheStoredCopyAndAuditsTheConflict) {
  Stack stack(dir_.str(), nullptr, ConflictPolicy::kKeepFirst);
  ASSERT_EQ(stack.ingester->IngestFile(first_, {}).dimse_status, dimse_status::kSuccess);
  IngestResult again = stack.ingester->IngestFile(other_, {.calling_ae = "OTHER_AE"});
  EXPECT_EQ(again.dimse_status, dimse_status::kSuccess);
  EXPECT_TRUE(again.duplicate);
  EXPECT_NE(again.note.find("first copy kept"), std::string::npos) << again.note;
  EXPECT_EQ(StoredPixels(stack), PixelBytes(first_));
  auto audit = Audit();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "instance_conflict_kept_first");
  EXPECT_NE(audit[0].details.find(sop_), std::string::npos);
  EXPECT_NE(audit[0].details.find("OTHER_AE"), std::string::npos);
  EXPECT_EQ(*stack.db->CountJobs(JobState::kQueued), 1);
}

TEST_F(ResendPolicy, ReplaceStoresTheNewCopyQueuesItAgainAndAudits) {
  Stack stack(dir_.str(), nullptr, ConflictPolicy::kReplace);
  ASSERT_EQ(stack.ingester->IngestFile(first_, {}).dimse_status, dimse_status::kSuccess);
  // The first copy gets scored.
  auto claimed = stack.db->ClaimJobs(1);
  ASSERT_TRUE(claimed.ok() && claimed->size() == 1);
  ScoreRecord score;
  score.job_id = (*claimed)[0].id;
  score.pxs = score.raw_distance = 1.25;
  score.model_name = "m";
  score.model_version = "1";
  ASSERT_TRUE(stack.db->CompleteJob(score).ok());
  ASSERT_EQ(*stack.db->CountJobs(JobState::kScored), 1);
  IngestResult again = stack.ingester->IngestFile(other_, {.calling_ae = "OTHER_AE"});
  EXPECT_EQ(again.dimse_status, dimse_status::kSuccess) << again.error;
  EXPECT_TRUE(again.replaced);
  EXPECT_FALSE(again.duplicate);
  EXPECT_EQ(StoredPixels(stack), PixelBytes(other_));
  EXPECT_EQ(*stack.db->CountJobs(JobState::kQueued), 1);  // to be scored again
  EXPECT_EQ(*stack.db->CountJobs(JobState::kScored), 0);
  auto audit = Audit();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "instance_replaced");
  EXPECT_NE(audit[0].details.find("previous score 1.25"), std::string::npos) << audit[0].details;
  ExpectFilesAndDatabaseAgree(dir_.str(), {{other_, sop_}}, "after replace");
}

}  // namespace
}  // namespace pxs
