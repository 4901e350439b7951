// The SQLite backend of the storage seam (backend.h), private to storage/: a
// connection with a cache of prepared statements over the sqlite3 C API.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "backend.h"

namespace pxs::sqlite {

// The seam's names, for code written against this layer before it had two backends.
using sql::Connection;
using sql::Durability;
using sql::Query;
using sql::Transaction;

class SqliteStatement;

class SqliteConnection final : public sql::Connection {
 public:
  // read_only opens with SQLITE_OPEN_READONLY (and PRAGMA query_only as a second lock).
  static StatusOr<std::unique_ptr<SqliteConnection>> Open(const std::string& path, bool read_only);
  ~SqliteConnection() override;

  sql::Dialect dialect() const override { return sql::Dialect::kSqlite; }
  Status Exec(const std::string& sql) override;
  Query Prepare(const char* sql) override;
  int64_t Changes() const override { return sqlite3_changes(db_); }
  int64_t LastInsertId() override { return sqlite3_last_insert_rowid(db_); }
  // BEGIN IMMEDIATE: takes the write lock up front, so a transaction never fails half
  // way with SQLITE_BUSY on lock upgrade.
  Status Begin(Durability durability) override;
  Status Commit() override;
  void Rollback() override;
  StatusOr<std::string> IntegrityCheck() override;  // PRAGMA quick_check

  // An IoError (or Unavailable when the database is busy/locked) naming the database
  // file, what was being done and SQLite's message.
  Status Error(int rc, std::string_view what) const;

 private:
  SqliteConnection(sqlite3* db, std::string path, bool read_only)
      : sql::Connection(std::move(path), read_only), db_(db) {}
  void RestoreSynchronous();

  sqlite3* db_;
  bool relaxed_ = false;  // synchronous was lowered for the open transaction
  std::unordered_map<const char*, std::unique_ptr<sql::Statement>> statements_;
};

}  // namespace pxs::sqlite
