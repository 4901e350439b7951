// The node's configuration: one TOML file (see config/pxsnode.example.toml, which
// documents every key). LoadConfig() validates everything up front so that a bad
// key stops the node at start, with an error naming the file, the key and the fault.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/routing/route.h"

namespace pxs {

struct Destination {
  std::string name;      // referred to by [reports] send_to
  std::string ae_title;  // called AE title of the receiver
  std::string host;
  uint16_t port = 104;
  bool tls = false;      // DICOM TLS to this receiver (with the [tls] files)
};

struct NodeSection {
  std::string ae_title = "PXSNODE";
  std::string bind = "127.0.0.1";
  uint16_t port = 11112;
  std::string data_dir = "var/pxsnode";  // relative paths are relative to the config file
  std::string log_level = "info";        // trace | debug | info | warn | error
  // This node's identity on a shared database (issue 16): the instances it receives
  // (their files stay here) and the jobs it scores. 1-64 of A-Z a-z 0-9 . _ -; empty:
  // the host name.
  std::string id;
};

// [database]: where the results are (docs/deployment-postgresql.md). url is
// "sqlite:PATH" (the default: data_dir/pxsnode.db, one node's embedded file), or a
// PostgreSQL several nodes share: "postgresql://user@host/db" or a libpq key/value string
// ("host=db1 dbname=pxs user=pxs").
struct DatabaseSection {
  std::string url;               // always set after parsing (the default filled in)
  int pool_size = 4;             // PostgreSQL connections a process may hold (1-64)
  int statement_timeout_ms = 0;  // PostgreSQL statement_timeout; 0: the server's default
};

struct ScpSection {
  std::vector<std::string> allowed_calling_aes;  // empty: any calling AE
  int max_associations = 8;
  uint32_t max_pdu = 131072;
  int acse_timeout_s = 30;
  int dimse_timeout_s = 60;
  int shutdown_grace_s = 30;  // SIGTERM: how long running associations may finish
  // Disk guard: refuse new associations when free space drops below either floor.
  uint64_t min_free_bytes = 5ull * 1000 * 1000 * 1000;
  double min_free_percent = 10.0;
  // A stored SOP Instance UID re-sent with other content: "keep_first" or "replace"
  // (replace the file, audit, score again). Identical re-sends are always duplicates.
  std::string on_conflict = "keep_first";
};

struct ScoringSection {
  std::string model;            // path to the model package (.pt); relative to the config file
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  std::string precision = "fp32";  // fp32 | fp16 | bf16 (fp16/bf16 on CUDA only)
  int max_batch = 8;
  int max_wait_ms = 50;
  int intra_op_threads = 0;  // 0: all cores
  int inter_op_threads = 1;
  int max_attempts = 3;      // a job failing this often is marked failed
  int yield_to_ingest_ms = 1000;  // a batch waits up to this long while images are arriving
  bool score_for_processing = false;  // DX "For Processing" images are declined unless true
};

// [[models]]: the models this node scores with (issue 12, docs/models.md). [scoring] model
// is the one-model shorthand: one entry with the default chest route.
struct ModelEntry {
  // Identity of the model's jobs and reports; "" = the package's own metadata name
  // (resolved when the package is loaded). 1-64 of A-Z a-z 0-9 . _ -
  std::string name;
  std::string package;           // model package path (relative to the config file)
  std::string device = "auto";   // default: [scoring] device
  std::string precision = "fp32";  // default: [scoring] precision
  bool enabled = true;
  routing::Route route = routing::Route::DefaultChest();  // [models.route]; absent: frontal chests
};

struct ReportsSection {
  std::vector<std::string> send_to;  // destination names and/or "caller"
  int max_attempts = 8;
  int retry_initial_s = 5;
  int retry_max_s = 600;
  // Trend thresholds; negative means "take it from the model package's metadata".
  double stable_delta = -1.0;
  // Clinical context (issue 15): observations within this many hours of an image are
  // its context (the SR's container, the trend sheet's nearest SpO2 / O2 / CRP).
  double clinical_window_h = 24.0;
  bool trend_sheet = false;  // a trend sheet (Secondary Capture) beside each SR version
};

// [tls]: DICOM TLS. Present: the node's port speaks TLS only; plain_port (optional)
// keeps a plain-TCP port for legacy modalities on a trusted network. The same files serve
// the sender's connections to destinations with tls = true.
struct TlsSection {
  bool enabled = false;              // the section is present
  std::string certificate;           // PEM (relative to the config file)
  std::string private_key;           // PEM, unencrypted
  std::string trusted_certificates;  // PEM file or folder of hashed PEM files
  bool require_client_certificate = false;
  std::string profile = "bcp195";    // bcp195 | bcp195-nd | bcp195-extended
  int plain_port = 0;                // 0: none
};

// [[peers]]: the callers the SCP knows. With any listed, every association must match
// one (AE title, address or CIDR, TLS certificate subject), within its own limit.
struct PeerEntry {
  std::string ae_title;
  std::string address;              // "" any; IP or CIDR (checked by the SCP's PeerPolicy)
  std::string certificate_subject;  // "" any; RFC 2253 subject of its TLS certificate
  int max_associations = 0;         // 0: only [scp] max_associations applies
};

// [http]: the node's web face (API, dashboard, /metrics, health; docs/http.md). Off by
// default; on loopback unless bind says otherwise.
struct HttpToken {
  std::string name;    // who: written in the audit rows of admin actions
  std::string role;    // viewer | admin
  std::string sha256;  // hex SHA-256 of the bearer token (the token itself is never stored)
};
struct HttpSection {
  bool enabled = false;
  std::string bind = "127.0.0.1";
  uint16_t port = 8080;  // 0: an ephemeral port (tests)
  std::string web_root;  // dashboard files; "" = the installed share/pxsnode/web
  std::vector<HttpToken> tokens;  // [[http.tokens]]
};

// [hl7]: the HL7 v2 listener (ORU^R01 over MLLP) for clinical observations (issue 15,
// docs/hl7.md). Off by default; on loopback unless bind says otherwise.
struct Hl7AuthorityMapping {
  std::string authority;  // PID-3.4 assigning authority (namespace id or universal id)
  std::string issuer;     // the IssuerOfPatientID the node's images carry for it
};
struct Hl7Section {
  bool enabled = false;
  std::string bind = "127.0.0.1";
  uint16_t port = 2575;  // 0: an ephemeral port (tests)
  // "APP" (MSH-3, any facility) or "APP^FACILITY" (MSH-3 and MSH-4); empty: any sender.
  std::vector<std::string> allowed_senders;
  std::vector<Hl7AuthorityMapping> patient_authorities;  // [[hl7.patient_authorities]]
  size_t max_message_bytes = 1 << 20;
  int max_connections = 64;
  int idle_timeout_s = 300;
};

struct Config {
  std::string source_path;  // the file it was read from (for messages)
  NodeSection node;
  DatabaseSection database;
  ScpSection scp;
  ScoringSection scoring;
  std::vector<ModelEntry> models;  // [[models]], or the one entry [scoring] model stands for
  std::vector<Destination> destinations;
  ReportsSection reports;
  TlsSection tls;
  std::vector<PeerEntry> peers;
  HttpSection http;
  Hl7Section hl7;

  const Destination* FindDestinationByName(const std::string& name) const;
  const Destination* FindDestinationByAeTitle(const std::string& ae_title) const;
};

// Parses and validates a TOML file. Relative paths in it are resolved against the
// file's folder. Errors read like: "pxsnode.toml: [scp] max_associations: must be 1..256 (got 0)".
StatusOr<Config> LoadConfig(const std::string& path);

// The same, from text (path is used for messages and relative paths only).
StatusOr<Config> ParseConfig(const std::string& toml_text, const std::string& path);

// True if a DICOM AE title is valid: 1..16 chars of the default repertoire, no backslash
// or control characters, not all spaces.
bool IsValidAeTitle(const std::string& ae);

}  // namespace pxs
