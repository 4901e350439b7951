// pxsnode: the daemon. Wiring and lifecycle only; every concern lives in its module.
//
//   start:  config -> database -> model (fails fast) -> workers -> SCP -> READY=1
//   SIGHUP: reload the config file; apply what can change safely (calling-AE allowlist,
//           destinations, send_to, [[models]], TLS files, tokens); anything else needs a
//           restart and is logged so.
//   SIGTERM/SIGINT: STOPPING=1 -> SCP stops accepting, running associations get
//           shutdown_grace_s -> scoring finishes its batch -> sender stops -> exit 0.
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <CLI/CLI.hpp>
#include <dcmtk/oflog/oflog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "pxs/config/config.h"
#include "pxs/filestore/file_store.h"
#include "pxs/hl7/committer.h"
#include "pxs/hl7/listener.h"
#include "pxs/http/server.h"
#include "pxs/pipeline/hash_worker.h"
#include "pxs/pipeline/model_registry.h"
#include "pxs/pipeline/report_maker.h"
#include "pxs/pipeline/report_worker.h"
#include "pxs/pipeline/scoring_worker.h"
#include "pxs/scoring/scorer.h"
#include "pxs/scp/ingest.h"
#include "pxs/scp/storage_scp.h"
#include "pxs/sender/dicom_sender.h"
#include "pxs/sender/sender_worker.h"
#include "pxs/storage/database.h"
#include "pxs/storage/observations.h"
#include "pxs/tls/tls.h"

#ifndef PXS_VERSION
#define PXS_VERSION "0.0.0"
#endif

