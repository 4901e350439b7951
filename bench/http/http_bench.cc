// http_bench: the web face on a big node database (made by db_bench --keep: 1 M instances
// over 200 k patients). Starts pxs::http::Server in this process (the same code pxsnode
// runs), and over one kept-alive loopback connection times the patients search, a
// patient's history, stats, models and /metrics (p50/p99). Side by side, the peers:
// the same storage + JSON calls without HTTP (what the API adds), and the whole
// `pxsctl ... --json` process (what an operator runs today). /metrics: its render time
// (Api::Handle, no socket) and `promtool check metrics` on its text. Prints figures; the
// last line is one JSON object. A benchmark, not a test.
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "pxs/common/files.h"
#include "pxs/http/server.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/database.h"
#include "pxs/views/views.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr const char* kToken = "bench-viewer-token";

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Summary {
  double p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};

Summary Summarise(std::vector<double> ms) {  // nearest rank
  Summary s;
  s.n = ms.size();
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(ms.size())));
    return ms[std::clamp<size_t>(rank, 1, ms.size()) - 1];
  };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  s.max = ms.back();
  return s;
}

Json ToJson(const Summary& s) { return Json{{"p50_ms", s.p50}, {"p99_ms", s.p99}, {"max_ms", s.max}, {"n", s.n}}; }

// One kept-alive HTTP/1.1 connection (the dashboard's browser keeps one too).
class Client {
 public:
  explicit Client(uint16_t port) : stream_(io_) {
    stream_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  // Status and body of GET target; the time is the whole exchange.
  int Get(const std::string& target, std::string* body, double* ms) {
    const auto start = Clock::now();
    bhttp::request<bhttp::empty_body> req(bhttp::verb::get, target, 11);
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::authorization, std::string("Bearer ") + kToken);
    bhttp::write(stream_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream_, buffer_, res);
    *ms = MsSince(start);
    if (body) *body = std::move(res.body());
    return res.result_int();
  }

 private:
  asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

// Median wall time of 5 runs of a command (output discarded); *first_ms the first.
double TimeProcess(const std::string& command, int* exit_code, double* first_ms) {
  std::vector<double> runs;
  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    int status = std::system((command + " > /dev/null 2>&1").c_str());
    runs.push_back(MsSince(start));
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (*exit_code != 0) break;
  }
  *first_ms = runs.front();
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

bool Check(const pxs::Status& s, const char* what) {
  if (!s.ok()) std::cerr << "http_bench: " << what << ": " << s.ToString() << '\n';
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"http_bench: the web face's API and /metrics on a big node database (from db_bench --keep)"};
  std::string dir, pxsctl = PXS_BINARY_DIR "/bin/pxsctl", promtool = "promtool";
  int requests = 300, patients = 200'000, slow_runs = 5;
  std::string model_name = "pxs-densenet121", model_version = "1.0";
  app.add_option("--dir", dir, "db_bench --keep folder (holds pxsnode.db)")->required();
  app.add_option("--requests", requests, "timed requests per endpoint")->capture_default_str();
  app.add_option("--patients", patients, "db_bench --patients it was made with")->capture_default_str();
  app.add_option("--slow-runs", slow_runs, "runs of the uncached whole-table answers")->capture_default_str();
  app.add_option("--pxsctl", pxsctl, "pxsctl binary (peer)")->capture_default_str();
  app.add_option("--promtool", promtool, "promtool binary")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string path = pxs::DatabasePathFor(dir);
  if (!std::filesystem::exists(path)) {
    std::cerr << "http_bench: " << path << " does not exist (run db_bench --keep --dir " << dir << ")\n";
    return 1;
  }
  {  // a database from an older build: migrate it (the API opens read-only and refuses old schemas)
    auto start = Clock::now();
    auto migrated = pxs::Database::Open(path, pxs::Database::Mode::kReadWrite);
    if (!migrated.ok()) return Check(migrated.status(), "open (migrate)"), 1;
    std::printf("opened read-write (migrations applied if any) in %.0f ms\n", MsSince(start));
  }

