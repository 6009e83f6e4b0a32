#include "fedge/models/signing.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "fedge/models/artifact.h"
#include "fedge/models/pkcs11.h"
#include "fedge/proto/atomic_file.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "openssl_internal.h"

namespace fedge::models {
namespace {

using internal::BioContents;
using internal::BioPtr;
using internal::MemoryBio;
using internal::OpenSslError;
using internal::PkeyPtr;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

std::string KeyIdOf(std::string_view raw) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(raw.data(), raw.size(), digest, &length, EVP_sha256(), nullptr);
  return absl::BytesToHexString(std::string(reinterpret_cast<const char*>(digest), 8));
}

absl::StatusOr<std::string> RawPublicKey(EVP_PKEY* pkey) {
  std::string raw(kEd25519PublicKeySize, '\0');
  size_t length = raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(raw.data()), &length) !=
          1 ||
      length != kEd25519PublicKeySize) {
    return absl::InternalError(
        absl::StrCat("cannot export the Ed25519 public key: ", OpenSslError()));
  }
  return raw;
}

absl::Status CheckEd25519(EVP_PKEY* pkey, std::string_view what) {
  if (EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519) return absl::OkStatus();
  const char* type = EVP_PKEY_get0_type_name(pkey);
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(what), " holds a ", type ? type : "unknown", " key, expected an Ed25519 key"));
}

// Prefixes a status message with where the key came from.
absl::Status InFile(const absl::Status& status, const std::filesystem::path& path) {
  return absl::Status(status.code(),
                      absl::StrCat("key file '", path.string(), "': ", status.message()));
}

}  // namespace

// --- VerifyingKey ----------------------------------------------------------

absl::StatusOr<VerifyingKey> VerifyingKey::FromRaw(std::string_view raw) {
  if (raw.size() != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "an Ed25519 public key is ", kEd25519PublicKeySize, " bytes, got ", raw.size()));
  }
  return VerifyingKey(std::string(raw), KeyIdOf(raw));
}

absl::StatusOr<VerifyingKey> VerifyingKey::FromPem(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM public key (SubjectPublicKeyInfo): ", OpenSslError()));
  }
  if (absl::Status s = CheckEd25519(pkey.get(), "the PEM public key"); !s.ok()) return s;
  absl::StatusOr<std::string> raw = RawPublicKey(pkey.get());
  if (!raw.ok()) return raw.status();
  return FromRaw(*raw);
}

absl::StatusOr<VerifyingKey> VerifyingKey::LoadPem(const std::filesystem::path& path) {
  absl::StatusOr<std::string> pem = proto::ReadFile(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<VerifyingKey> key = FromPem(*pem);
  if (!key.ok()) return InFile(key.status(), path);
  return key;
}

absl::StatusOr<std::string> VerifyingKey::ToPem() const {
  PkeyPtr pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                  reinterpret_cast<const unsigned char*>(raw_.data()), raw_.size()),
      EVP_PKEY_free);
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (pkey == nullptr || bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), pkey.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot encode the Ed25519 public key as PEM: ", OpenSslError()));
  }
  return BioContents(bio.get());
}

absl::Status VerifyingKey::SavePem(const std::filesystem::path& path) const {
  absl::StatusOr<std::string> pem = ToPem();
  if (!pem.ok()) return pem.status();
  return proto::WriteFileAtomic(path, *pem, 0644);
}

absl::Status VerifyingKey::Verify(std::string_view message, std::string_view signature) const {
  if (signature.size() != kEd25519SignatureSize) {
    return absl::UnauthenticatedError(absl::StrCat("bad signature: ", signature.size(),
                                                   " bytes, an Ed25519 signature is ",
                                                   kEd25519SignatureSize));
  }
  PkeyPtr pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                  reinterpret_cast<const unsigned char*>(raw_.data()), raw_.size()),
      EVP_PKEY_free);
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (pkey == nullptr || ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot set up Ed25519 verification: ", OpenSslError()));
  }
  int result = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(message.data()), message.size());
  ERR_clear_error();
  if (result != 1) {
    return absl::UnauthenticatedError(
        absl::StrCat("bad signature: not a valid Ed25519 signature by key ", key_id_));
  }
  return absl::OkStatus();
}

// --- SigningKey ------------------------------------------------------------