namespace {

namespace fs = std::filesystem;

void SetUpLogging(const std::string& level) {
  // DCMTK logs every PDU at info; our own lines (one per association and instance)
  // replace that, so DCMTK only speaks up for warnings, or everything at debug/trace.
  OFLog::configure(level == "debug" || level == "trace" ? OFLogger::INFO_LOG_LEVEL : OFLogger::WARN_LOG_LEVEL);
  // journald adds its own timestamps; keep ours for plain terminals too.
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}


// [tls] as the SCP accepts it: the node's certificate, callers verified by the trust store.
pxs::TlsSettings AcceptorTls(const pxs::TlsSection& tls) {
  return {tls.certificate, tls.private_key, tls.trusted_certificates, tls.profile, tls.require_client_certificate};
}

std::vector<pxs::ReportDestination> ReportDestinations(const std::vector<pxs::Destination>& destinations) {
  std::vector<pxs::ReportDestination> out;
  for (const pxs::Destination& d : destinations) out.push_back({d.name, d.ae_title, d.host, d.port, d.tls});
  return out;
}

// The sender verifies a TLS receiver with [tls] trusted_certificates and presents the
// node's own certificate (receivers may require one).
std::optional<pxs::TlsSettings> SenderTls(const pxs::TlsSection& tls) {
  if (!tls.enabled) return std::nullopt;
  pxs::TlsSettings settings = AcceptorTls(tls);
  settings.require_peer_certificate = true;  // a receiver is always verified
  return settings;
}

pxs::ScpTlsOptions ScpTls(const pxs::TlsSection& tls) {
  return {tls.enabled, AcceptorTls(tls), static_cast<uint16_t>(tls.plain_port)};
}

// [hl7] -> the MLLP listener's options (docs/hl7.md).
pxs::hl7::ListenerOptions Hl7Options(const pxs::Config& cfg) {
  pxs::hl7::ListenerOptions o;
  o.bind = cfg.hl7.bind;
  o.port = cfg.hl7.port;
  o.max_message_bytes = cfg.hl7.max_message_bytes;
  o.max_connections = cfg.hl7.max_connections;
  o.idle_timeout_s = cfg.hl7.idle_timeout_s;
  o.oru.allowed_senders = cfg.hl7.allowed_senders;
  for (const pxs::Hl7AuthorityMapping& m : cfg.hl7.patient_authorities) o.oru.patient_authorities[m.authority] = m.issuer;
  return o;
}

// [database] and [node] id -> how storage opens the node's database (issue 16).
pxs::DatabaseOptions DatabaseOptionsFor(const pxs::Config& cfg) {
  pxs::DatabaseOptions o;
  o.url = cfg.database.url;
  o.node_id = cfg.node.id;
  o.pool_size = cfg.database.pool_size;
  o.statement_timeout_ms = cfg.database.statement_timeout_ms;
  return o;
}

// A SQLite url as the file path (what the HTTP face checks exists); a PostgreSQL one as is.
std::string DatabaseLocation(const pxs::Config& cfg) {
  const std::string& url = cfg.database.url;
  return url.rfind("sqlite:", 0) == 0 ? url.substr(7) : url;
}

std::vector<pxs::http::Token> HttpTokens(const pxs::Config& cfg) {
  std::vector<pxs::http::Token> tokens;
  for (const pxs::HttpToken& t : cfg.http.tokens) tokens.push_back({t.name, t.role, t.sha256});
  return tokens;
}

// [http] -> the web face's options (docs/http.md). ready: the SCP listens (models are
// loaded before it starts).
pxs::http::Options HttpOptions(const pxs::Config& cfg, const pxs::ModelSet& models,
                               std::function<bool()> ready) {
  pxs::http::Options o;
  o.bind = cfg.http.bind;
  o.port = cfg.http.port;
  o.tokens = HttpTokens(cfg);
  o.db_path = DatabaseLocation(cfg);
  o.node_id = cfg.node.id;  // not the host name: the face reads as this node (issue 16)
  o.statement_timeout_ms = cfg.database.statement_timeout_ms;
  o.data_dir = cfg.node.data_dir;
  o.web_root = cfg.http.web_root.empty() ? PXS_WEB_ROOT : cfg.http.web_root;
  if (cfg.tls.enabled) {  // HTTPS with the node's own certificate (issue 14)
    o.tls_certificate = cfg.tls.certificate;
    o.tls_private_key = cfg.tls.private_key;
  }
  if (cfg.reports.stable_delta >= 0) o.stable_delta_override = cfg.reports.stable_delta;
  for (const auto& m : models) {
    const pxs::scoring::ModelInfo& info = m->scorer->model();
    o.models.push_back({info.name, info.version, info.not_for_clinical_use});
  }
  o.version = PXS_VERSION;
  o.ready = std::move(ready);
  return o;
}

pxs::StatusOr<pxs::PeerPolicy> Peers(const pxs::Config& cfg) {
  std::vector<pxs::KnownPeer> peers;
  for (const pxs::PeerEntry& p : cfg.peers) peers.push_back({p.ae_title, p.address, p.certificate_subject, p.max_associations});
  auto policy = pxs::PeerPolicy::Create(std::move(peers));
  if (!policy.ok()) return pxs::Status::InvalidArgument(cfg.source_path + ": " + policy.status().message());
  return policy;
}

int CheckConfig(const std::string& path) {
  auto cfg = pxs::LoadConfig(path);
  if (!cfg.ok()) {
    std::cerr << "pxsnode: " << cfg.status().message() << "\n";
    return 1;
  }
  if (auto peers = Peers(*cfg); !peers.ok()) {
    std::cerr << "pxsnode: " << peers.status().message() << "\n";
    return 1;
  }
  if (cfg->tls.enabled) {
    // Building the layer also checks that the key matches the certificate.
    auto layer = pxs::MakeTlsLayer(AcceptorTls(cfg->tls), pxs::TlsRole::kAcceptor);
    if (!layer.ok()) {
      std::cerr << "pxsnode: " << path << ": " << layer.status().message() << "\n";
      return 1;
    }
  }
  // Every package is loaded and validated (on the CPU, unoptimised: a check, not a start).
  pxs::ModelRegistry models([](const pxs::ModelEntry& e) {
    return pxs::scoring::Scorer::Create({.model_path = e.package, .device = "cpu", .precision = "fp32",
                                         .intra_op_threads = 1, .inter_op_threads = 1, .optimize = false,
                                         .warmup_batch = 0});
  });
  std::vector<pxs::ModelEntry> all = cfg->models;
  for (pxs::ModelEntry& e : all) e.enabled = true;  // a disabled entry must still be loadable
  pxs::ModelRegistry::ApplyReport loaded = models.Apply(all);
  for (const std::string& failure : loaded.failed) std::cerr << "pxsnode: " << path << ": [[models]] " << failure << "\n";
  if (!loaded.failed.empty()) return 1;
  std::string names;
  for (const std::string& m : loaded.loaded) names += (names.empty() ? "" : ", ") + m;
  std::cout << path << ": ok (model" << (loaded.loaded.size() == 1 ? " " : "s ") << names << ", "
            << cfg->destinations.size() << " destination(s))\n";
  return 0;
}

int Run(const std::string& config_path) {
  auto loaded = pxs::LoadConfig(config_path);
  if (!loaded.ok()) {
    std::cerr << "pxsnode: " << loaded.status().message() << "\n";
    return 1;
  }
  pxs::Config cfg = std::move(*loaded);
  SetUpLogging(cfg.node.log_level);
  spdlog::info("pxsnode {} starting with {}", PXS_VERSION, cfg.source_path);

  // DCMTK 3.6.7 disables Nagle's algorithm only when TCP_NODELAY is in the environment
  // (our SCP also sets it on each accepted socket; this covers the sender's). Before any
  // thread starts: setenv is not thread-safe.
  pxs::DisableNagleForDcmtk();

  // Patient data stays private however the node is started (the systemd unit sets the
  // same): files 0640, folders 0750 at most.
  ::umask(0027);
  std::error_code ec;
  fs::create_directories(cfg.node.data_dir, ec);
  if (ec) {
    spdlog::critical("cannot create data_dir {}: {}", cfg.node.data_dir, ec.message());
    return 1;
  }
  struct stat data_stat {};
  if (::stat(cfg.node.data_dir.c_str(), &data_stat) == 0 && (data_stat.st_mode & S_IWOTH)) {
    spdlog::critical("data_dir {} is writable by every user (mode {:04o}): refusing to keep patient data there; "
                     "run chmod o-w on it",
                     cfg.node.data_dir, data_stat.st_mode & 07777);
    return 1;
  }
  auto db = pxs::Database::Open(DatabaseOptionsFor(cfg), pxs::Database::Mode::kReadWrite);
  if (!db.ok()) {
    spdlog::critical("database: {}", db.status().ToString());
    return 1;
  }

  // The models are loaded (and warmed up) before we listen. A package that fails to load
  // is logged and left out, the others run (also on SIGHUP); with none loaded at start
  // the node stops, with the reasons, rather than store images nothing will score.
  const pxs::ScoringSection scoring_cfg = cfg.scoring;
  pxs::ModelRegistry models([scoring_cfg](const pxs::ModelEntry& e) {
    return pxs::scoring::Scorer::Create({.model_path = e.package,
                                         .device = e.device,
                                         .precision = e.precision,
                                         .intra_op_threads = scoring_cfg.intra_op_threads,
                                         .inter_op_threads = scoring_cfg.inter_op_threads,
                                         .optimize = true,
                                         .warmup_batch = 1});
  });
  // Loads the configured models and records each loaded version's metadata (admin tools
  // read scores with it).
  auto apply_models = [&models, &db](const std::vector<pxs::ModelEntry>& entries, const char* when) {
    pxs::ModelRegistry::ApplyReport r = models.Apply(entries);
    for (const std::string& failure : r.failed) spdlog::error("{}model not loaded: {}", when, failure);
    for (const std::string& name : r.removed) spdlog::info("{}model {} unloaded", when, name);
    for (const auto& m : *models.Current()) {
      const pxs::scoring::ModelInfo& info = m->scorer->model();
      if (auto st = (*db)->RecordModel(info.name, info.version, info.metadata_json); !st.ok()) {
        spdlog::error("{}database: cannot record model {}: {}", when, info.name, st.ToString());
      }
    }
    for (const std::string& loaded : r.loaded) {
      for (const auto& m : *models.Current()) {
        const pxs::scoring::ModelInfo& info = m->scorer->model();
        if (m->name + " " + info.version != loaded) continue;
        spdlog::info("{}model {} ({} {}) on {} ({}), {} anchors{}", when, m->name, info.name, info.version,
                     m->scorer->device(), m->scorer->precision(), info.anchor_count,
                     info.not_for_clinical_use ? ", NOT FOR CLINICAL USE" : "");
      }
    }
    return r;
  };
  apply_models(cfg.models, "");
  if (models.Current()->empty()) {
    spdlog::critical("no model could be loaded; see the errors above");
    return 1;
  }

  pxs::SenderWorkerOptions sender_options;
  sender_options.data_dir = cfg.node.data_dir;
  sender_options.destinations = ReportDestinations(cfg.destinations);
  sender_options.store.tls = SenderTls(cfg.tls);
  sender_options.store.calling_ae = cfg.node.ae_title;
  sender_options.store.max_pdu = cfg.scp.max_pdu;
  sender_options.store.acse_timeout_s = cfg.scp.acse_timeout_s;
  sender_options.store.dimse_timeout_s = cfg.scp.dimse_timeout_s;
  sender_options.max_attempts = cfg.reports.max_attempts;
  sender_options.retry_initial_s = cfg.reports.retry_initial_s;
  sender_options.retry_max_s = cfg.reports.retry_max_s;
  pxs::SenderWorker sender(db->get(), sender_options);
  // The data folder's one owner, shared by ingest and the report maker (the ingester
  // opens it: creates the folders, removes unacknowledged temp files).
  pxs::FileStore file_store(cfg.node.data_dir);
  // The report maker reads observations on a read-only connection of its own (the HL7
  // and FHIR writers commit on theirs). Without one the SRs only lack the context.
  std::unique_ptr<pxs::ObservationStore> observations_for_reports;
  if (auto store = pxs::ObservationStore::Open(DatabaseLocation(cfg), pxs::Database::Mode::kReadOnly);
      store.ok()) {
    observations_for_reports = std::move(*store);
  } else {
    spdlog::warn("clinical observations cannot be read for the reports: {}", store.status().ToString());
  }
  pxs::ReportMaker reports({.data_dir = cfg.node.data_dir,
                            .ae_title = cfg.node.ae_title,
                            .software_version = PXS_VERSION,
                            .send_to = cfg.reports.send_to,
                            .stable_delta_override = cfg.reports.stable_delta,
                            .file_store = &file_store,
                            .observations = observations_for_reports.get(),
                            .clinical_window_s = cfg.reports.clinical_window_h * 3600.0,
                            .trend_sheet = cfg.reports.trend_sheet},
                           db->get(),
                           [&models](const std::string& name, const std::string& version) {
                             return models.Info(name, version);
                           },
                           [&sender] { sender.Wake(); });
  pxs::ReportWorker report_worker(&reports, db->get());
  // Ingest first: scoring and hashing wait while the SCP is receiving (set once the SCP
  // exists, before any worker starts).
  pxs::StorageScp* scp_ptr = nullptr;
  auto ingest_busy = [&scp_ptr] { return scp_ptr && scp_ptr->IngestBusy(); };
  pxs::ScoringWorker scoring({.data_dir = cfg.node.data_dir,
                              .max_batch = cfg.scoring.max_batch,
                              .max_wait_ms = cfg.scoring.max_wait_ms,
                              .max_attempts = cfg.scoring.max_attempts,
                              .ingest_busy = ingest_busy,
                              .yield_to_ingest_ms = cfg.scoring.yield_to_ingest_ms},
                             db->get(), &models,
                             [&report_worker](const pxs::Job& job, const pxs::ScoreRecord& score) {
                               report_worker.Enqueue(job, score);
                             });

  pxs::HashWorker hashing({.data_dir = cfg.node.data_dir,
                           .ingest_busy = ingest_busy,
                           .yield_to_ingest_ms = cfg.scoring.yield_to_ingest_ms},
                          db->get());

  pxs::IngestOptions ingest_options;
  ingest_options.data_dir = cfg.node.data_dir;
  ingest_options.file_store = &file_store;
  ingest_options.score_for_processing = cfg.scoring.score_for_processing;
  ingest_options.on_conflict =
      cfg.scp.on_conflict == "replace" ? pxs::ConflictPolicy::kReplace : pxs::ConflictPolicy::kKeepFirst;
  ingest_options.route = [&models](const pxs::routing::InstanceFacts& facts) { return models.Route(facts); };
  ingest_options.on_job_queued = [&scoring, &hashing] {
    scoring.Notify();
    hashing.Notify();
  };
  auto ingester = pxs::Ingester::Create(ingest_options, db->get());
  if (!ingester.ok()) {
    spdlog::critical("ingest: {}", ingester.status().ToString());
    return 1;
  }
  pxs::StorageScpOptions scp_options{.ae_title = cfg.node.ae_title,
                                     .bind = cfg.node.bind,
                                     .port = cfg.node.port,
                                     .max_associations = cfg.scp.max_associations,
                                     .max_pdu = cfg.scp.max_pdu,
                                     .acse_timeout_s = cfg.scp.acse_timeout_s,
                                     .dimse_timeout_s = cfg.scp.dimse_timeout_s,
                                     .allowed_calling_aes = cfg.scp.allowed_calling_aes,
                                     .data_dir = cfg.node.data_dir,
                                     .min_free_bytes = cfg.scp.min_free_bytes,
                                     .min_free_percent = cfg.scp.min_free_percent};
  scp_options.tls = ScpTls(cfg.tls);
  auto peers = Peers(cfg);
  if (!peers.ok()) {
    spdlog::critical("{}", peers.status().message());
    return 1;
  }
  scp_options.peers = std::move(*peers);
  scp_options.audit = [&db](const std::string& action, const std::string& details) {
    if (auto st = (*db)->AddNodeAudit(action, details); !st.ok()) spdlog::warn("audit not written: {}", st.ToString());
  };
  // systemd socket activation (systemd/pxsnode.socket): listen on the socket it passed.
  const int passed_fds = sd_listen_fds(1);
  if (passed_fds > 1) {
    spdlog::critical("systemd passed {} sockets; pxsnode takes one (the DICOM port)", passed_fds);
    return 1;
  }
  if (passed_fds == 1) scp_options.inherited_listen_fd = SD_LISTEN_FDS_START;
  pxs::StorageScp scp(scp_options, ingester->get());
  scp_ptr = &scp;

  // Clinical observations (HL7 v2 over MLLP, FHIR on the web face) are written on a
  // connection of their own through one group committer, so that their commits wait
  // only for the database's write lock, never for the DICOM side's mutex. Declared
  // before the listener and the web face: destroyed after them, so every message
  // received gets its commit and answer before the store closes.
  std::unique_ptr<pxs::ObservationStore> observation_store;
  std::unique_ptr<pxs::hl7::ObservationCommitter> hl7_committer;
  if (cfg.hl7.enabled || cfg.http.enabled) {
    auto store = pxs::ObservationStore::Open(DatabaseLocation(cfg), pxs::Database::Mode::kReadWrite);
    if (!store.ok()) {
      spdlog::critical("observation store: {}", store.status().ToString());
      return 1;
    }
    observation_store = std::move(*store);
    hl7_committer = std::make_unique<pxs::hl7::ObservationCommitter>(observation_store.get());
  }

  // The web face (docs/http.md), bound before any worker starts so that a taken port
  // stops the node like any other bad setting; /readyz: the SCP listens, until the stop.
  std::atomic<bool> accepting{false};
  std::unique_ptr<pxs::http::Server> web;
  if (cfg.http.enabled) {
    pxs::http::Options web_options = HttpOptions(cfg, *models.Current(), [&accepting] { return accepting.load(); });
    // FHIR R4 observations (POST /fhir, /fhir/Observation) through the same committer.
    web_options.record_observations = [committer = hl7_committer.get()](pxs::ObservationMessage m) {
      return committer->Commit(std::move(m));
    };
    for (const pxs::Hl7AuthorityMapping& m : cfg.hl7.patient_authorities) {
      web_options.fhir_patient_authorities[m.authority] = m.issuer;
    }
    web_options.clinical_window_h = cfg.reports.clinical_window_h;
    web = std::make_unique<pxs::http::Server>(std::move(web_options));
    if (auto st = web->Start(); !st.ok()) {
      spdlog::critical("{}", st.ToString());
      return 1;
    }
    spdlog::info("{} on {}:{} ({} token(s))", cfg.tls.enabled ? "https" : "http", cfg.http.bind, web->port(),
                 cfg.http.tokens.size());
  }

  // [hl7] listener (started after the web face, below): frames it accepts are ACKed after
  // this committer made them durable.
  std::unique_ptr<pxs::hl7::MllpListener> hl7_listener;
  if (cfg.hl7.enabled) {
    auto listener = pxs::hl7::MllpListener::Start(Hl7Options(cfg), hl7_committer.get());
    if (!listener.ok()) {
      spdlog::critical("{}", listener.status().ToString());
      return 1;
    }
    hl7_listener = std::move(*listener);
  }

  if (auto st = report_worker.Start(); !st.ok()) {
    spdlog::critical("report worker: {}", st.ToString());
    return 1;
  }
  if (auto st = scoring.Start(); !st.ok()) {
    spdlog::critical("scoring worker: {}", st.ToString());
    return 1;
  }
  sender.Start();
  hashing.Start();
  if (auto st = scp.Start(); !st.ok()) {
    spdlog::critical("SCP: {}", st.ToString());
    scoring.Stop();
    hashing.Stop();
    sender.Stop();
    return 1;
  }
  {
    std::vector<uint16_t> ports = scp.ports();
    spdlog::info("listening as {} on {}:{}{}{} (data in {})", cfg.node.ae_title,
                 passed_fds == 1 ? std::string("the socket systemd passed") : cfg.node.bind,
                 ports.empty() ? cfg.node.port : ports[0], cfg.tls.enabled ? " (DICOM TLS)" : "",
                 ports.size() > 1 ? ", plain TCP on port " + std::to_string(ports[1]) : std::string(),
                 cfg.node.data_dir);
  }
  accepting = true;
  sd_notify(0, "READY=1\nSTATUS=accepting associations");

  boost::asio::io_context io;
  boost::asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  boost::asio::signal_set reload_signal(io, SIGHUP);
  boost::asio::steady_timer watchdog(io);

  // systemd watchdog: ping at half the interval systemd asked for.
  uint64_t watchdog_usec = 0;
  std::function<void()> arm_watchdog = [&] {
    watchdog.expires_after(std::chrono::microseconds(watchdog_usec / 2));
    watchdog.async_wait([&](const boost::system::error_code& e) {
      if (e) return;
      sd_notify(0, "WATCHDOG=1");
      arm_watchdog();
    });
  };
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) arm_watchdog();

