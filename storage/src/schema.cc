#include "schema.h"

#include <string>

#include "observations_schema.h"
#include "postgres.h"
#include "pxs/storage/admin.h"

namespace pxs::sqlite {
namespace {

// Migration i (1-based) takes the schema from version i-1 to version i. Never edit
// a released migration: add a new one and bump kSchemaVersion. Each runs in one
// transaction together with its PRAGMA user_version update, so a crash half way
// leaves the previous version intact.
constexpr const char* kMigrations[] = {
    // --- 1: initial schema -------------------------------------------------------
    R"sql(
CREATE TABLE patients (
  id          INTEGER PRIMARY KEY,
  patient_id  TEXT,                         -- NULL: received without PatientID
  issuer      TEXT NOT NULL DEFAULT '',     -- IssuerOfPatientID
  name        TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
  created_at  INTEGER NOT NULL              -- Unix ms
);
-- NULLs are distinct in a UNIQUE index: every "no id" row stays on its own.
CREATE UNIQUE INDEX patients_by_key ON patients(patient_id, issuer);
CREATE INDEX patients_by_name ON patients(name);

CREATE TABLE studies (
  id               INTEGER PRIMARY KEY,
  patient_ref      INTEGER NOT NULL REFERENCES patients(id),
  study_uid        TEXT NOT NULL,
  study_date       TEXT NOT NULL DEFAULT '',  -- DICOM DA
  study_time       TEXT NOT NULL DEFAULT '',  -- DICOM TM
  accession_number TEXT NOT NULL DEFAULT '',
  created_at       INTEGER NOT NULL,
  UNIQUE (patient_ref, study_uid)
);
CREATE INDEX studies_by_uid ON studies(study_uid);

CREATE TABLE instances (
  id                  INTEGER PRIMARY KEY,
  sop_instance_uid    TEXT NOT NULL UNIQUE,
  study_ref           INTEGER NOT NULL REFERENCES studies(id),
  series_uid          TEXT NOT NULL DEFAULT '',
  sop_class_uid       TEXT NOT NULL DEFAULT '',
  modality            TEXT NOT NULL DEFAULT '',
  body_part           TEXT NOT NULL DEFAULT '',
  view_position       TEXT NOT NULL DEFAULT '',
  transfer_syntax_uid TEXT NOT NULL DEFAULT '',
  file_path           TEXT NOT NULL,          -- relative to data_dir
  file_size           INTEGER NOT NULL,
  sha256              TEXT NOT NULL,
  calling_ae          TEXT NOT NULL DEFAULT '',
  peer_address        TEXT NOT NULL DEFAULT '',
  received_at         INTEGER NOT NULL,       -- Unix ms
  pruned_at           INTEGER                 -- Unix ms; the file was deleted (retention)
);
CREATE INDEX instances_by_study ON instances(study_ref);
CREATE INDEX instances_by_received ON instances(received_at);

CREATE TABLE jobs (
  id           INTEGER PRIMARY KEY,
  instance_ref INTEGER NOT NULL UNIQUE REFERENCES instances(id),
  state        TEXT NOT NULL CHECK (state IN ('queued','scoring','scored','skipped','failed')),
  reason       TEXT NOT NULL DEFAULT '',
  attempts     INTEGER NOT NULL DEFAULT 0,
  created_at   INTEGER NOT NULL,
  started_at   INTEGER,                       -- last claim
  updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_by_state ON jobs(state, id);

CREATE TABLE scores (
  id               INTEGER PRIMARY KEY,
  job_ref          INTEGER NOT NULL UNIQUE REFERENCES jobs(id),  -- scored exactly once
  pxs              REAL NOT NULL,
  raw_distance     REAL NOT NULL,
  calibrated       REAL,
  calibrated_scale TEXT NOT NULL DEFAULT '',
  embedding        BLOB,                      -- float32 values, host (little-endian) order
  model_name       TEXT NOT NULL,
  model_version    TEXT NOT NULL,
  queue_ms         REAL NOT NULL DEFAULT 0,
  decode_ms        REAL NOT NULL DEFAULT 0,
  inference_ms     REAL NOT NULL DEFAULT 0,
  scored_at        INTEGER NOT NULL
);
CREATE INDEX scores_by_time ON scores(scored_at);

CREATE TABLE reports (
  id                  INTEGER PRIMARY KEY,
  sr_sop_instance_uid TEXT NOT NULL UNIQUE,
  study_uid           TEXT NOT NULL,
  version             INTEGER NOT NULL,
  file_path           TEXT NOT NULL,          -- relative to data_dir
  created_at          INTEGER NOT NULL
);
CREATE INDEX reports_by_study ON reports(study_uid, version);

CREATE TABLE report_deliveries (
  id              INTEGER PRIMARY KEY,
  report_ref      INTEGER NOT NULL REFERENCES reports(id),
  destination     TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('pending','sent','failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error      TEXT NOT NULL DEFAULT '',
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  sent_at         INTEGER,
  UNIQUE (report_ref, destination)
);
CREATE INDEX deliveries_by_state ON report_deliveries(state, next_attempt_at);

CREATE TABLE audit (
  id        INTEGER PRIMARY KEY,
  at        INTEGER NOT NULL,                 -- Unix ms
  unix_user TEXT NOT NULL,
  action    TEXT NOT NULL,
  details   TEXT NOT NULL DEFAULT ''
);
)sql",
    // --- 2: case-insensitive PatientID prefix search (pxsctl patients) uses an index
    R"sql(
CREATE INDEX patients_by_id_nocase ON patients(patient_id COLLATE NOCASE);
)sql",
    // --- 3: the metadata of every model that scored here, so that pxsctl reads trends
    //        with the same thresholds as the SR (the model's, not a constant).
    R"sql(
CREATE TABLE models (
  name          TEXT NOT NULL,
  version       TEXT NOT NULL,
  metadata_json TEXT NOT NULL,
  recorded_at   INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);
)sql",
    // --- 4: ingest acknowledges before hashing; files whose SHA-256 is still '' are
    //        found by the hash worker through this (small) partial index.
    R"sql(
CREATE INDEX instances_unhashed ON instances(id) WHERE sha256 = '';
)sql",
    // --- 5: several models per node (issue 12): a job per (instance, model) and each
    //        report of one model. The jobs table is rebuilt (SQLite cannot drop the old
    //        UNIQUE(instance_ref)); ids are kept, so scores.job_ref stays valid. Jobs and
    //        reports made before belong to the one model the node ran (the newest row of
    //        models); a skipped instance's job has no model ('').
    R"sql(
CREATE TABLE jobs_v5 (
  id           INTEGER PRIMARY KEY,
  instance_ref INTEGER NOT NULL REFERENCES instances(id),
  model_name   TEXT NOT NULL DEFAULT '',      -- '': no model applies (state skipped)
  state        TEXT NOT NULL CHECK (state IN ('queued','scoring','scored','skipped','failed')),
  reason       TEXT NOT NULL DEFAULT '',
  attempts     INTEGER NOT NULL DEFAULT 0,
  created_at   INTEGER NOT NULL,
  started_at   INTEGER,
  updated_at   INTEGER NOT NULL,
  UNIQUE (instance_ref, model_name)
);
INSERT INTO jobs_v5 (id, instance_ref, model_name, state, reason, attempts, created_at, started_at, updated_at)
  SELECT j.id, j.instance_ref,
         CASE WHEN j.state = 'skipped' THEN ''
              ELSE COALESCE((SELECT sc.model_name FROM scores sc WHERE sc.job_ref = j.id),
                            (SELECT m.name FROM models m ORDER BY m.recorded_at DESC LIMIT 1), '') END,
         j.state, j.reason, j.attempts, j.created_at, j.started_at, j.updated_at
  FROM jobs j;
DROP TABLE jobs;
ALTER TABLE jobs_v5 RENAME TO jobs;
CREATE INDEX jobs_by_state ON jobs(state, id);
CREATE INDEX jobs_by_model_state ON jobs(model_name, state, id);
ALTER TABLE reports ADD COLUMN model_name TEXT NOT NULL DEFAULT '';
UPDATE reports SET model_name = COALESCE((SELECT m.name FROM models m ORDER BY m.recorded_at DESC LIMIT 1), '');
CREATE INDEX reports_by_study_model ON reports(study_uid, model_name, version);
)sql",
    // --- 6: clinical observations over HL7 v2 / FHIR (issue 15): observations_schema.h
    kObservationsMigrationSqlite,
};

