#include <grpcpp/grpcpp.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "fedge/client/enrollment.h"
#include "fedge/models/certificates.h"
#include "fedge/models/pkcs11.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "fedge/v1/service.grpc.pb.h"
#include "grpc_channel.h"

namespace fedge::client {

absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> DeviceChannelCredentials(
    const ClientTransportOptions& options, bool present_certificate) {
  if (options.insecure) {
    LogEvent("warning", "insecure", {{"target", options.target}},
             "connecting WITHOUT TLS: the update and the token cross the network in the clear");
    return grpc::InsecureChannelCredentials();
  }
  if (options.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs the CA of the aggregator's certificate (ca_file), or insecure");
  }
  grpc::SslCredentialsOptions ssl;
  FEDGE_ASSIGN_OR_RETURN(ssl.pem_root_certs, proto::ReadFile(options.ca_file));
  const bool has_certificate = !options.cert_file.empty() || !options.key_file.empty();
  if (present_certificate && has_certificate) {
    FEDGE_ASSIGN_OR_RETURN(ssl.pem_cert_chain, proto::ReadFile(options.cert_file));
    absl::StatusOr<models::TlsPrivateKey> key =
        models::TlsPrivateKey::Load(options.key_file.string());
    if (!key.ok()) {
      return absl::Status(key.status().code(),
                          absl::StrCat("device key: ", key.status().message()));
    }
    if (absl::Status s = key->CheckCertificate(ssl.pem_cert_chain); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("device key and certificate ",
                                                 options.cert_file.string(), ": ", s.message()));
    }
    ssl.pem_private_key = key->grpc_private_key();
  } else if (options.token.empty()) {
    return absl::InvalidArgumentError(
        "the device needs a client certificate and key, or an enrollment token");
  }
  return grpc::SslCredentials(ssl);
}

namespace {

// The device's key: reused when it exists (a retry), else generated.
absl::StatusOr<std::pair<models::TlsPrivateKey, bool>> DeviceKey(const std::string& key_ref) {
  if (models::IsPkcs11Uri(key_ref)) {
    absl::StatusOr<models::TlsPrivateKey> generated = models::TlsPrivateKey::GenerateInToken(key_ref);
    if (generated.ok()) return std::make_pair(*std::move(generated), true);
    if (generated.status().code() != absl::StatusCode::kAlreadyExists) return generated.status();
  } else {
    std::error_code ec;
    if (!std::filesystem::exists(key_ref, ec)) {
      FEDGE_ASSIGN_OR_RETURN(models::TlsPrivateKey key, models::TlsPrivateKey::GenerateFile(key_ref));
      return std::make_pair(std::move(key), true);
    }
  }
  FEDGE_ASSIGN_OR_RETURN(models::TlsPrivateKey key, models::TlsPrivateKey::Load(key_ref));
  return std::make_pair(std::move(key), false);
}

}  // namespace

absl::StatusOr<Enrollment> EnrollDevice(const ClientTransportOptions& options) {
  if (options.client_id.empty() || options.target.empty()) {
    return absl::InvalidArgumentError("enrollment needs the aggregator (target) and a device id");
  }
  if (options.token.empty()) {
    return absl::InvalidArgumentError("enrollment needs the device's enrollment token (tls.token)");
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "enrollment needs where to keep the certificate and key (tls.cert, tls.key)");
  }
  if (options.insecure) {
    return absl::InvalidArgumentError(
        "enrollment is never plaintext: it needs TLS to the aggregator (tls.ca)");
  }
  FEDGE_ASSIGN_OR_RETURN(auto key, DeviceKey(options.key_file.string()));
  FEDGE_ASSIGN_OR_RETURN(std::string csr, models::MakeCertificateRequest(key.first, options.client_id));
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                         DeviceChannelCredentials(options, /*present_certificate=*/false));
  auto stub = v1::Federation::NewStub(grpc::CreateChannel(options.target, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options.call_timeout);
  context.AddMetadata("x-fedge-client-id", options.client_id);
  context.AddMetadata("x-fedge-token", options.token);
  v1::EnrollRequest request;
  request.set_client_id(options.client_id);
  request.set_csr_pem(csr);
  v1::EnrollResponse response;
  FEDGE_RETURN_IF_ERROR(FromGrpc(stub->Enroll(&context, request, &response), "enrolling"));
  // Store nothing the device could not use.
  absl::StatusOr<std::string> cn = models::CertificateCommonName(response.certificate_pem());
  if (!cn.ok() || *cn != options.client_id) {
    return absl::DataLossError(absl::StrCat(
        "the aggregator's certificate does not name device '", options.client_id, "'"));
  }
  if (absl::Status s = key.first.CheckCertificate(response.certificate_pem()); !s.ok()) {
    return absl::DataLossError(
        absl::StrCat("the aggregator's certificate does not hold this device's key: ", s.message()));
  }
  FEDGE_RETURN_IF_ERROR(proto::WriteFileAtomic(options.cert_file, response.certificate_pem(), 0644));
  LogEvent("info", "device_enrolled",
           {{"client", options.client_id},
            {"certificate", options.cert_file.string()},
            {"key_in_token", key.first.in_token() ? "true" : "false"},
            {"key_generated", key.second ? "true" : "false"}});
  return Enrollment{response.certificate_pem(), key.second};
}

absl::Status EnsureEnrolled(const ClientTransportOptions& options) {
  std::error_code ec;
  if (!options.cert_file.empty() && std::filesystem::exists(options.cert_file, ec)) {
    return absl::OkStatus();
  }
  return EnrollDevice(options).status();
}

}  // namespace fedge::client
