#include "postgres.h"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <pqxx/pqxx>

namespace pxs::postgres {

struct PostgresConnection::Session {
  explicit Session(const std::string& url) : conn(url), tx(conn, "pxs") {}
  pqxx::connection conn;
  pqxx::nontransaction tx;
};

std::string RedactUrl(const std::string& url) {
  std::string out = url;
  // password=secret in a key/value string or a URL's query: password=***
  for (size_t p = out.find("password"); p != std::string::npos; p = out.find("password", p + 1)) {
    size_t eq = out.find_first_not_of(' ', p + 8);
    if (eq == std::string::npos || out[eq] != '=') continue;
    size_t begin = out.find_first_not_of(' ', eq + 1);
    if (begin == std::string::npos) break;
    size_t end = begin;
    if (out[begin] == '\'') {
      end = out.find('\'', begin + 1);
      end = end == std::string::npos ? out.size() : end + 1;
    } else {
      while (end < out.size() && out[end] != ' ' && out[end] != '&') ++end;
    }
    out.replace(begin, end - begin, "***");
  }
  // postgresql://user:password@host/db -> postgresql://user:***@host/db
  const size_t scheme = out.find("://");
  if (scheme == std::string::npos) return out;
  const size_t at = out.find('@', scheme + 3);
  const size_t colon = out.find(':', scheme + 3);
  if (at == std::string::npos || colon == std::string::npos || colon > at) return out;
  return out.substr(0, colon + 1) + "***" + out.substr(at);
}

std::string TranslatePlaceholders(const char* sql) {
  std::string out;
  out.reserve(std::strlen(sql) + 8);
  char quote = 0;  // inside '...' or "..."
  for (const char* p = sql; *p; ++p) {
    if (quote) {
      if (*p == quote) quote = 0;
    } else if (*p == '\'' || *p == '"') {
      quote = *p;
    } else if (*p == '?' && p[1] >= '0' && p[1] <= '9') {
      out += '$';
      continue;
    }
    out += *p;
  }
  return out;
}

namespace {

std::string Trimmed(const char* message) {
  std::string s(message);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

std::string FormatReal(double value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);  // shortest exact form
  if (ec != std::errc()) return std::to_string(value);
  std::string s(buf, end);
  if (s == "inf") return "Infinity";
  if (s == "-inf") return "-Infinity";
  if (s == "nan" || s == "-nan") return "NaN";
  return s;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

class PostgresStatement final : public sql::Statement {
 public:
  PostgresStatement(PostgresConnection* owner, std::string name, std::string sql)
      : owner_(owner), name_(std::move(name)), sql_(std::move(sql)) {}

  void BindNull(int index) override { Slot(index).reset(); }
  void BindInt(int index, int64_t value) override { Slot(index) = std::to_string(value); }
  void BindReal(int index, double value) override { Slot(index) = FormatReal(value); }
  void BindText(int index, std::string_view value) override { Slot(index) = std::string(value); }
  void BindFloats(int index, const std::vector<float>& floats) override {
    if (floats.empty()) {
      Slot(index).reset();
      return;
    }
    // bytea in its hex text form; the bytes are the float32 values in host order, as in
    // SQLite's BLOB, so both backends store the same bytes.
    static constexpr char kHex[] = "0123456789abcdef";
    const auto* bytes = reinterpret_cast<const unsigned char*>(floats.data());
    const size_t n = floats.size() * sizeof(float);
    std::string hex = "\\x";
    hex.reserve(2 + 2 * n);
    for (size_t i = 0; i < n; ++i) {
      hex += kHex[bytes[i] >> 4];
      hex += kHex[bytes[i] & 0xF];
    }
    Slot(index) = std::move(hex);
  }

  StatusOr<bool> Step() override {
    if (!executed_) {
      Status run = Execute();
      // A SELECT outside a transaction that found the session gone (the server
      // restarted since the last statement) runs once more on a new session: reading
      // twice is harmless, and the node should not fail a C-STORE for a stale socket.
      if (!run.ok() && owner_->broken_ && !owner_->in_transaction_ && IsSelect()) run = Execute();
      PXS_RETURN_IF_ERROR(run);
      executed_ = true;
      changes_ = static_cast<int64_t>(result_.affected_rows());
      owner_->changes_ = changes_;
      row_ = -1;
    }
    ++row_;
    return row_ < static_cast<long>(result_.size());
  }

  Status Execute() {
    PXS_RETURN_IF_ERROR(owner_->Ready());
    try {
      if (prepared_generation_ != owner_->generation_) {
        owner_->session_->conn.prepare(name_, sql_);
        prepared_generation_ = owner_->generation_;
      }
      std::vector<const char*> values(params_.size());
      for (size_t i = 0; i < params_.size(); ++i) values[i] = params_[i] ? params_[i]->c_str() : nullptr;
      result_ = owner_->session_->tx.exec_prepared(name_, pqxx::prepare::make_dynamic_params(values));
    } catch (const std::exception& e) {
      return owner_->ErrorFrom(e, sql_);
    }
    return Status::Ok();
  }
  bool IsSelect() const { return sql_.compare(0, 7, "SELECT ") == 0; }

  void Reset() override {
    params_.clear();
    result_.clear();
    executed_ = false;
    row_ = -1;
  }
  int64_t Changes() const override { return changes_; }
  bool IsNull(int col) const override { return Field(col).is_null(); }
  int64_t Int(int col) const override {
    pqxx::field f = Field(col);
    if (f.is_null()) return 0;
    const char* s = f.c_str();
    if (s[0] == 't' && s[1] == 0) return 1;  // a boolean column
    if (s[0] == 'f' && s[1] == 0) return 0;
    return std::strtoll(s, nullptr, 10);
  }
  double Real(int col) const override {
    pqxx::field f = Field(col);
    return f.is_null() ? 0.0 : std::strtod(f.c_str(), nullptr);
  }
  std::string Text(int col) const override {
    pqxx::field f = Field(col);
    if (f.is_null()) return {};
    return std::string(f.c_str(), f.size());
  }
  std::vector<float> Floats(int col) const override {
    pqxx::field f = Field(col);
    std::vector<float> floats;
    if (f.is_null()) return floats;
    const char* s = f.c_str();
    const size_t len = f.size();
    if (len < 2 || s[0] != '\\' || s[1] != 'x') return floats;  // bytea_output is hex by default
    std::string bytes;
    bytes.reserve((len - 2) / 2);
    for (size_t i = 2; i + 1 < len; i += 2) {
      int hi = HexDigit(s[i]), lo = HexDigit(s[i + 1]);
      if (hi < 0 || lo < 0) return {};
      bytes += static_cast<char>(hi << 4 | lo);
    }
    floats.resize(bytes.size() / sizeof(float));
    if (!floats.empty()) std::memcpy(floats.data(), bytes.data(), floats.size() * sizeof(float));
    return floats;
  }

 private:
  std::optional<std::string>& Slot(int index) {
    if (static_cast<size_t>(index) > params_.size()) params_.resize(static_cast<size_t>(index));
    return params_[static_cast<size_t>(index) - 1];
  }
  pqxx::field Field(int col) const { return result_[static_cast<pqxx::result::size_type>(row_)][col]; }

  PostgresConnection* owner_;
  std::string name_;
  std::string sql_;
  uint64_t prepared_generation_ = 0;
  std::vector<std::optional<std::string>> params_;
  pqxx::result result_;
  bool executed_ = false;
  long row_ = -1;
  int64_t changes_ = 0;
};

PostgresConnection::PostgresConnection(ConnectOptions options)
    : sql::Connection(RedactUrl(options.url), options.read_only), options_(std::move(options)) {
  set_durable(options_.durable);
  set_node_id(options_.node_id);
}

PostgresConnection::~PostgresConnection() {
  statements_.clear();
  Drop();
}

StatusOr<std::unique_ptr<PostgresConnection>> PostgresConnection::Open(const ConnectOptions& options) {
  std::unique_ptr<PostgresConnection> conn(new PostgresConnection(options));
  PXS_RETURN_IF_ERROR(conn->Connect());
  return conn;
}

void PostgresConnection::Drop() { session_.reset(); }

Status PostgresConnection::Connect() {
  Drop();
  try {
    session_ = std::make_unique<Session>(options_.url);
    pqxx::nontransaction* tx = &session_->tx;
    // Notices (e.g. "there is no transaction in progress" after a failed COMMIT) would
    // go to stderr; the node logs what matters itself.
    tx->exec("SET client_min_messages = error");
    tx->exec("SET application_name = 'pxsnode'");
    // The node identity, for the column defaults that record who received an instance
    // or made a report (schema.cc) and for the queries that pick this node's work.
    tx->exec_params("SELECT set_config('pxs.node_id', $1, false)", options_.node_id);
    if (options_.statement_timeout_ms > 0) {
      tx->exec("SET statement_timeout = " + std::to_string(options_.statement_timeout_ms));
    }
    if (!session_setup_.empty()) tx->exec(session_setup_);
    if (options_.read_only) tx->exec("SET default_transaction_read_only = on");
    if (!options_.durable) tx->exec("SET synchronous_commit = off");
  } catch (const std::exception& e) {
    Drop();
    broken_ = true;
    return Status::Unavailable(path() + ": cannot connect to PostgreSQL: " + Trimmed(e.what()));
  }
  ++generation_;
  broken_ = false;
  return Status::Ok();
}

Status PostgresConnection::Ready() {
  if (session_ && !broken_) return Status::Ok();
  if (in_transaction_) {
    return Status::Unavailable(path() + ": connection to PostgreSQL lost inside a transaction");
  }
  return Connect();
}

Status PostgresConnection::ErrorFrom(const std::exception& e, std::string_view what) {
  const std::string message = path() + ": " + std::string(what.substr(0, 120)) + ": " + Trimmed(e.what());
  if (dynamic_cast<const pqxx::broken_connection*>(&e) || (session_ && !session_->conn.is_open())) {
    broken_ = true;
    return Status::Unavailable(message + " (connection lost; reconnecting on next use)");
  }
  const auto* sql_error = dynamic_cast<const pqxx::sql_error*>(&e);
  const std::string state = sql_error ? sql_error->sqlstate() : std::string();
  if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
    broken_ = true;  // connection failure or server shutting down
    return Status::Unavailable(message + " (connection lost; reconnecting on next use)");
  }
  if (state == "57014" || state == "40001" || state == "40P01" || state == "55P03") {
    return Status::Unavailable(message);  // timeout, serialization failure, deadlock, lock
  }
  if (state == "53100") return Status::NoSpace(message);
  if (state.rfind("53", 0) == 0) return Status::Unavailable(message);
  if (state == "23505") return Status::AlreadyExists(message);
  if (state == "25006") return Status::Unsupported(message);  // read-only transaction
  if (state == "XX001" || state == "XX002") return Status::Corrupt(message);
  return Status::IoError(message);
}

Status PostgresConnection::Exec(const std::string& sql) {
  PXS_RETURN_IF_ERROR(Ready());
  try {
    pqxx::result r = session_->tx.exec(sql);
    changes_ = static_cast<int64_t>(r.affected_rows());
  } catch (const std::exception& e) {
    return ErrorFrom(e, sql);
  }
  return Status::Ok();
}

sql::Query PostgresConnection::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    auto stmt = std::make_unique<PostgresStatement>(this, "pxs_" + std::to_string(next_statement_++),
                                                    TranslatePlaceholders(sql));
    it = statements_.emplace(sql, std::move(stmt)).first;
  }
  return sql::Query(it->second.get(), Status::Ok());
}

