// Ed25519 signing of model artifacts (secure OTA; DESIGN.md, "Security
// model"). LibTorch-free; all cryptography is OpenSSL 3's.
//
// The aggregator holds a SigningKey and signs every published artifact; a
// device pins the aggregator's VerifyingKey (shipped with the app or
// provisioned at enrollment) and refuses any artifact VerifySignedArtifact
// does not accept.
//
// What is signed. The signature is Ed25519 (RFC 8032, pure, no prehash) over
//
//   message = "fedge/artifact/v1" || 0x00 || H
//
// where H is the deterministic protobuf serialization
// (SerializeToString with SetSerializationDeterministic(true): fields in
// field-number order, map entries sorted by key) of the artifact's
// ArtifactHeader. The header holds tensors_sha256 (artifact.h defines it over
// every tensor's name, shape, encoding, scales, zero points, data and mask),
// so the signature covers the tensors through that hash, and it covers every
// other header field directly: version, parent, architecture, encoding,
// created_at, metrics and activation ranges. The fields signature and
// signing_key_id are outside the message. The domain tag keeps a fedge
// artifact signature from being valid for any other fedge message signed with
// the same key. Signer and verifier must serialize the header with the same
// schema; a header field added later must be added in a compatible way
// (protobuf keeps unknown fields and re-serializes them after the known ones,
// so an older verifier still reproduces a newer signer's bytes as long as the
// new fields have higher numbers than all existing ones).
//
// Re-encoding drops the signature: QuantizeArtifact and SparsifyArtifact
// return unsigned artifacts, so sign last, after encoding.
//
// Key files are PEM: PKCS#8 private keys as `openssl genpkey -algorithm
// ed25519` writes them, SubjectPublicKeyInfo public keys as `openssl pkey
// -pubout` writes them. A key id is the first 16 hex digits (8 bytes) of the
// SHA-256 of the raw 32-byte public key; it names the key in an artifact and
// in logs, it is not a secret and not a security boundary (the signature is).
//
// Thread safety: SigningKey and VerifyingKey are immutable after creation;
// their const methods may be called concurrently.
#ifndef FEDGE_MODELS_SIGNING_H_
#define FEDGE_MODELS_SIGNING_H_

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/v1/model.pb.h"

namespace fedge::models {

inline constexpr std::size_t kEd25519PublicKeySize = 32;
inline constexpr std::size_t kEd25519SignatureSize = 64;
// The domain tag that starts every signed artifact message (see above).
inline constexpr std::string_view kArtifactSignatureDomain = "fedge/artifact/v1";

// An Ed25519 public key. Copyable; holds only the 32 raw bytes.
class VerifyingKey {
 public:
  // INVALID_ARGUMENT unless `raw` is 32 bytes.
  static absl::StatusOr<VerifyingKey> FromRaw(std::string_view raw);
  // A SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
  // INVALID_ARGUMENT when it does not parse or holds another key type.
  static absl::StatusOr<VerifyingKey> FromPem(std::string_view pem);
  // FromPem on the content of `path`; errors name the file (NOT_FOUND when it
  // does not exist).
  static absl::StatusOr<VerifyingKey> LoadPem(const std::filesystem::path& path);

  absl::StatusOr<std::string> ToPem() const;
  // Writes ToPem() atomically with mode 0644 (a public key is not secret).
  absl::Status SavePem(const std::filesystem::path& path) const;

  // The 32 raw bytes (RFC 8032 encoding).
  const std::string& raw() const { return raw_; }
  const std::string& key_id() const { return key_id_; }

  // OK when `signature` is a valid Ed25519 signature of `message` by this
  // key. UNAUTHENTICATED when it is not (including a signature that is not
  // 64 bytes): the message cannot be attributed to the key's holder.
  absl::Status Verify(std::string_view message, std::string_view signature) const;

 private:
  VerifyingKey(std::string raw, std::string key_id)
      : raw_(std::move(raw)), key_id_(std::move(key_id)) {}

