// A small JSON reader for metadata.json. scoring/ must build with LibTorch alone
// (PXS_SCORING_ONLY), so it cannot use nlohmann_json; the metadata is small and
// trusted to be JSON, but a malformed file still gets a clear error, never a crash.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs::scoring::json {

struct Value {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  bool is_null() const { return type == Type::kNull; }
  // The member `key` of an object, or nullptr (also when this is not an object).
  const Value* Find(const std::string& key) const;
};

// Parses a whole document; the error gives the byte offset of the problem.
StatusOr<Value> Parse(const std::string& text);

}  // namespace pxs::scoring::json
