// The storage seam (private to storage/): transactions and primitives, below which a
// backend speaks to one SQL engine, above which the domain rules (database.cc,
// admin.cc) stay engine-neutral. Modelled on the split of Orthanc's IDatabaseWrapper:
// the index logic is written once, each engine only runs statements.
//
// The portable dialect the domain code writes (both engines run it as is, except
// where a backend translates):
//   - parameters ?1, ?2, ... (PostgreSQL: translated to $1, $2, ...);
//   - new ids with RETURNING id (SQLite >= 3.35 and PostgreSQL both have it);
//   - INSERT ... ON CONFLICT ... DO NOTHING / DO UPDATE, never INSERT OR IGNORE;
//   - no COLLATE, no PRAGMA, no strftime in DML: the UTC day of a Unix-ms time is
//     pxs_utc_day(ms) (a function each backend provides);
//   - booleans are computed with CASE ... THEN 1 ELSE 0 END, not summed or selected;
//   - float vectors (embeddings) are bound and read with Bind(vector<float>)/Floats():
//     a BLOB in SQLite, a bytea in PostgreSQL, float32 host order in both.
// Where an engine must differ (job claiming with FOR UPDATE SKIP LOCKED, prefix
// search), the domain code asks dialect() and says why.
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pxs/common/status.h"

namespace pxs::sql {

enum class Dialect { kSqlite, kPostgres };

// A backend's prepared statement, owned and cached by its connection. Bind*() set
// parameters (1-based), Step() runs it (the first call) and moves to the next row,
// Reset() makes it ready for the next use. Columns are 0-based.
class Statement {
 public:
  virtual ~Statement() = default;
  virtual void BindNull(int index) = 0;
  virtual void BindInt(int index, int64_t value) = 0;
  virtual void BindReal(int index, double value) = 0;
  virtual void BindText(int index, std::string_view value) = 0;
  virtual void BindFloats(int index, const std::vector<float>& floats) = 0;  // empty: NULL
  virtual StatusOr<bool> Step() = 0;
  virtual void Reset() = 0;
  // Rows changed by the statement's last run (UPDATE/DELETE/INSERT).
  virtual int64_t Changes() const = 0;
  virtual bool IsNull(int col) const = 0;
  virtual int64_t Int(int col) const = 0;
  virtual double Real(int col) const = 0;
  virtual std::string Text(int col) const = 0;
  virtual std::vector<float> Floats(int col) const = 0;
};

// A cached prepared statement in use. Its bindings are cleared and it is reset when
// the Query goes out of scope, so the cache can hand it out again. A statement that
// failed to prepare yields its error from Step()/Run() (so call sites stay short).
class Query {
 public:
  Query(Statement* stmt, Status prepare_error) : stmt_(stmt), prepare_error_(std::move(prepare_error)) {}
  ~Query() {
    if (stmt_) stmt_->Reset();
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query(Query&& other) noexcept : stmt_(other.stmt_), prepare_error_(std::move(other.prepare_error_)) {
    other.stmt_ = nullptr;
  }
  Query& operator=(Query&&) = delete;

  void Bind(int index, std::integral auto value) {
    if (stmt_) stmt_->BindInt(index, static_cast<int64_t>(value));
  }
  void Bind(int index, double value) {
    if (stmt_) stmt_->BindReal(index, value);
  }
  void Bind(int index, std::string_view value) {
    if (stmt_) stmt_->BindText(index, value);
  }
  void Bind(int index, const std::string& value) { Bind(index, std::string_view(value)); }
  void Bind(int index, const char* value) { Bind(index, std::string_view(value)); }
  void Bind(int index, std::nullptr_t) {
    if (stmt_) stmt_->BindNull(index);
  }
  void Bind(int index, const std::optional<double>& value) {
    if (value) Bind(index, *value); else Bind(index, nullptr);
  }
  void Bind(int index, const std::optional<int64_t>& value) {
    if (value) Bind(index, *value); else Bind(index, nullptr);
  }
  void Bind(int index, const std::optional<std::string>& value) {
    if (value) Bind(index, std::string_view(*value)); else Bind(index, nullptr);
  }
  void Bind(int index, const std::vector<float>& floats) {  // float32 blob, host byte order
    if (stmt_) stmt_->BindFloats(index, floats);
  }

  // Binds the arguments to ?1, ?2, ... in order.
  template <typename... Args>
  Query& With(const Args&... args) {
    int index = 1;
    (Bind(index++, args), ...);
    return *this;
  }

  StatusOr<bool> Step() {  // true: a row is ready to be read
    if (!stmt_) return prepare_error_;
    return stmt_->Step();
  }
  Status Run() {  // steps to the end (statements without result rows)
    while (true) {
      StatusOr<bool> row = Step();
      if (!row.ok()) return row.status();
      if (!*row) return Status::Ok();
    }
  }
  int64_t Changes() const { return stmt_ ? stmt_->Changes() : 0; }

  bool IsNull(int col) const { return stmt_->IsNull(col); }
  int64_t Int(int col) const { return stmt_->Int(col); }
  double Real(int col) const { return stmt_->Real(col); }
  std::string Text(int col) const { return stmt_->Text(col); }
  std::optional<double> OptReal(int col) const {
    if (IsNull(col)) return std::nullopt;
    return Real(col);
  }
  std::optional<int64_t> OptInt(int col) const {
    if (IsNull(col)) return std::nullopt;
    return Int(col);
  }
  std::vector<float> Floats(int col) const { return stmt_->Floats(col); }

 private:
  Statement* stmt_;
  Status prepare_error_;
};

// How a transaction's commit reaches the disk, chosen by each write explicitly:
//   kDurable  - the connection's own setting (the node: the commit waits for the
//               write-ahead log to be on disk: SQLite synchronous=FULL, PostgreSQL
//               synchronous_commit=on);
//   kDeferred - the commit does not wait; it becomes durable with the next kDurable
//               commit (SQLite: synchronous=NORMAL for this transaction; PostgreSQL:
//               SET LOCAL synchronous_commit = off, whose WAL is flushed by the next
//               synchronous commit too). See database.cc for which writes may be
//               deferred, and why. On a connection that is not durable at all
//               (benchmarks), the same as kDurable.
enum class Durability { kDurable, kDeferred };

// One connection to one database. Not thread-safe: the domain classes serialise
// access to it themselves.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;
  // For statements without parameters: DDL, session settings. May hold several
  // statements separated by ';'.
  virtual Status Exec(const std::string& sql) = 0;
  // A prepared statement from the cache (prepared on first use). sql must be a
  // string literal or otherwise outlive the connection: the cache is keyed by it.
  virtual Query Prepare(const char* sql) = 0;
  // Rows changed by the last statement run on this connection.
  virtual int64_t Changes() const = 0;
  // The id the last INSERT on this connection generated (prefer RETURNING id).
  virtual int64_t LastInsertId() = 0;