struct SigningKey::Key {
  PkeyPtr pkey{nullptr, EVP_PKEY_free};
  // Set for a token key (pkey is then null): the session and the private
  // key's handle on it.
  std::shared_ptr<Pkcs11Session> session;
  uint64_t handle = 0;
};

SigningKey::SigningKey(std::unique_ptr<Key> key, VerifyingKey public_key)
    : key_(std::move(key)), public_key_(std::move(public_key)) {}
SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

absl::StatusOr<SigningKey> SigningKey::FromKey(std::unique_ptr<Key> key) {
  absl::StatusOr<std::string> raw = RawPublicKey(key->pkey.get());
  if (!raw.ok()) return raw.status();
  absl::StatusOr<VerifyingKey> public_key = VerifyingKey::FromRaw(*raw);
  if (!public_key.ok()) return public_key.status();
  return SigningKey(std::move(key), *std::move(public_key));
}

absl::StatusOr<SigningKey> SigningKey::Generate() {
  EVP_PKEY* raw_pkey = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), EVP_PKEY_CTX_free);
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_keygen(ctx.get(), &raw_pkey) != 1) {
    return absl::InternalError(absl::StrCat("cannot generate an Ed25519 key: ", OpenSslError()));
  }
  auto key = std::make_unique<Key>();
  key->pkey.reset(raw_pkey);
  return FromKey(std::move(key));
}

absl::StatusOr<SigningKey> SigningKey::FromPem(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  // A null passphrase callback with empty user data makes OpenSSL fail on an
  // encrypted key instead of prompting on the terminal.
  PkeyPtr pkey(PEM_read_bio_PrivateKey(
                   bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr),
               EVP_PKEY_free);
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an unencrypted PEM private key (PKCS#8): ", OpenSslError()));
  }
  if (absl::Status s = CheckEd25519(pkey.get(), "the PEM private key"); !s.ok()) return s;
  auto key = std::make_unique<Key>();
  key->pkey = std::move(pkey);
  return FromKey(std::move(key));
}

absl::StatusOr<SigningKey> SigningKey::LoadPem(const std::filesystem::path& path) {
  absl::StatusOr<std::string> pem = proto::ReadFile(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<SigningKey> key = FromPem(*pem);
  if (!key.ok()) return InFile(key.status(), path);
  return key;
}

absl::StatusOr<SigningKey> SigningKey::FromPkcs11(std::string_view uri_text) {
  absl::StatusOr<Pkcs11Uri> uri = Pkcs11Uri::Parse(uri_text);
  if (!uri.ok()) return uri.status();
  absl::StatusOr<std::shared_ptr<Pkcs11Session>> session = Pkcs11Session::Open(*uri);
  if (!session.ok()) return session.status();
  absl::StatusOr<uint64_t> handle = (*session)->FindKey(*uri, /*private_key=*/true);
  absl::StatusOr<uint64_t> public_handle = (*session)->FindKey(*uri, /*private_key=*/false);
  if (!handle.ok()) return handle.status();
  if (!public_handle.ok()) return public_handle.status();
  // CKA_EC_POINT of an Edwards key: the 32 bytes, DER-wrapped in an OCTET
  // STRING by most modules (SoftHSM2), bare by some.
  absl::StatusOr<std::string> point = (*session)->Attribute(*public_handle, CKA_EC_POINT);
  if (!point.ok()) return point.status();
  std::string raw = *point;
  if (raw.size() == kEd25519PublicKeySize + 2 && raw[0] == 0x04 &&
      static_cast<unsigned char>(raw[1]) == kEd25519PublicKeySize) {
    raw = raw.substr(2);
  }
  absl::StatusOr<VerifyingKey> public_key = VerifyingKey::FromRaw(raw);
  if (!public_key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("key ", uri->KeyUri(),
                                                   " is not an Ed25519 key: ",
                                                   public_key.status().message()));
  }
  auto key = std::make_unique<Key>();
  key->session = *std::move(session);
  key->handle = *handle;
  SigningKey signing(std::move(key), *std::move(public_key));
  // A key whose halves do not match would sign models nobody accepts.
  absl::StatusOr<std::string> probe = signing.Sign("fedge/pkcs11-probe");
  if (!probe.ok()) return probe.status();
  if (absl::Status s = signing.public_key().Verify("fedge/pkcs11-probe", *probe); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the private and public key ", uri->KeyUri(), " on the token do not match"));
  }
  return signing;
}

