#include "fedge/privacy/secagg/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedge::privacy::secagg {
namespace {

// The first queued OpenSSL error (or "no OpenSSL error queued"), and clears
// the thread's queue so a later failure does not report a stale reason.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  std::string reason = "no OpenSSL error queued";
  if (code != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    reason = buffer;
  }
  ERR_clear_error();
  return reason;
}

absl::Status OpenSslFailure(const char* operation) {
  return absl::InternalError(absl::StrCat(operation, " failed: ", OpenSslError()));
}

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
struct KdfFree {
  void operator()(EVP_KDF* kdf) const { EVP_KDF_free(kdf); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* ctx) const { EVP_KDF_CTX_free(ctx); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// OpenSSL takes int lengths; spans larger than INT_MAX are refused up front.
bool FitsInt(std::size_t size) {
  return size <= static_cast<std::size_t>(std::numeric_limits<int>::max());
}

absl::StatusOr<X25519PublicKey> RawPublicKey(EVP_PKEY* key) {
  X25519PublicKey public_key{};
  std::size_t size = public_key.size();
  if (EVP_PKEY_get_raw_public_key(key, public_key.data(), &size) != 1 ||
      size != public_key.size()) {
    return OpenSslFailure("X25519 public key export");
  }
  return public_key;
}

}  // namespace

absl::Status RandomBytes(std::span<std::uint8_t> out) {
  if (out.empty()) return absl::OkStatus();
  if (!FitsInt(out.size())) {
    return absl::InvalidArgumentError(absl::StrCat("RandomBytes: size ", out.size(), " too large"));
  }
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    return OpenSslFailure("RandomBytes (RAND_bytes)");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// X25519

struct X25519KeyPair::Key {
  PkeyPtr pkey;
};

X25519KeyPair::X25519KeyPair(std::unique_ptr<Key> key, const X25519PublicKey& public_key)
    : key_(std::move(key)), public_key_(public_key) {}
X25519KeyPair::X25519KeyPair(X25519KeyPair&&) noexcept = default;
X25519KeyPair& X25519KeyPair::operator=(X25519KeyPair&&) noexcept = default;
X25519KeyPair::~X25519KeyPair() = default;

absl::StatusOr<X25519KeyPair> X25519KeyPair::Generate() {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1) {
    return OpenSslFailure("X25519 key generation (init)");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &raw) != 1) return OpenSslFailure("X25519 key generation");
  PkeyPtr pkey(raw);
  absl::StatusOr<X25519PublicKey> public_key = RawPublicKey(pkey.get());
  if (!public_key.ok()) return public_key.status();
  return X25519KeyPair(std::make_unique<Key>(Key{std::move(pkey)}), *public_key);
}

absl::StatusOr<X25519KeyPair> X25519KeyPair::FromPrivateKey(const X25519PrivateKey& private_key) {
  PkeyPtr pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                            private_key.size()));
  if (pkey == nullptr) return OpenSslFailure("X25519 private key import");
  absl::StatusOr<X25519PublicKey> public_key = RawPublicKey(pkey.get());
  if (!public_key.ok()) return public_key.status();
  return X25519KeyPair(std::make_unique<Key>(Key{std::move(pkey)}), *public_key);
}

absl::StatusOr<X25519PrivateKey> X25519KeyPair::ExportPrivateKey() const {
  X25519PrivateKey private_key{};
  std::size_t size = private_key.size();
  if (EVP_PKEY_get_raw_private_key(key_->pkey.get(), private_key.data(), &size) != 1 ||
      size != private_key.size()) {
    OPENSSL_cleanse(private_key.data(), private_key.size());
    return OpenSslFailure("X25519 private key export");
  }
  return private_key;
}

absl::StatusOr<SharedSecret> X25519KeyPair::DeriveSharedSecret(
    const X25519PublicKey& peer_public_key) const {
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public_key.data(),
                                           peer_public_key.size()));
  if (peer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("X25519 peer public key import failed: ", OpenSslError()));
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key_->pkey.get(), nullptr));
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) != 1) {
    return OpenSslFailure("X25519 derive (init)");
  }
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("X25519 derive: peer public key rejected: ", OpenSslError()));
  }
  SharedSecret secret{};
  std::size_t size = secret.size();
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &size) != 1 || size != secret.size()) {
    OPENSSL_cleanse(secret.data(), secret.size());
    // OpenSSL fails here when the result is all zeros (low-order peer point).
    return absl::InvalidArgumentError(
        absl::StrCat("X25519 derive failed (low-order peer public key?): ", OpenSslError()));
  }
  return secret;
}

