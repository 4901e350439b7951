#include "pxs/config/config.h"

#include <arpa/inet.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "pxs/storage/database.h"  // IsPostgresUrl, DatabasePathFor

namespace pxs {
namespace {

namespace fs = std::filesystem;

// Reads one TOML table into a Config section, remembering which keys it consumed so
// that a misspelt key is an error instead of a silently ignored setting.
class SectionReader {
 public:
  SectionReader(const toml::table* table, std::string file, std::string section)
      : table_(table), file_(std::move(file)), section_(std::move(section)) {}

  Status Error(const std::string& key, const std::string& what) const {
    return Status::InvalidArgument(file_ + ": " + Where(key) + ": " + what);
  }

  Status String(const std::string& key, std::string* out) {
    const toml::node* n = Take(key);
    if (!n) return Status::Ok();
    if (!n->is_string()) return Error(key, "must be a string");
    *out = n->as_string()->get();
    return Status::Ok();
  }

  template <typename Int>
  Status Integer(const std::string& key, Int* out, int64_t min, int64_t max) {
    const toml::node* n = Take(key);
    if (!n) return Status::Ok();
    if (!n->is_integer()) return Error(key, "must be an integer");
    int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
      return Error(key, "must be " + std::to_string(min) + ".." + std::to_string(max) +
                            " (got " + std::to_string(v) + ")");
    }
    *out = static_cast<Int>(v);
    return Status::Ok();
  }

  Status Number(const std::string& key, double* out, double min, double max) {
    const toml::node* n = Take(key);
    if (!n) return Status::Ok();
    double v = 0;
    if (n->is_integer()) {
      v = static_cast<double>(n->as_integer()->get());
    } else if (n->is_floating_point()) {
      v = n->as_floating_point()->get();
    } else {
      return Error(key, "must be a number");
    }
    if (v < min || v > max) {
      std::ostringstream msg;
      msg << "must be " << min << ".." << max << " (got " << v << ")";
      return Error(key, msg.str());
    }
    *out = v;
    return Status::Ok();
  }

  Status Bool(const std::string& key, bool* out) {
    const toml::node* n = Take(key);
    if (!n) return Status::Ok();
    if (!n->is_boolean()) return Error(key, "must be true or false");
    *out = n->as_boolean()->get();
    return Status::Ok();
  }

  Status StringList(const std::string& key, std::vector<std::string>* out) {
    const toml::node* n = Take(key);
    if (!n) return Status::Ok();
    if (!n->is_array()) return Error(key, "must be a list of strings, e.g. [\"A\", \"B\"]");
    out->clear();
    for (const toml::node& item : *n->as_array()) {
      if (!item.is_string()) return Error(key, "must be a list of strings");
      out->push_back(item.as_string()->get());
    }
    return Status::Ok();
  }

  // A key read by other means (an array of tables inside this table).
  void Consume(const std::string& key) { consumed_.insert(key); }

  // Every key present in the table must have been read.
  Status RejectUnknownKeys() const {
    if (!table_) return Status::Ok();
    for (const auto& [key, value] : *table_) {
      std::string k(key.str());
      if (!consumed_.count(k)) return Error(k, "unknown key (misspelt? see config/pxsnode.example.toml)");
    }
    return Status::Ok();
  }

 private:
  std::string Where(const std::string& key) const { return "[" + section_ + "] " + key; }
  const toml::node* Take(const std::string& key) {
    consumed_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }

