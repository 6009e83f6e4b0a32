#include "fedge/proto/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fedge::proto {
namespace {

absl::Status ErrnoError(int error, const std::string& what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Closes a descriptor on scope exit unless released.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports close's errno (0 on success); NFS and some file
  // systems report deferred write errors only here.
  int Close() {
    int result = ::close(fd_) == 0 ? 0 : errno;
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& name) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("write to ", name));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomic(const std::filesystem::path& path, std::string_view bytes,
                             mode_t mode) {
  if (path.filename().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write '", path.string(), "': the path names no file"));
  }
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  // mkstemp creates the file 0600 and O_EXCL: no other process can have it open.
  std::string temp = (dir / absl::StrCat(".", path.filename().string(), ".tmp-XXXXXX")).string();
  std::vector<char> temp_buffer(temp.begin(), temp.end());
  temp_buffer.push_back('\0');
  int fd = ::mkstemp(temp_buffer.data());
  if (fd < 0) {
    return ErrnoError(errno, absl::StrCat("cannot write '", path.string(),
                                          "': creating a temporary file in '", dir.string(), "'"));
  }
  temp.assign(temp_buffer.data());
  FileDescriptor file(fd);
  auto fail = [&](absl::Status status) {
    ::unlink(temp.c_str());
    return status;
  };
  if (::fchmod(file.get(), mode) != 0) {
    return fail(ErrnoError(errno, absl::StrCat("cannot write '", path.string(), "': fchmod")));
  }
  if (absl::Status s = WriteAll(file.get(), bytes, absl::StrCat("'", temp, "'")); !s.ok()) {
    return fail(
        absl::Status(s.code(), absl::StrCat("cannot write '", path.string(), "': ", s.message())));
  }
  if (::fsync(file.get()) != 0) {
    return fail(ErrnoError(errno, absl::StrCat("cannot write '", path.string(), "': fsync")));
  }
  if (int error = file.Close(); error != 0) {
    return fail(ErrnoError(error, absl::StrCat("cannot write '", path.string(), "': close")));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return fail(ErrnoError(errno, absl::StrCat("cannot write '", path.string(), "': rename")));
  }
  // The new content is in place; make the directory entry durable too.
  FileDescriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) {
    return ErrnoError(errno, absl::StrCat("wrote '", path.string(), "' but could not fsync '",
                                          dir.string(), "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  FileDescriptor file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.get() < 0) return ErrnoError(errno, absl::StrCat("cannot read '", path.string(), "'"));
  struct stat info;
  if (::fstat(file.get(), &info) != 0) {
    return ErrnoError(errno, absl::StrCat("cannot read '", path.string(), "': fstat"));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read '", path.string(), "': not a regular file"));
  }
  std::string content;
  content.reserve(static_cast<size_t>(info.st_size));
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(file.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("cannot read '", path.string(), "'"));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  return content;
}

}  // namespace fedge::proto