absl::StatusOr<SigningKey> SigningKey::Load(std::string_view key_ref) {
  if (IsPkcs11Uri(key_ref)) return FromPkcs11(key_ref);
  return LoadPem(std::filesystem::path(std::string(key_ref)));
}

bool SigningKey::in_token() const { return key_->session != nullptr; }

absl::StatusOr<std::string> SigningKey::ToPem() const {
  if (in_token()) {
    return absl::FailedPreconditionError("a PKCS#11 token key cannot be exported");
  }
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (bio == nullptr || PEM_write_bio_PKCS8PrivateKey(bio.get(), key_->pkey.get(), nullptr, nullptr,
                                                      0, nullptr, nullptr) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot encode the Ed25519 private key as PEM: ", OpenSslError()));
  }
  return BioContents(bio.get());
}

absl::Status SigningKey::SavePem(const std::filesystem::path& path) const {
  absl::StatusOr<std::string> pem = ToPem();
  if (!pem.ok()) return pem.status();
  return proto::WriteFileAtomic(path, *pem, 0600);
}

absl::StatusOr<std::string> SigningKey::Sign(std::string_view message) const {
  if (in_token()) {
    absl::StatusOr<std::string> signature = key_->session->Sign(key_->handle, CKM_EDDSA, message);
    if (!signature.ok()) return signature.status();
    if (signature->size() != kEd25519SignatureSize) {
      return absl::InternalError(absl::StrCat("the token returned a ", signature->size(),
                                              "-byte signature, not an Ed25519 one"));
    }
    return signature;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string signature(kEd25519SignatureSize, '\0');
  size_t length = signature.size();
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      length != kEd25519SignatureSize) {
    return absl::InternalError(absl::StrCat("Ed25519 signing failed: ", OpenSslError()));
  }
  return signature;
}

// --- Artifacts -------------------------------------------------------------

std::string DomainSigningMessage(std::string_view domain,
                                 const google::protobuf::MessageLite& message) {
  std::string out(domain);
  out.push_back('\0');
  std::string serialized;
  {
    google::protobuf::io::StringOutputStream output(&serialized);
    google::protobuf::io::CodedOutputStream coded(&output);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  out.append(serialized);
  return out;
}

std::string ArtifactSigningMessage(const v1::ArtifactHeader& header) {
  return DomainSigningMessage(kArtifactSignatureDomain, header);
}

absl::Status SignArtifact(v1::ModelArtifact& artifact, const SigningKey& key) {
  if (absl::Status s = VerifyArtifact(artifact); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("refusing to sign: ", s.message()));
  }
  absl::StatusOr<std::string> signature = key.Sign(ArtifactSigningMessage(artifact.header()));
  if (!signature.ok()) return signature.status();
  artifact.set_signature(*std::move(signature));
  artifact.set_signing_key_id(key.key_id());
  return absl::OkStatus();
}

absl::Status VerifySignedArtifact(const v1::ModelArtifact& artifact, const VerifyingKey& pinned) {
  return VerifySignedArtifact(artifact, std::span<const VerifyingKey>(&pinned, 1));
}

absl::Status VerifySignedArtifact(const v1::ModelArtifact& artifact,
                                  std::span<const VerifyingKey> trusted) {
  const uint64_t version = artifact.header().version();
  if (artifact.signature().empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("artifact of model version ", version, " is not signed"));
  }
  const VerifyingKey* key = nullptr;
  for (const VerifyingKey& candidate : trusted) {
    if (candidate.key_id() == artifact.signing_key_id()) key = &candidate;
  }
  if (key == nullptr) {
    std::string known;
    for (const VerifyingKey& candidate : trusted) {
      absl::StrAppend(&known, known.empty() ? "" : ", ", candidate.key_id());
    }
    return absl::UnauthenticatedError(absl::StrCat("artifact of model version ", version,
                                                   " is signed by unknown key '",
                                                   absl::CHexEscape(artifact.signing_key_id()),
                                                   "'; trusted: ", known.empty() ? "none" : known));
  }
  if (absl::Status s = key->Verify(ArtifactSigningMessage(artifact.header()), artifact.signature());
      !s.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("artifact of model version ", version, ": ", s.message()));
  }
  return VerifyArtifact(artifact);
}

}  // namespace fedge::models
