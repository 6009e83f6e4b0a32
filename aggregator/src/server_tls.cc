// The aggregator's keys and TLS: the model-signing key (file or PKCS#11
// token) and its rotation chain, the server's TLS key (file or token), the
// device CA behind Enroll, the handshake check that refuses revoked
// devices, and the rollback records devices need to go back a version.
// docs/security.md describes the trust chain these pieces make.
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "fedge/models/model_trust.h"
#include "fedge/models/pkcs11.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "server_impl.h"

namespace fedge::aggregator {
namespace {


// Runs after OpenSSL has verified a client certificate's chain to the
// device CA (a certificate from any other issuer never gets here): refuses
// the handshake of a device that has been revoked since its certificate was
// issued. A handshake without a certificate passes (token devices, and
// devices about to Enroll); Authenticate checks those on every call.
class RevocationVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit RevocationVerifier(std::shared_ptr<const RevokedDevices> revoked)
      : revoked_(std::move(revoked)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    const grpc::string_ref cert = request->peer_cert();
    if (cert.empty()) {
      *sync_status = grpc::Status::OK;
      return true;
    }
    absl::StatusOr<std::string> id =
        models::CertificateCommonName(std::string_view(cert.data(), cert.size()));
    if (!id.ok()) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  std::string(id.status().message()));
    } else if (revoked_->Contains(*id)) {
      LogEvent("warning", "handshake_refused", {{"client", *id}}, "the device is revoked");
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  absl::StrCat("device '", *id, "' has been revoked"));
    } else {
      *sync_status = grpc::Status::OK;
    }
    return true;  // answered synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<const RevokedDevices> revoked_;
};

absl::Status Prefixed(const absl::Status& status, std::string_view what) {
  return absl::Status(status.code(), absl::StrCat(std::string(what), ": ", status.message()));
}

}  // namespace

