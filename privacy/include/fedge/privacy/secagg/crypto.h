// Cryptographic primitives of secure aggregation (Bonawitz et al., CCS 2017;
// SecAgg+ of Bell et al., CCS 2020). Thin RAII wrappers over OpenSSL 3 EVP;
// nothing here is hand-written cryptography, and no OpenSSL type appears in
// this header (keys live behind a pimpl, everything else is plain bytes).
//
// What each primitive is for in the protocol:
//
//  * X25519 (`X25519KeyPair`): every client u advertises two public keys
//    (c_u^PK, s_u^PK). Agreement on the c keys gives client pairs a channel key
//    to encrypt Shamir shares routed through the server; agreement on the s
//    keys gives the pairwise mask seed s_{u,v}, which u adds and v subtracts so
//    that the masks cancel in the sum. When u drops out, the survivors' shares
//    of s_u^SK let the server recompute s_{u,v} and strip u's masks
//    (`FromPrivateKey`).
//  * HKDF-SHA256 (`HkdfSha256`): turns a raw X25519 output (not uniform) into
//    keys, binding them to the round and to the ordered client pair via `info`,
//    so one agreement yields independent encryption and mask-seed keys.
//  * AES-256-GCM (`AesGcmSeal`/`AesGcmOpen`): authenticated encryption of the
//    shares u sends to v through the untrusted server; the associated data
//    carries (round, u, v) so a share cannot be replayed to another pair.
//  * AES-256-CTR PRG (`AesCtrPrg`): expands a 32-byte seed (pairwise s_{u,v}
//    or self-mask b_u) into the d-dimensional mask vector in Z_{2^32}^d.
//  * `RandomBytes`: OpenSSL's CSPRNG, for keys, seeds and nonces.
//
// Shamir sharing of s_u^SK and b_u lives in shamir.h, the fixed-point encoding
// of float updates into Z_{2^32} in fixed_point.h, and mask arithmetic in
// masking.h.
//
// Errors are absl::Status values naming the failing operation; no function
// throws. Thread safety: free functions are thread-safe; an `X25519KeyPair`
// may be used concurrently through its const methods; an `AesCtrPrg` is a
// stateful stream and must not be shared between threads without locking.
#ifndef FEDGE_PRIVACY_SECAGG_CRYPTO_H_
#define FEDGE_PRIVACY_SECAGG_CRYPTO_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::privacy::secagg {

inline constexpr std::size_t kX25519KeySize = 32;
inline constexpr std::size_t kSharedSecretSize = 32;
inline constexpr std::size_t kAesKeySize = 32;
inline constexpr std::size_t kGcmNonceSize = 12;
inline constexpr std::size_t kGcmTagSize = 16;
inline constexpr std::size_t kSeedSize = 32;

using X25519PublicKey = std::array<std::uint8_t, kX25519KeySize>;
using X25519PrivateKey = std::array<std::uint8_t, kX25519KeySize>;
using SharedSecret = std::array<std::uint8_t, kSharedSecretSize>;
// A PRG seed; also the AES-256 key of the stream it names.
using Seed = std::array<std::uint8_t, kSeedSize>;

// Fills `out` from OpenSSL's CSPRNG (RAND_bytes). INTERNAL when the CSPRNG
// is not seeded.
absl::Status RandomBytes(std::span<std::uint8_t> out);

// An X25519 key pair. Move-only; the private key is freed (and zeroized by
// OpenSSL) on destruction. REQUIRES: methods are not called on a moved-from
// object.
class X25519KeyPair {
 public:
  // A fresh key pair from OpenSSL's CSPRNG.
  static absl::StatusOr<X25519KeyPair> Generate();
  // The key pair whose private key is `private_key` (RFC 7748 encoding, any
  // 32 bytes; clamping is applied by X25519 itself). Used to rebuild a
  // dropped client's key from its reconstructed Shamir shares.
  static absl::StatusOr<X25519KeyPair> FromPrivateKey(const X25519PrivateKey& private_key);

  X25519KeyPair(X25519KeyPair&&) noexcept;
  X25519KeyPair& operator=(X25519KeyPair&&) noexcept;
  ~X25519KeyPair();

  // RFC 7748 encoding, 32 bytes: what is sent to peers.
  const X25519PublicKey& public_key() const { return public_key_; }

  // The raw private key, for Shamir sharing. Treat the result as secret.
  absl::StatusOr<X25519PrivateKey> ExportPrivateKey() const;

