// A device's offline store: updates that could not be sent yet, encrypted at
// rest, and the retry schedule for sending them. LibTorch-free.
//
//   KeyProvider         where the 32-byte store key comes from (a file
//                       beside the store, an app, a hardware keystore)
//   PendingUpdateStore  one encrypted file per pending (round, client) update
//   Backoff             exponential backoff with full jitter between retries
//
// File format of a pending update (all integers little-endian):
//
//   header  "fedge/pending-update/v1" 0x00
//           round u64 | model_version u64 | client_id length u32 | client_id
//   nonce   12 random bytes (RAND_bytes; fresh for every write)
//   sealed  AES-256-GCM(key, nonce, plaintext = serialized EncodedUpdate,
//                       associated data = header) || 16-byte tag
//
// The header is in the clear (it names the update, as the file name does) and
// authenticated as associated data; the update itself, payload and metrics,
// is only ever written encrypted. A file renamed to another round, edited,
// truncated, or opened with another key fails authentication or the
// consistency checks and is reported as DATA_LOSS naming the file; it is left
// on disk for the app to inspect or Remove. Every write is atomic
// (fedge/proto/atomic_file.h) with mode 0600.
//
// Random nonces: with 96-bit random nonces the chance of a repeat stays below
// 2^-32 for 2^32 writes under one key, far more updates than a device makes.
#ifndef FEDGE_CLIENT_OFFLINE_STORE_H_
#define FEDGE_CLIENT_OFFLINE_STORE_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::client {

inline constexpr std::size_t kStoreKeySize = 32;
using StoreKey = std::array<std::uint8_t, kStoreKeySize>;

// The source of the AES-256 key of a PendingUpdateStore. Implement it to take
// the key from a hardware keystore (Android Keystore, iOS Keychain, a TPM).
// GetKey returns the same key every time for the same store; errors are the
// provider's and are passed through unchanged. Implementations must be safe
// to call from the threads that use the store.
class KeyProvider {
 public:
  virtual ~KeyProvider() = default;
  virtual absl::StatusOr<StoreKey> GetKey() = 0;
};

// A key held by the caller (tests, apps with their own key management).
class StaticKeyProvider final : public KeyProvider {
 public:
  explicit StaticKeyProvider(const StoreKey& key) : key_(key) {}
  absl::StatusOr<StoreKey> GetKey() override { return key_; }

 private:
  StoreKey key_;
};

// A key in a file of exactly 32 raw bytes. On first use, when the file does
// not exist, it is created with 32 bytes from RAND_bytes, mode 0600, written
// atomically and linked into place exclusively (of two processes creating it
// at once, both end up with the one key that won). An existing file must be
// a regular file owned by the current user, with no group or other
// permission bits, and exactly 32 bytes: otherwise FAILED_PRECONDITION
// (permissions, owner, not a regular file) or DATA_LOSS (size), naming the
// file and what is wrong, and the file is left as it is. The key is read
// once and then cached. Thread-safe.
class FileKeyProvider final : public KeyProvider {
 public:
  explicit FileKeyProvider(std::filesystem::path path) : path_(std::move(path)) {}
  absl::StatusOr<StoreKey> GetKey() override;

  const std::filesystem::path& path() const { return path_; }

 private:
  absl::StatusOr<StoreKey> ReadKey();
  absl::StatusOr<StoreKey> CreateKey();

  std::filesystem::path path_;
  std::mutex mutex_;
  std::optional<StoreKey> key_;  // guarded by mutex_
};

// Pending updates of one device, one file per (round, client id) in `dir`:
// "pending-<round>-<hex of client id>.upd". Thread safety: none; one store
// per directory and process. Does not own `keys`, which must outlive it.
class PendingUpdateStore {
 public:
  // REQUIRES: keys != nullptr. Nothing is touched until the first call; Put
  // creates `dir` (mode 0700) when it does not exist.
  PendingUpdateStore(std::filesystem::path dir, KeyProvider* keys);

  // Encrypts and writes `update`, replacing an earlier pending update of the
  // same round and client. INVALID_ARGUMENT when client_id is empty or longer
  // than 100 bytes (it is hex-encoded into the file name); errors
  // of the key provider and of the write are passed through (the old file,
  // if any, is then unchanged).
  absl::Status Put(const v1::EncodedUpdate& update);

  // Every pending update, ordered by round, then client id. An empty or
  // missing directory gives an empty list. DATA_LOSS, naming the file, when a
  // file fails to decrypt (altered, truncated, another key) or its content
  // does not match its header or name; nothing is deleted.
  absl::StatusOr<std::vector<v1::EncodedUpdate>> List() const;

  // Deletes the pending updates of `round` (every client's), e.g. once the
  // aggregator acknowledged them. OK when there are none (so a retry after a
  // crash is harmless).
  absl::Status Remove(std::uint64_t round);

  // The file Put writes for (round, client_id).
  std::filesystem::path PathFor(std::uint64_t round, const std::string& client_id) const;

 private:
  std::filesystem::path dir_;
  KeyProvider* keys_;
};

struct BackoffOptions {
  // The ceiling of the first delay. Default: 500 ms. REQUIRES: > 0.
  std::chrono::milliseconds base{500};
  // No delay exceeds this. Default: 60 s. REQUIRES: >= base.
  std::chrono::milliseconds cap{60'000};
  // Growth of the ceiling per attempt. Default: 2. REQUIRES: >= 1, finite.
  double multiplier = 2.0;
};

// Exponential backoff with full jitter (the "Full Jitter" scheme of AWS's
// "Exponential Backoff and Jitter"): the n-th delay since the last Reset
// (n = 0, 1, ...) is uniform on the integers [0, min(cap, base *
// multiplier^n)] milliseconds. Full jitter spreads devices that lost the
// aggregator at the same moment so they do not all reconnect at once.
// Deterministic for a given seed. Thread safety: none.
class Backoff {
 public:
  // INVALID_ARGUMENT names the offending option. Seed it from
  // std::random_device in production and with a constant in tests.
  static absl::StatusOr<Backoff> Create(const BackoffOptions& options, std::uint64_t seed);

  // The delay before the next attempt; advances the attempt count.
  std::chrono::milliseconds Next();
  // Back to the first delay's ceiling, e.g. after a successful send.
  void Reset() { attempt_ = 0; }
  // Delays handed out since the last Reset (n of the next delay).
  int attempt() const { return attempt_; }
  // The upper bound of the next delay.
  std::chrono::milliseconds Ceiling() const;

 private:
  Backoff(const BackoffOptions& options, std::uint64_t seed) : options_(options), rng_(seed) {}

  BackoffOptions options_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_OFFLINE_STORE_H_
