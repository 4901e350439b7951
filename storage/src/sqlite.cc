#include "sqlite.h"

#include <cstring>

namespace pxs::sqlite {

Query::Query(Connection* conn, sqlite3_stmt* stmt, Status prepare_error)
    : conn_(conn), stmt_(stmt), prepare_error_(std::move(prepare_error)) {}

Query::Query(Query&& other) noexcept
    : conn_(other.conn_), stmt_(other.stmt_), prepare_error_(std::move(other.prepare_error_)) {
  other.stmt_ = nullptr;
}

Query::~Query() {
  if (stmt_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

void Query::Bind(int index, double value) {
  if (stmt_) sqlite3_bind_double(stmt_, index, value);
}
void Query::Bind(int index, std::string_view value) {
  if (stmt_) sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
}
void Query::Bind(int index, std::nullptr_t) {
  if (stmt_) sqlite3_bind_null(stmt_, index);
}
void Query::Bind(int index, const std::optional<double>& value) {
  if (value) Bind(index, *value); else Bind(index, nullptr);
}
void Query::Bind(int index, const std::optional<int64_t>& value) {
  if (value) Bind(index, *value); else Bind(index, nullptr);
}
void Query::Bind(int index, const std::vector<float>& floats) {
  if (!stmt_) return;
  if (floats.empty()) {
    sqlite3_bind_null(stmt_, index);
    return;
  }
  sqlite3_bind_blob(stmt_, index, floats.data(), static_cast<int>(floats.size() * sizeof(float)),
                    SQLITE_TRANSIENT);
}

StatusOr<bool> Query::Step() {
  if (!stmt_) return prepare_error_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return conn_->Error(rc, sqlite3_sql(stmt_));
}

Status Query::Run() {
  while (true) {
    StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
  }
}

std::string Query::Text(int col) const {
  const unsigned char* text = sqlite3_column_text(stmt_, col);
  if (!text) return {};
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, col));
}

std::optional<double> Query::OptReal(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Real(col);
}

std::optional<int64_t> Query::OptInt(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Int(col);
}

std::vector<float> Query::Floats(int col) const {
  const void* blob = sqlite3_column_blob(stmt_, col);
  int bytes = sqlite3_column_bytes(stmt_, col);
  std::vector<float> floats(static_cast<size_t>(bytes) / sizeof(float));
  if (blob && !floats.empty()) std::memcpy(floats.data(), blob, floats.size() * sizeof(float));
  return floats;
}

StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& path, bool read_only) {
  sqlite3* db = nullptr;
  // NOMUTEX: the Database classes serialise access to a connection themselves.
  int flags = SQLITE_OPEN_NOMUTEX |
              (read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    if (read_only && rc == SQLITE_CANTOPEN) {
      return Status::NotFound(path + ": cannot open database read-only: " + message);
    }
    return Status::IoError(path + ": cannot open database: " + message);
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Connection>(new Connection(db, path, read_only));
}

Connection::~Connection() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

Status Connection::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string message = error ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  std::string what = sql.substr(0, 80);
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
    return Status::Unavailable(path_ + ": database busy: " + what + ": " + message);
  }
  return Status::IoError(path_ + ": " + what + ": " + message);
}

Query Connection::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return Query(this, it->second, Status::Ok());
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Query(this, nullptr, Error(rc, std::string("prepare ") + sql));
  }
  statements_.emplace(sql, stmt);
  return Query(this, stmt, Status::Ok());
}

Status Connection::Error(int rc, std::string_view what) const {
  std::string message = path_ + ": " + std::string(what.substr(0, 120)) + ": " + sqlite3_errmsg(db_);
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return Status::Unavailable(message);
  if (primary == SQLITE_FULL) return Status::NoSpace(message);
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) return Status::Corrupt(message);
  return Status::IoError(message);
}

Transaction::~Transaction() {
  if (open_) (void)conn_->Exec("ROLLBACK");  // a failed rollback leaves nothing committed either
  RestoreSynchronous();
}

void Transaction::RestoreSynchronous() {
  if (!relaxed_) return;
  relaxed_ = false;
  // Outside a transaction this cannot fail short of a closed connection; the next
  // durable write would then fail too and report it.
  (void)conn_->Exec("PRAGMA synchronous = FULL");
}

Status Transaction::Begin() {
  if (deferred_ && conn_->durable()) {
    PXS_RETURN_IF_ERROR(conn_->Exec("PRAGMA synchronous = NORMAL"));
    relaxed_ = true;
  }
  PXS_RETURN_IF_ERROR(conn_->Exec("BEGIN IMMEDIATE"));
  open_ = true;
  return Status::Ok();
}

Status Transaction::Commit() {
  Status status = conn_->Exec("COMMIT");
  // A failed COMMIT leaves the transaction open (e.g. SQLITE_BUSY); the destructor
  // then rolls it back, so nothing half-done is ever left behind.
  if (status.ok()) open_ = false;
  if (!open_) RestoreSynchronous();
  return status;
}

}  // namespace pxs::sqlite