  std::function<void()> wait_reload = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& e, int) {
      if (e) return;
      sd_notify(0, "RELOADING=1");
      auto fresh = pxs::LoadConfig(config_path);
      if (!fresh.ok()) {
        spdlog::error("SIGHUP: config not reloaded, keeping the running one: {}", fresh.status().message());
      } else {
        scp.SetAllowedCallingAes(fresh->scp.allowed_calling_aes);
        if (auto fresh_peers = Peers(*fresh); fresh_peers.ok()) scp.SetPeers(std::move(*fresh_peers));
        else spdlog::error("SIGHUP: [[peers]] not reloaded: {}", fresh_peers.status().message());
        sender.SetDestinations(ReportDestinations(fresh->destinations));
        reports.SetSendTo(fresh->reports.send_to);
        // [[models]]: add, remove or replace packages without dropping associations; the
        // scoring worker's batch in flight finishes with the versions it claimed.
        apply_models(fresh->models, "SIGHUP: ");
        scoring.Notify();
        if (web) web->SetTokens(HttpTokens(*fresh));  // [[http.tokens]]: rotate without a restart
        if (cfg.tls.enabled) {
          pxs::Status reloaded = scp.ReloadTls(ScpTls(fresh->tls));
          if (reloaded.ok()) spdlog::info("SIGHUP: TLS certificate, key and trust reloaded for new associations");
          else spdlog::error("SIGHUP: TLS files not reloaded, keeping the running ones: {}", reloaded.ToString());
          // HTTPS serves the same [tls] certificate: a renewal reaches both ports.
          if (web && !fresh->tls.enabled) {
            spdlog::error("SIGHUP: [tls] removed; HTTPS keeps its certificate (plain HTTP needs a restart)");
          } else if (web) {
            pxs::Status https = web->ReloadTls(fresh->tls.certificate, fresh->tls.private_key);
            if (https.ok()) spdlog::info("SIGHUP: HTTPS certificate and key reloaded for new connections");
            else spdlog::error("SIGHUP: HTTPS certificate not reloaded, keeping the running one: {}", https.ToString());
          }
        }
        spdlog::info("SIGHUP: reloaded allowed_calling_aes ({}), destinations ({}), send_to ({}), http tokens ({}); "
                     "other keys need a restart",
                     fresh->scp.allowed_calling_aes.size(), fresh->destinations.size(), fresh->reports.send_to.size(),
                     fresh->http.tokens.size());
      }
      sd_notify(0, "READY=1");
      wait_reload();
    });
  };
  wait_reload();

  bool clean = true;
  stop_signals.async_wait([&](const boost::system::error_code& e, int signo) {
    if (e) return;
    spdlog::info("signal {}: stopping (running associations get {} s)", signo, cfg.scp.shutdown_grace_s);
    sd_notify(0, "STOPPING=1");
    accepting = false;
    if (hl7_listener) hl7_listener->Stop();  // frames received get their commit and ACK
    clean = scp.Stop(cfg.scp.shutdown_grace_s);
    if (!clean) spdlog::warn("associations still running after {} s; leaving without them", cfg.scp.shutdown_grace_s);
    scoring.Stop();
    hashing.Stop();
    report_worker.Stop();  // makes the reports of everything scored so far
    sender.Stop();
    watchdog.cancel();
    reload_signal.cancel();
    io.stop();
  });
  io.run();
  if (web) web->Stop();
  spdlog::info("pxsnode stopped");
  spdlog::shutdown();
  if (!clean) {
    // DCMTK's listener thread is still joined to the unfinished associations; do not
    // wait for it (nothing it holds was acknowledged).
    std::_Exit(0);
  }
  return 0;
}

}  // namespace