int64_t PostgresConnection::LastInsertId() {
  if (!Ready().ok()) return 0;
  try {
    pqxx::result r = session_->tx.exec("SELECT lastval()");
    return r[0][0].as<int64_t>();
  } catch (const std::exception& e) {
    (void)ErrorFrom(e, "SELECT lastval()");
    return 0;
  }
}

Status PostgresConnection::Begin(sql::Durability durability) {
  if (in_transaction_) return Status::Internal(path() + ": BEGIN inside a transaction");
  PXS_RETURN_IF_ERROR(Ready());
  // A deferred commit does not wait for the WAL flush; the next synchronous commit of
  // any session flushes it too (PostgreSQL flushes the WAL in order).
  const bool deferred = durability == sql::Durability::kDeferred && durable();
  const char* begin = deferred ? "BEGIN; SET LOCAL synchronous_commit = off" : "BEGIN";
  Status status = Exec(begin);
  // Nothing has run yet: a session the server dropped since (a restart) is replaced
  // and the transaction begun on the new one.
  if (!status.ok() && broken_) status = Exec(begin);
  PXS_RETURN_IF_ERROR(status);
  in_transaction_ = true;
  return Status::Ok();
}

Status PostgresConnection::Commit() {
  if (!in_transaction_) return Status::Internal(path() + ": COMMIT without a transaction");
  Status status = Exec("COMMIT");
  // PostgreSQL ends the transaction on a failed COMMIT too (rolled back, or in doubt
  // when the connection broke: the caller then reports a failure, never a success).
  in_transaction_ = false;
  return status;
}

