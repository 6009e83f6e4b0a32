// EVP_PKEY_get0_EC_KEY answers for engine (token) keys, which the provider
// parameter query may not; it is deprecated in OpenSSL 3.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "fedge/models/certificates.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "fedge/models/pkcs11.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"
#include "pkcs11_engine.h"

namespace fedge::models {
namespace {

using internal::BioPtr;
using internal::MemoryBio;
using internal::OpenSslError;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using ReqPtr = std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)>;

constexpr size_t kMaxCommonName = 64;  // ub-common-name, RFC 5280 appendix A

bool IsP256(EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return false;
  char group[64] = {0};
  size_t length = 0;
  if (EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof(group), &length) == 1) {
    return std::string_view(group) == "prime256v1" || std::string_view(group) == "P-256";
  }
  // Engine keys may not answer the provider query; ask the legacy key.
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
  return ec != nullptr && EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1;
}

absl::Status CheckName(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > kMaxCommonName) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " must be 1 to ",
                                                   kMaxCommonName, " bytes, got ", name.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CommonNameOf(X509_NAME* name) {
  int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return absl::InvalidArgumentError("the subject has no common name (CN)");
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return absl::InvalidArgumentError("the subject's CN is not a string");
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return cn;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr || X509_add_ext(cert, ext, -1) != 1) {
    X509_EXTENSION_free(ext);
    return absl::InvalidArgumentError(
        absl::StrCat("certificate extension '", value, "': ", OpenSslError()));
  }
  X509_EXTENSION_free(ext);
  return absl::OkStatus();
}

// A fresh certificate for `subject_key` named `cn`, valid from an hour ago
// (clock skew) for `days`, with a 128-bit random serial.
absl::StatusOr<X509Ptr> NewCertificate(EVP_PKEY* subject_key, std::string_view cn, int days) {
  X509Ptr cert(X509_new(), X509_free);
  unsigned char serial_bytes[16];
  if (cert == nullptr || RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) {
    return absl::InternalError(absl::StrCat("cannot create a certificate: ", OpenSslError()));
  }
  serial_bytes[0] &= 0x7f;  // positive (RFC 5280 4.1.2.2)
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(
      BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr), BN_free);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (serial == nullptr || X509_set_version(cert.get(), 2) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), days, 0, nullptr) == nullptr ||
      X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>("fedge"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.data()),
                                 static_cast<int>(cn.size()), -1, 0) != 1 ||
      X509_set_pubkey(cert.get(), subject_key) != 1) {
    return absl::InternalError(absl::StrCat("cannot fill in a certificate: ", OpenSslError()));
  }
  return cert;
}

absl::StatusOr<std::string> SignAndEncode(X509* cert, EVP_PKEY* signer) {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (X509_sign(cert, signer, EVP_sha256()) <= 0 || bio == nullptr ||
      PEM_write_bio_X509(bio.get(), cert) != 1) {
    return absl::InternalError(absl::StrCat("cannot sign the certificate: ", OpenSslError()));
  }
  return internal::BioContents(bio.get());
}

}  // namespace

// --- TlsPrivateKey -------------------------------------------------------------

struct TlsPrivateKey::Key {
  internal::PkeyPtr pkey{nullptr, EVP_PKEY_free};
};

TlsPrivateKey::TlsPrivateKey(std::unique_ptr<Key> key, std::string grpc_private_key,
                             bool in_token)
    : key_(std::move(key)), grpc_private_key_(std::move(grpc_private_key)), in_token_(in_token) {}
TlsPrivateKey::TlsPrivateKey(TlsPrivateKey&&) noexcept = default;
TlsPrivateKey& TlsPrivateKey::operator=(TlsPrivateKey&&) noexcept = default;
TlsPrivateKey::~TlsPrivateKey() = default;