// LibTorch's OpenMP threads (libgomp) spin after every parallel region by default
// (OMP_WAIT_POLICY unset: about 300,000 spins before sleeping). Between inferences they
// took ~30 % of the node's CPU in a perf profile of TLS ingest on 2 cores, taken from the
// receiving threads. libgomp reads the policy only from the environment when it is loaded,
// before main() runs, so the node re-executes itself once with PASSIVE unless the operator
// chose a policy (the systemd unit sets it, so installed nodes never re-execute). The pid,
// the arguments and open descriptors (systemd's socket) stay the same across execv().
static void SleepingOpenMpThreads(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run with spinning threads
}

int main(int argc, char** argv) {
  SleepingOpenMpThreads(argv);
  CLI::App app{"pxsnode: DICOM node that scores chest X-rays (PXS) and reports trends"};
  std::string config_path;
  std::string check_path;
  bool version = false;
  app.add_option("--config", config_path, "TOML config file (see config/pxsnode.example.toml)");
  app.add_option("--check-config", check_path, "validate a config file (and its model) and exit 0/1");
  app.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::cout << "pxsnode " << PXS_VERSION << "\n";
    return 0;
  }
  if (!check_path.empty()) return CheckConfig(check_path);
  if (config_path.empty()) {
    std::cerr << "pxsnode: --config FILE is required (or --check-config FILE)\n";
    return 2;
  }
  return Run(config_path);
}
