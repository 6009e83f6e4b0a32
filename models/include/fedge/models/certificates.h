// Device certificates: TLS keys (a PEM file or a PKCS#11 token key),
// certificate signing requests (PKCS#10, RFC 2986) and the aggregator's
// device CA, which turns a device's CSR into an X.509 certificate (RFC 5280)
// the device then presents in mutual TLS. LibTorch-free; OpenSSL 3 only.
//
// The trust chain (docs/security.md): the device CA's certificate is the
// aggregator's tls.client_ca; a device certificate's subject CN is the
// device id, its extendedKeyUsage clientAuth, its serial 128 random bits.
// A certificate the CA did not sign fails TLS chain verification; a revoked
// device's still-valid certificate is refused by the aggregator's handshake
// verifier (aggregator/src/server_tls.cc).
//
// Keys: EC P-256 (secp256r1, ECDSA with SHA-256), the type libp11 can use
// for TLS from a token (fedge/models/pkcs11.h).
//
// Thread safety: TlsPrivateKey and DeviceCertificateAuthority are immutable
// after creation; const methods may be called concurrently.
#ifndef FEDGE_MODELS_CERTIFICATES_H_
#define FEDGE_MODELS_CERTIFICATES_H_

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace fedge::models {

class TlsPrivateKey {
 public:
  // `key_ref` is a "pkcs11:" URI (the key stays on the token) or the path
  // of a PEM private key. Errors name the file or the URI's problem.
  static absl::StatusOr<TlsPrivateKey> Load(std::string_view key_ref);
  // A new EC P-256 key from OpenSSL's CSPRNG, written to `path` (PKCS#8
  // PEM, mode 0600, atomically). ALREADY_EXISTS when `path` exists.
  static absl::StatusOr<TlsPrivateKey> GenerateFile(const std::filesystem::path& path);
  // A new EC P-256 key pair generated on the token `uri` names (sensitive,
  // not extractable). ALREADY_EXISTS when the token holds that key already.
  static absl::StatusOr<TlsPrivateKey> GenerateInToken(std::string_view uri);

  TlsPrivateKey(TlsPrivateKey&&) noexcept;
  TlsPrivateKey& operator=(TlsPrivateKey&&) noexcept;
  ~TlsPrivateKey();

  // What gRPC's TLS credentials take as the private key: the PEM, or
  // "engine:fedge-pkcs11:<uri>" for a token key. Treat the PEM as secret.
  const std::string& grpc_private_key() const { return grpc_private_key_; }
  bool in_token() const { return in_token_; }
  // OK when `certificate_pem` (its first certificate) holds this key's
  // public half; FAILED_PRECONDITION when not, INVALID_ARGUMENT when it
  // does not parse.
  absl::Status CheckCertificate(std::string_view certificate_pem) const;
  // The OpenSSL key (a token key's calls go to the token), for TLS stacks
  // that take one (SSL_CTX_use_PrivateKey). Owned by this object.
  evp_pkey_st* evp_pkey() const;

 private:
  friend class DeviceCertificateAuthority;
  friend absl::StatusOr<std::string> MakeCertificateRequest(const TlsPrivateKey&,
                                                            std::string_view);
  struct Key;
  TlsPrivateKey(std::unique_ptr<Key> key, std::string grpc_private_key, bool in_token);

  std::unique_ptr<Key> key_;
  std::string grpc_private_key_;
  bool in_token_ = false;
};

// A PKCS#10 request (PEM) for `common_name`, signed with `key`.
// INVALID_ARGUMENT on an empty name or one longer than 64 bytes.
absl::StatusOr<std::string> MakeCertificateRequest(const TlsPrivateKey& key,
                                                   std::string_view common_name);

struct CertificateProfile {
  // The subject's CN. REQUIRES: non-empty. For a device: its id, which
  // must also be the CSR's CN.
  std::string common_name;
  // subjectAltName entries (server certificates: the names clients dial).
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  // serverAuth instead of clientAuth.
  bool server = false;
  // Validity from now. Default: 365 days. REQUIRES: 1..3650.
  int days = 365;
};

class DeviceCertificateAuthority {
 public:
  // The CA certificate (PEM file) and its key (file or "pkcs11:" URI);
  // FAILED_PRECONDITION when the key is not the certificate's or the
  // certificate is not a CA.
  static absl::StatusOr<DeviceCertificateAuthority> Load(const std::filesystem::path& cert_file,
                                                         std::string_view key_ref);
  // A self-signed CA certificate for `key` (development and tests; an
  // operator may equally bring one made with openssl).
  static absl::StatusOr<DeviceCertificateAuthority> CreateSelfSigned(TlsPrivateKey key,
                                                                     std::string_view name,
                                                                     int days);

  DeviceCertificateAuthority(DeviceCertificateAuthority&&) noexcept;
  DeviceCertificateAuthority& operator=(DeviceCertificateAuthority&&) noexcept;
  ~DeviceCertificateAuthority();

  // Checks `csr_pem` (it parses, its signature verifies, it holds an EC
  // P-256 key, its CN is `profile.common_name`) and returns a certificate
  // (PEM) for its key. INVALID_ARGUMENT naming what is wrong with the CSR.
  absl::StatusOr<std::string> Issue(std::string_view csr_pem,
                                    const CertificateProfile& profile) const;

  const std::string& certificate_pem() const { return certificate_pem_; }

 private:
  struct State;
  DeviceCertificateAuthority(std::unique_ptr<State> state, std::string certificate_pem);

  std::unique_ptr<State> state_;
  std::string certificate_pem_;
};

// The subject CN of a PEM certificate (INVALID_ARGUMENT when it does not
// parse or has none).
absl::StatusOr<std::string> CertificateCommonName(std::string_view certificate_pem);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_CERTIFICATES_H_