  pxs::http::Options o;
  o.db_path = path;
  o.data_dir = dir;
  o.tokens = {{"bench", "viewer", pxs::Sha256Hex(kToken)}};
  o.models = {{model_name, model_version, false}};
  o.version = "bench";
  o.ready = [] { return true; };
  pxs::http::Server server(o);
  if (!Check(server.Start(), "http server")) return 1;
  pxs::http::Options uncached_options = o;
  uncached_options.aggregate_max_age = std::chrono::milliseconds(0);
  pxs::http::Api uncached(uncached_options);  // stats/models computed per request (no kept copy)

  auto admin = pxs::AdminDatabase::Open(path, pxs::Database::Mode::kReadOnly);
  if (!admin.ok()) return Check(admin.status(), "open read-only"), 1;

  Client client(server.port());
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> pick(0, patients - 1);
  auto patient = [&] { return "BENCH" + std::to_string(pick(rng)); };
  std::vector<double> search_ms, search_direct_ms, history_ms, history_direct_ms, stats_ms, models_ms, metrics_ms,
      metrics_render_ms;
  int errors = 0;
  std::string body, sample_patient, sample_prefix;
  size_t search_rows = 0;
  for (int r = 0; r < requests; ++r) {
    double ms = 0;
    // Patients search by an id prefix ("BENCH123": ~110 patients, the first 50 a page).
    const std::string id = patient();
    const std::string prefix = id.substr(0, std::min<size_t>(id.size(), 8));
    if (client.Get("/api/v1/patients?limit=50&prefix=" + prefix, &body, &ms) != 200) ++errors;
    search_ms.push_back(ms);
    search_rows += nlohmann::json::parse(body, nullptr, false).size();
    auto start = Clock::now();
    auto found = (*admin)->FindPatients(prefix, 50);
    if (!found.ok()) return Check(found.status(), "FindPatients"), 1;
    const std::string direct = pxs::views::PatientsJson(*found).dump(2);
    search_direct_ms.push_back(MsSince(start));
    sample_prefix = prefix;

    // A patient's history (the longitudinal rule over every score of the patient).
    int status = client.Get("/api/v1/patients/" + id + "/history", &body, &ms);
    if (status == 404) continue;  // a patient who drew no instance
    if (status != 200) ++errors;
    history_ms.push_back(ms);
    start = Clock::now();
    pxs::views::HistoryQuery q;
    q.patient_id = id;
    auto history = pxs::views::LoadHistory(**admin, q);
    if (!history.ok()) return Check(history.status(), "LoadHistory"), 1;
    const std::string direct_history = pxs::views::HistoryJson(*history).dump(2);
    history_direct_ms.push_back(MsSince(start));
    sample_patient = id;

    if (client.Get("/api/v1/stats", nullptr, &ms) != 200) ++errors;
    stats_ms.push_back(ms);
    if (client.Get("/api/v1/models", nullptr, &ms) != 200) ++errors;
    models_ms.push_back(ms);
    if (client.Get("/metrics", &body, &ms) != 200) ++errors;
    metrics_ms.push_back(ms);
    start = Clock::now();
    pxs::http::Response rendered = uncached.Handle({"GET", "/metrics", std::string("Bearer ") + kToken, ""});
    metrics_render_ms.push_back(MsSince(start));
    if (rendered.status != 200) ++errors;
  }
  // The whole-table answers without the kept copy (what each request would cost).
  std::vector<double> stats_uncached_ms, models_uncached_ms;
  for (int r = 0; r < slow_runs; ++r) {
    auto start = Clock::now();
    if (uncached.Handle({"GET", "/api/v1/stats", std::string("Bearer ") + kToken, ""}).status != 200) ++errors;
    stats_uncached_ms.push_back(MsSince(start));
    start = Clock::now();
    if (uncached.Handle({"GET", "/api/v1/models", std::string("Bearer ") + kToken, ""}).status != 200) ++errors;
    models_uncached_ms.push_back(MsSince(start));
  }

