#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "pxs/common/files.h"
#include "pxs/common/metrics.h"
#include "fhir.h"
#include "pxs/http/server.h"
#include "pxs/storage/admin.h"
#include "pxs/views/format.h"
#include "pxs/views/views.h"

namespace pxs::http {

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

namespace {

using Json = views::Json;

Response JsonResponse(int status, const Json& body, std::string route) {
  return Response{status, "application/json", body.dump(2) + "\n", std::move(route)};
}
Response Error(int status, const std::string& message, std::string route) {
  return JsonResponse(status, Json{{"error", message}}, std::move(route));
}

std::string PercentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
      if (ec == std::errc() && p == in.data() + i + 3) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && in[i] == '+' ? ' ' : in[i]);
  }
  return out;
}

struct Target {
  std::vector<std::string> segments;  // decoded path segments
  std::map<std::string, std::string> query;
};

Target ParseTarget(const std::string& target) {
  Target t;
  const size_t q = target.find('?');
  std::string_view path(target.data(), q == std::string::npos ? target.size() : q);
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) t.segments.push_back(PercentDecode(path.substr(start, end - start), false));
    start = end + 1;
  }
  if (q != std::string::npos) {
    std::string_view query(target.data() + q + 1, target.size() - q - 1);
    size_t s = 0;
    while (s < query.size()) {
      size_t e = query.find('&', s);
      if (e == std::string_view::npos) e = query.size();
      std::string_view pair = query.substr(s, e - s);
      const size_t eq = pair.find('=');
      std::string key = PercentDecode(pair.substr(0, eq), true);
      std::string value = eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
      if (!key.empty()) t.query[key] = value;
      s = e + 1;
    }
  }
  return t;
}

// An integer query parameter within [min, max]; absent: fallback; malformed: nullopt.
std::optional<int> IntParam(const Target& t, const std::string& key, int fallback, int min, int max) {
  auto it = t.query.find(key);
  if (it == t.query.end()) return fallback;
  int v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || p != it->second.data() + it->second.size() || v < min || v > max) return std::nullopt;
  return v;
}

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The dashboard's files: a fixed list, so no request path ever reaches the file system.
struct StaticFile {
  const char* url;
  const char* file;  // under web_root; nullptr: Chart.js
  const char* type;
};
constexpr StaticFile kStaticFiles[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/index.html", "index.html", "text/html; charset=utf-8"},
    {"/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/style.css", "style.css", "text/css; charset=utf-8"},
    {"/vendor/chart.min.js", nullptr, "text/javascript; charset=utf-8"},
};

std::string PromEscape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

// A value from whole-table counts (stats, the models' score counts: about a second at
// 1 M instances on a small machine), kept so that requests do not rescan the database:
// the first request computes it; later ones get the kept value and, once it is older
// than max_age, start one refresh on a thread of its own and still answer with the kept
// value, so no request waits for a rescan. max_age 0: computed on every request.
template <typename T>
class Cached {
 public:
  using Compute = std::function<StatusOr<T>()>;
  ~Cached() {
    if (refresh_.valid()) refresh_.wait();
  }
  StatusOr<T> Get(std::chrono::milliseconds max_age, const Compute& compute) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (max_age.count() <= 0 || !value_) {
      lock.unlock();
      StatusOr<T> fresh = compute();
      if (fresh.ok() && max_age.count() > 0) {
        lock.lock();
        value_ = *fresh;
        at_ = std::chrono::steady_clock::now();
      }
      return fresh;
    }
    const bool refreshing =
        refresh_.valid() && refresh_.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
    if (!refreshing && std::chrono::steady_clock::now() - at_ >= max_age) {
      // Only a finished (or no) refresh is replaced, so this never waits while locked.
      refresh_ = std::async(std::launch::async, [this, compute] {
        StatusOr<T> fresh = compute();
        if (!fresh.ok()) return;  // keep the last good value; the next request tries again
        std::lock_guard<std::mutex> guard(mutex_);
        value_ = std::move(*fresh);
        at_ = std::chrono::steady_clock::now();
      });
    }
    return *value_;
  }

 private:
  std::mutex mutex_;
  std::optional<T> value_;
  std::chrono::steady_clock::time_point at_;
  std::future<void> refresh_;
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Api::Impl {
  Options options;  // tokens guarded by tokens_mutex (SIGHUP replaces them); the rest fixed
  mutable std::mutex tokens_mutex;
  // Declared after options: destroyed (their refreshes waited for) before it.
  Cached<Json> stats;
  Cached<std::vector<ScoringModel>> model_usage;

  // The token's entry, or none (no header, not "Bearer", or unknown). Every entry is
  // compared, in constant time, so that timing tells nothing about which one is close.
  std::optional<Token> Authenticate(const std::string& header) const {
    static constexpr std::string_view kBearer = "Bearer ";
    if (header.size() <= kBearer.size() || header.compare(0, kBearer.size(), kBearer) != 0) return std::nullopt;
    const std::string hash = Sha256Hex(std::string_view(header).substr(kBearer.size()));
    std::optional<Token> found;
    std::lock_guard<std::mutex> lock(tokens_mutex);
    for (const Token& t : options.tokens) {
      if (ConstantTimeEquals(hash, t.sha256) && !found) found = t;
    }
    return found;
  }

  StatusOr<std::unique_ptr<AdminDatabase>> OpenDb(Database::Mode mode) const {
    struct stat st {};  // a PostgreSQL database has no file to look for
    if (!IsPostgresUrl(options.db_path) && ::stat(options.db_path.c_str(), &st) != 0) {
      return Status::IoError("cannot open database: " + options.db_path + ": " + std::strerror(errno));
    }
    DatabaseOptions database;
    database.url = options.db_path;
    database.node_id = options.node_id;
    database.statement_timeout_ms = options.statement_timeout_ms;
    return AdminDatabase::Open(database, mode);
  }

  static int HttpStatusFor(const Status& s) {
    switch (s.code()) {
      case Status::Code::kNotFound: return 404;
      case Status::Code::kInvalidArgument: return 400;
      default: return 500;
    }
  }

  Response Metrics() const;
  Json ModelsJson(std::vector<ScoringModel> usage) const;
  Response Api(const Request& req, const Target& t, const Token& token);
};

