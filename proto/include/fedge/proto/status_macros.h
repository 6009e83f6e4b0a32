// Status propagation helpers shared by every fedge module.
//
// Errors that cross a module boundary are absl::Status / absl::StatusOr<T>.
// These macros keep the happy path readable:
//
//   FEDGE_RETURN_IF_ERROR(file.Write(bytes));
//   FEDGE_ASSIGN_OR_RETURN(auto dataset, ReadIdx(path));
#ifndef FEDGE_PROTO_STATUS_MACROS_H_
#define FEDGE_PROTO_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FEDGE_STATUS_CONCAT_INNER_(a, b) a##b
#define FEDGE_STATUS_CONCAT_(a, b) FEDGE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// when it is not OK.
#define FEDGE_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::absl::Status fedge_status_ = (expr);           \
    if (!fedge_status_.ok()) return fedge_status_;   \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise move-assigns the value to `lhs` (which may be a declaration).
#define FEDGE_ASSIGN_OR_RETURN(lhs, rexpr) \
  FEDGE_ASSIGN_OR_RETURN_IMPL_(FEDGE_STATUS_CONCAT_(fedge_statusor_, __LINE__), lhs, rexpr)

#define FEDGE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // FEDGE_PROTO_STATUS_MACROS_H_