  // promtool on the text as served.
  double ms = 0;
  client.Get("/metrics", &body, &ms);
  const std::string metrics_file = dir + "/metrics.txt";
  std::ofstream(metrics_file) << body;
  const int promtool_status = std::system((promtool + " check metrics < " + metrics_file).c_str());
  const bool promtool_ok = WIFEXITED(promtool_status) && WEXITSTATUS(promtool_status) == 0;

  // Peer: the pxsctl process an operator runs for the same answers.
  const std::string base = pxsctl + " --db " + path + " --json ";
  int rc_search = -1, rc_history = -1, rc_stats = -1;
  double first_search = 0, first_history = 0, first_stats = 0;
  const double ctl_search = TimeProcess(base + "patients " + sample_prefix, &rc_search, &first_search);
  const double ctl_history = TimeProcess(base + "history " + sample_patient, &rc_history, &first_history);
  const double ctl_stats = TimeProcess(base + "stats", &rc_stats, &first_stats);
  server.Stop();

  const Summary search = Summarise(search_ms), search_direct = Summarise(search_direct_ms),
                history = Summarise(history_ms), history_direct = Summarise(history_direct_ms),
                stats = Summarise(stats_ms), stats_uncached = Summarise(stats_uncached_ms),
                models = Summarise(models_ms), models_uncached = Summarise(models_uncached_ms),
                metrics = Summarise(metrics_ms), render = Summarise(metrics_render_ms);
  auto line = [](const char* what, const Summary& s) {
    std::printf("%-44s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  (n %zu)\n", what, s.p50, s.p99, s.max, s.n);
  };
  line("GET /api/v1/patients?prefix= (HTTP)", search);
  line("  same without HTTP (storage + JSON)", search_direct);
  line("GET /api/v1/patients/{id}/history (HTTP)", history);
  line("  same without HTTP (storage + JSON)", history_direct);
  line("GET /api/v1/stats (HTTP, kept copy)", stats);
  line("  computed per request (no copy)", stats_uncached);
  line("GET /api/v1/models (HTTP, kept copy)", models);
  line("  computed per request (no copy)", models_uncached);
  line("GET /metrics (HTTP)", metrics);
  line("  render only (Api::Handle)", render);
  std::printf("promtool check metrics: %s (%zu bytes)\n", promtool_ok ? "ok" : "FAILED", body.size());
  std::printf("pxsctl --json process, median of 5: patients %.1f ms (exit %d), history %.1f ms (exit %d), stats %.1f ms "
              "(exit %d)\n",
              ctl_search, rc_search, ctl_history, rc_history, ctl_stats, rc_stats);
  std::printf("search rows per page: %.1f; errors: %d\n",
              search_ms.empty() ? 0.0 : static_cast<double>(search_rows) / static_cast<double>(search_ms.size()), errors);

  Json result{{"db_mib", static_cast<double>(std::filesystem::file_size(path)) / (1024 * 1024)},
              {"patients_search", ToJson(search)},
              {"patients_search_without_http", ToJson(search_direct)},
              {"history", ToJson(history)},
              {"history_without_http", ToJson(history_direct)},
              {"stats_kept_copy", ToJson(stats)},
              {"stats_per_request", ToJson(stats_uncached)},
              {"models_kept_copy", ToJson(models)},
              {"models_per_request", ToJson(models_uncached)},
              {"metrics_http", ToJson(metrics)},
              {"metrics_render", ToJson(render)},
              {"promtool_ok", promtool_ok},
              {"pxsctl_patients_process_ms", ctl_search},
              {"pxsctl_history_process_ms", ctl_history},
              {"pxsctl_stats_process_ms", ctl_stats},
              {"pxsctl_exit_codes", {rc_search, rc_history, rc_stats}},
              {"errors", errors}};
  std::cout << result.dump() << std::endl;
  return errors == 0 && promtool_ok ? 0 : 1;
}
