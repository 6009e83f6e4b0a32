// GrpcTransport: the ClientTransport of a real device, talking to an
// aggregator's fedge.v1.Federation service over TLS.
//
//   auto transport = GrpcTransport::Create(options);   // connects lazily
//   // or by name: CreateClientTransport("grpc", ...)  (transport_registry.h)
//   transport->Join();                                  // proves who it is
//   device.RunTask(*transport, model, trainer);          // poll, download,
//                                                        // verify, train, submit
//
// Identity: a client certificate (mutual TLS; its CN is the device id) or
// the device id and its enrollment token, sent as call metadata.
//
// Models: downloaded in chunks; a broken download resumes from the last
// byte received. Before a model is handed to the trainer its SHA-256 (as the
// task announced it), its tensors' hash and its Ed25519 signature by the
// pinned aggregator key (or a key its rotation chain, received at Join,
// leads to) are checked, and a version older than the one the transport
// holds is refused unless the task carried a signed rollback record for it
// (fedge/models/model_trust.h). A model that fails is refused (DATA_LOSS /
// UNAUTHENTICATED / FAILED_PRECONDITION) and the device keeps the model it
// had; one that passes is logged ("model_accepted": version, hash, signer).
//
// Enrollment: with `enroll` and no certificate at cert_file yet, Create
// first enrolls (fedge/client/enrollment.h): a new key, a CSR sent with the
// token, the certificate stored; the transport then uses mutual TLS.
//
// Thread safety: all methods may be called concurrently.
#ifndef FEDGE_CLIENT_GRPC_TRANSPORT_H_
#define FEDGE_CLIENT_GRPC_TRANSPORT_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "fedge/client/transport.h"
#include "fedge/client/transport_registry.h"
#include "fedge/models/model_trust.h"
#include "fedge/models/signing.h"
#include "fedge/v1/service.pb.h"

namespace grpc {
class Channel;
}

namespace fedge::client {

// What every transport reads (target, identity, TLS files, token, pinned
// key, poll and call deadlines: see transport_registry.h), plus the gRPC
// transport's own knobs. The target is host:port; plaintext (insecure) logs
// a warning; ca_file is required unless insecure; pinned_key_file is
// required: a device never trains on a model it cannot verify.
struct GrpcTransportOptions : ClientTransportOptions {
  // Chunk size of uploads (and asked of downloads).
  uint32_t chunk_bytes = 1u << 20;
  // Download attempts before FetchModel gives up (each resumes).
  int download_attempts = 3;
  // What to download: the int8 artifact (default) or the fp32 master.
  v1::TensorEncoding download_encoding = v1::TENSOR_ENCODING_INT8_PER_CHANNEL;
};

class GrpcTransport : public ClientTransport {
 public:
  // Checks the options and loads the files they name (INVALID_ARGUMENT /
  // NOT_FOUND say which); does not connect yet.
  static absl::StatusOr<std::unique_ptr<GrpcTransport>> Create(GrpcTransportOptions options);
  ~GrpcTransport() override;

  // The options of a transport created by name ("grpc"), with the gRPC
  // settings at their defaults.
  // The common options with the gRPC knobs at their defaults.
  static GrpcTransportOptions FromClientOptions(const ClientTransportOptions& options);

  // Announces the device; returns the federation's model spec and the
  // signing key id, which must be the pinned key's (UNAUTHENTICATED if not).
  // The identity is the one this transport was created with: another
  // `client_id` is INVALID_ARGUMENT.
  absl::StatusOr<v1::JoinResponse> Join(const std::string& client_id) override;
  absl::StatusOr<v1::JoinResponse> Join() { return Join(options_.client_id); }

  // ClientTransport. PollTask waits up to poll_wait; NOT_FOUND when no task
  // came. Errors from the aggregator keep their gRPC code (UNAVAILABLE when
  // it cannot be reached).
  absl::StatusOr<v1::Task> PollTask(const std::string& client_id) override;
  absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> FetchModel(uint64_t version) override;
  absl::Status SubmitUpdate(const v1::EncodedUpdate& update) override;
  absl::Status ReportDrift(const v1::DriftReport& report) override;
  // Secure aggregation. SecAggPoll waits up to poll_wait for the phase to
  // close; UNAVAILABLE when it has not (poll again).
  absl::Status SecAggSend(const v1::SecAggClientMessage& message) override;
  absl::StatusOr<v1::SecAggServerMessage> SecAggPoll(const std::string& client_id, uint64_t round,
                                                     v1::SecAggPhase phase) override;

  absl::Status ReportMetrics(const v1::MetricsReport& report) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& client_id) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat() { return Heartbeat(options_.client_id); }
  absl::Status Leave(const std::string& client_id, const std::string& reason) override;

  // The last model that verified, or null.
  std::shared_ptr<const v1::ModelArtifact> current_model() const;
  // The round and model version of the last task PollTask returned ({0, 0}
  // before any): what events about the task in progress are about.
  std::pair<uint64_t, uint64_t> last_task() const;
  const GrpcTransportOptions& options() const { return options_; }

 private:
  class Calls;
  GrpcTransport(GrpcTransportOptions options, models::VerifyingKey pinned,
                std::shared_ptr<grpc::Channel> channel);

  const GrpcTransportOptions options_;
  std::unique_ptr<Calls> calls_;
  mutable std::mutex mu_;
  // The pinned key, the chain Join adopted, the version running (mu_).
  models::ModelTrust trust_;
  // What the last task said about the artifact of its version.
  std::map<uint64_t, v1::PollTaskResponse> announced_;
  // The rollback records tasks carried, by the version they allow.
  std::map<uint64_t, v1::RollbackRecord> rollbacks_;
  std::shared_ptr<const v1::ModelArtifact> current_;
  std::pair<uint64_t, uint64_t> last_task_{0, 0};
};

// "grpc": the name fedge::client_grpc registers GrpcTransport under (see
// transport_registry.h). A program that creates its transport by name calls
// this (e.g. for its default name) so that the linker keeps the library and
// its registration.
const char* GrpcTransportName();

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_GRPC_TRANSPORT_H_
