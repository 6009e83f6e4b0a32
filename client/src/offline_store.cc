#include "fedge/client/offline_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <span>
#include <system_error>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "fedge/privacy/secagg/crypto.h"
#include "fedge/proto/atomic_file.h"

namespace fedge::client {
namespace {

namespace fs = std::filesystem;
namespace secagg = fedge::privacy::secagg;

constexpr std::string_view kFormatTag{"fedge/pending-update/v1\0", 24};
constexpr char kFilePrefix[] = "pending-";
constexpr char kFileSuffix[] = ".upd";
// Hex-encoded in the file name, which must stay below NAME_MAX (255).
constexpr size_t kMaxClientIdSize = 100;

template <typename T>
void AppendLittleEndian(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // fedge targets little-endian hosts only
  out.append(bytes, sizeof(T));
}

template <typename T>
T ReadLittleEndian(std::string_view bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The authenticated header of a pending update file (see offline_store.h).
std::string Header(uint64_t round, uint64_t model_version, const std::string& client_id) {
  std::string header(kFormatTag);
  AppendLittleEndian<uint64_t>(header, round);
  AppendLittleEndian<uint64_t>(header, model_version);
  AppendLittleEndian<uint32_t>(header, static_cast<uint32_t>(client_id.size()));
  header.append(client_id);
  return header;
}

struct ParsedFile {
  uint64_t round = 0;
  uint64_t model_version = 0;
  std::string client_id;
  std::string_view header;  // the associated data
  std::string_view nonce;
  std::string_view sealed;
};

absl::StatusOr<ParsedFile> ParseFile(std::string_view bytes, const fs::path& path) {
  auto corrupt = [&](std::string_view what) {
    return absl::DataLossError(
        absl::StrCat("pending update file '", path.string(), "' is corrupt: ", std::string(what)));
  };
  if (bytes.substr(0, kFormatTag.size()) != kFormatTag) {
    return corrupt("it does not start with the fedge/pending-update/v1 tag");
  }
  constexpr size_t kFixed = kFormatTag.size() + 8 + 8 + 4;
  if (bytes.size() < kFixed) return corrupt("truncated header");
  ParsedFile file;
  file.round = ReadLittleEndian<uint64_t>(bytes, kFormatTag.size());
  file.model_version = ReadLittleEndian<uint64_t>(bytes, kFormatTag.size() + 8);
  const uint32_t id_size = ReadLittleEndian<uint32_t>(bytes, kFormatTag.size() + 16);
  if (bytes.size() - kFixed <
      static_cast<size_t>(id_size) + secagg::kGcmNonceSize + secagg::kGcmTagSize) {
    return corrupt(absl::StrCat("truncated (", bytes.size(), " bytes)"));
  }
  file.client_id = std::string(bytes.substr(kFixed, id_size));
  file.header = bytes.substr(0, kFixed + id_size);
  file.nonce = bytes.substr(file.header.size(), secagg::kGcmNonceSize);
  file.sealed = bytes.substr(file.header.size() + secagg::kGcmNonceSize);
  return file;
}

// The round in a "pending-<round>-<hex>.upd" file name; nullopt for other names.
std::optional<uint64_t> RoundOfFileName(const std::string& name) {
  const std::string_view prefix(kFilePrefix), suffix(kFileSuffix);
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) ||
      !name.ends_with(suffix)) {
    return std::nullopt;
  }
  const std::string middle =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  const size_t dash = middle.find('-');
  uint64_t round = 0;
  if (dash == std::string::npos || !absl::SimpleAtoi(middle.substr(0, dash), &round)) {
    return std::nullopt;
  }
  return round;
}

absl::Status FsError(const std::error_code& error, const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", error.message()));
}

absl::Status SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open '", dir.string(), "' to fsync it: ", std::strerror(errno)));
  }
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (result != 0) {
    return absl::InternalError(
        absl::StrCat("cannot fsync '", dir.string(), "': ", std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace

// --- FileKeyProvider -------------------------------------------------------

absl::StatusOr<StoreKey> FileKeyProvider::GetKey() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (key_.has_value()) return *key_;
  absl::StatusOr<StoreKey> key = ReadKey();
  if (absl::IsNotFound(key.status())) key = CreateKey();
  if (key.ok()) key_ = *key;
  return key;
}

absl::StatusOr<StoreKey> FileKeyProvider::ReadKey() {
  const std::string name = path_.string();
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return absl::NotFoundError(absl::StrCat("no key file '", name, "'"));
    if (error == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat("key file '", name, "' is a symbolic link; refusing to follow it"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open key file '", name, "': ", std::strerror(error)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot stat key file '", name, "': ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("key file '", name, "' is not a regular file"));
  }
  if (info.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(absl::StrCat("key file '", name, "' is owned by uid ",
                                                      info.st_uid, ", not by this user (uid ",
                                                      ::geteuid(), ")"));
  }
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return absl::FailedPreconditionError(absl::StrCat(
        "key file '", name, "' has mode ", mode,
        ": group or others may access it; it must be 0600 (chmod 600 '", name, "') or replaced"));
  }
  if (info.st_size != static_cast<off_t>(kStoreKeySize)) {
    return absl::DataLossError(absl::StrCat("key file '", name, "' holds ", info.st_size,
                                            " bytes; a store key is exactly ", kStoreKeySize,
                                            " raw bytes"));
  }
  StoreKey key;
  size_t done = 0;
  while (done < key.size()) {
    const ssize_t n = ::read(fd, key.data() + done, key.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::DataLossError(
          absl::StrCat("cannot read the ", kStoreKeySize, " bytes of key file '", name, "'"));
    }
    done += static_cast<size_t>(n);
  }
  return key;
}

absl::StatusOr<StoreKey> FileKeyProvider::CreateKey() {
  StoreKey key;
  if (absl::Status s = secagg::RandomBytes(key); !s.ok()) return s;
  // Write a complete, synced file under a private name, then link it into
  // place: link fails with EEXIST if another process created the key first,
  // and then that key is the one to use.
  fs::path temp = path_;
  temp += absl::StrCat(".new-", ::getpid());
  const std::string_view bytes(reinterpret_cast<const char*>(key.data()), key.size());
  if (absl::Status s = proto::WriteFileAtomic(temp, bytes, 0600); !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("cannot create key file '", path_.string(), "': ", s.message()));
  }
  const int linked = ::link(temp.c_str(), path_.c_str());
  const int error = errno;
  ::unlink(temp.c_str());
  if (linked != 0) {
    if (error == EEXIST) return ReadKey();
    return absl::InternalError(absl::StrCat("cannot create key file '", path_.string(),
                                            "': link: ", std::strerror(error)));
  }
  fs::path dir = path_.parent_path();
  if (dir.empty()) dir = ".";
  if (absl::Status s = SyncDirectory(dir); !s.ok()) return s;
  return key;
}

// --- PendingUpdateStore ----------------------------------------------------

PendingUpdateStore::PendingUpdateStore(fs::path dir, KeyProvider* keys)
    : dir_(std::move(dir)), keys_(keys) {}

fs::path PendingUpdateStore::PathFor(uint64_t round, const std::string& client_id) const {
  return dir_ /
         absl::StrCat(kFilePrefix, round, "-", absl::BytesToHexString(client_id), kFileSuffix);
}

absl::Status PendingUpdateStore::Put(const v1::EncodedUpdate& update) {
  if (update.client_id().empty()) {
    return absl::InvalidArgumentError("pending update has an empty client_id");
  }
  if (update.client_id().size() > kMaxClientIdSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pending update client_id is ", update.client_id().size(),
        " bytes; the store names files after it and allows at most ", kMaxClientIdSize));
  }
  absl::StatusOr<StoreKey> key = keys_->GetKey();
  if (!key.ok()) return key.status();
  std::error_code error;
  if (!fs::is_directory(dir_, error)) {
    if (!fs::create_directories(dir_, error) && error) {
      return FsError(error,
                     absl::StrCat("cannot create the store directory '", dir_.string(), "'"));
    }
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace, error);
    if (error) return FsError(error, absl::StrCat("cannot chmod 700 '", dir_.string(), "'"));
  }

  const std::string header = Header(update.round(), update.model_version(), update.client_id());
  std::array<uint8_t, secagg::kGcmNonceSize> nonce;
  if (absl::Status s = secagg::RandomBytes(nonce); !s.ok()) return s;
  std::string plaintext;
  if (!update.SerializeToString(&plaintext)) {
    return absl::InternalError("cannot serialize the pending update");
  }
  absl::StatusOr<std::vector<uint8_t>> sealed =
      secagg::AesGcmSeal(*key, nonce, Bytes(plaintext), Bytes(header));
  // Best effort: do not leave the plaintext copy in freed memory.
  std::fill(plaintext.begin(), plaintext.end(), '\0');
  if (!sealed.ok()) return sealed.status();

  std::string file = header;
  file.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  file.append(reinterpret_cast<const char*>(sealed->data()), sealed->size());
  return proto::WriteFileAtomic(PathFor(update.round(), update.client_id()), file, 0600);
}

