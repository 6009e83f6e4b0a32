// Private to fedge::client_grpc: the TLS credentials of a device's channel
// and the gRPC-to-absl status conversion both the transport and enrollment
// use.
#ifndef FEDGE_CLIENT_SRC_GRPC_CHANNEL_H_
#define FEDGE_CLIENT_SRC_GRPC_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "fedge/client/transport_registry.h"

namespace fedge::client {

absl::Status FromGrpc(const grpc::Status& status, const std::string& what);

// Plaintext when `options.insecure` (logs a warning); else TLS to the CA in
// ca_file, presenting the device certificate and key (a file or a token
// key) when `present_certificate` and they are configured. INVALID_ARGUMENT
// when neither a certificate nor a token would identify the device.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> DeviceChannelCredentials(
    const ClientTransportOptions& options, bool present_certificate);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_SRC_GRPC_CHANNEL_H_
