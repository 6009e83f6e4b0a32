// Client transports chosen by name: a device program (fedge-client, the C
// API, a simulated device) asks for "grpc", "inproc", ... and gets a
// ClientTransport; adding a transport (MQTT, MPI) is one file with one
// registration line, no switch edited elsewhere.
//
//   // at the end of the transport's .cc:
//   [[maybe_unused]] const bool kRegistered =
//       ClientTransports().Add("grpc", &CreateGrpcClientTransport);
//
//   absl::StatusOr<std::unique_ptr<ClientTransport>> t =
//       CreateClientTransport("grpc", options);   // NOT_FOUND lists the known names
//
// Built-ins: "grpc" (fedge::client_grpc, fedge/client/grpc_transport.h).
// The in-process transport of simulations needs the aggregator's objects,
// which plain options cannot carry: the simulator constructs it directly
// (fedge/simulations/inproc_transport.h).
//
// A transport library registers itself from a static initializer, and
// shared libraries are linked --as-needed: a program that creates a
// transport only by name must still reference its library (see
// GrpcTransportName() in grpc_transport.h), or the registration is dropped.
#ifndef FEDGE_CLIENT_TRANSPORT_REGISTRY_H_
#define FEDGE_CLIENT_TRANSPORT_REGISTRY_H_

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/client/transport.h"
#include "fedge/proto/registry.h"

namespace fedge::client {

// What a device tells its transport. Each transport reads the fields it
// needs and names the offending one in its INVALID_ARGUMENT.
struct ClientTransportOptions {
  // Where the aggregator is (grpc: host:port). REQUIRES: non-empty for
  // network transports.
  std::string target;
  // This device's id. REQUIRES: non-empty.
  std::string client_id;
  // Plaintext (tests, aggregators started with --insecure). Default: false.
  bool insecure = false;
  // The CA of the aggregator's certificate (PEM).
  std::filesystem::path ca_file;
  // The device's certificate and key (mutual TLS, PEM); empty: use `token`.
  // The key may be a PKCS#11 URI ("pkcs11:...", fedge/models/pkcs11.h) of
  // an EC P-256 key on the device's token, which then never leaves it.
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  // Enrollment token (devices without a certificate).
  std::string token;
  // Enroll with the token when cert_file does not exist yet: generate
  // key_file (a PEM file, or a key on the token its URI names), send a CSR
  // and store the certificate the aggregator's device CA issues at
  // cert_file (fedge/client/enrollment.h). Default: false.
  bool enroll = false;
  // The aggregator's model-signing public key (PEM).
  std::filesystem::path pinned_key_file;
  // How long the aggregator may hold a poll. Default: 10 s.
  std::chrono::milliseconds poll_wait{10'000};
  // Deadline of every other call. Default: 120 s.
  std::chrono::milliseconds call_timeout{120'000};
};

using ClientTransportFactory = std::function<absl::StatusOr<std::unique_ptr<ClientTransport>>(
    const ClientTransportOptions& options)>;

// The registry of client transports (kind "client transport").
Registry<ClientTransportFactory>& ClientTransports();

// Creates the transport registered as `name`: NOT_FOUND listing the known
// names, or the factory's error.
absl::StatusOr<std::unique_ptr<ClientTransport>> CreateClientTransport(
    std::string_view name, const ClientTransportOptions& options);

// Sorted names of the registered client transports.
std::vector<std::string> RegisteredClientTransports();

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_TRANSPORT_REGISTRY_H_
