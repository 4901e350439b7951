#include "schema.h"

#include <string>

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
};

static_assert(std::size(kMigrations) == kSchemaVersion,
              "kSchemaVersion must equal the number of migrations");

StatusOr<int> ReadUserVersion(Connection& conn) {
  Query q = conn.Prepare("PRAGMA user_version");
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(*row ? q.Int(0) : 0);
}

Status RefuseNewer(const std::string& path, int found) {
  return Status::Unsupported(path + ": database schema version " + std::to_string(found) +
                             " is newer than this program supports (version " +
                             std::to_string(kSchemaVersion) +
                             "); install the matching or a newer pxsnode/pxsctl");
}

Status Migrate(Connection& conn, int up_to_version) {
  StatusOr<int> before = ReadUserVersion(conn);
  if (!before.ok()) return before.status();
  if (*before > kSchemaVersion) return RefuseNewer(conn.path(), *before);
  for (int target = *before + 1; target <= up_to_version; ++target) {
    Transaction tx(&conn);
    PXS_RETURN_IF_ERROR(tx.Begin());
    // Another process may have migrated between our read and BEGIN IMMEDIATE.
    StatusOr<int> current = ReadUserVersion(conn);
    if (!current.ok()) return current.status();
    if (*current > kSchemaVersion) return RefuseNewer(conn.path(), *current);
    if (*current >= target) continue;
    Status applied = conn.Exec(kMigrations[target - 1]);
    if (!applied.ok()) {
      return Status::Internal("migration to schema version " + std::to_string(target) +
                              " failed: " + applied.message());
    }
    PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA user_version = " + std::to_string(target)));
    PXS_RETURN_IF_ERROR(tx.Commit());
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Connection>> OpenNodeDatabase(const std::string& path, Database::Mode mode,
                                                       bool durable) {
  const bool read_only = mode == Database::Mode::kReadOnly;
  StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(path, read_only);
  if (!opened.ok()) return opened.status();
  Connection& conn = **opened;
  // Wait for the other process's write lock instead of failing at once.
  PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA busy_timeout = 5000"));
  if (read_only) {
    PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA query_only = ON"));
    StatusOr<int> version = ReadUserVersion(conn);
    if (!version.ok()) return version.status();
    if (*version > kSchemaVersion) return RefuseNewer(path, *version);
    if (*version == 0) return Status::NotFound(path + ": not a pxsnode database (no schema)");
    if (*version < kSchemaVersion) {
      return Status::Unsupported(path + ": database schema version " + std::to_string(*version) +
                                 " is older than this program's (" + std::to_string(kSchemaVersion) +
                                 "); start pxsnode once to migrate it");
    }
    return opened;
  }
  // WAL: readers (pxsctl) never block the writer and vice versa. synchronous=FULL:
  // the SCP answers a C-STORE with Success only after the commit, so a commit must
  // survive a power cut, not just a process crash (see docs/database.md).
  PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA journal_mode = WAL"));
  PXS_RETURN_IF_ERROR(conn.Exec(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = OFF"));
  conn.set_durable(durable);
  PXS_RETURN_IF_ERROR(conn.Exec("PRAGMA foreign_keys = ON"));
  PXS_RETURN_IF_ERROR(Migrate(conn, kSchemaVersion));
  return opened;
}

Status CreateAtSchemaVersionForTest(const std::string& path, int version) {
  if (version < 0 || version > kSchemaVersion) return Status::InvalidArgument("no schema version " + std::to_string(version));
  StatusOr<std::unique_ptr<Connection>> conn = Connection::Open(path, /*read_only=*/false);
  if (!conn.ok()) return conn.status();
  PXS_RETURN_IF_ERROR((*conn)->Exec("PRAGMA journal_mode = WAL"));
  return Migrate(**conn, version);
}

}  // namespace pxs::sqlite