static_assert(std::size(kMigrations) == kSchemaVersion,
              "kSchemaVersion must equal the number of migrations");

// PostgreSQL keeps the version in a one-row table (it has no user_version).
StatusOr<bool> HasPostgresVersionTable(Connection& conn) {
  Query q = conn.Prepare("SELECT CASE WHEN to_regclass('pxs_schema') IS NULL THEN 0 ELSE 1 END");
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return *row && q.Int(0) == 1;
}

Status WriteVersion(Connection& conn, int version) {
  if (conn.dialect() == sql::Dialect::kSqlite) {
    return conn.Exec("PRAGMA user_version = " + std::to_string(version));
  }
  return conn.Exec("UPDATE pxs_schema SET version = " + std::to_string(version));
}

Status RefuseNewer(const std::string& path, int found) {
  return Status::Unsupported(path + ": database schema version " + std::to_string(found) +
                             " is newer than this program supports (version " +
                             std::to_string(kSchemaVersion) +
                             "); install the matching or a newer pxsnode/pxsctl");
}

// Migration i (1-based) in the connection's dialect, or an error when this binary has
// no PostgreSQL version of it (a migration added for SQLite only).
StatusOr<const char*> MigrationFor(Connection& conn, int version) {
  if (conn.dialect() == sql::Dialect::kSqlite) return kMigrations[version - 1];
  const char* sql = PostgresMigration(version);
  if (!sql) {
    return Status::Internal("schema migration " + std::to_string(version) +
                            " has no PostgreSQL version in this build (storage/src/postgres_schema.cc)");
  }
  return sql;
}