  std::string raw_;
  std::string key_id_;
};

// An Ed25519 private key. Move-only; the key material lives in an OpenSSL
// EVP_PKEY, which OpenSSL zeroizes when freed. REQUIRES: methods are not
// called on a moved-from object.
class SigningKey {
 public:
  // A fresh key from OpenSSL's CSPRNG.
  static absl::StatusOr<SigningKey> Generate();
  // A PKCS#8 private key PEM ("-----BEGIN PRIVATE KEY-----"), unencrypted.
  // INVALID_ARGUMENT when it does not parse or holds another key type.
  static absl::StatusOr<SigningKey> FromPem(std::string_view pem);
  // FromPem on the content of `path`; errors name the file (NOT_FOUND when it
  // does not exist). File permissions are not checked here.
  static absl::StatusOr<SigningKey> LoadPem(const std::filesystem::path& path);
  // The Ed25519 key a PKCS#11 URI names (fedge/models/pkcs11.h): the
  // private key stays on the token and every Sign is a C_Sign(CKM_EDDSA)
  // there. Errors name the URI's problem, the token or the missing key.
  static absl::StatusOr<SigningKey> FromPkcs11(std::string_view uri);
  // A key reference as configs give it: a "pkcs11:" URI (FromPkcs11) or
  // the path of a PEM file (LoadPem).
  static absl::StatusOr<SigningKey> Load(std::string_view key_ref);

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  // The PKCS#8 PEM. Treat the result as secret. FAILED_PRECONDITION for a
  // token key: it cannot leave the token.
  absl::StatusOr<std::string> ToPem() const;
  // Writes ToPem() atomically with mode 0600.
  absl::Status SavePem(const std::filesystem::path& path) const;

  const std::string& key_id() const { return public_key_.key_id(); }
  const VerifyingKey& public_key() const { return public_key_; }
  // True when the private key is on a PKCS#11 token.
  bool in_token() const;

  // The 64-byte Ed25519 signature of `message`.
  absl::StatusOr<std::string> Sign(std::string_view message) const;

 private:
  struct Key;  // Owns the EVP_PKEY.
  SigningKey(std::unique_ptr<Key> key, VerifyingKey public_key);
  // Derives the public key of `key`.
  static absl::StatusOr<SigningKey> FromKey(std::unique_ptr<Key> key);

  std::unique_ptr<Key> key_;
  VerifyingKey public_key_;
};

// What every fedge signature covers: `domain`, a NUL byte and the
// deterministic serialization of `message` (see above; model_trust.h signs
// its messages the same way under their own domains).
std::string DomainSigningMessage(std::string_view domain,
                                 const google::protobuf::MessageLite& message);

// The message an artifact's signature covers (see above): the domain tag, a
// NUL byte and the header's deterministic serialization.
std::string ArtifactSigningMessage(const v1::ArtifactHeader& header);

// Signs `artifact` in place with `key`: sets `signature` (64 bytes) and
// `signing_key_id`, replacing any earlier signature. The tensors are not
// rehashed: DATA_LOSS (from VerifyArtifact) when the header's tensors_sha256
// or format version does not match them, and then `artifact` is unchanged.
absl::Status SignArtifact(v1::ModelArtifact& artifact, const SigningKey& key);

// Accepts `artifact` only when it is signed by `pinned` and intact. Checks,
// in this order, each failure with its own message:
//   1. a signature is present                    else UNAUTHENTICATED "not signed"
//   2. signing_key_id is the pinned key's id     else UNAUTHENTICATED "unknown key"
//   3. the signature verifies over the header    else UNAUTHENTICATED "bad signature"
//   4. VerifyArtifact: format version and the
//      tensors' SHA-256 match the signed header  else DATA_LOSS
// UNAUTHENTICATED means "we cannot tell who made this": refuse it, do not
// retry the same bytes. DATA_LOSS means the authenticated header does not
// describe these tensors (corrupted or altered in transit or on disk):
// download again. These statuses describe a local check on downloaded
// bytes; a transport must not forward them to its peer as an RPC status.
absl::Status VerifySignedArtifact(const v1::ModelArtifact& artifact, const VerifyingKey& pinned);

// As above, with several trusted keys (key rotation): step 2 picks the key
// whose id matches; UNAUTHENTICATED "unknown key" when none does.
absl::Status VerifySignedArtifact(const v1::ModelArtifact& artifact,
                                  std::span<const VerifyingKey> trusted);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_SIGNING_H_