Api::Api(Options options) : impl_(std::make_unique<Impl>()) { impl_->options = std::move(options); }
Api::~Api() = default;
void Api::SetTokens(std::vector<Token> tokens) {
  std::lock_guard<std::mutex> lock(impl_->tokens_mutex);
  impl_->options.tokens = std::move(tokens);
}
const Options& Api::options() const { return impl_->options; }

Response Api::Handle(const Request& req) {
  const Options& o = impl_->options;
  if (req.target.size() > o.max_target_bytes) return Error(413, "request target too long", "(too long)");
  const std::string path = req.target.substr(0, req.target.find('?'));
  // FHIR (fhir.cc): its own body limit and OperationOutcome errors, the same tokens.
  if (path == "/fhir" || path.rfind("/fhir/", 0) == 0) {
    if (req.body.size() > o.max_fhir_body_bytes) {
      return Response{413, kFhirJsonType,
                      OperationOutcomeJson("error", "too-costly",
                                           "request body larger than " + std::to_string(o.max_fhir_body_bytes) + " bytes"),
                      "/fhir"};
    }
    const std::optional<Token> token = impl_->Authenticate(req.authorization);
    if (!token) {
      return Response{401, kFhirJsonType,
                      OperationOutcomeJson("error", "security",
                                           "a valid bearer token is required (Authorization: Bearer TOKEN)"),
                      "/fhir"};
    }
    return HandleFhir(req, path, *token, o);
  }
  if (req.body.size() > o.max_body_bytes) return Error(413, "request body too large", "(too large)");
  const Target t = ParseTarget(req.target);
  if (path == "/healthz") return JsonResponse(200, Json{{"status", "alive"}}, "/healthz");
  if (path == "/readyz") {
    const bool ready = o.ready && o.ready();
    return JsonResponse(ready ? 200 : 503, Json{{"ready", ready}}, "/readyz");
  }
  for (const StaticFile& f : kStaticFiles) {
    if (path != f.url) continue;
    if (req.method != "GET" && req.method != "HEAD") return Error(405, "method not allowed", f.url);
    bool ok = false;
    std::string body = ReadFile(f.file ? o.web_root + "/" + f.file : o.chartjs_path, &ok);
    if (!ok) return Error(404, std::string("not installed: ") + (f.file ? f.file : "chart.js (libjs-chart.js)"), f.url);
    return Response{200, f.type, std::move(body), f.url};
  }
  const bool is_api = t.segments.size() >= 2 && t.segments[0] == "api" && t.segments[1] == "v1";
  if (path != "/metrics" && !is_api) return Error(404, "no such resource", "(unknown)");
  const std::optional<Token> token = impl_->Authenticate(req.authorization);
  if (!token) {
    return Error(401, "a valid bearer token is required (Authorization: Bearer TOKEN)",
                 path == "/metrics" ? "/metrics" : "/api/v1/...");
  }
  if (path == "/metrics") {
    if (req.method != "GET") return Error(405, "method not allowed", "/metrics");
    return impl_->Metrics();
  }
  return impl_->Api(req, t, *token);
}