// ---------------------------------------------------------------------------
// HKDF-SHA256

absl::StatusOr<std::vector<std::uint8_t>> HkdfSha256(std::span<const std::uint8_t> ikm,
                                                     std::span<const std::uint8_t> salt,
                                                     std::span<const std::uint8_t> info,
                                                     std::size_t length) {
  constexpr std::size_t kMaxLength = 255 * 32;
  if (length == 0 || length > kMaxLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("HKDF-SHA256: output length ", length, " not in [1, ", kMaxLength, "]"));
  }
  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (kdf == nullptr) return OpenSslFailure("HKDF-SHA256 (fetch)");
  std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (ctx == nullptr) return OpenSslFailure("HKDF-SHA256 (context)");

  // OSSL_PARAM takes non-const pointers but only reads these buffers. An empty
  // key or info needs a non-null pointer, hence the dummy byte.
  static const std::uint8_t kEmpty = 0;
  auto octets = [](const char* name, std::span<const std::uint8_t> bytes) {
    void* data = const_cast<std::uint8_t*>(bytes.empty() ? &kEmpty : bytes.data());
    return OSSL_PARAM_construct_octet_string(name, data, bytes.size());
  };
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = octets(OSSL_KDF_PARAM_KEY, ikm);
  if (!salt.empty()) params[n++] = octets(OSSL_KDF_PARAM_SALT, salt);
  params[n++] = octets(OSSL_KDF_PARAM_INFO, info);
  params[n] = OSSL_PARAM_construct_end();

  std::vector<std::uint8_t> out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslFailure("HKDF-SHA256 (derive)");
  }
  return out;
}

// ---------------------------------------------------------------------------
// AES-256-GCM

namespace {

absl::Status CheckGcmSizes(const char* operation, std::span<const std::uint8_t> key,
                           std::span<const std::uint8_t> nonce, std::size_t data_size,
                           std::size_t associated_data_size) {
  if (key.size() != kAesKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat(operation, ": key must be ", kAesKeySize, " bytes, got ", key.size()));
  }
  if (nonce.size() != kGcmNonceSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(operation, ": nonce must be ", kGcmNonceSize, " bytes, got ", nonce.size()));
  }
  if (!FitsInt(data_size) || !FitsInt(associated_data_size)) {
    return absl::InvalidArgumentError(absl::StrCat(operation, ": input too large"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::uint8_t>> AesGcmSeal(
    std::span<const std::uint8_t> key, std::span<const std::uint8_t> nonce,
    std::span<const std::uint8_t> plaintext, std::span<const std::uint8_t> associated_data) {
  constexpr const char* kOp = "AES-256-GCM seal";
  if (absl::Status s = CheckGcmSizes(kOp, key, nonce, plaintext.size(), associated_data.size());
      !s.ok()) {
    return s;
  }
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr ||
      EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), key.data(), nonce.data(), nullptr) != 1) {
    return OpenSslFailure(kOp);
  }
  int length = 0;
  if (!associated_data.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &length, associated_data.data(),
                        static_cast<int>(associated_data.size())) != 1) {
    return OpenSslFailure(kOp);
  }
  std::vector<std::uint8_t> out(plaintext.size() + kGcmTagSize);
  int written = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), out.data(), &length, plaintext.data(),
                          static_cast<int>(plaintext.size())) != 1) {
      return OpenSslFailure(kOp);
    }
    written = length;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + written, &length) != 1) {
    return OpenSslFailure(kOp);
  }
  written += length;
  if (static_cast<std::size_t>(written) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kGcmTagSize),
                          out.data() + written) != 1) {
    return OpenSslFailure(kOp);
  }
  return out;
}

