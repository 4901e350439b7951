#include "sqlite.h"

#include <cstring>
#include <ctime>

namespace pxs::sqlite {

class SqliteStatement final : public sql::Statement {
 public:
  SqliteStatement(SqliteConnection* conn, sqlite3* db, sqlite3_stmt* stmt) : conn_(conn), db_(db), stmt_(stmt) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }

  void BindNull(int index) override { sqlite3_bind_null(stmt_, index); }
  void BindInt(int index, int64_t value) override { sqlite3_bind_int64(stmt_, index, value); }
  void BindReal(int index, double value) override { sqlite3_bind_double(stmt_, index, value); }
  void BindText(int index, std::string_view value) override {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  void BindFloats(int index, const std::vector<float>& floats) override {
    if (floats.empty()) {
      sqlite3_bind_null(stmt_, index);
      return;
    }
    sqlite3_bind_blob(stmt_, index, floats.data(), static_cast<int>(floats.size() * sizeof(float)),
                      SQLITE_TRANSIENT);
  }
  StatusOr<bool> Step() override {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) {
      changes_ = sqlite3_changes(db_);
      return false;
    }
    return conn_->Error(rc, sqlite3_sql(stmt_));
  }
  void Reset() override {
    // A statement read only up to its first row (RETURNING, LIMIT 1) still counts its
    // changes: they are all made by the first step.
    changes_ = sqlite3_changes(db_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t Changes() const override { return changes_; }
  bool IsNull(int col) const override { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int(int col) const override { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const override { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const override {
    const unsigned char* text = sqlite3_column_text(stmt_, col);
    if (!text) return {};
    return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, col));
  }
  std::vector<float> Floats(int col) const override {
    const void* blob = sqlite3_column_blob(stmt_, col);
    int bytes = sqlite3_column_bytes(stmt_, col);
    std::vector<float> floats(static_cast<size_t>(bytes) / sizeof(float));
    if (blob && !floats.empty()) std::memcpy(floats.data(), blob, floats.size() * sizeof(float));
    return floats;
  }

 private:
  SqliteConnection* conn_;
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int64_t changes_ = 0;
};

namespace {

// pxs_utc_day(ms): the UTC calendar day of a Unix-ms time as YYYYMMDD text, what
// strftime('%Y%m%d', ms / 1000, 'unixepoch') gives; PostgreSQL has the same function
// (schema.cc), so ORDER BY clauses stay portable.
void UtcDay(sqlite3_context* ctx, int, sqlite3_value** args) {
  if (sqlite3_value_type(args[0]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  const std::time_t seconds = static_cast<std::time_t>(sqlite3_value_int64(args[0]) / 1000);
  std::tm tm{};
  char day[16];
  if (!gmtime_r(&seconds, &tm) || std::strftime(day, sizeof(day), "%Y%m%d", &tm) == 0) {
    sqlite3_result_null(ctx);
    return;
  }
  sqlite3_result_text(ctx, day, -1, SQLITE_TRANSIENT);
}

}  // namespace

StatusOr<std::unique_ptr<SqliteConnection>> SqliteConnection::Open(const std::string& path, bool read_only) {
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
  sqlite3_create_function_v2(db, "pxs_utc_day", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, UtcDay,
                             nullptr, nullptr, nullptr);
  return std::unique_ptr<SqliteConnection>(new SqliteConnection(db, path, read_only));
}

SqliteConnection::~SqliteConnection() {
  statements_.clear();  // finalized before the close
  sqlite3_close(db_);
}

Status SqliteConnection::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string message = error ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  std::string what = sql.substr(0, 80);
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
    return Status::Unavailable(path() + ": database busy: " + what + ": " + message);
  }
  return Status::IoError(path() + ": " + what + ": " + message);
}

Query SqliteConnection::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return Query(it->second.get(), Status::Ok());
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Query(nullptr, Error(rc, std::string("prepare ") + sql));
  }
  auto [entry, inserted] = statements_.emplace(sql, std::make_unique<SqliteStatement>(this, db_, stmt));
  return Query(entry->second.get(), Status::Ok());
}

Status SqliteConnection::Error(int rc, std::string_view what) const {
  std::string message = path() + ": " + std::string(what.substr(0, 120)) + ": " + sqlite3_errmsg(db_);
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return Status::Unavailable(message);
  if (primary == SQLITE_FULL) return Status::NoSpace(message);
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) return Status::Corrupt(message);
  return Status::IoError(message);
}

void SqliteConnection::RestoreSynchronous() {
  if (!relaxed_) return;
  relaxed_ = false;
  // Outside a transaction this cannot fail short of a closed connection; the next
  // durable write would then fail too and report it.
  (void)Exec("PRAGMA synchronous = FULL");
}

Status SqliteConnection::Begin(Durability durability) {
  if (durability == Durability::kDeferred && durable()) {
    PXS_RETURN_IF_ERROR(Exec("PRAGMA synchronous = NORMAL"));
    relaxed_ = true;
  }
  Status begun = Exec("BEGIN IMMEDIATE");
  if (!begun.ok()) RestoreSynchronous();
  return begun;
}

Status SqliteConnection::Commit() {
  Status status = Exec("COMMIT");
  // A failed COMMIT leaves the transaction open (e.g. SQLITE_BUSY); the guard then
  // rolls it back.
  if (status.ok()) RestoreSynchronous();
  return status;
}

void SqliteConnection::Rollback() {
  (void)Exec("ROLLBACK");
  RestoreSynchronous();
}

StatusOr<std::string> SqliteConnection::IntegrityCheck() {
  Query q = Prepare("PRAGMA quick_check");
  std::string result;
  while (true) {
    StatusOr<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!*row) return result;
    result += (result.empty() ? "" : "; ") + q.Text(0);
  }
}

}  // namespace pxs::sqlite
