// The PostgreSQL backend of the storage seam (backend.h), private to storage/, on
// libpqxx (Debian's libpqxx-dev). One connection per PostgresConnection; when the
// server goes away (restart, failover, network) the next statement outside a
// transaction, or the next Begin(), connects again, so the node recovers by itself
// without a restart. A transaction the break interrupted fails as a whole.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "backend.h"

namespace pxs::postgres {

struct ConnectOptions {
  std::string url;  // postgresql://... (libpq connection URI)
  bool read_only = false;
  int statement_timeout_ms = 0;  // 0: the server's default
  std::string node_id;
  bool durable = true;  // false: synchronous_commit=off for the session (benchmarks only)
};

// The URL as messages may show it: the password replaced by "***".
std::string RedactUrl(const std::string& url);

class PostgresStatement;

class PostgresConnection final : public sql::Connection {
 public:
  // Connects once; an unreachable server is an Unavailable error naming the URL.
  static StatusOr<std::unique_ptr<PostgresConnection>> Open(const ConnectOptions& options);
  ~PostgresConnection() override;

  sql::Dialect dialect() const override { return sql::Dialect::kPostgres; }
  Status Exec(const std::string& sql) override;
  sql::Query Prepare(const char* sql) override;
  int64_t Changes() const override { return changes_; }
  int64_t LastInsertId() override;
  Status Begin(sql::Durability durability) override;
  Status Commit() override;
  void Rollback() override;
  StatusOr<std::string> IntegrityCheck() override;
  Status SetSessionSetup(const std::string& sql) override;

  // pqxx's exceptions as a Status naming the database; marks the connection broken
  // when the server went away, so that the next use connects again.
  Status ErrorFrom(const std::exception& e, std::string_view what);

 private:
  friend class PostgresStatement;
  explicit PostgresConnection(ConnectOptions options);
  Status Connect();
  // Before a statement: connects again if the connection broke, unless a transaction
  // was open on the broken one (it then fails until rolled back).
  Status Ready();
  void Drop();

  ConnectOptions options_;
  // The libpqxx connection and the nontransaction statements run through (BEGIN and
  // COMMIT are plain SQL, so the domain code decides the transactions), in the .cc.
  struct Session;
  std::unique_ptr<Session> session_;
  uint64_t generation_ = 0;                        // bumped on each (re)connect: statements re-prepare
  std::string session_setup_;  // run on each new session, before it is made read-only
  bool in_transaction_ = false;
  bool broken_ = false;
  int64_t changes_ = 0;
  int next_statement_ = 0;
  std::unordered_map<const char*, std::unique_ptr<sql::Statement>> statements_;
};

// ?N -> $N outside quoted strings (the portable dialect to PostgreSQL's).
std::string TranslatePlaceholders(const char* sql);

}  // namespace pxs::postgres