Status Migrate(Connection& conn, int up_to_version) {
  StatusOr<int> before = ReadVersion(conn);
  if (!before.ok()) return before.status();
  if (*before > kSchemaVersion) return RefuseNewer(conn.path(), *before);
  for (int target = *before + 1; target <= up_to_version; ++target) {
    StatusOr<const char*> migration = MigrationFor(conn, target);
    if (!migration.ok()) return migration.status();
    Transaction tx(&conn);
    PXS_RETURN_IF_ERROR(tx.Begin());
    if (conn.dialect() == sql::Dialect::kPostgres) {
      // Several nodes may start at once on one PostgreSQL: one migrates, the others wait
      // here and then find the work done. DDL is transactional there, like in SQLite.
      PXS_RETURN_IF_ERROR(conn.Exec("SELECT pg_advisory_xact_lock(7340916)"));
      PXS_RETURN_IF_ERROR(conn.Exec(
          "CREATE TABLE IF NOT EXISTS pxs_schema (version INTEGER NOT NULL);"
          " INSERT INTO pxs_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM pxs_schema)"));
    }
    // Another process may have migrated between our read and taking the lock.
    StatusOr<int> current = ReadVersion(conn);
    if (!current.ok()) return current.status();
    if (*current > kSchemaVersion) return RefuseNewer(conn.path(), *current);
    if (*current >= target) continue;
    Status applied = conn.Exec(*migration);
    if (!applied.ok()) {
      return Status::Internal("migration to schema version " + std::to_string(target) +
                              " failed: " + applied.message());
    }
    PXS_RETURN_IF_ERROR(WriteVersion(conn, target));
    PXS_RETURN_IF_ERROR(tx.Commit());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Connection>> OpenDatabaseConnection(const DatabaseOptions& options, bool read_only,
                                                             bool durable) {
  if (IsPostgresUrl(options.url)) {
    postgres::ConnectOptions connect;
    connect.url = options.url;
    connect.read_only = read_only;
    connect.statement_timeout_ms = options.statement_timeout_ms;
    connect.node_id = options.node_id.empty() ? DefaultNodeId() : options.node_id;
    connect.durable = durable;
    auto opened = postgres::PostgresConnection::Open(connect);
    if (!opened.ok()) return opened.status();
    return std::unique_ptr<Connection>(std::move(*opened));
  }
  std::string path = options.url;
  if (path.rfind("sqlite:", 0) == 0) path = path.substr(7);
  if (path.empty()) return Status::InvalidArgument("database url is empty (expected a path, sqlite:PATH or postgresql://...)");
  auto opened = SqliteConnection::Open(path, read_only);
  if (!opened.ok()) return opened.status();
  (*opened)->set_node_id(options.node_id.empty() ? DefaultNodeId() : options.node_id);
  return std::unique_ptr<Connection>(std::move(*opened));
}

namespace {

// The rows that are this node's own, for the work only the node holding the files can
// do (scoring, hashing, sending its SRs, pruning): temporary views, so the domain SQL
// is the same on both backends. A SQLite file is one node's: everything is local. On a
// shared PostgreSQL, what this node received (instances.received_by) or made
// (reports.made_by). Temporary, hence per session and always over the current columns.
std::string LocalViews(const Connection& conn) {
  if (conn.dialect() == sql::Dialect::kSqlite) {
    return "CREATE TEMP VIEW local_instances AS SELECT * FROM main.instances;"
           " CREATE TEMP VIEW local_reports AS SELECT * FROM main.reports";
  }
  return "CREATE TEMP VIEW local_instances AS SELECT * FROM instances"
         " WHERE received_by = current_setting('pxs.node_id');"
         " CREATE TEMP VIEW local_reports AS SELECT * FROM reports WHERE made_by = current_setting('pxs.node_id')";
}

}  // namespace

StatusOr<int> ReadVersion(Connection& conn) {
  if (conn.dialect() == sql::Dialect::kPostgres) {
    StatusOr<bool> has_table = HasPostgresVersionTable(conn);
    if (!has_table.ok()) return has_table.status();
    if (!*has_table) return 0;
  }
  Query q = conn.Prepare(conn.dialect() == sql::Dialect::kSqlite ? "PRAGMA user_version"
                                                                 : "SELECT max(version) FROM pxs_schema");
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(*row ? q.Int(0) : 0);
}

StatusOr<std::unique_ptr<Connection>> OpenNodeDatabase(const DatabaseOptions& options, Database::Mode mode,
                                                       bool durable) {
  const bool read_only = mode == Database::Mode::kReadOnly;
  StatusOr<std::unique_ptr<Connection>> opened = OpenDatabaseConnection(options, read_only, durable);
  if (!opened.ok()) return opened.status();
  Connection& conn = **opened;
  const std::string& path = conn.path();
  const bool sqlite = conn.dialect() == sql::Dialect::kSqlite;
  // Wait for the other process's write lock instead of failing at once.
  if (sqlite) PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA busy_timeout = 5000"));
  if (read_only) {
    StatusOr<int> version = ReadVersion(conn);
    if (!version.ok()) return version.status();
    if (*version > kSchemaVersion) return RefuseNewer(path, *version);
    if (*version == 0) return Status::NotFound(path + ": not a pxsnode database (no schema)");
    if (*version < kSchemaVersion) {
      return Status::Unsupported(path + ": database schema version " + std::to_string(*version) +
                                 " is older than this program's (" + std::to_string(kSchemaVersion) +
                                 "); start pxsnode once to migrate it");
    }
    PXS_RETURN_IF_ERROR(conn.SetSessionSetup(LocalViews(conn)));
    if (sqlite) PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA query_only = ON"));
    return opened;
  }
  if (!sqlite) {
    conn.set_durable(durable);
    PXS_RETURN_IF_ERROR(Migrate(conn, kSchemaVersion));
    PXS_RETURN_IF_ERROR(conn.SetSessionSetup(LocalViews(conn)));
    return opened;
  }
  // WAL: readers (pxsctl) never block the writer and vice versa. synchronous=FULL:
  // the SCP answers a C-STORE with Success only after the commit, so a commit must
  // survive a power cut, not just a process crash (see docs/database.md).
  PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA journal_mode = WAL"));
  PXS_RETURN_IF_ERROR(conn.Exec(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = OFF"));
  conn.set_durable(durable);
  // Foreign keys are enforced after the migrations: a migration that rebuilds a table
  // (5) drops the old one, which SQLite refuses while other tables reference it and
  // enforcement is on (and the pragma cannot change inside the migration's transaction).
  PXS_RETURN_IF_ERROR(Migrate(conn, kSchemaVersion));
  PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA foreign_keys = ON"));
  PXS_RETURN_IF_ERROR(conn.SetSessionSetup(LocalViews(conn)));
  return opened;
}

Status CreateAtSchemaVersionForTest(const std::string& location, int version) {
  if (version < 0 || version > kSchemaVersion) return Status::InvalidArgument("no schema version " + std::to_string(version));
  DatabaseOptions options;
  options.url = location;
  StatusOr<std::unique_ptr<Connection>> conn = OpenDatabaseConnection(options, /*read_only=*/false, /*durable=*/true);
  if (!conn.ok()) return conn.status();
  if ((*conn)->dialect() == sql::Dialect::kSqlite) PXS_RETURN_IF_ERROR((*conn)->Exec("PRAGMA journal_mode = WAL"));
  return Migrate(**conn, version);
}

}  // namespace pxs::sqlite