  const toml::table* table_;
  std::string file_;
  std::string section_;
  std::set<std::string> consumed_;
};

std::string ResolveRelative(const std::string& path, const std::string& config_path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  fs::path base = fs::path(config_path).parent_path();
  return (base / path).lexically_normal().string();
}

Status CheckAe(SectionReader& r, const std::string& key, const std::string& ae) {
  if (!IsValidAeTitle(ae)) {
    return r.Error(key, "'" + ae + "' is not a valid AE title (1-16 characters, no backslash)");
  }
  return Status::Ok();
}

// Model names and node ids: 1-64 of A-Z a-z 0-9 . _ - (they appear in file names, logs
// and SQL values, never needing quoting).
bool IsValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (unsigned char c : name) {
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

// [database]; data_dir (already resolved) gives the default SQLite file. Which strings
// are PostgreSQL's is storage's rule (IsPostgresUrl), so both read a url alike.
Status ReadDatabase(const toml::table* t, const std::string& file, const std::string& data_dir,
                    DatabaseSection* db) {
  db->url.clear();
  if (t) {
    SectionReader r(t, file, "database");
    PXS_RETURN_IF_ERROR(r.String("url", &db->url));
    PXS_RETURN_IF_ERROR(r.Integer("pool_size", &db->pool_size, 1, 64));
    PXS_RETURN_IF_ERROR(r.Integer("statement_timeout_ms", &db->statement_timeout_ms, 0, 3'600'000));
    PXS_RETURN_IF_ERROR(r.RejectUnknownKeys());
    const std::string& url = db->url;
    const bool postgres = IsPostgresUrl(url);
    if (url.rfind("sqlite:", 0) == 0) {
      if (url.size() == 7) return r.Error("url", "sqlite: needs a file path (sqlite:/var/lib/pxsnode/pxsnode.db)");
      db->url = "sqlite:" + ResolveRelative(url.substr(7), file);
    } else if (!url.empty() && !postgres) {
      // Not echoed: a connection string may hold a password.
      return r.Error("url", "must be sqlite:PATH, postgresql://user@host/db or a libpq key=value string");
    }
  }
  if (db->url.empty()) db->url = "sqlite:" + DatabasePathFor(data_dir);
  return Status::Ok();
}

Status ReadNode(const toml::table* t, const std::string& file, NodeSection* node) {
  SectionReader r(t, file, "node");
  PXS_RETURN_IF_ERROR(r.String("ae_title", &node->ae_title));
  PXS_RETURN_IF_ERROR(CheckAe(r, "ae_title", node->ae_title));
  PXS_RETURN_IF_ERROR(r.String("bind", &node->bind));
  PXS_RETURN_IF_ERROR(r.Integer("port", &node->port, 1, 65535));
  PXS_RETURN_IF_ERROR(r.String("data_dir", &node->data_dir));
  if (node->data_dir.empty()) return r.Error("data_dir", "must not be empty");
  PXS_RETURN_IF_ERROR(r.String("id", &node->id));
  if (!node->id.empty() && !IsValidModelName(node->id)) {
    return r.Error("id", "'" + node->id + "' must be 1-64 of A-Z a-z 0-9 . _ -");
  }
  PXS_RETURN_IF_ERROR(r.String("log_level", &node->log_level));
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
  if (!kLevels.count(node->log_level)) {
    return r.Error("log_level", "must be trace, debug, info, warn or error (got '" + node->log_level + "')");
  }
  return r.RejectUnknownKeys();
}

Status ReadScp(const toml::table* t, const std::string& file, ScpSection* scp) {
  SectionReader r(t, file, "scp");
  PXS_RETURN_IF_ERROR(r.StringList("allowed_calling_aes", &scp->allowed_calling_aes));
  for (const std::string& ae : scp->allowed_calling_aes) {
    PXS_RETURN_IF_ERROR(CheckAe(r, "allowed_calling_aes", ae));
  }
  PXS_RETURN_IF_ERROR(r.Integer("max_associations", &scp->max_associations, 1, 256));
  // DICOM PS3.8: 4096 is the smallest sensible PDU; DCMTK caps at 131072.
  PXS_RETURN_IF_ERROR(r.Integer("max_pdu", &scp->max_pdu, 4096, 131072));
  PXS_RETURN_IF_ERROR(r.Integer("acse_timeout_s", &scp->acse_timeout_s, 1, 3600));
  PXS_RETURN_IF_ERROR(r.Integer("dimse_timeout_s", &scp->dimse_timeout_s, 1, 3600));
  PXS_RETURN_IF_ERROR(r.Integer("shutdown_grace_s", &scp->shutdown_grace_s, 0, 3600));
  double min_free_gb = static_cast<double>(scp->min_free_bytes) / 1e9;
  PXS_RETURN_IF_ERROR(r.Number("min_free_gb", &min_free_gb, 0, 1e6));
  scp->min_free_bytes = static_cast<uint64_t>(min_free_gb * 1e9);
  PXS_RETURN_IF_ERROR(r.Number("min_free_percent", &scp->min_free_percent, 0, 99));
  PXS_RETURN_IF_ERROR(r.String("on_conflict", &scp->on_conflict));
  if (scp->on_conflict != "keep_first" && scp->on_conflict != "replace") {
    return r.Error("on_conflict", "must be keep_first or replace (got '" + scp->on_conflict + "')");
  }
  return r.RejectUnknownKeys();
}

// device and precision, as [scoring] and [[models]] accept them.
Status ReadDeviceAndPrecision(SectionReader& r, std::string* device, std::string* precision) {
  PXS_RETURN_IF_ERROR(r.String("device", device));
  bool device_ok = *device == "auto" || *device == "cpu" || *device == "cuda";
  if (!device_ok && device->rfind("cuda:", 0) == 0 && device->size() > 5) {
    device_ok = device->find_first_not_of("0123456789", 5) == std::string::npos;
  }
  if (!device_ok) return r.Error("device", "must be auto, cpu, cuda or cuda:N (got '" + *device + "')");
  PXS_RETURN_IF_ERROR(r.String("precision", precision));
  if (*precision != "fp32" && *precision != "fp16" && *precision != "bf16" && *precision != "auto") {
    return r.Error("precision", "must be fp32, fp16, bf16 or auto (got '" + *precision + "')");
  }
  return Status::Ok();
}

// model_required: no [[models]] tables, so [scoring] model is the one model.
Status ReadScoring(const toml::table* t, const std::string& file, bool model_required, ScoringSection* s) {
  SectionReader r(t, file, "scoring");
  PXS_RETURN_IF_ERROR(r.String("model", &s->model));
  if (s->model.empty() && model_required) {
    return r.Error("model", "is required (or [[models]] tables): the path of a model package (.pt)");
  }
  if (!s->model.empty() && !model_required) {
    return r.Error("model", "and [[models]] both name models: use [[models]] only ([scoring] model is the one-model shorthand)");
  }
  // The file itself is checked where it is loaded (pxsnode start, --check-config), so
  // that pxsctl can read a config on a host without the model.
  s->model = ResolveRelative(s->model, file);
  PXS_RETURN_IF_ERROR(ReadDeviceAndPrecision(r, &s->device, &s->precision));
  PXS_RETURN_IF_ERROR(r.Integer("max_batch", &s->max_batch, 1, 256));
  PXS_RETURN_IF_ERROR(r.Integer("max_wait_ms", &s->max_wait_ms, 0, 60000));
  PXS_RETURN_IF_ERROR(r.Integer("intra_op_threads", &s->intra_op_threads, 0, 1024));
  PXS_RETURN_IF_ERROR(r.Integer("inter_op_threads", &s->inter_op_threads, 1, 1024));
  PXS_RETURN_IF_ERROR(r.Integer("max_attempts", &s->max_attempts, 1, 100));
  PXS_RETURN_IF_ERROR(r.Integer("yield_to_ingest_ms", &s->yield_to_ingest_ms, 0, 60000));
  PXS_RETURN_IF_ERROR(r.Bool("score_for_processing", &s->score_for_processing));
  return r.RejectUnknownKeys();
}

Status ReadRoute(const toml::node* n, const std::string& file, const std::string& section, routing::Route* route) {
  if (!n) return Status::Ok();  // the default chest route
  if (!n->is_table()) return Status::InvalidArgument(file + ": [" + section + "]: must be a table");
  SectionReader r(n->as_table(), file, section);
  *route = routing::Route{};  // a route given replaces the default as a whole
  PXS_RETURN_IF_ERROR(r.StringList("modality", &route->modality));
  PXS_RETURN_IF_ERROR(r.StringList("sop_class", &route->sop_class));
  PXS_RETURN_IF_ERROR(r.StringList("body_part", &route->body_part));
  PXS_RETURN_IF_ERROR(r.StringList("view_position", &route->view_position));
  PXS_RETURN_IF_ERROR(r.StringList("calling_ae", &route->calling_ae));
  PXS_RETURN_IF_ERROR(r.StringList("station_name", &route->station_name));
  PXS_RETURN_IF_ERROR(r.Integer("min_rows", &route->min_rows, 0, 65535));
  PXS_RETURN_IF_ERROR(r.Integer("min_columns", &route->min_columns, 0, 65535));
  Status unknown = r.RejectUnknownKeys();
  if (!unknown.ok()) {
    std::string keys;
    for (const std::string& k : routing::RouteKeys()) keys += (keys.empty() ? "" : ", ") + k;
    return Status::InvalidArgument(unknown.message() + "; a route knows " + keys);
  }
  return Status::Ok();
}

// [[models]]; device and precision default to [scoring]'s.
Status ReadModels(const toml::node* n, const std::string& file, const ScoringSection& scoring,
                  std::vector<ModelEntry>* models) {
  if (!n) return Status::Ok();
  if (!n->is_array_of_tables()) return Status::InvalidArgument(file + ": [[models]]: must be an array of tables");
  std::set<std::string> names;
  int index = 0;
  for (const toml::node& item : *n->as_array()) {
    const std::string section = "models #" + std::to_string(++index);
    SectionReader r(item.as_table(), file, section);
    ModelEntry m;
    m.device = scoring.device;
    m.precision = scoring.precision;
    PXS_RETURN_IF_ERROR(r.String("name", &m.name));
    if (!m.name.empty() && !IsValidModelName(m.name)) {
      return r.Error("name", "'" + m.name + "' must be 1-64 of A-Z a-z 0-9 . _ -");
    }
    if (!m.name.empty() && !names.insert(m.name).second) {
      return r.Error("name", "two models are named '" + m.name + "'; each needs its own name");
    }
    PXS_RETURN_IF_ERROR(r.String("package", &m.package));
    if (m.package.empty()) return r.Error("package", "is required: the path of a model package (.pt)");
    m.package = ResolveRelative(m.package, file);
    PXS_RETURN_IF_ERROR(ReadDeviceAndPrecision(r, &m.device, &m.precision));
    PXS_RETURN_IF_ERROR(r.Bool("enabled", &m.enabled));
    r.Consume("route");
    PXS_RETURN_IF_ERROR(ReadRoute(item.as_table()->get("route"), file, section + " route", &m.route));
    PXS_RETURN_IF_ERROR(r.RejectUnknownKeys());
    models->push_back(std::move(m));
  }
  return Status::Ok();
}

Status ReadTls(const toml::table* t, const std::string& file, int node_port, TlsSection* tls) {
  if (!t) return Status::Ok();
  tls->enabled = true;
  SectionReader r(t, file, "tls");
  PXS_RETURN_IF_ERROR(r.String("certificate", &tls->certificate));
  PXS_RETURN_IF_ERROR(r.String("private_key", &tls->private_key));
  PXS_RETURN_IF_ERROR(r.String("trusted_certificates", &tls->trusted_certificates));
  PXS_RETURN_IF_ERROR(r.Bool("require_client_certificate", &tls->require_client_certificate));
  PXS_RETURN_IF_ERROR(r.String("profile", &tls->profile));
  PXS_RETURN_IF_ERROR(r.Integer("plain_port", &tls->plain_port, 0, 65535));
  PXS_RETURN_IF_ERROR(r.RejectUnknownKeys());
  if (tls->certificate.empty()) return r.Error("certificate", "is required (a PEM file)");
  if (tls->private_key.empty()) return r.Error("private_key", "is required (a PEM file)");
  if (tls->require_client_certificate && tls->trusted_certificates.empty()) {
    return r.Error("trusted_certificates", "is required with require_client_certificate = true");
  }
  if (tls->profile != "bcp195" && tls->profile != "bcp195-nd" && tls->profile != "bcp195-extended") {
    return r.Error("profile", "must be bcp195, bcp195-nd or bcp195-extended (got '" + tls->profile + "')");
  }
  if (tls->plain_port != 0 && tls->plain_port == node_port) {
    return r.Error("plain_port", "must differ from [node] port (which speaks TLS)");
  }
  tls->certificate = ResolveRelative(tls->certificate, file);
  tls->private_key = ResolveRelative(tls->private_key, file);
  tls->trusted_certificates = ResolveRelative(tls->trusted_certificates, file);
  return Status::Ok();
}

Status ReadPeers(const toml::node* n, const std::string& file, std::vector<PeerEntry>* out) {
  if (!n) return Status::Ok();
  if (!n->is_array_of_tables()) return Status::InvalidArgument(file + ": [[peers]]: must be an array of tables");
  int index = 0;
  for (const toml::node& item : *n->as_array()) {
    SectionReader r(item.as_table(), file, "peers #" + std::to_string(++index));
    PeerEntry p;
    PXS_RETURN_IF_ERROR(r.String("ae_title", &p.ae_title));
    if (p.ae_title.empty()) return r.Error("ae_title", "is required");
    PXS_RETURN_IF_ERROR(CheckAe(r, "ae_title", p.ae_title));
    PXS_RETURN_IF_ERROR(r.String("address", &p.address));
    PXS_RETURN_IF_ERROR(r.String("certificate_subject", &p.certificate_subject));
    PXS_RETURN_IF_ERROR(r.Integer("max_associations", &p.max_associations, 0, 256));
    PXS_RETURN_IF_ERROR(r.RejectUnknownKeys());
    out->push_back(std::move(p));
  }
  return Status::Ok();
}

Status ReadDestinations(const toml::node* n, const std::string& file, std::vector<Destination>* out) {
  if (!n) return Status::Ok();
  if (!n->is_array_of_tables()) {
    return Status::InvalidArgument(file + ": [[destinations]]: must be an array of tables");
  }
  std::set<std::string> names;
  int index = 0;
  for (const toml::node& item : *n->as_array()) {
    SectionReader r(item.as_table(), file, "destinations #" + std::to_string(++index));
    Destination d;
    PXS_RETURN_IF_ERROR(r.String("name", &d.name));
    if (d.name.empty() || d.name == "caller") return r.Error("name", "must be set and not 'caller'");
    if (!names.insert(d.name).second) return r.Error("name", "duplicate destination '" + d.name + "'");
    PXS_RETURN_IF_ERROR(r.String("ae_title", &d.ae_title));
    PXS_RETURN_IF_ERROR(CheckAe(r, "ae_title", d.ae_title));
    PXS_RETURN_IF_ERROR(r.String("host", &d.host));
    if (d.host.empty()) return r.Error("host", "must be set");
    PXS_RETURN_IF_ERROR(r.Integer("port", &d.port, 1, 65535));
    PXS_RETURN_IF_ERROR(r.Bool("tls", &d.tls));
    PXS_RETURN_IF_ERROR(r.RejectUnknownKeys());
    out->push_back(std::move(d));
  }
  return Status::Ok();
}

Status ReadReports(const toml::table* t, const std::string& file, const std::vector<Destination>& dests,
                   ReportsSection* rep) {
  SectionReader r(t, file, "reports");
  PXS_RETURN_IF_ERROR(r.StringList("send_to", &rep->send_to));
  for (const std::string& name : rep->send_to) {
    bool known = name == "caller";
    for (const Destination& d : dests) known = known || d.name == name;
    if (!known) return r.Error("send_to", "'" + name + "' is neither \"caller\" nor a [[destinations]] name");
  }
  PXS_RETURN_IF_ERROR(r.Integer("max_attempts", &rep->max_attempts, 1, 1000));
  PXS_RETURN_IF_ERROR(r.Integer("retry_initial_s", &rep->retry_initial_s, 1, 86400));
  PXS_RETURN_IF_ERROR(r.Integer("retry_max_s", &rep->retry_max_s, 1, 7 * 86400));
  if (rep->retry_max_s < rep->retry_initial_s) return r.Error("retry_max_s", "must be >= retry_initial_s");
  PXS_RETURN_IF_ERROR(r.Number("stable_delta", &rep->stable_delta, -1, 1e6));
  PXS_RETURN_IF_ERROR(r.Number("clinical_window_h", &rep->clinical_window_h, 0.1, 24 * 31));
  PXS_RETURN_IF_ERROR(r.Bool("trend_sheet", &rep->trend_sheet));
  return r.RejectUnknownKeys();
}

Status ReadHttp(const toml::table* t, const std::string& file, HttpSection* http) {
  if (!t) return Status::Ok();
  SectionReader r(t, file, "http");
  PXS_RETURN_IF_ERROR(r.Bool("enabled", &http->enabled));
  PXS_RETURN_IF_ERROR(r.String("bind", &http->bind));
  PXS_RETURN_IF_ERROR(r.Integer("port", &http->port, 0, 65535));
  PXS_RETURN_IF_ERROR(r.String("web_root", &http->web_root));
  http->web_root = ResolveRelative(http->web_root, file);
  if (const toml::node* n = t->get("tokens")) {
    r.Consume("tokens");  // its tables are read (and checked) below
    if (!n->is_array_of_tables()) return Status::InvalidArgument(file + ": [[http.tokens]]: must be an array of tables");
    std::set<std::string> names;
    int index = 0;
    for (const toml::node& item : *n->as_array()) {
      SectionReader tr(item.as_table(), file, "http.tokens #" + std::to_string(++index));
      HttpToken token;
      PXS_RETURN_IF_ERROR(tr.String("name", &token.name));
      if (token.name.empty()) return tr.Error("name", "is required");
      if (!names.insert(token.name).second) return tr.Error("name", "duplicate token name '" + token.name + "'");
      PXS_RETURN_IF_ERROR(tr.String("role", &token.role));
      if (token.role != "viewer" && token.role != "admin") {
        return tr.Error("role", "must be viewer or admin (got '" + token.role + "')");
      }
      PXS_RETURN_IF_ERROR(tr.String("sha256", &token.sha256));
      bool hex = token.sha256.size() == 64;
      for (char& c : token.sha256) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        hex = hex && std::isxdigit(static_cast<unsigned char>(c));
      }
      if (!hex) return tr.Error("sha256", "must be 64 hex digits: the SHA-256 of the token (sha256sum), not the token");
      PXS_RETURN_IF_ERROR(tr.RejectUnknownKeys());
      http->tokens.push_back(std::move(token));
    }
  }
  return r.RejectUnknownKeys();
}

Status ReadHl7(const toml::table* t, const std::string& file, Hl7Section* hl7) {
  if (!t) return Status::Ok();
  SectionReader r(t, file, "hl7");
  PXS_RETURN_IF_ERROR(r.Bool("enabled", &hl7->enabled));
  PXS_RETURN_IF_ERROR(r.String("bind", &hl7->bind));
  // The listener binds a numeric address (no resolver at start): say so here, not there.
  unsigned char addr[16];
  if (inet_pton(AF_INET, hl7->bind.c_str(), addr) != 1 && inet_pton(AF_INET6, hl7->bind.c_str(), addr) != 1) {
    return r.Error("bind", "'" + hl7->bind + "' is not an IPv4 or IPv6 address");
  }
  PXS_RETURN_IF_ERROR(r.Integer("port", &hl7->port, 0, 65535));
  PXS_RETURN_IF_ERROR(r.StringList("allowed_senders", &hl7->allowed_senders));
  for (const std::string& s : hl7->allowed_senders) {
    const size_t hat = s.find('^');
    if (s.empty() || hat == 0 || (hat != std::string::npos && (hat + 1 == s.size() || s.find('^', hat + 1) != std::string::npos))) {
      return r.Error("allowed_senders", "'" + s + "' must be \"APP\" (MSH-3) or \"APP^FACILITY\" (MSH-3 and MSH-4)");
    }
  }
  int64_t max_bytes = static_cast<int64_t>(hl7->max_message_bytes);
  PXS_RETURN_IF_ERROR(r.Integer("max_message_bytes", &max_bytes, 1024, 64ll << 20));
  hl7->max_message_bytes = static_cast<size_t>(max_bytes);
  PXS_RETURN_IF_ERROR(r.Integer("max_connections", &hl7->max_connections, 1, 4096));
  PXS_RETURN_IF_ERROR(r.Integer("idle_timeout_s", &hl7->idle_timeout_s, 1, 86400));
  if (const toml::node* n = t->get("patient_authorities")) {
    r.Consume("patient_authorities");  // its tables are read (and checked) below
    if (!n->is_array_of_tables()) {
      return Status::InvalidArgument(file + ": [[hl7.patient_authorities]]: must be an array of tables "
                                     "(authority = \"...\", issuer = \"...\")");
    }
    std::set<std::string> seen;
    int index = 0;
    for (const toml::node& item : *n->as_array()) {
      SectionReader mr(item.as_table(), file, "hl7.patient_authorities #" + std::to_string(++index));
      Hl7AuthorityMapping m;
      PXS_RETURN_IF_ERROR(mr.String("authority", &m.authority));
      if (m.authority.empty()) return mr.Error("authority", "is required (the PID-3.4 assigning authority)");
      if (!seen.insert(m.authority).second) return mr.Error("authority", "'" + m.authority + "' is mapped twice");
      PXS_RETURN_IF_ERROR(mr.String("issuer", &m.issuer));
      // 64 characters: DICOM IssuerOfPatientID is an LO.
      if (m.issuer.size() > 64) return mr.Error("issuer", "is longer than 64 characters (IssuerOfPatientID is an LO)");
      PXS_RETURN_IF_ERROR(mr.RejectUnknownKeys());
      hl7->patient_authorities.push_back(std::move(m));
    }
  }
  return r.RejectUnknownKeys();
}

const toml::table* SubTable(const toml::table& root, const char* name, const std::string& file, Status* st) {
  const toml::node* n = root.get(name);
  if (!n) return nullptr;
  if (!n->is_table()) *st = Status::InvalidArgument(file + ": [" + std::string(name) + "]: must be a table");
  return n->as_table();
}

}  // namespace

