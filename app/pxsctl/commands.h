// pxsctl's commands. Each returns the process exit code (see docs/pxsctl.md).
#pragma once

#include <optional>
#include <string>

#include "pxs/storage/database.h"

namespace pxs::ctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitFindings = 1,    // the command ran and found problems, or the thing asked for is absent
  kExitUsage = 2,       // bad command line
  kExitCannotOpen = 3,  // configuration or database cannot be opened / wrong schema
};

// Where the database is and how to print, from the global options.
struct Context {
  std::string db_path;   // a SQLite file, sqlite:PATH or a postgresql:// URL
  DatabaseOptions db;    // how to open it: db_path with the config's [database] and [node] id
  std::string data_dir;  // recorded file paths are relative to it
  bool json = false;
  double config_stable_delta = -1.0;  // [reports] stable_delta of --config (-1: not set)
};

struct PatientsOptions { std::string prefix; int limit = 50; };
// One course per model, by the longitudinal rule (pxs/longitudinal/course.h), the one
// the SR follows. stable_delta: --stable-delta replaces every model's raw threshold;
// unset means the config's [reports] stable_delta, else each model's own (its stored
// metadata "trend"), else 1.0. model: only courses of this model ("name" or
// "name version"); empty: all.
struct HistoryOptions {
  std::string patient_id;
  std::optional<std::string> issuer;
  std::optional<double> stable_delta;
  std::string model;
  // Beside each study the nearest SpO2 / O2 / CRP within this many hours (issue 15).
  double clinical_window_h = 24.0;
};
struct QueueOptions { int limit = 20; };
struct FailuresOptions { int limit = 50; };
struct RetryOptions { std::string sop_instance_uid; bool all_failed = false; };
struct ExportOptions {
  std::string format = "csv";
  std::string since, until;  // YYYY-MM-DD, inclusive days (UTC), by receipt time
  std::string output;        // file; empty: stdout
};
struct VerifyOptions { bool hash = true; };
struct PruneOptions { int older_than_days = 0; bool apply = false; };
struct AuditOptions { int limit = 50; };

int RunPatients(const Context& ctx, const PatientsOptions& opt);
int RunHistory(const Context& ctx, const HistoryOptions& opt);
int RunStudy(const Context& ctx, const std::string& study_uid);
int RunQueue(const Context& ctx, const QueueOptions& opt);
int RunFailures(const Context& ctx, const FailuresOptions& opt);
int RunRetry(const Context& ctx, const RetryOptions& opt);
int RunExport(const Context& ctx, const ExportOptions& opt);
int RunStats(const Context& ctx);
int RunVerify(const Context& ctx, const VerifyOptions& opt);
int RunPrune(const Context& ctx, const PruneOptions& opt);
int RunAudit(const Context& ctx, const AuditOptions& opt);

}  // namespace pxs::ctl