  // Transactions (use the Transaction guard). Begin takes the write lock up front
  // where the engine has one (SQLite: BEGIN IMMEDIATE).
  virtual Status Begin(Durability durability) = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;  // a failed rollback leaves nothing committed either

  // Session objects the domain SQL relies on (the local_* views, schema.cc): run now
  // and, by a backend that reconnects, again on every new session.
  virtual Status SetSessionSetup(const std::string& sql) { return Exec(sql); }

  // The engine's own consistency check: "ok" or the problems it found.
  virtual StatusOr<std::string> IntegrityCheck() = 0;

  bool read_only() const { return read_only_; }
  // Commits wait for the disk (the node; not the benchmarks' non-durable mode).
  bool durable() const { return durable_; }
  void set_durable(bool durable) { durable_ = durable; }
  // Where the database is, for messages: a file path, or a URL without its password.
  const std::string& path() const { return path_; }
  // This node's identity ([node] id): what it received and must score itself.
  const std::string& node_id() const { return node_id_; }
  void set_node_id(std::string id) { node_id_ = std::move(id); }

 protected:
  Connection(std::string path, bool read_only) : path_(std::move(path)), read_only_(read_only) {}

 private:
  std::string path_;
  bool read_only_;
  bool durable_ = false;
  std::string node_id_;
};

// Begins on Begin(); rolls back on destruction unless committed. A failed Commit()
// leaves the transaction open and the destructor rolls it back, so nothing half-done
// is ever left behind.
class Transaction {
 public:
  explicit Transaction(Connection* conn, Durability durability = Durability::kDurable)
      : conn_(conn), durability_(durability) {}
  ~Transaction() {
    if (open_) conn_->Rollback();
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status Begin() {
    PXS_RETURN_IF_ERROR(conn_->Begin(durability_));
    open_ = true;
    return Status::Ok();
  }
  Status Commit() {
    Status status = conn_->Commit();
    if (status.ok()) open_ = false;
    return status;
  }

 private:
  Connection* conn_;
  Durability durability_;
  bool open_ = false;
};

}  // namespace pxs::sql