void PostgresConnection::Rollback() {
  const bool was_open = in_transaction_;
  in_transaction_ = false;
  if (was_open && session_ && !broken_) (void)Exec("ROLLBACK");
}

Status PostgresConnection::SetSessionSetup(const std::string& sql) {
  session_setup_ = sql;
  // A read-only session refuses every CREATE, temporary views too: lifted for this, in
  // separate statements (one multi-statement query is one implicit transaction, which
  // keeps the read-only setting it started with).
  if (!options_.read_only) return Exec(sql);
  PXS_RETURN_IF_ERROR(Exec("SET default_transaction_read_only = off"));
  Status status = Exec(sql);
  Status restored = Exec("SET default_transaction_read_only = on");
  return status.ok() ? restored : status;
}

StatusOr<std::string> PostgresConnection::IntegrityCheck() {
  // PostgreSQL has no quick_check; what it does report is data checksum failures
  // (when the cluster has checksums on). The rest is the server's (and its replicas').
  sql::Query q = Prepare(
      "SELECT coalesce(checksum_failures, 0) FROM pg_stat_database WHERE datname = current_database()");
  StatusOr<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (*row && q.Int(0) > 0) return std::to_string(q.Int(0)) + " data checksum failure(s) reported by PostgreSQL";
  return std::string("ok");
}

}  // namespace pxs::postgres
