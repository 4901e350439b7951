// db_bench: builds a node database of N instances over M patients (default 1,000,000
// over 200,000) in a scratch folder outside the repository, then times the queries
// behind `pxsctl history` and `pxsctl queue` (p50/p99 over --queries runs) and one
// real invocation of each command. Prints figures; the last line is one JSON object.
// --db postgresql://... generates and times on that PostgreSQL database instead (it
// must be empty or hold an earlier run's data with --reuse); durable ingest then runs
// on both PostgreSQL and a SQLite file in --dir, side by side in the same run.
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Summary {
  double p50 = 0, p99 = 0, max = 0;
};

Summary Summarise(std::vector<double> ms) {
  Summary s;
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))]; };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  s.max = ms.back();
  return s;
}

std::string PatientId(int p) { return "BENCH" + std::to_string(p); }

bool Check(const pxs::Status& s, const char* what) {
  if (!s.ok()) std::cerr << "db_bench: " << what << ": " << s.ToString() << '\n';
  return s.ok();
}

// Wall time of a pxsctl process (start-up, open, query, print; output discarded):
// the median of 5 runs, since a single run on a busy machine mostly measures the
// scheduler. *first_ms gets the first (cold) run.
double TimeProcess(const std::string& command, int* exit_code, double* first_ms) {
  std::vector<double> runs;
  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    int status = std::system((command + " > /dev/null").c_str());
    runs.push_back(MsSince(start));
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (*exit_code != 0) break;
  }
  *first_ms = runs.front();
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// Durable ingest (synchronous=FULL, as the node runs): `threads` callers each record
// `calls` single-instance batches, like SCP associations. Returns instances/second;
// with group commit, more threads should share fsyncs instead of queueing for them.
// location: a SQLite folder (a fresh file in it per call) or a PostgreSQL URL (the
// instances get UIDs of their own per call, so runs do not collide).
double IngestRate(const std::string& location, int threads, int calls) {
  const bool postgres = pxs::IsPostgresUrl(location);
  const std::string path = postgres ? location : location + "/ingest_" + std::to_string(threads) + ".db";
  static int run = 0;
  const std::string uid_root = "1.2.826.0.1.3680043.10.9." + std::to_string(::getpid()) + "." + std::to_string(++run) + ".";
  auto opened = pxs::Database::Open(path, pxs::Database::Mode::kReadWrite);
  if (!opened.ok()) return Check(opened.status(), "open ingest db"), 0.0;
  pxs::Database& db = **opened;
  std::atomic<int> errors{0};
  auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int c = 0; c < calls; ++c) {
        pxs::ReceivedInstance in;
        in.sop_instance_uid = uid_root + std::to_string(t) + "." + std::to_string(c);
        in.study_uid = uid_root + "8." + std::to_string(t) + "." + std::to_string(c / 2);
        in.patient = {PatientId(c % 50), "HOSP"};
        in.file_path = "dicom/" + in.sop_instance_uid + ".dcm";
        in.sha256 = std::string(64, '0');
        if (!db.RecordInstances({in}, nullptr).ok()) ++errors;
      }
    });
  }
  for (auto& w : workers) w.join();
  const double seconds = MsSince(start) / 1000;
  opened->reset();
  if (!postgres) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  }
  if (errors) std::cerr << "db_bench: " << errors << " ingest errors\n";
  return threads * calls / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"db_bench: generate a large PXS node database and time history/queue queries"};
  int instances = 1'000'000, patients = 200'000, queries = 200, embedding_dim = 128, chunk = 20'000;
  int ingest_calls = 200;
  double queued_fraction = 0.01, failed_fraction = 0.005, report_fraction = 0.05;
  std::string dir, db_url;
  bool keep = false, reuse = false;
  std::string pxsctl = PXS_BINARY_DIR "/bin/pxsctl";
  app.add_option("--instances", instances, "instances to generate")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--patients", patients, "patients they belong to")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--queries", queries, "timed runs per query")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--embedding-dim", embedding_dim, "float32 values stored per score")->capture_default_str();
  app.add_option("--queued-fraction", queued_fraction, "left queued at the end")->capture_default_str();
  app.add_option("--dir", dir, "scratch folder (default: a new one under the system temp dir)");
  app.add_option("--pxsctl", pxsctl, "pxsctl binary for the process timings")->capture_default_str();
  app.add_option("--db", db_url, "a postgresql:// URL to generate and time on instead of a SQLite file in --dir");
  app.add_flag("--keep", keep, "keep the generated database");
  app.add_flag("--reuse", reuse, "time an existing database in --dir (from --keep) instead of generating one");
  app.add_option("--ingest-calls", ingest_calls, "durable single-instance RecordInstances calls per thread")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "pxs_db_bench_XXXXXX").string();
    if (!mkdtemp(pattern.data())) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = pattern;
  }
  std::filesystem::create_directories(dir);
  const bool postgres = !db_url.empty();
  if (postgres && !pxs::IsPostgresUrl(db_url)) {
    std::cerr << "db_bench: --db: expected a postgresql:// URL\n";
    return 2;
  }
  const std::string path = postgres ? db_url : pxs::DatabasePathFor(dir);
  if (!postgres && reuse && !std::filesystem::exists(path)) {
    std::cerr << "db_bench: --reuse: " << path << " does not exist\n";
    return 1;
  }
  if (!reuse && !postgres) std::filesystem::remove(path);
  std::cout << (reuse ? "Reusing " : "Generating ") << instances << " instances over " << patients << " patients in " << path << '\n';

  std::mt19937_64 rng(42);
  std::vector<int> studies_of_patient(static_cast<size_t>(patients), 0);
  const int to_leave_queued = static_cast<int>(queued_fraction * instances);
  auto gen_start = Clock::now();
  if (!reuse) {
    auto opened = pxs::Database::OpenNonDurableForBenchmark(path);
    if (!opened.ok()) return Check(opened.status(), "open"), 1;
    pxs::Database& db = **opened;
    const int64_t base_ms = 1'600'000'000'000;  // 2020-09-13
    std::vector<float> embedding(static_cast<size_t>(embedding_dim), 0.25f);
    int claimed_total = 0;
    for (int first = 0; first < instances; first += chunk) {
      const int count = std::min(chunk, instances - first);
      std::vector<pxs::ReceivedInstance> batch(static_cast<size_t>(count));
      for (int k = 0; k < count; ++k) {
        const int i = first + k;
        const int p = static_cast<int>(rng() % static_cast<uint64_t>(patients));
        int& studies = studies_of_patient[static_cast<size_t>(p)];
        if (studies == 0 || rng() % 5 != 0) ++studies;  // 1 in 5: another image of the last study
        pxs::ReceivedInstance& in = batch[static_cast<size_t>(k)];
        in.sop_instance_uid = "1.2.826.0.1.3680043.10.1." + std::to_string(i);
        in.study_uid = "1.2.826.0.1.3680043.10.2." + std::to_string(p) + "." + std::to_string(studies);
        in.series_uid = in.study_uid + ".1";
        in.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
        in.patient = {PatientId(p), "HOSP"};
        in.patient_name = "BENCH^" + std::to_string(p);
        char date[16];
        std::snprintf(date, sizeof date, "%04d%02d%02d", 2010 + studies, 1 + static_cast<int>(rng() % 12),
                      1 + static_cast<int>(rng() % 28));
        in.study_date = date;
        in.study_time = "120000";
        in.accession_number = "A" + std::to_string(i);
        in.modality = "DX";
        in.body_part = "CHEST";
        in.view_position = "PA";
        in.transfer_syntax_uid = "1.2.840.10008.1.2.1";
        in.file_path = "dicom/" + in.study_uid + "/" + in.sop_instance_uid + ".dcm";
        in.file_size = 8'000'000;
        in.sha256 = std::string(64, '0');
        in.calling_ae = "MODALITY" + std::to_string(i % 4);
        in.peer_address = "10.0.0." + std::to_string(i % 200);
        in.received_at_ms = base_ms + static_cast<int64_t>(i) * 1000;
      }
      if (!Check(db.RecordInstances(batch, nullptr), "RecordInstances")) return 1;
      const int claim = std::min(count, instances - to_leave_queued - claimed_total);
      if (claim <= 0) continue;
      auto jobs = db.ClaimJobs(claim);
      if (!jobs.ok()) return Check(jobs.status(), "ClaimJobs"), 1;
      claimed_total += static_cast<int>(jobs->size());
      std::vector<pxs::ScoreRecord> scores;
      for (const pxs::Job& job : *jobs) {
        if (std::uniform_real_distribution<double>(0, 1)(rng) < failed_fraction) {
          if (!Check(db.FailJobAttempt(job.id, "cannot decode pixel data", 1), "FailJobAttempt")) return 1;
          continue;
        }
        pxs::ScoreRecord s;
        s.job_id = job.id;
        s.pxs = std::uniform_real_distribution<double>(0, 20)(rng);
        s.raw_distance = s.pxs;
        s.embedding = embedding;
        s.model_name = "pxs-densenet121";
        s.model_version = "1.0";
        s.scored_at_ms = job.received_at_ms + 2000;
        scores.push_back(std::move(s));
      }
      if (!Check(db.CompleteJobs(scores), "CompleteJobs")) return 1;
      for (const pxs::ScoreRecord& s : scores) {
        if (std::uniform_real_distribution<double>(0, 1)(rng) >= report_fraction) continue;
        std::string sr = "1.2.826.0.1.3680043.10.3." + std::to_string(s.job_id);
        if (!Check(db.RecordReport(sr, "study-of-job-" + std::to_string(s.job_id), "pxs", 1, "reports/" + sr + ".dcm",
                                   {"PACS"}),
                   "RecordReport")) {
          return 1;
        }
      }
      auto due = db.DueReports(std::numeric_limits<int64_t>::max(), chunk);
      if (!due.ok()) return Check(due.status(), "DueReports"), 1;
      for (size_t r = 0; r < due->size(); ++r) {
        // Most are delivered; a few keep failing so the queue view has pending rows.
        if (r % 50 == 0) {
          if (!Check(db.MarkReportAttemptFailed((*due)[r].id, "connection refused", base_ms * 2, false), "fail")) return 1;
        } else if (!Check(db.MarkReportSent((*due)[r].id), "MarkReportSent")) {
          return 1;
        }
      }
      if ((first / chunk) % 10 == 9) std::cout << "  " << first + count << " instances\n" << std::flush;
    }
  }
  const double generate_s = reuse ? 0.0 : MsSince(gen_start) / 1000;
  if (reuse) {  // a kept database may be from an older build: migrate it first
    auto start = Clock::now();
    auto migrated = pxs::Database::Open(path, pxs::Database::Mode::kReadWrite);
    if (!migrated.ok()) return Check(migrated.status(), "open (migrate)"), 1;
    std::cout << "Opened read-write (migrations applied if any) in " << MsSince(start) << " ms\n";
  }
  const auto db_bytes = postgres ? 0 : std::filesystem::file_size(path);
  std::cout << (reuse ? "Existing" : "Generated in " + std::to_string(generate_s) + " s;") << " database " << db_bytes / (1024 * 1024) << " MiB\n";

  auto admin = pxs::AdminDatabase::Open(path, pxs::Database::Mode::kReadOnly);
  if (!admin.ok()) return Check(admin.status(), "open read-only"), 1;
  auto reader = pxs::Database::Open(path, pxs::Database::Mode::kReadOnly);
  if (!reader.ok()) return Check(reader.status(), "open read-only"), 1;

  std::vector<double> history_ms, worker_history_ms, queue_ms;
  size_t studies_seen = 0;
  std::string sample_patient;  // one that exists, for the process timing
  std::uniform_int_distribution<int> pick(0, patients - 1);
  for (int q = 0; q < queries; ++q) {
    const std::string id = PatientId(pick(rng));
    auto start = Clock::now();
    // What `pxsctl history ID` does: resolve the issuer, then the per-study history.
    auto keys = (*admin)->PatientsWithId(id);
    if (!keys.ok()) return Check(keys.status(), "PatientsWithId"), 1;
    if (keys->empty()) continue;  // a patient who drew no instance
    auto history = (*admin)->StudyHistory(keys->front());
    if (!history.ok()) return Check(history.status(), "StudyHistory"), 1;
    history_ms.push_back(MsSince(start));
    studies_seen += history->size();
    sample_patient = id;

    start = Clock::now();
    auto scores = (*reader)->PatientHistory(keys->front());  // the report worker's query (with embeddings)
    if (!scores.ok()) return Check(scores.status(), "PatientHistory"), 1;
    worker_history_ms.push_back(MsSince(start));

    start = Clock::now();
    auto queue = (*admin)->Queue(20);
    if (!queue.ok()) return Check(queue.status(), "Queue"), 1;
    queue_ms.push_back(MsSince(start));
  }
  const Summary history = Summarise(history_ms), worker = Summarise(worker_history_ms), queue = Summarise(queue_ms);

  int history_rc = -1, queue_rc = -1;
  const std::string base = pxsctl + " --db '" + path + "' ";
  double history_first_ms = 0, queue_first_ms = 0;
  const double history_process_ms =
      TimeProcess(base + "history " + sample_patient, &history_rc, &history_first_ms);
  const double queue_process_ms = TimeProcess(base + "queue", &queue_rc, &queue_first_ms);

  const double ingest_1 = IngestRate(postgres ? path : dir, 1, ingest_calls);
  const double ingest_4 = IngestRate(postgres ? path : dir, 4, ingest_calls);
  std::printf("durable ingest, 1-instance batches:   1 thread %.0f/s, 4 threads %.0f/s (%s)\n", ingest_1, ingest_4,
              postgres ? "PostgreSQL" : "SQLite");
  // The peer, in the same run: SQLite's durable ingest beside PostgreSQL's.
  double sqlite_ingest_1 = ingest_1, sqlite_ingest_4 = ingest_4;
  if (postgres) {
    sqlite_ingest_1 = IngestRate(dir, 1, ingest_calls);
    sqlite_ingest_4 = IngestRate(dir, 4, ingest_calls);
    std::printf("durable ingest, SQLite peer:          1 thread %.0f/s, 4 threads %.0f/s; PostgreSQL/SQLite at 4: %.2fx\n",
                sqlite_ingest_1, sqlite_ingest_4, ingest_4 / sqlite_ingest_4);
  }
  std::printf("history query (pxsctl history):       p50 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu runs, %.1f studies/patient)\n",
              history.p50, history.p99, history.max, history_ms.size(),
              history_ms.empty() ? 0.0 : static_cast<double>(studies_seen) / static_cast<double>(history_ms.size()));
  std::printf("PatientHistory (report worker):       p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", worker.p50, worker.p99,
              worker.max);
  std::printf("queue query (pxsctl queue):           p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", queue.p50, queue.p99,
              queue.max);
  std::printf("pxsctl history process, wall:         median %.1f ms, first %.1f ms (exit %d)\n", history_process_ms,
              history_first_ms, history_rc);
  std::printf("pxsctl queue process, wall:           median %.1f ms, first %.1f ms (exit %d)\n", queue_process_ms,
              queue_first_ms, queue_rc);

  nlohmann::ordered_json result{{"backend", postgres ? "postgresql" : "sqlite"},
                                {"instances", instances},
                                {"patients", patients},
                                {"embedding_dim", embedding_dim},
                                {"generate_s", generate_s},
                                {"db_mib", static_cast<double>(db_bytes) / (1024 * 1024)},
                                {"queries", history_ms.size()},
                                {"history_p50_ms", history.p50},
                                {"history_p99_ms", history.p99},
                                {"worker_history_p50_ms", worker.p50},
                                {"worker_history_p99_ms", worker.p99},
                                {"queue_p50_ms", queue.p50},
                                {"queue_p99_ms", queue.p99},
                                {"pxsctl_history_process_ms", history_process_ms},
                                {"pxsctl_queue_process_ms", queue_process_ms},
                                {"pxsctl_history_process_first_ms", history_first_ms},
                                {"pxsctl_queue_process_first_ms", queue_first_ms},
                                {"pxsctl_exit_codes", {history_rc, queue_rc}},
                                {"durable_ingest_per_s_1_thread", ingest_1},
                                {"durable_ingest_per_s_4_threads", ingest_4},
                                {"sqlite_durable_ingest_per_s_1_thread", sqlite_ingest_1},
                                {"sqlite_durable_ingest_per_s_4_threads", sqlite_ingest_4},
                                {"ingest_4_threads_vs_sqlite", ingest_4 / sqlite_ingest_4}};
  if (!keep) {
    admin->reset();
    reader->reset();
    std::filesystem::remove_all(dir);
  } else {
    std::cout << "kept " << path << '\n';
  }
  std::cout << result.dump() << std::endl;
  return (history_rc == 0 && queue_rc == 0) ? 0 : 1;
}