absl::Status AggregatorServer::Impl::LoadKeys() {
  absl::StatusOr<models::SigningKey> key = models::SigningKey::Load(options_.signing_key_file);
  if (!key.ok()) return Prefixed(key.status(), "signing key");
  key_.emplace(*std::move(key));
  if (!options_.signing_key_chain.empty()) {
    absl::StatusOr<v1::KeyChain> chain = models::LoadKeyChain(options_.signing_key_chain);
    if (!chain.ok()) return Prefixed(chain.status(), "signing_key_chain");
    if (chain->endorsements_size() > 0) {
      absl::StatusOr<models::VerifyingKey> root =
          models::VerifyingKey::FromRaw(chain->root_public_key());
      if (!root.ok()) return Prefixed(root.status(), "signing_key_chain: its root key");
      absl::StatusOr<std::vector<models::VerifyingKey>> keys =
          models::FollowKeyChain(*root, std::vector<v1::KeyEndorsement>(
                                            chain->endorsements().begin(),
                                            chain->endorsements().end()));
      if (!keys.ok()) return Prefixed(keys.status(), "signing_key_chain");
      if (keys->back().key_id() != key_->key_id()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "signing_key_chain ", options_.signing_key_chain.string(), " leads to key '",
            keys->back().key_id(), "', but signing_key is '", key_->key_id(),
            "': endorse the new key with fedge-ctl endorse-key first"));
      }
    }
    key_chain_ = *std::move(chain);
  }
  const ServerTlsOptions& tls = options_.tls;
  if (!tls.client_ca_key.empty()) {
    if (tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "tls.client_ca_key needs the device CA's certificate (tls.client_ca)");
    }
    if (tls.device_certificate_days < 1 || tls.device_certificate_days > 3650) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tls.device_cert_days ", tls.device_certificate_days, ": expected 1 to 3650"));
    }
    absl::StatusOr<models::DeviceCertificateAuthority> ca =
        models::DeviceCertificateAuthority::Load(tls.client_ca_file, tls.client_ca_key);
    if (!ca.ok()) return ca.status();
    device_ca_.emplace(*std::move(ca));
  }
  LogEvent("info", "keys_loaded",
           {{"signing_key", key_->key_id()},
            {"signing_key_in_token", key_->in_token() ? "true" : "false"},
            {"key_chain_links", std::to_string(key_chain_.endorsements_size())},
            {"device_ca", device_ca_.has_value() ? "on" : "off"}});
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
AggregatorServer::Impl::ServerCredentials() {
  const ServerTlsOptions& tls = options_.tls;
  if (tls.insecure) {
    LogEvent("warning", "insecure", {{"listen", options_.listen_address}},
             "serving WITHOUT TLS: device updates, tokens and models cross the network in the "
             "clear; use only on loopback for tests");
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs a server certificate and key (tls.cert, tls.key), or --insecure");
  }
  if (tls.require_client_certificate && tls.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "require_client_certificate needs the CA of device certificates (tls.client_ca)");
  }
  FEDGE_ASSIGN_OR_RETURN(std::string cert_chain, proto::ReadFile(tls.cert_file));
  absl::StatusOr<models::TlsPrivateKey> key = models::TlsPrivateKey::Load(tls.key_file);
  if (!key.ok()) return Prefixed(key.status(), "tls.key");
  if (absl::Status s = key->CheckCertificate(cert_chain); !s.ok()) {
    return Prefixed(s, absl::StrCat("tls.key and tls.cert ", tls.cert_file.string()));
  }
  if (tls.client_ca_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key->grpc_private_key(), std::move(cert_chain)});
    return grpc::SslServerCredentials(ssl);
  }
  // Mutual TLS: OpenSSL verifies the chain to the device CA, then
  // RevocationVerifier refuses revoked devices, at every handshake.
  FEDGE_ASSIGN_OR_RETURN(std::string client_ca, proto::ReadFile(tls.client_ca_file));
  FEDGE_ASSIGN_OR_RETURN(std::vector<ClientRecord> clients, store_->Clients());
  for (const ClientRecord& client : clients) {
    if (client.revoked) revoked_->Add(client.id);
  }
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      client_ca, std::vector<grpc::experimental::IdentityKeyCertPair>{
                     {key->grpc_private_key(), std::move(cert_chain)}});
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(tls.require_client_certificate
                                    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<RevocationVerifier>(revoked_));
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<v1::EnrollResponse> AggregatorServer::Impl::IssueDeviceCertificate(
    const std::string& client_id, const std::string& csr_pem) {
  if (!device_ca_.has_value()) {
    return absl::FailedPreconditionError(
        "this aggregator issues no device certificates (tls.client_ca_key is not set)");
  }
  if (csr_pem.size() > 16 << 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("a certificate request of ", csr_pem.size(), " bytes (at most 16 KiB)"));
  }
  models::CertificateProfile profile;
  profile.common_name = client_id;
  profile.days = options_.tls.device_certificate_days;
  absl::StatusOr<std::string> certificate = device_ca_->Issue(csr_pem, profile);
  if (!certificate.ok()) {
    LogEvent("warning", "enroll_refused", {{"client", client_id}},
             std::string(certificate.status().message()));
    return certificate.status();
  }
  LogEvent("info", "device_certificate_issued",
           {{"client", client_id}, {"days", std::to_string(profile.days)}});
  v1::EnrollResponse response;
  response.set_certificate_pem(*std::move(certificate));
  response.set_ca_pem(device_ca_->certificate_pem());
  return response;
}

std::optional<v1::RollbackRecord> AggregatorServer::Impl::RollbackFor(uint64_t version) const {
  absl::StatusOr<std::shared_ptr<const ModelVersion>> latest = registry().Latest();
  if (!latest.ok() || version >= (*latest)->version) return std::nullopt;
  const std::pair<uint64_t, uint64_t> key{version, (*latest)->version};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = rollbacks_.find(key); it != rollbacks_.end()) return it->second;
  }
  absl::StatusOr<v1::RollbackRecord> record =
      models::SignRollback(*key_, version, key.second, WallMs());
  if (!record.ok()) {
    LogEvent("error", "rollback_record_failed", {{"version", std::to_string(version)}},
             std::string(record.status().message()));
    return std::nullopt;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return rollbacks_.emplace(key, *std::move(record)).first->second;
}

}  // namespace fedge::aggregator