  // X25519(own private, peer public). Symmetric: a.Derive(b.pub) ==
  // b.Derive(a.pub). INVALID_ARGUMENT when the peer key is a low-order point
  // (the shared secret would be all zeros, which OpenSSL refuses). The result
  // is not uniformly random: pass it through HkdfSha256 before use as a key.
  absl::StatusOr<SharedSecret> DeriveSharedSecret(const X25519PublicKey& peer_public_key) const;

 private:
  struct Key;  // Owns the EVP_PKEY.
  X25519KeyPair(std::unique_ptr<Key> key, const X25519PublicKey& public_key);

  std::unique_ptr<Key> key_;
  X25519PublicKey public_key_{};
};

// HKDF (RFC 5869) with SHA-256: `length` bytes of output keying material from
// input keying material `ikm`, optional `salt` (empty means a zero salt) and
// context `info`. INVALID_ARGUMENT when length is 0 or above 255 * 32.
absl::StatusOr<std::vector<std::uint8_t>> HkdfSha256(std::span<const std::uint8_t> ikm,
                                                     std::span<const std::uint8_t> salt,
                                                     std::span<const std::uint8_t> info,
                                                     std::size_t length);

// AES-256-GCM encryption: returns ciphertext || 16-byte tag. `key` must be 32
// bytes and `nonce` 12 bytes (INVALID_ARGUMENT otherwise). REQUIRES: a nonce
// is never reused with the same key (random 96-bit nonces are fine for the
// handful of messages a secagg channel key protects). `associated_data` is
// authenticated but not encrypted.
absl::StatusOr<std::vector<std::uint8_t>> AesGcmSeal(std::span<const std::uint8_t> key,
                                                     std::span<const std::uint8_t> nonce,
                                                     std::span<const std::uint8_t> plaintext,
                                                     std::span<const std::uint8_t> associated_data);

// Inverse of AesGcmSeal. Authentication failure (ciphertext, tag, nonce, key
// or associated data altered) is DATA_LOSS: the message was corrupted or
// forged in transit. We do not use UNAUTHENTICATED, which in the gRPC/absl
// code space means "the caller lacks valid credentials" and would make the
// transport treat a bad peer message as a failed login. INVALID_ARGUMENT for
// malformed sizes (key, nonce, input shorter than the tag). No plaintext is
// returned unless the tag verifies.
absl::StatusOr<std::vector<std::uint8_t>> AesGcmOpen(
    std::span<const std::uint8_t> key, std::span<const std::uint8_t> nonce,
    std::span<const std::uint8_t> ciphertext_and_tag,
    std::span<const std::uint8_t> associated_data);

// A pseudorandom generator: AES-256-CTR keyed with the 32-byte seed, IV (the
// initial 128-bit counter block) all zeros, i.e. the keystream
// AES_seed(0) || AES_seed(1) || ... read as little-endian uint32 words on
// every platform.
//
// Why a fixed IV is safe: CTR mode is broken only when a (key, counter block)
// pair is used twice. Here the key is the seed and each seed keys exactly one
// stream, which is read once from its start; no second stream under the same
// key exists, so no counter block repeats (the 128-bit counter would need
// 2^128 blocks to wrap). Callers must therefore derive a fresh seed per
// purpose (per round, per client pair, self-mask vs pairwise mask), which the
// protocol does via HkdfSha256 / RandomBytes.
//
// Successive calls continue the same stream: Fill(a); Fill(b) yields the
// same words as one Fill of a and b concatenated. Move-only, not thread-safe.
// REQUIRES: methods are not called on a moved-from object.
class AesCtrPrg {
 public:
  static absl::StatusOr<AesCtrPrg> Create(const Seed& seed);

  AesCtrPrg(AesCtrPrg&&) noexcept;
  AesCtrPrg& operator=(AesCtrPrg&&) noexcept;
  ~AesCtrPrg();

  // Overwrites `out` with the next out.size() words of the stream.
  absl::Status Fill(std::span<std::uint32_t> out);
  // values[k] += next word (mod 2^32), for each k in order.
  absl::Status AddTo(std::span<std::uint32_t> values);
  // values[k] -= next word (mod 2^32), for each k in order.
  absl::Status SubtractFrom(std::span<std::uint32_t> values);

 private:
  struct Cipher;  // Owns the EVP_CIPHER_CTX.
  explicit AesCtrPrg(std::unique_ptr<Cipher> cipher);
  template <typename Combine>
  absl::Status Apply(std::span<std::uint32_t> values, Combine combine);

  std::unique_ptr<Cipher> cipher_;
};

}  // namespace fedge::privacy::secagg

#endif  // FEDGE_PRIVACY_SECAGG_CRYPTO_H_