absl::StatusOr<TlsPrivateKey> TlsPrivateKey::Load(std::string_view key_ref) {
  auto key = std::make_unique<Key>();
  if (IsPkcs11Uri(key_ref)) {
    FEDGE_ASSIGN_OR_RETURN(Pkcs11Uri uri, Pkcs11Uri::Parse(key_ref));
    FEDGE_ASSIGN_OR_RETURN(key->pkey, internal::LoadEnginePrivateKey(uri));
    if (!IsP256(key->pkey.get())) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS key ", uri.KeyUri(), " is not an EC P-256 key"));
    }
    FEDGE_ASSIGN_OR_RETURN(std::string grpc_key, GrpcEnginePrivateKey(uri));
    return TlsPrivateKey(std::move(key), std::move(grpc_key), true);
  }
  const std::filesystem::path path{std::string(key_ref)};
  FEDGE_ASSIGN_OR_RETURN(std::string pem, proto::ReadFile(path));
  BioPtr bio = MemoryBio(pem);
  key->pkey.reset(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  if (key->pkey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key file '", path.string(), "': not an unencrypted PEM private key: ", OpenSslError()));
  }
  return TlsPrivateKey(std::move(key), std::move(pem), false);
}

evp_pkey_st* TlsPrivateKey::evp_pkey() const { return key_->pkey.get(); }

absl::Status TlsPrivateKey::CheckCertificate(std::string_view certificate_pem) const {
  BioPtr bio = MemoryBio(certificate_pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM certificate: ", OpenSslError()));
  }
  if (X509_check_private_key(cert.get(), key_->pkey.get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError("the private key is not the certificate's key");
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsPrivateKey> TlsPrivateKey::GenerateFile(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat("key file '", path.string(), "' exists; not overwriting it"));
  }
  auto key = std::make_unique<Key>();
  key->pkey.reset(EVP_EC_gen("P-256"));
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (key->pkey == nullptr || bio == nullptr ||
      PEM_write_bio_PKCS8PrivateKey(bio.get(), key->pkey.get(), nullptr, nullptr, 0, nullptr,
                                    nullptr) != 1) {
    return absl::InternalError(absl::StrCat("cannot generate an EC P-256 key: ", OpenSslError()));
  }
  std::string pem = internal::BioContents(bio.get());
  FEDGE_RETURN_IF_ERROR(proto::WriteFileAtomic(path, pem, 0600));
  return TlsPrivateKey(std::move(key), std::move(pem), false);
}

absl::StatusOr<TlsPrivateKey> TlsPrivateKey::GenerateInToken(std::string_view uri_text) {
  FEDGE_ASSIGN_OR_RETURN(Pkcs11Uri uri, Pkcs11Uri::Parse(uri_text));
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<Pkcs11Session> session, Pkcs11Session::Open(uri));
  FEDGE_RETURN_IF_ERROR(session->GenerateKeyPair(uri, TokenKeyType::kEcP256));
  return Load(uri_text);
}

absl::StatusOr<std::string> MakeCertificateRequest(const TlsPrivateKey& key,
                                                   std::string_view common_name) {
  FEDGE_RETURN_IF_ERROR(CheckName(common_name, "a certificate request's common name"));
  ReqPtr req(X509_REQ_new(), X509_REQ_free);
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  X509_NAME* name = req == nullptr ? nullptr : X509_REQ_get_subject_name(req.get());
  if (name == nullptr || bio == nullptr ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.key_->pkey.get()) != 1 ||
      X509_REQ_sign(req.get(), key.key_->pkey.get(), EVP_sha256()) <= 0 ||
      PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot make a certificate request: ", OpenSslError()));
  }
  return internal::BioContents(bio.get());
}

absl::StatusOr<std::string> CertificateCommonName(std::string_view certificate_pem) {
  BioPtr bio = MemoryBio(certificate_pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM certificate: ", OpenSslError()));
  }
  return CommonNameOf(X509_get_subject_name(cert.get()));
}

// --- DeviceCertificateAuthority ----------------------------------------------------

struct DeviceCertificateAuthority::State {
  X509Ptr cert{nullptr, X509_free};
  TlsPrivateKey key;
};

DeviceCertificateAuthority::DeviceCertificateAuthority(std::unique_ptr<State> state,
                                                       std::string certificate_pem)
    : state_(std::move(state)), certificate_pem_(std::move(certificate_pem)) {}
DeviceCertificateAuthority::DeviceCertificateAuthority(DeviceCertificateAuthority&&) noexcept =
    default;
DeviceCertificateAuthority& DeviceCertificateAuthority::operator=(
    DeviceCertificateAuthority&&) noexcept = default;
DeviceCertificateAuthority::~DeviceCertificateAuthority() = default;

