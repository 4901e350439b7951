// pxs::Status: the result of an operation that can fail, as a value (no exceptions
// across module boundaries). A Status is ok() or carries a Code and a message that
// names what failed (file, key, row, UID) so it can be logged or shown as is.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace pxs {

// [[nodiscard]]: a Status that nobody looks at is a lost error; discard one on purpose
// with (void) and a comment saying why.
class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,   // bad input: config key, CLI argument, malformed data set
    kNotFound,          // a file, row or UID that does not exist
    kAlreadyExists,     // e.g. a SOP Instance UID already stored (idempotent re-send)
    kIoError,           // the file system or database failed
    kNoSpace,           // ENOSPC or below the configured free-space floor
    kUnsupported,       // valid but not handled (SOP class, transfer syntax, colour image)
    kCorrupt,           // data that cannot be parsed or decoded
    kUnavailable,       // transient: peer down, busy; worth retrying
    kInternal,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status AlreadyExists(std::string m) { return Status(Code::kAlreadyExists, std::move(m)); }
  static Status IoError(std::string m) { return Status(Code::kIoError, std::move(m)); }
  static Status NoSpace(std::string m) { return Status(Code::kNoSpace, std::move(m)); }
  static Status Unsupported(std::string m) { return Status(Code::kUnsupported, std::move(m)); }
  static Status Corrupt(std::string m) { return Status(Code::kCorrupt, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ok" or "<code name>: <message>"
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

const char* StatusCodeName(Status::Code code);

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {}  // NOLINT: must not be ok()
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_ = Status::Internal("StatusOr holds no value");
};

#define PXS_RETURN_IF_ERROR(expr)             \
  do {                                        \
    ::pxs::Status pxs_status__ = (expr);      \
    if (!pxs_status__.ok()) return pxs_status__; \
  } while (0)

// PXS_ASSIGN_OR_RETURN(auto rows, db->Rows()); declares `rows` from a StatusOr's value,
// or returns its Status from the enclosing function.
#define PXS_STATUS_CONCAT_INNER_(a, b) a##b
#define PXS_STATUS_CONCAT_(a, b) PXS_STATUS_CONCAT_INNER_(a, b)
#define PXS_ASSIGN_OR_RETURN(lhs, expr) \
  PXS_ASSIGN_OR_RETURN_IMPL_(PXS_STATUS_CONCAT_(pxs_statusor__, __LINE__), lhs, expr)
#define PXS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

}  // namespace pxs
