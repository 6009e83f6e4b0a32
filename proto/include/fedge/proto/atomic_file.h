// Crash-safe whole-file writes and whole-file reads.
//
// WriteFileAtomic gives the guarantee every fedge state file relies on
// (DESIGN.md, "Files on disk"): after a crash or kill -9 at any point, `path`
// holds either its old content or the complete new content, never a mix or a
// truncated file. It writes a temporary file in the same directory (so the
// rename cannot cross file systems), fsyncs it, renames it over `path` and
// fsyncs the directory so the rename itself is durable.
//
// Thread safety: concurrent writers of different paths are fine; concurrent
// writers of the same path each leave a complete file, last rename wins.
#ifndef FEDGE_PROTO_ATOMIC_FILE_H_
#define FEDGE_PROTO_ATOMIC_FILE_H_

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::proto {

// Replaces the content of `path` with `bytes`, atomically and durably (see
// above). The file gets permission bits `mode` (applied with fchmod, so the
// umask does not weaken or widen them) before any byte is written; a key
// written with 0600 is never readable by others, not even briefly.
// On any error the temporary file is removed and `path` is unchanged, except
// when only the final directory fsync fails: the new content is then in place
// but may not survive a crash, and the message says so. Errors
// name the path and the failing system call: NOT_FOUND when the directory
// does not exist, PERMISSION_DENIED when it cannot be written, INTERNAL for
// other I/O failures (disk full, ...).
absl::Status WriteFileAtomic(const std::filesystem::path& path, std::string_view bytes,
                             mode_t mode = 0644);

// The whole content of `path`. NOT_FOUND (naming the path) when it does not
// exist, PERMISSION_DENIED when it cannot be read, FAILED_PRECONDITION when it
// is not a regular file, INTERNAL for other read errors.
absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path);

}  // namespace fedge::proto

#endif  // FEDGE_PROTO_ATOMIC_FILE_H_