absl::StatusOr<std::vector<std::uint8_t>> AesGcmOpen(
    std::span<const std::uint8_t> key, std::span<const std::uint8_t> nonce,
    std::span<const std::uint8_t> ciphertext_and_tag,
    std::span<const std::uint8_t> associated_data) {
  constexpr const char* kOp = "AES-256-GCM open";
  if (absl::Status s =
          CheckGcmSizes(kOp, key, nonce, ciphertext_and_tag.size(), associated_data.size());
      !s.ok()) {
    return s;
  }
  if (ciphertext_and_tag.size() < kGcmTagSize) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": input of ", ciphertext_and_tag.size(),
                                                   " bytes is shorter than the ", kGcmTagSize,
                                                   "-byte tag"));
  }
  const std::size_t ciphertext_size = ciphertext_and_tag.size() - kGcmTagSize;
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr ||
      EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), key.data(), nonce.data(), nullptr) != 1) {
    return OpenSslFailure(kOp);
  }
  int length = 0;
  if (!associated_data.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &length, associated_data.data(),
                        static_cast<int>(associated_data.size())) != 1) {
    return OpenSslFailure(kOp);
  }
  std::vector<std::uint8_t> plaintext(ciphertext_size);
  int written = 0;
  if (ciphertext_size > 0) {
    if (EVP_DecryptUpdate(ctx.get(), plaintext.data(), &length, ciphertext_and_tag.data(),
                          static_cast<int>(ciphertext_size)) != 1) {
      return OpenSslFailure(kOp);
    }
    written = length;
  }
  // The tag is only read by OpenSSL, despite the non-const parameter.
  std::uint8_t tag[kGcmTagSize];
  std::memcpy(tag, ciphertext_and_tag.data() + ciphertext_size, kGcmTagSize);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kGcmTagSize), tag) !=
      1) {
    return OpenSslFailure(kOp);
  }
  if (EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + written, &length) != 1) {
    ERR_clear_error();
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return absl::DataLossError(absl::StrCat(
        kOp, ": authentication failed (ciphertext, tag, nonce, key or associated data altered)"));
  }
  return plaintext;
}

// ---------------------------------------------------------------------------
// AES-256-CTR PRG

struct AesCtrPrg::Cipher {
  CipherCtxPtr ctx;
};

AesCtrPrg::AesCtrPrg(std::unique_ptr<Cipher> cipher) : cipher_(std::move(cipher)) {}
AesCtrPrg::AesCtrPrg(AesCtrPrg&&) noexcept = default;
AesCtrPrg& AesCtrPrg::operator=(AesCtrPrg&&) noexcept = default;
AesCtrPrg::~AesCtrPrg() = default;

absl::StatusOr<AesCtrPrg> AesCtrPrg::Create(const Seed& seed) {
  // Zero IV: see the header for why that is safe (one stream per seed).
  static constexpr std::uint8_t kZeroIv[16] = {};
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr ||
      EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_ctr(), seed.data(), kZeroIv, nullptr) != 1) {
    return OpenSslFailure("AES-256-CTR PRG (init)");
  }
  return AesCtrPrg(std::make_unique<Cipher>(Cipher{std::move(ctx)}));
}

template <typename Combine>
absl::Status AesCtrPrg::Apply(std::span<std::uint32_t> values, Combine combine) {
  // Keystream = CTR encryption of zeros, produced chunk by chunk into a
  // cache-resident buffer and folded into `values`.
  constexpr std::size_t kChunkWords = 4096;
  alignas(64) std::uint32_t buffer[kChunkWords];
  for (std::size_t begin = 0; begin < values.size(); begin += kChunkWords) {
    const std::size_t count = std::min(kChunkWords, values.size() - begin);
    const int bytes = static_cast<int>(count * sizeof(std::uint32_t));
    auto* raw = reinterpret_cast<unsigned char*>(buffer);
    std::memset(raw, 0, static_cast<std::size_t>(bytes));
    int length = 0;
    if (EVP_EncryptUpdate(cipher_->ctx.get(), raw, &length, raw, bytes) != 1 || length != bytes) {
      return OpenSslFailure("AES-256-CTR PRG (keystream)");
    }
    std::uint32_t* out = values.data() + begin;
    if constexpr (std::endian::native == std::endian::little) {
      for (std::size_t k = 0; k < count; ++k) out[k] = combine(out[k], buffer[k]);
    } else {
      for (std::size_t k = 0; k < count; ++k) {
        const unsigned char* b = raw + 4 * k;
        const std::uint32_t word =
            static_cast<std::uint32_t>(b[0]) | static_cast<std::uint32_t>(b[1]) << 8 |
            static_cast<std::uint32_t>(b[2]) << 16 | static_cast<std::uint32_t>(b[3]) << 24;
        out[k] = combine(out[k], word);
      }
    }
  }
  // The keystream is mask material: do not leave it on the stack.
  OPENSSL_cleanse(buffer, sizeof(buffer));
  return absl::OkStatus();
}

absl::Status AesCtrPrg::Fill(std::span<std::uint32_t> out) {
  return Apply(out, [](std::uint32_t, std::uint32_t word) { return word; });
}

absl::Status AesCtrPrg::AddTo(std::span<std::uint32_t> values) {
  return Apply(values, [](std::uint32_t value, std::uint32_t word) { return value + word; });
}

absl::Status AesCtrPrg::SubtractFrom(std::span<std::uint32_t> values) {
  return Apply(values, [](std::uint32_t value, std::uint32_t word) { return value - word; });
}

}  // namespace fedge::privacy::secagg