Response Api::Impl::Api(const Request& req, const Target& t, const Token& token) {
  const std::vector<std::string>& s = t.segments;
  const size_t n = s.size();
  const std::string what = n > 2 ? s[2] : "";
  auto get_only = [&](const std::string& route) -> std::optional<Response> {
    if (req.method != "GET") return Error(405, "method not allowed", route);
    return std::nullopt;
  };
  auto open = [&](const std::string& route, Database::Mode mode, std::unique_ptr<AdminDatabase>* db)
      -> std::optional<Response> {
    auto opened = OpenDb(mode);
    if (!opened.ok()) return Error(503, opened.status().ToString(), route);
    *db = std::move(*opened);
    return std::nullopt;
  };
  std::unique_ptr<AdminDatabase> db;
  auto fail = [&](const Status& st, const std::string& route) {
    // 400/404 say what was wrong in the caller's words; a 500 keeps the code name too.
    return Error(HttpStatusFor(st), HttpStatusFor(st) == 500 ? st.ToString() : st.message(), route);
  };

  if (what == "patients" && n == 3) {
    const std::string route = "/api/v1/patients";
    if (auto r = get_only(route)) return *r;
    auto limit = IntParam(t, "limit", 50, 1, 500);
    auto offset = IntParam(t, "offset", 0, 0, 10000);
    if (!limit || !offset) return Error(400, "limit must be 1..500 and offset 0..10000", route);
    if (auto r = open(route, Database::Mode::kReadOnly, &db)) return *r;
    auto prefix = t.query.count("prefix") ? t.query.at("prefix") : std::string();
    // FindPatients has no offset: the page is cut from the first offset+limit rows.
    auto patients = db->FindPatients(prefix, *offset + *limit);
    if (!patients.ok()) return fail(patients.status(), route);
    std::vector<PatientSummary> page;
    for (size_t i = static_cast<size_t>(*offset); i < patients->size(); ++i) page.push_back((*patients)[i]);
    return JsonResponse(200, views::PatientsJson(page), route);
  }
  if (what == "patients" && n == 5 && s[4] == "history") {
    const std::string route = "/api/v1/patients/{id}/history";
    if (auto r = get_only(route)) return *r;
    views::HistoryQuery q;
    q.patient_id = s[3];
    if (auto it = t.query.find("issuer"); it != t.query.end()) q.issuer = it->second;
    if (auto it = t.query.find("model"); it != t.query.end()) q.model = it->second;
    q.stable_delta_override = options.stable_delta_override;
    q.clinical_window_h = options.clinical_window_h;
    if (auto it = t.query.find("clinical_window_h"); it != t.query.end()) {
      double h = 0;
      auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), h);
      if (ec != std::errc() || end != it->second.data() + it->second.size() || !(h >= 0.1 && h <= 24 * 31)) {
        return Error(400, "clinical_window_h: must be a number of hours, 0.1..744 (got '" + it->second + "')", route);
      }
      q.clinical_window_h = h;
    }
    if (auto r = open(route, Database::Mode::kReadOnly, &db)) return *r;
    // The nearest SpO2 / O2 / CRP beside each study (issue 15), on a read-only
    // connection of its own; without one the history is still answered.
    auto observations = ObservationStore::Open(options.db_path, Database::Mode::kReadOnly);
    if (observations.ok()) q.observations = observations->get();
    auto history = views::LoadHistory(*db, q);
    if (!history.ok()) return fail(history.status(), route);
    return JsonResponse(200, views::HistoryJson(*history), route);
  }
  if (what == "studies" && n == 4) {
    const std::string route = "/api/v1/studies/{uid}";
    if (auto r = get_only(route)) return *r;
    if (auto r = open(route, Database::Mode::kReadOnly, &db)) return *r;
    auto studies = db->Study(s[3]);
    if (!studies.ok()) return fail(studies.status(), route);
    if (studies->empty()) return Error(404, "no study with Study Instance UID " + s[3], route);
    return JsonResponse(200, views::StudiesJson(*studies), route);
  }
  if ((what == "queue" || what == "failures" || what == "audit") && n == 3) {
    const std::string route = "/api/v1/" + what;
    if (auto r = get_only(route)) return *r;
    auto limit = IntParam(t, "limit", what == "queue" ? 20 : 50, 1, 1000);
    if (!limit) return Error(400, "limit must be 1..1000", route);
    if (auto r = open(route, Database::Mode::kReadOnly, &db)) return *r;
    if (what == "queue") {
      auto v = db->Queue(*limit);
      return v.ok() ? JsonResponse(200, views::QueueJson(*v), route) : fail(v.status(), route);
    }
    if (what == "failures") {
      auto v = db->Failures(*limit);
      return v.ok() ? JsonResponse(200, views::FailuresJson(*v), route) : fail(v.status(), route);
    }
    auto v = db->RecentAudit(*limit);
    return v.ok() ? JsonResponse(200, views::AuditJson(*v), route) : fail(v.status(), route);
  }
  if (what == "stats" && n == 3) {
    const std::string route = "/api/v1/stats";
    if (auto r = get_only(route)) return *r;
    auto v = stats.Get(options.aggregate_max_age, [this]() -> StatusOr<Json> {
      PXS_ASSIGN_OR_RETURN(std::unique_ptr<AdminDatabase> reader, OpenDb(Database::Mode::kReadOnly));
      PXS_ASSIGN_OR_RETURN(Stats computed, reader->ComputeStats(NowMs()));
      return views::StatsJson(computed);
    });
    return v.ok() ? JsonResponse(200, *v, route) : Error(503, v.status().ToString(), route);
  }
  if (what == "models" && n == 3) {
    const std::string route = "/api/v1/models";
    if (auto r = get_only(route)) return *r;
    auto usage = model_usage.Get(options.aggregate_max_age, [this]() -> StatusOr<std::vector<ScoringModel>> {
      PXS_ASSIGN_OR_RETURN(std::unique_ptr<AdminDatabase> reader, OpenDb(Database::Mode::kReadOnly));
      return reader->ScoringModels();
    });
    if (!usage.ok()) return Error(503, usage.status().ToString(), route);
    return JsonResponse(200, ModelsJson(*usage), route);
  }
  if (what == "retry" && n == 3) {
    const std::string route = "/api/v1/retry";
    if (req.method != "POST") return Error(405, "method not allowed (POST)", route);
    if (token.role != "admin") return Error(403, "retry needs an admin token", route);
    Json body = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    std::string uid;
    bool all_failed = false;
    if (body.is_object()) {
      if (auto it = body.find("sop_instance_uid"); it != body.end() && it->is_string()) uid = it->get<std::string>();
      if (auto it = body.find("all_failed"); it != body.end() && it->is_boolean()) all_failed = it->get<bool>();
    }
    if (uid.empty() == !all_failed) {
      return Error(400, "body: {\"sop_instance_uid\": \"...\"} or {\"all_failed\": true}", route);
    }
    if (auto r = open(route, Database::Mode::kReadWrite, &db)) return *r;
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    auto result = all_failed ? db->RetryAllFailed(now) : db->Retry(uid, now);
    Json details = views::RetryJson(all_failed ? "all-failed" : uid, result);
    // The attempt is audited whether or not it changed anything, under the token's name.
    Status audited = db->AddAudit({now, "http:" + token.name, "retry", details.dump()});
    if (!result.ok()) return fail(result.status(), route);
    if (!audited.ok()) return fail(audited, route);
    return JsonResponse(200, details, route);
  }
  return Error(404, "no such resource", "/api/v1/(unknown)");
}

