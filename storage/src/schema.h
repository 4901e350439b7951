// The database schema, its version and the forward migrations (private to storage/),
// for both backends of the seam (backend.h): one definition per migration (schema.cc),
// expanded for SQLite or PostgreSQL, versioned the same way: migration N takes either
// engine from version N-1 to N.
#pragma once

#include <memory>
#include <string>

#include "pxs/storage/database.h"
#include "sqlite.h"

namespace pxs::sqlite {  // the name predates the PostgreSQL backend; both open here

// Opens a connection configured for this node. location is a SQLite file path (or
// "sqlite:PATH") or a postgresql:// URL. kReadWrite creates the database (SQLite: the
// file) and applies pending migrations; kReadOnly requires the current schema. A schema
// newer than this binary's is refused in both modes. durable=false (SQLite
// synchronous=OFF, PostgreSQL synchronous_commit=off) is for benchmarks only.
StatusOr<std::unique_ptr<Connection>> OpenNodeDatabase(const DatabaseOptions& options, Database::Mode mode,
                                                       bool durable = true);
inline StatusOr<std::unique_ptr<Connection>> OpenNodeDatabase(const std::string& location, Database::Mode mode,
                                                              bool durable = true) {
  DatabaseOptions options;
  options.url = location;
  return OpenNodeDatabase(options, mode, durable);
}

// A connection without the node's settings or migrations (to read the version).
StatusOr<std::unique_ptr<Connection>> OpenDatabaseConnection(const DatabaseOptions& options, bool read_only,
                                                             bool durable = true);

// The schema version of an existing database (0 when it has no schema yet).
StatusOr<int> ReadVersion(Connection& conn);

// Creates (or brings) a database at exactly `version` of the schema, for migration
// tests: it can then be filled as an older release would have.
Status CreateAtSchemaVersionForTest(const std::string& location, int version);

}  // namespace pxs::sqlite