bool IsValidAeTitle(const std::string& ae) {
  if (ae.empty() || ae.size() > 16) return false;
  bool any_non_space = false;
  for (unsigned char c : ae) {
    if (c < 0x20 || c > 0x7e || c == '\\') return false;
    any_non_space = any_non_space || c != ' ';
  }
  return any_non_space;
}

const Destination* Config::FindDestinationByName(const std::string& name) const {
  for (const Destination& d : destinations) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

const Destination* Config::FindDestinationByAeTitle(const std::string& ae_title) const {
  for (const Destination& d : destinations) {
    if (d.ae_title == ae_title) return &d;
  }
  return nullptr;
}

StatusOr<Config> ParseConfig(const std::string& toml_text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(toml_text, path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::InvalidArgument(path + ":" + std::to_string(where.line) + ":" +
                                   std::to_string(where.column) + ": " + std::string(e.description()));
  }
  Config cfg;
  cfg.source_path = path;
  Status st;
  const toml::table* node = SubTable(root, "node", path, &st);
  const toml::table* scp = SubTable(root, "scp", path, &st);
  const toml::table* scoring = SubTable(root, "scoring", path, &st);
  const toml::table* reports = SubTable(root, "reports", path, &st);
  const toml::table* tls = SubTable(root, "tls", path, &st);
  const toml::table* http = SubTable(root, "http", path, &st);
  const toml::table* hl7 = SubTable(root, "hl7", path, &st);
  const toml::table* database = SubTable(root, "database", path, &st);
  PXS_RETURN_IF_ERROR(st);
  for (const auto& [key, value] : root) {
    static const std::set<std::string> kSections = {"node", "scp", "scoring", "models", "destinations",
                                                    "reports", "tls", "peers", "http", "hl7", "database"};
    if (!kSections.count(std::string(key.str()))) {
      return Status::InvalidArgument(path + ": [" + std::string(key.str()) + "]: unknown section");
    }
  }
  const toml::node* models = root.get("models");
  if (!scoring && !models) {
    return Status::InvalidArgument(path + ": [scoring] model: is required (section missing), or [[models]] tables");
  }
  PXS_RETURN_IF_ERROR(ReadNode(node, path, &cfg.node));
  cfg.node.data_dir = ResolveRelative(cfg.node.data_dir, path);
  PXS_RETURN_IF_ERROR(ReadDatabase(database, path, cfg.node.data_dir, &cfg.database));
  PXS_RETURN_IF_ERROR(ReadScp(scp, path, &cfg.scp));
  PXS_RETURN_IF_ERROR(ReadScoring(scoring, path, /*model_required=*/models == nullptr, &cfg.scoring));
  PXS_RETURN_IF_ERROR(ReadModels(models, path, cfg.scoring, &cfg.models));
  if (!models) {
    ModelEntry one;  // the shorthand: its name is the package's own
    one.package = cfg.scoring.model;
    one.device = cfg.scoring.device;
    one.precision = cfg.scoring.precision;
    cfg.models.push_back(std::move(one));
  }
  PXS_RETURN_IF_ERROR(ReadDestinations(root.get("destinations"), path, &cfg.destinations));
  PXS_RETURN_IF_ERROR(ReadReports(reports, path, cfg.destinations, &cfg.reports));
  PXS_RETURN_IF_ERROR(ReadTls(tls, path, cfg.node.port, &cfg.tls));
  PXS_RETURN_IF_ERROR(ReadPeers(root.get("peers"), path, &cfg.peers));
  PXS_RETURN_IF_ERROR(ReadHttp(http, path, &cfg.http));
  PXS_RETURN_IF_ERROR(ReadHl7(hl7, path, &cfg.hl7));
  if (cfg.hl7.enabled && cfg.hl7.port != 0 &&
      (cfg.hl7.port == cfg.node.port || (cfg.http.enabled && cfg.hl7.port == cfg.http.port))) {
    return Status::InvalidArgument(path + ": [hl7] port: " + std::to_string(cfg.hl7.port) +
                                   " is already the DICOM ([node] port) or HTTP ([http] port) port");
  }
  for (const Destination& d : cfg.destinations) {
    if (d.tls && !cfg.tls.enabled) {
      return Status::InvalidArgument(path + ": [[destinations]] " + d.name +
                                     ": tls = true needs a [tls] section (trusted_certificates to verify it)");
    }
    if (d.tls && cfg.tls.trusted_certificates.empty()) {
      return Status::InvalidArgument(path + ": [[destinations]] " + d.name +
                                     ": tls = true needs [tls] trusted_certificates to verify the destination");
    }
  }
  return cfg;
}

StatusOr<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot read the config file");
  std::ostringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), fs::absolute(path).lexically_normal().string());
}

}  // namespace pxs