// Every model that scored here or was loaded, with its model card (the stored
// metadata.json) and whether the node scores with it now. A loaded model the database
// has not recorded yet is listed too (no metadata).
Json Api::Impl::ModelsJson(std::vector<ScoringModel> usage) const {
  auto loaded = [&](const std::string& name, const std::string& version) {
    for (const LoadedModel& m : options.models) {
      if (m.name == name && m.version == version) return true;
    }
    return false;
  };
  for (const LoadedModel& m : options.models) {
    bool listed = false;
    for (const ScoringModel& u : usage) listed = listed || (u.name == m.name && u.version == m.version);
    if (!listed) usage.push_back(ScoringModel{m.name, m.version, 0, std::nullopt, std::nullopt, std::nullopt, std::nullopt});
  }
  auto iso = [](const std::optional<int64_t>& ms) { return ms ? Json(views::FormatTimeIso(*ms)) : Json(nullptr); };
  Json out = Json::array();
  for (const ScoringModel& u : usage) {
    Json m = views::ModelJson(u.name, u.version, u.metadata_json.value_or(""));
    m["loaded"] = loaded(u.name, u.version);
    m["scores"] = u.scores;
    m["first_scored_at"] = iso(u.first_scored_at_ms);
    m["last_scored_at"] = iso(u.last_scored_at_ms);
    m["last_loaded_at"] = iso(u.loaded_at_ms);
    out.push_back(std::move(m));
  }
  return out;
}

