// Thin RAII layer over the sqlite3 C API, private to storage/: a connection with a
// cache of prepared statements, a statement handle that resets itself, and a
// transaction guard that rolls back unless committed.
#pragma once

#include <sqlite3.h>

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pxs/common/status.h"

namespace pxs::sqlite {

class Connection;

// A cached prepared statement in use. Its bindings are cleared and it is reset when
// the Query goes out of scope, so the cache can hand it out again. A statement that
// failed to prepare yields its error from Step()/Run() (so call sites stay short).
class Query {
 public:
  Query(Connection* conn, sqlite3_stmt* stmt, Status prepare_error);
  ~Query();
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query(Query&& other) noexcept;
  Query& operator=(Query&&) = delete;

  void Bind(int index, std::integral auto value) {
    if (stmt_) sqlite3_bind_int64(stmt_, index, static_cast<sqlite3_int64>(value));
  }
  void Bind(int index, double value);
  void Bind(int index, std::string_view value);
  void Bind(int index, const std::string& value) { Bind(index, std::string_view(value)); }
  void Bind(int index, const char* value) { Bind(index, std::string_view(value)); }
  void Bind(int index, std::nullptr_t);
  void Bind(int index, const std::optional<double>& value);
  void Bind(int index, const std::optional<int64_t>& value);
  void Bind(int index, const std::vector<float>& floats);  // float32 blob, host byte order

  // Binds the arguments to ?1, ?2, ... in order.
  template <typename... Args>
  Query& With(const Args&... args) {
    int index = 1;
    (Bind(index++, args), ...);
    return *this;
  }

  StatusOr<bool> Step();  // true: a row is ready to be read
  Status Run();           // steps to the end (statements without result rows)

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const;
  std::optional<double> OptReal(int col) const;
  std::optional<int64_t> OptInt(int col) const;
  std::vector<float> Floats(int col) const;

 private:
  Connection* conn_;
  sqlite3_stmt* stmt_;
  Status prepare_error_;
};

class Connection {
 public:
  // read_only opens with SQLITE_OPEN_READONLY (and PRAGMA query_only as a second lock).
  static StatusOr<std::unique_ptr<Connection>> Open(const std::string& path, bool read_only);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // For statements without parameters: pragmas, DDL, BEGIN/COMMIT.
  Status Exec(const std::string& sql);
  // A prepared statement from the cache (prepared on first use). sql must be a
  // string literal or otherwise outlive the connection: the cache is keyed by it.
  Query Prepare(const char* sql);
  // An IoError (or Unavailable when the database is busy/locked) naming the database
  // file, what was being done and SQLite's message.
  Status Error(int rc, std::string_view what) const;

  int64_t LastInsertId() const { return sqlite3_last_insert_rowid(db_); }
  int Changes() const { return sqlite3_changes(db_); }
  bool read_only() const { return read_only_; }
  // synchronous=FULL was set on this connection (the node; not the benchmarks' OFF).
  bool durable() const { return durable_; }
  void set_durable(bool durable) { durable_ = durable; }
  const std::string& path() const { return path_; }

 private:
  Connection(sqlite3* db, std::string path, bool read_only)
      : db_(db), path_(std::move(path)), read_only_(read_only) {}
  sqlite3* db_;
  std::string path_;
  bool read_only_;
  bool durable_ = false;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

// BEGIN IMMEDIATE (takes the write lock up front, so a transaction never fails half
// way with SQLITE_BUSY on lock upgrade); rolls back on destruction unless committed.
// How a transaction's commit reaches the disk, chosen by each write explicitly:
//   kDurable  - the connection's own setting (synchronous=FULL in the node: the commit
//               waits for the WAL fsync);
//   kDeferred - synchronous=NORMAL for this transaction only: the commit does not wait;
//               it becomes durable with the next kDurable commit (see database.cc for
//               which writes may be deferred, and why). On a connection that is not
//               durable at all (benchmarks), the same as kDurable.
enum class Durability { kDurable, kDeferred };

class Transaction {
 public:
  explicit Transaction(Connection* conn, Durability durability = Durability::kDurable)
      : conn_(conn), deferred_(durability == Durability::kDeferred) {}
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status Begin();
  Status Commit();

 private:
  void RestoreSynchronous();
  Connection* conn_;
  bool deferred_;
  bool relaxed_ = false;  // synchronous was lowered for this transaction
  bool open_ = false;
};

}  // namespace pxs::sqlite
