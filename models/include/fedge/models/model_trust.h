// What a device accepts as its next model, beyond one artifact's signature
// (signing.h): key rotation and downgrade protection. LibTorch-free.
//
// Key rotation. A device pins one root key. The aggregator rotates its
// signing key by publishing a KeyEndorsement of the new key signed by the
// current one; a chain of them leads from the root to the key that signs
// new versions. A device follows the chain link by link (FollowKeyChain)
// and trusts exactly the keys it reaches; a key that does not chain to its
// pinned root is refused, whatever else vouches for it.
//
// Downgrades. A device refuses a version older than the one it runs: an
// attacker who can replay old, correctly signed artifacts (a compromised
// mirror, a man in the middle of a plaintext or misconfigured link) cannot
// push a device back to a version with known flaws. The aggregator lifts
// this for one version with a signed RollbackRecord {version, supersedes}:
// devices running any version <= supersedes may run `version`.
//
// Signed messages, each Ed25519 (RFC 8032) over a domain tag, a NUL byte
// and the deterministic serialization of the message with its signature
// field cleared:
//   "fedge/key-endorsement/v1"   a KeyEndorsement
//   "fedge/rollback/v1"          a RollbackRecord
// The tags keep one kind of signed message from being valid as another
// (or as an artifact, "fedge/artifact/v1").
//
// Thread safety: ModelTrust is not synchronized; its owner locks.
#ifndef FEDGE_MODELS_MODEL_TRUST_H_
#define FEDGE_MODELS_MODEL_TRUST_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/models/signing.h"
#include "fedge/v1/model.pb.h"

namespace fedge::models {

// An endorsement of `next` by `current`, issued at `now_unix_ms`.
absl::StatusOr<v1::KeyEndorsement> EndorseKey(const SigningKey& current, const VerifyingKey& next,
                                              int64_t now_unix_ms);

// A rollback record for `version` over versions up to `supersedes`.
// INVALID_ARGUMENT unless version < supersedes.
absl::StatusOr<v1::RollbackRecord> SignRollback(const SigningKey& key, uint64_t version,
                                                uint64_t supersedes, int64_t now_unix_ms);

// The keys `chain` leads to from `root`, root first. Link i must be signed
// by the key link i-1 endorsed (the root for link 0) and name a well-formed
// key whose id matches it; else UNAUTHENTICATED naming the link.
absl::StatusOr<std::vector<VerifyingKey>> FollowKeyChain(
    const VerifyingKey& root, std::span<const v1::KeyEndorsement> chain);

// A key chain file (v1::KeyChain); an absent file is an empty chain.
// DATA_LOSS when it does not parse.
absl::StatusOr<v1::KeyChain> LoadKeyChain(const std::filesystem::path& path);
// Appends an endorsement of `next` by `current` to the chain file,
// atomically. FAILED_PRECONDITION when the chain is not empty and
// `current` is not the key its last link endorsed (an empty chain starts at
// `current`, which must then be the key devices pin).
absl::Status AppendToKeyChain(const std::filesystem::path& path, const SigningKey& current,
                              const VerifyingKey& next, int64_t now_unix_ms);

// A device's trust state: the keys it trusts and the version it runs.
class ModelTrust {
 public:
  explicit ModelTrust(VerifyingKey root);

  // Replaces the trusted keys with those `chain` reaches from the root, and
  // checks that `signer_id` (the key the aggregator says it signs with) is
  // the chain's last key. On error the trusted keys are unchanged.
  absl::Status AdoptChain(std::span<const v1::KeyEndorsement> chain, const std::string& signer_id);

  // Accepts `artifact` as the model to run when it is signed by a trusted
  // key and intact (VerifySignedArtifact), and its version is not older
  // than the one running, or `rollback` (may be null) is a record signed by
  // a trusted key with version == the artifact's and supersedes >= the
  // running one. FAILED_PRECONDITION for a refused downgrade; the errors of
  // VerifySignedArtifact otherwise. On success the artifact's version is the
  // running one.
  absl::Status Accept(const v1::ModelArtifact& artifact, const v1::RollbackRecord* rollback);

  // Sets the running version (a device that restored its model from disk).
  void SetRunning(uint64_t version) { running_ = version; }
  std::optional<uint64_t> running() const { return running_; }
  const std::vector<VerifyingKey>& trusted() const { return trusted_; }

 private:
  VerifyingKey root_;
  std::vector<VerifyingKey> trusted_;
  std::optional<uint64_t> running_;
};

}  // namespace fedge::models

#endif  // FEDGE_MODELS_MODEL_TRUST_H_