Response Api::Impl::Metrics() const {
  std::ostringstream out;
  const metrics::Registry& m = metrics::Global();
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " counter\n" << name << ' ' << v << '\n';
  };
  counter("pxs_associations_total", "DICOM associations accepted.", m.associations.load());
  out << "# HELP pxs_instances_total C-STORE requests answered, by DIMSE status.\n# TYPE pxs_instances_total counter\n";
  static constexpr const char* kStatus[][2] = {
      {"stored", "0000"}, {"refused", "A700"}, {"refused", "A900"}, {"failed", "C000"}, {"failed", "other"}};
  for (int i = 0; i < metrics::kStoreStatusCount; ++i) {
    out << "pxs_instances_total{outcome=\"" << kStatus[i][0] << "\",status=\"" << kStatus[i][1] << "\"} "
        << m.instances_by_status[i].load() << '\n';
  }
  counter("pxs_jobs_scored_total", "Scoring jobs completed.", m.jobs_scored.load());
  counter("pxs_jobs_failed_total", "Failed scoring attempts.", m.jobs_failed.load());
  counter("pxs_reports_sent_total", "SR deliveries acknowledged by their destination.", m.reports_sent.load());
  counter("pxs_reports_failed_total", "SR deliveries failed for good (after their last attempt).",
          m.reports_failed.load());
  counter("pxs_report_retries_total", "Failed SR delivery attempts scheduled again.", m.report_retries.load());
  auto histogram = [&](const char* name, const char* help, const metrics::Histogram& h) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " histogram\n";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= metrics::Histogram::kBounds.size(); ++i) {
      cumulative += h.bucket(i);
      out << name << "_bucket{le=\"";
      if (i < metrics::Histogram::kBounds.size()) out << metrics::Histogram::kBounds[i];
      else out << "+Inf";
      out << "\"} " << cumulative << '\n';
    }
    out << name << "_sum " << h.sum_seconds() << '\n' << name << "_count " << cumulative << '\n';
  };
  histogram("pxs_cstore_ack_seconds", "C-STORE request received to response status (file durable and recorded).",
            m.cstore_ack_seconds);
  histogram("pxs_scoring_batch_seconds", "Time to score one batch (decode, inference, record).", m.scoring_seconds);
  histogram("pxs_image_to_sr_seconds", "Image received to its SR recorded for sending.", m.image_to_sr_seconds);

  auto gauge = [&](const char* name, const char* help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " gauge\n";
  };
  if (auto db = OpenDb(Database::Mode::kReadOnly); db.ok()) {
    if (auto q = (*db)->Queue(1); q.ok()) {
      gauge("pxs_queue_depth", "Scoring jobs queued or being scored.");
      out << "pxs_queue_depth{state=\"queued\"} " << q->queued << "\npxs_queue_depth{state=\"scoring\"} " << q->scoring
          << '\n';
      gauge("pxs_outbox_depth", "SR deliveries waiting to be sent.");
      out << "pxs_outbox_depth " << q->reports_pending << '\n';
    }
  }
  if (auto disk = QueryDiskSpace(options.data_dir); disk.ok()) {
    gauge("pxs_data_free_bytes", "Free bytes on the data folder's file system.");
    out << "pxs_data_free_bytes " << disk->free_bytes << '\n';
  }
  gauge("pxs_model_info", "The models the node scores with (value 1).");
  for (const LoadedModel& model : options.models) {
    out << "pxs_model_info{name=\"" << PromEscape(model.name) << "\",version=\"" << PromEscape(model.version)
        << "\",not_for_clinical_use=\"" << (model.not_for_clinical_use ? "true" : "false") << "\"} 1\n";
  }
  gauge("pxs_build_info", "The pxsnode build (value 1).");
  out << "pxs_build_info{version=\"" << PromEscape(options.version) << "\"} 1\n";
  gauge("pxs_ready", "1 when the SCP is listening and the models are loaded.");
  out << "pxs_ready " << (options.ready && options.ready() ? 1 : 0) << '\n';
  return Response{200, "text/plain; version=0.0.4; charset=utf-8", out.str(), "/metrics"};
}

}  // namespace pxs::http