absl::StatusOr<std::vector<v1::EncodedUpdate>> PendingUpdateStore::List() const {
  std::vector<v1::EncodedUpdate> updates;
  std::error_code error;
  if (!fs::exists(dir_, error)) return updates;
  std::vector<fs::path> paths;
  for (fs::directory_iterator it(dir_, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (RoundOfFileName(name).has_value()) paths.push_back(it->path());
  }
  if (error) return FsError(error, absl::StrCat("cannot list '", dir_.string(), "'"));
  if (paths.empty()) return updates;

  absl::StatusOr<StoreKey> key = keys_->GetKey();
  if (!key.ok()) return key.status();
  for (const fs::path& path : paths) {
    absl::StatusOr<std::string> bytes = proto::ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<ParsedFile> file = ParseFile(*bytes, path);
    if (!file.ok()) return file.status();
    absl::StatusOr<std::vector<uint8_t>> plaintext =
        secagg::AesGcmOpen(*key, Bytes(file->nonce), Bytes(file->sealed), Bytes(file->header));
    if (!plaintext.ok()) {
      return absl::DataLossError(
          absl::StrCat("pending update file '", path.string(),
                       "' failed authentication (altered bytes or another key): ",
                       plaintext.status().message()));
    }
    v1::EncodedUpdate update;
    const bool parsed =
        update.ParseFromArray(plaintext->data(), static_cast<int>(plaintext->size()));
    std::fill(plaintext->begin(), plaintext->end(), 0);
    if (!parsed || update.round() != file->round || update.model_version() != file->model_version ||
        update.client_id() != file->client_id || path != PathFor(file->round, file->client_id)) {
      return absl::DataLossError(absl::StrCat("pending update file '", path.string(),
                                              "' does not match its header or file name"));
    }
    updates.push_back(std::move(update));
  }
  std::sort(updates.begin(), updates.end(), [](const auto& a, const auto& b) {
    return std::forward_as_tuple(a.round(), a.client_id()) <
           std::forward_as_tuple(b.round(), b.client_id());
  });
  return updates;
}

absl::Status PendingUpdateStore::Remove(uint64_t round) {
  std::error_code error;
  if (!fs::exists(dir_, error)) return absl::OkStatus();
  std::vector<fs::path> doomed;
  for (fs::directory_iterator it(dir_, error), end; !error && it != end; it.increment(error)) {
    if (RoundOfFileName(it->path().filename().string()) == round) doomed.push_back(it->path());
  }
  if (error) return FsError(error, absl::StrCat("cannot list '", dir_.string(), "'"));
  if (doomed.empty()) return absl::OkStatus();
  for (const fs::path& path : doomed) {
    if (!fs::remove(path, error) && error) {
      return FsError(error, absl::StrCat("cannot remove '", path.string(), "'"));
    }
  }
  return SyncDirectory(dir_);
}

// --- Backoff ---------------------------------------------------------------

absl::StatusOr<Backoff> Backoff::Create(const BackoffOptions& options, uint64_t seed) {
  if (options.base.count() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BackoffOptions.base must be > 0 ms, got ", options.base.count()));
  }
  if (options.cap < options.base) {
    return absl::InvalidArgumentError(absl::StrCat("BackoffOptions.cap (", options.cap.count(),
                                                   " ms) must be >= base (", options.base.count(),
                                                   " ms)"));
  }
  if (!std::isfinite(options.multiplier) || options.multiplier < 1.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BackoffOptions.multiplier must be finite and >= 1, got ", options.multiplier));
  }
  return Backoff(options, seed);
}

std::chrono::milliseconds Backoff::Ceiling() const {
  const double ceiling = static_cast<double>(options_.base.count()) *
                         std::pow(options_.multiplier, static_cast<double>(attempt_));
  const double cap = static_cast<double>(options_.cap.count());
  return std::chrono::milliseconds(
      static_cast<int64_t>(std::isfinite(ceiling) ? std::min(ceiling, cap) : cap));
}

std::chrono::milliseconds Backoff::Next() {
  const int64_t ceiling = Ceiling().count();
  ++attempt_;
  std::uniform_int_distribution<int64_t> delay(0, ceiling);
  return std::chrono::milliseconds(delay(rng_));
}

}  // namespace fedge::client
