// pxsctl: the administrator's tool for a PXS node's database (see docs/pxsctl.md).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "pxs/config/config.h"
#include "pxs/storage/database.h"

namespace {

constexpr const char* kDefaultConfig = "/etc/pxsnode/pxsnode.toml";

}  // namespace

int main(int argc, char** argv) {
  using namespace pxs::ctl;
  CLI::App app{"pxsctl: query and maintain a PXS node's results database"};
  app.set_version_flag("--version", std::string("pxsctl ") + PXS_VERSION);
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok; 1 problems found or not found; 2 usage; 3 configuration or database cannot be "
             "opened.\nDetails: docs/pxsctl.md");
  // Global options may also follow the subcommand (pxsctl queue --db x.db).
  app.fallthrough();

  std::string config_path, db_path, data_dir;
  bool json = false;
  auto* config_opt = app.add_option("-c,--config", config_path,
                                    std::string("node configuration; its [node] data_dir holds pxsnode.db (default ") +
                                        kDefaultConfig + ")");
  auto* db_opt = app.add_option("--db", db_path, "database to use instead of the configuration's: a SQLite file or a postgresql:// URL");
  db_opt->excludes(config_opt);
  std::string node_id;
  app.add_option("--node-id", node_id,
                 "with --db on a shared PostgreSQL: the node whose files verify/prune look at (default: the host name)")
      ->excludes(config_opt);
  app.add_option("--data-dir", data_dir, "folder recorded file paths are relative to (default: the database's folder)");

  app.add_flag("--json", json, "print JSON instead of tables (also accepted after the command)");
  auto add_json = [&](CLI::App* cmd) { cmd->add_flag("--json", json, "print JSON instead of a table"); };

  PatientsOptions patients;
  auto* cmd_patients = app.add_subcommand("patients", "find patients by id or name prefix (case-insensitive)");
  cmd_patients->add_option("prefix", patients.prefix, "start of the PatientID or name; empty: all");
  cmd_patients->add_option("--limit", patients.limit, "at most this many rows")->capture_default_str()->check(CLI::PositiveNumber);

  HistoryOptions history;
  auto* cmd_history = app.add_subcommand("history", "one patient's course per model: PXS, calibrated value, change and trend");
  cmd_history->add_option("patient_id", history.patient_id, "PatientID")->required();
  cmd_history->add_option("--issuer", history.issuer, "IssuerOfPatientID (needed when the id exists under several)");
  cmd_history->add_option("--stable-delta", history.stable_delta,
                          "|raw PXS change| up to this is 'stable' (default: config, else each model's own)")
      ->check(CLI::NonNegativeNumber);
  cmd_history->add_option("--model", history.model, "only this model's course (NAME or \"NAME VERSION\"); default: every model");
  cmd_history->add_option("--clinical-window-h", history.clinical_window_h,
                          "nearest SpO2 / O2 / CRP shown within this many hours of each study")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 24.0 * 31));

  std::string study_uid;
  auto* cmd_study = app.add_subcommand("study", "a study's instances, scores and reports");
  cmd_study->add_option("study_uid", study_uid, "Study Instance UID")->required();

  QueueOptions queue;
  auto* cmd_queue = app.add_subcommand("queue", "jobs waiting for or being scored, reports waiting to be sent");
  cmd_queue->add_option("--limit", queue.limit, "at most this many rows per list")->capture_default_str()->check(CLI::PositiveNumber);

  FailuresOptions failures;
  auto* cmd_failures = app.add_subcommand("failures", "failed scoring jobs and report deliveries");
  cmd_failures->add_option("--limit", failures.limit, "at most this many rows per list")->capture_default_str()->check(CLI::PositiveNumber);

  RetryOptions retry;
  auto* cmd_retry = app.add_subcommand("retry", "queue failed work again (writes an audit row)");
  auto* retry_uid = cmd_retry->add_option("sop_instance_uid", retry.sop_instance_uid,
                                          "SOP Instance UID: its failed job and its study's failed reports");
  cmd_retry->add_flag("--all-failed", retry.all_failed, "every failed job and report delivery")->excludes(retry_uid);

  ExportOptions export_opt;
  auto* cmd_export = app.add_subcommand("export", "results per instance as CSV or JSON (for research)");
  cmd_export->add_option("--format", export_opt.format, "csv or json")->capture_default_str()->check(CLI::IsMember({"csv", "json"}));
  cmd_export->add_option("--since", export_opt.since, "received on or after this UTC day (YYYY-MM-DD)");
  cmd_export->add_option("--until", export_opt.until, "received on or before this UTC day (YYYY-MM-DD)");
  cmd_export->add_option("-o,--output", export_opt.output, "write to this file instead of standard output");

  auto* cmd_stats = app.add_subcommand("stats", "counts per state, scores per hour, latency percentiles");

  VerifyOptions verify;
  bool verify_no_hash = false;
  auto* cmd_verify = app.add_subcommand("verify", "check every recorded file exists and matches its SHA-256");
  cmd_verify->add_flag("--no-hash", verify_no_hash, "check existence and size only (fast)");

  PruneOptions prune;
  auto* cmd_prune = app.add_subcommand("prune", "delete stored DICOM files past retention (dry run unless --apply)");
  cmd_prune->add_option("--older-than", prune.older_than_days, "days since receipt")
      ->required()
      ->check(CLI::Range(1, 100000));
  cmd_prune->add_flag("--apply", prune.apply, "really delete (writes an audit row); results and embeddings stay");

  AuditOptions audit;
  auto* cmd_audit = app.add_subcommand("audit", "recent administrative actions");
  cmd_audit->add_option("--limit", audit.limit, "at most this many rows")->capture_default_str()->check(CLI::PositiveNumber);

  for (CLI::App* cmd : {cmd_patients, cmd_history, cmd_study, cmd_queue, cmd_failures, cmd_retry, cmd_export,
                        cmd_stats, cmd_verify, cmd_prune, cmd_audit}) {
    add_json(cmd);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (cmd_retry->parsed() && retry.sop_instance_uid.empty() && !retry.all_failed) {
    std::cerr << "pxsctl retry: give a SOP Instance UID or --all-failed\n";
    return kExitUsage;
  }

  Context ctx;
  ctx.json = json;
  if (!db_path.empty()) {
    ctx.db_path = db_path;
    // A PostgreSQL URL says nothing of where the files are: --data-dir, else here.
    ctx.data_dir = pxs::IsPostgresUrl(db_path) ? std::string() : std::filesystem::path(db_path).parent_path().string();
    if (ctx.data_dir.empty()) ctx.data_dir = ".";
  } else {
    if (config_path.empty()) config_path = kDefaultConfig;
    auto config = pxs::LoadConfig(config_path);
    if (!config.ok()) {
      std::cerr << "pxsctl: cannot load configuration: " << config.status().ToString() << '\n';
      return kExitCannotOpen;
    }
    ctx.data_dir = config->node.data_dir;
    // [database] url (default sqlite:data_dir/pxsnode.db) and the node's identity, so
    // verify and prune see this node's files on a shared PostgreSQL.
    const std::string& url = config->database.url;
    ctx.db_path = url.rfind("sqlite:", 0) == 0 ? url.substr(7) : url;
    ctx.db.node_id = config->node.id;
    ctx.db.statement_timeout_ms = config->database.statement_timeout_ms;
    ctx.config_stable_delta = config->reports.stable_delta;
  }
  if (!data_dir.empty()) ctx.data_dir = data_dir;
  if (!node_id.empty()) ctx.db.node_id = node_id;

  if (cmd_patients->parsed()) return RunPatients(ctx, patients);
  if (cmd_history->parsed()) return RunHistory(ctx, history);
  if (cmd_study->parsed()) return RunStudy(ctx, study_uid);
  if (cmd_queue->parsed()) return RunQueue(ctx, queue);
  if (cmd_failures->parsed()) return RunFailures(ctx, failures);
  if (cmd_retry->parsed()) return RunRetry(ctx, retry);
  if (cmd_export->parsed()) {
    if (json) export_opt.format = "json";
    return RunExport(ctx, export_opt);
  }
  if (cmd_stats->parsed()) return RunStats(ctx);
  if (cmd_verify->parsed()) {
    verify.hash = !verify_no_hash;
    return RunVerify(ctx, verify);
  }
  if (cmd_prune->parsed()) return RunPrune(ctx, prune);
  if (cmd_audit->parsed()) return RunAudit(ctx, audit);
  return kExitUsage;
}