absl::StatusOr<DeviceCertificateAuthority> DeviceCertificateAuthority::Load(
    const std::filesystem::path& cert_file, std::string_view key_ref) {
  FEDGE_ASSIGN_OR_RETURN(std::string pem, proto::ReadFile(cert_file));
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device CA certificate '", cert_file.string(), "': not a PEM certificate: ",
        OpenSslError()));
  }
  if (X509_check_ca(cert.get()) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device CA certificate '", cert_file.string(), "' is not a CA certificate"));
  }
  absl::StatusOr<TlsPrivateKey> key = TlsPrivateKey::Load(key_ref);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("device CA key: ", key.status().message()));
  }
  if (X509_check_private_key(cert.get(), key->key_->pkey.get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat(
        "the device CA key is not the key of certificate '", cert_file.string(), "'"));
  }
  auto state = std::make_unique<State>(State{std::move(cert), *std::move(key)});
  return DeviceCertificateAuthority(std::move(state), std::move(pem));
}

absl::StatusOr<DeviceCertificateAuthority> DeviceCertificateAuthority::CreateSelfSigned(
    TlsPrivateKey key, std::string_view name, int days) {
  FEDGE_RETURN_IF_ERROR(CheckName(name, "the CA's name"));
  FEDGE_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key.key_->pkey.get(), name, days));
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1) {
    return absl::InternalError(OpenSslError());
  }
  FEDGE_RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_basic_constraints,
                                     "critical,CA:TRUE,pathlen:0"));
  FEDGE_RETURN_IF_ERROR(
      AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  FEDGE_RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  FEDGE_ASSIGN_OR_RETURN(std::string pem, SignAndEncode(cert.get(), key.key_->pkey.get()));
  auto state = std::make_unique<State>(State{std::move(cert), std::move(key)});
  return DeviceCertificateAuthority(std::move(state), std::move(pem));
}

absl::StatusOr<std::string> DeviceCertificateAuthority::Issue(
    std::string_view csr_pem, const CertificateProfile& profile) const {
  FEDGE_RETURN_IF_ERROR(CheckName(profile.common_name, "the certificate's common name"));
  if (profile.days < 1 || profile.days > 3650) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate validity of ", profile.days, " days: expected 1 to 3650"));
  }
  BioPtr bio = MemoryBio(csr_pem);
  ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr), X509_REQ_free);
  if (req == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM certificate request (PKCS#10): ", OpenSslError()));
  }
  EVP_PKEY* subject_key = X509_REQ_get0_pubkey(req.get());
  if (subject_key == nullptr || X509_REQ_verify(req.get(), subject_key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the certificate request's signature does not verify with the key it holds");
  }
  if (!IsP256(subject_key)) {
    return absl::InvalidArgumentError("the certificate request's key is not an EC P-256 key");
  }
  absl::StatusOr<std::string> cn = CommonNameOf(X509_REQ_get_subject_name(req.get()));
  if (!cn.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate request: ", cn.status().message()));
  }
  if (*cn != profile.common_name) {
    return absl::InvalidArgumentError(absl::StrCat("the certificate request names '", *cn,
                                                   "', expected '", profile.common_name, "'"));
  }
  FEDGE_ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(subject_key, *cn, profile.days));
  X509* ca = state_->cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca)) != 1) {
    return absl::InternalError(OpenSslError());
  }
  FEDGE_RETURN_IF_ERROR(AddExtension(cert.get(), ca, NID_basic_constraints, "critical,CA:FALSE"));
  FEDGE_RETURN_IF_ERROR(
      AddExtension(cert.get(), ca, NID_key_usage, "critical,digitalSignature,keyAgreement"));
  FEDGE_RETURN_IF_ERROR(AddExtension(cert.get(), ca, NID_ext_key_usage,
                                     profile.server ? "serverAuth" : "clientAuth"));
  FEDGE_RETURN_IF_ERROR(AddExtension(cert.get(), ca, NID_authority_key_identifier, "keyid"));
  std::string san;
  for (const std::string& dns : profile.dns_names) absl::StrAppend(&san, san.empty() ? "" : ",", "DNS:", dns);
  for (const std::string& ip : profile.ip_addresses) absl::StrAppend(&san, san.empty() ? "" : ",", "IP:", ip);
  if (!san.empty()) FEDGE_RETURN_IF_ERROR(AddExtension(cert.get(), ca, NID_subject_alt_name, san));
  return SignAndEncode(cert.get(), state_->key.key_->pkey.get());
}

}  // namespace fedge::models
