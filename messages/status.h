// Status and Result<T>: errors as values across module boundaries.
// A Status carries a wire error code (ErrorCode) and a human-readable detail
// that names the offending field or resource. Cheap to copy when OK.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

#include "messages/error_code.h"

namespace zchat {

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string detail)
      : code_(code), detail_(std::move(detail)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& detail() const { return detail_; }
  // "code_name: detail", for logs.
  std::string ToString() const;
  // Says, where a failure can only be dropped (a ROLLBACK on a path that is
  // already failing), that it is dropped on purpose.
  void IgnoreError() const {}

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string detail_;
};

// Either a value or a non-OK Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace zchat
