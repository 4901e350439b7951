// pxs::http: pxsnode's web face (docs/http.md): the JSON API under /api/v1 (the same
// JSON as `pxsctl --json`, from pxs::views), /healthz, /readyz, /metrics (Prometheus
// text) and the dashboard's static files. HTTP/1.1 on Boost.Beast, on its own thread,
// reading the database through its own read-only AdminDatabase connections (WAL readers
// never block the node's writer, so ingest does not wait for it).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/storage/observations.h"

namespace pxs::http {

struct Token {
  std::string name;    // audited as "http:<name>" for admin actions
  std::string role;    // viewer | admin
  std::string sha256;  // lowercase hex SHA-256 of the bearer token
};

struct LoadedModel {
  std::string name;
  std::string version;
  bool not_for_clinical_use = false;
};

struct Options {
  std::string bind = "127.0.0.1";
  uint16_t port = 0;  // 0: ephemeral (see Server::port())
  std::vector<Token> tokens;
  std::string db_path;
  // [node] id and [database] statement_timeout_ms: how the face's own connections open the
  // database. On a shared PostgreSQL the node id picks the node's own rows (local_instances);
  // empty: the host name, which is another node's id when [node] id is set (issue 16).
  std::string node_id;
  int statement_timeout_ms = 0;
  std::string data_dir;   // free-disk gauge
  std::string web_root;   // index.html, app.js, style.css
  // PEM files: HTTPS when set (pxsnode passes the [tls] certificate when it has one).
  std::string tls_certificate;
  std::string tls_private_key;
  std::string chartjs_path = "/usr/share/javascript/chart.js/chart.min.js";  // Debian's libjs-chart.js
  std::optional<double> stable_delta_override;  // [reports] stable_delta, as pxsctl --config uses it
  std::vector<LoadedModel> models;              // what the node scores with
  std::string version;
  std::function<bool()> ready;  // SCP listening and models loaded
  size_t max_target_bytes = 2048;
  size_t max_body_bytes = 16 * 1024;
  int max_connections = 64;  // open at once; more are closed on accept
  // /api/v1/stats and the models' score counts scan whole tables: answered from a copy
  // at most this old (refreshed in the background); 0: computed for every request.
  std::chrono::milliseconds aggregate_max_age{10'000};
  // FHIR R4 (issue 15, docs/hl7.md): POST /fhir/Observation and POST /fhir (transaction
  // Bundle) store observations through this (the node's group committer; it returns
  // once the message is durable). Unset: no FHIR endpoint.
  std::function<StatusOr<MessageOutcome>(ObservationMessage)> record_observations;
  // subject.identifier.system (an OID without "urn:oid:") -> IssuerOfPatientID, the
  // [[hl7.patient_authorities]] table.
  std::map<std::string, std::string> fhir_patient_authorities;
  size_t max_fhir_body_bytes = 1 << 20;  // FHIR bodies (Bundles) may be larger than the API's
  double clinical_window_h = 24.0;  // [reports]: history's nearest SpO2 / O2 / CRP
};

struct Request {
  std::string method;         // GET, POST, ...
  std::string target;         // path and query, as received
  std::string authorization;  // the Authorization header, "" if absent
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string route;  // the path template for the access log ("/api/v1/patients/{id}/history")
};

// Answers one request (no sockets: the server and the unit tests call it).
class Api {
 public:
  explicit Api(Options options);
  ~Api();
  Response Handle(const Request& request);
  // SIGHUP: the tokens from the reloaded config, for the next requests.
  void SetTokens(std::vector<Token> tokens);
  const Options& options() const;  // its tokens may change (SetTokens): use Handle()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Server {
 public:
  explicit Server(Options options);
  ~Server();  // Stop()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Binds and starts the server thread; fails naming the address when it cannot bind.
  Status Start();
  void Stop();
  uint16_t port() const;
  void SetTokens(std::vector<Token> tokens);
  // SIGHUP: a renewed certificate (and key) for the connections accepted from now on;
  // open connections keep the one they were accepted with. On failure (unreadable file,
  // key not the certificate's, expired) the running certificate stays. Unsupported when
  // the server was started without TLS.
  Status ReloadTls(const std::string& certificate, const std::string& private_key);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Constant-time equality of two strings of the same length (token hashes).
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace pxs::http
