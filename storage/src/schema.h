// The database schema, its version and the forward migrations (private to storage/).
#pragma once

#include <memory>
#include <string>

#include "pxs/storage/database.h"
#include "sqlite.h"

namespace pxs::sqlite {

// Opens a connection configured for this node (WAL, synchronous=FULL, foreign keys,
// busy_timeout). kReadWrite creates the file and applies pending migrations;
// kReadOnly requires the current schema. A schema newer than this binary's is
// refused in both modes. durable=false (synchronous=OFF) is for benchmarks only.
StatusOr<std::unique_ptr<Connection>> OpenNodeDatabase(const std::string& path, Database::Mode mode,
                                                       bool durable = true);

// Creates (or brings) a database file at exactly `version` of the schema, for
// migration tests: the file can then be filled as an older release would have.
Status CreateAtSchemaVersionForTest(const std::string& path, int version);

}  // namespace pxs::sqlite
