#include "fedge/client/grpc_transport.h"

#include "fedge/proto/version.h"

#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "fedge/client/enrollment.h"
#include "grpc_channel.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "fedge/proto/version.h"
#include "fedge/v1/service.grpc.pb.h"

namespace fedge::client {
namespace {

std::string Sha256(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

}  // namespace

class GrpcTransport::Calls {
 public:
  Calls(std::shared_ptr<grpc::Channel> channel, const GrpcTransportOptions& options)
      : stub_(v1::Federation::NewStub(channel)), options_(options) {}

  // A context with the device's credentials and a deadline.
  std::unique_ptr<grpc::ClientContext> Context(std::chrono::milliseconds timeout) const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + timeout);
    if (!options_.token.empty()) {
      context->AddMetadata("x-fedge-client-id", options_.client_id);
      context->AddMetadata("x-fedge-token", options_.token);
    }
    return context;
  }

  v1::Federation::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<v1::Federation::Stub> stub_;
  const GrpcTransportOptions& options_;
};

absl::StatusOr<std::unique_ptr<GrpcTransport>> GrpcTransport::Create(GrpcTransportOptions options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("the aggregator address (target) is empty");
  }
  if (options.client_id.empty()) return absl::InvalidArgumentError("the client id is empty");
  if (options.pinned_key_file.empty()) {
    return absl::InvalidArgumentError(
        "the aggregator's model-signing public key (pinned_key) is required: a device never "
        "trains on a model it cannot verify");
  }
  if (options.chunk_bytes < 1024 || options.download_attempts < 1) {
    return absl::InvalidArgumentError("chunk_bytes must be >= 1024 and download_attempts >= 1");
  }
  absl::StatusOr<models::VerifyingKey> pinned =
      models::VerifyingKey::LoadPem(options.pinned_key_file);
  if (!pinned.ok()) {
    return absl::Status(pinned.status().code(),
                        absl::StrCat("pinned key: ", pinned.status().message()));
  }
  if (options.enroll) FEDGE_RETURN_IF_ERROR(EnsureEnrolled(options));
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                         DeviceChannelCredentials(options, /*present_certificate=*/true));
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(static_cast<int>(options.chunk_bytes) + (64 << 10));
  // Reconnect quickly after the aggregator comes back.
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  auto channel = grpc::CreateCustomChannel(options.target, credentials, arguments);
  return std::unique_ptr<GrpcTransport>(
      new GrpcTransport(std::move(options), *std::move(pinned), std::move(channel)));
}

GrpcTransport::GrpcTransport(GrpcTransportOptions options, models::VerifyingKey pinned,
                             std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)), trust_(std::move(pinned)) {
  calls_ = std::make_unique<Calls>(std::move(channel), options_);
}

GrpcTransport::~GrpcTransport() = default;

GrpcTransportOptions GrpcTransport::FromClientOptions(const ClientTransportOptions& options) {
  GrpcTransportOptions grpc;
  static_cast<ClientTransportOptions&>(grpc) = options;
  return grpc;
}

absl::StatusOr<v1::JoinResponse> GrpcTransport::Join(const std::string& client_id) {
  if (client_id != options_.client_id) {
    return absl::InvalidArgumentError(absl::StrCat("this transport is device '", options_.client_id,
                                                   "'; it cannot join as '", client_id, "'"));
  }
  v1::JoinRequest request;
  request.set_client_id(options_.client_id);
  request.set_protocol_version(1);
  request.set_software("fedge-client " FEDGE_VERSION_STRING);
  v1::JoinResponse response;
  auto context = calls_->Context(options_.call_timeout);
  FEDGE_RETURN_IF_ERROR(FromGrpc(calls_->stub().Join(context.get(), request, &response), "join"));
  // Follow the signing key's rotations from the pinned key; a signing key
  // they do not lead to is refused.
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<v1::KeyEndorsement> chain(response.key_chain().begin(),
                                              response.key_chain().end());
  if (absl::Status s = trust_.AdoptChain(chain, response.signing_key_id());
      !s.ok()) {
    LogEvent("error", "signing_key_refused", {{"signing_key", response.signing_key_id()}},
             s.ToString());
    return s;
  }
  return response;
}

absl::StatusOr<v1::Task> GrpcTransport::PollTask(const std::string& client_id) {
  v1::PollTaskRequest request;
  request.set_client_id(client_id);
  request.set_wait_ms(static_cast<uint32_t>(options_.poll_wait.count()));
  v1::PollTaskResponse response;
  auto context = calls_->Context(options_.poll_wait + std::chrono::seconds(10));
  FEDGE_RETURN_IF_ERROR(
      FromGrpc(calls_->stub().PollTask(context.get(), request, &response), "polling for a task"));
  if (!response.has_task()) return absl::NotFoundError("no task for this device now");
  v1::Task task = response.task();
  std::lock_guard<std::mutex> lock(mu_);
  last_task_ = {task.round(), task.model_version()};
  if (response.has_rollback()) rollbacks_[response.rollback().version()] = response.rollback();
  while (rollbacks_.size() > 4) rollbacks_.erase(rollbacks_.begin());
  announced_[task.model_version()] = std::move(response);
  while (announced_.size() > 4) announced_.erase(announced_.begin());
  return task;
}

absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> GrpcTransport::FetchModel(
    uint64_t version) {
  std::string expected_sha;
  std::optional<v1::RollbackRecord> rollback;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != nullptr && current_->header().version() == version) return current_;
    if (auto it = announced_.find(version); it != announced_.end()) {
      expected_sha = it->second.artifact_sha256();
    }
    if (auto it = rollbacks_.find(version); it != rollbacks_.end()) rollback = it->second;
  }
  std::string bytes;
  uint64_t total = 0;
  absl::Status last = absl::UnknownError("no download attempt");
  for (int attempt = 0; attempt < options_.download_attempts; ++attempt) {
    v1::DownloadModelRequest request;
    request.set_version(version);
    request.set_offset(bytes.size());  // resume where the last attempt stopped
    request.set_chunk_bytes(options_.chunk_bytes);
    request.set_encoding(options_.download_encoding);
    auto context = calls_->Context(options_.call_timeout);
    auto reader = calls_->stub().DownloadModel(context.get(), request);
    v1::ModelChunk chunk;
    bool broken = false;
    while (reader->Read(&chunk)) {
      if (chunk.version() != version || chunk.offset() != bytes.size() ||
          (total != 0 && chunk.total_bytes() != total) ||
          bytes.size() + chunk.data().size() > chunk.total_bytes()) {
        broken = true;
        context->TryCancel();
        break;
      }
      total = chunk.total_bytes();
      bytes.append(chunk.data());
    }
    grpc::Status status = reader->Finish();
    if (broken) {
      return absl::DataLossError(
          absl::StrCat("the aggregator sent inconsistent chunks of model version ", version));
    }
    if (status.ok() && total != 0 && bytes.size() == total) {
      last = absl::OkStatus();
      break;
    }
    last =
        FromGrpc(status.ok() ? grpc::Status(grpc::StatusCode::DATA_LOSS, "short download") : status,
                 absl::StrCat("downloading model version ", version));
    const grpc::StatusCode code = status.error_code();
    if (!status.ok() && code != grpc::StatusCode::UNAVAILABLE &&
        code != grpc::StatusCode::DEADLINE_EXCEEDED && code != grpc::StatusCode::CANCELLED) {
      break;  // the aggregator refused: retrying will not help
    }
    LogEvent("warning", "download_retry",
             {{"version", std::to_string(version)}, {"received", std::to_string(bytes.size())}},
             last.ToString());
  }
  FEDGE_RETURN_IF_ERROR(last);
  if (!expected_sha.empty() &&
      (expected_sha.size() != SHA256_DIGEST_LENGTH ||
       CRYPTO_memcmp(Sha256(bytes).data(), expected_sha.data(), SHA256_DIGEST_LENGTH) != 0)) {
    return absl::DataLossError(absl::StrCat(
        "model version ", version, " does not match the SHA-256 its task announced; refused"));
  }
  auto artifact = std::make_shared<v1::ModelArtifact>();
  if (!artifact->ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("model version ", version, " does not parse"));
  }
  if (artifact->header().version() != version) {
    return absl::DataLossError(absl::StrCat("asked for model version ", version, ", received ",
                                            artifact->header().version()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Signature by a key of the chain, intact tensors, and no downgrade
  // without a signed rollback record (fedge/models/model_trust.h).
  if (absl::Status s = trust_.Accept(*artifact, rollback.has_value() ? &*rollback : nullptr);
      !s.ok()) {
    LogEvent("error", "model_refused", {{"version", std::to_string(version)}}, s.ToString());
    return absl::Status(s.code(),
                        absl::StrCat("model version ", version, " refused: ", s.message()));
  }
  // The audit trail of every model this device accepts.
  LogEvent("info", "model_accepted",
           {{"version", std::to_string(version)},
            {"sha256", absl::BytesToHexString(Sha256(bytes))},
            {"tensors_sha256", absl::BytesToHexString(artifact->header().tensors_sha256())},
            {"signer", artifact->signing_key_id()},
            {"rollback", rollback.has_value() && version < rollback->supersedes() ? "true" : "false"}});
  current_ = std::move(artifact);
  return current_;
}

absl::Status GrpcTransport::SubmitUpdate(const v1::EncodedUpdate& update) {
  const std::string bytes = update.SerializeAsString();
  v1::SubmitUpdateResponse response;
  auto context = calls_->Context(options_.call_timeout);
  auto writer = calls_->stub().SubmitUpdate(context.get(), &response);
  v1::UpdateChunk chunk;
  v1::UpdateHeader* header = chunk.mutable_header();
  header->set_client_id(update.client_id());
  header->set_round(update.round());
  header->set_model_version(update.model_version());
  header->set_total_bytes(bytes.size());
  for (size_t offset = 0; offset < bytes.size(); offset += options_.chunk_bytes) {
    chunk.set_data(bytes.data() + offset,
                   std::min<size_t>(options_.chunk_bytes, bytes.size() - offset));
    if (!writer->Write(chunk)) break;  // the aggregator ended the call; Finish says why
    chunk.clear_header();
  }
  writer->WritesDone();
  return FromGrpc(writer->Finish(),
                  absl::StrCat("submitting the update of round ", update.round()));
}

absl::Status GrpcTransport::ReportDrift(const v1::DriftReport& report) {
  v1::Ack ack;
  auto context = calls_->Context(options_.call_timeout);
  return FromGrpc(calls_->stub().ReportDrift(context.get(), report, &ack), "reporting drift");
}

absl::Status GrpcTransport::SecAggSend(const v1::SecAggClientMessage& message) {
  v1::Ack ack;
  auto context = calls_->Context(options_.call_timeout);
  return FromGrpc(calls_->stub().SecAggSend(context.get(), message, &ack),
                  absl::StrCat("secure aggregation, round ", message.round()));
}

absl::StatusOr<v1::SecAggServerMessage> GrpcTransport::SecAggPoll(const std::string& client_id,
                                                                  uint64_t round,
                                                                  v1::SecAggPhase phase) {
  v1::SecAggPollRequest request;
  request.set_client_id(client_id);
  request.set_round(round);
  request.set_phase(phase);
  request.set_wait_ms(static_cast<uint32_t>(options_.poll_wait.count()));
  v1::SecAggServerMessage response;
  auto context = calls_->Context(options_.poll_wait + std::chrono::seconds(10));
  FEDGE_RETURN_IF_ERROR(FromGrpc(calls_->stub().SecAggPoll(context.get(), request, &response),
                                 absl::StrCat("secure aggregation poll, round ", round)));
  return response;
}

absl::Status GrpcTransport::ReportMetrics(const v1::MetricsReport& report) {
  v1::Ack ack;
  auto context = calls_->Context(options_.call_timeout);
  return FromGrpc(calls_->stub().ReportMetrics(context.get(), report, &ack), "reporting metrics");
}

absl::StatusOr<v1::HeartbeatResponse> GrpcTransport::Heartbeat(const std::string& client_id) {
  v1::HeartbeatRequest request;
  request.set_client_id(client_id);
  v1::HeartbeatResponse response;
  auto context = calls_->Context(options_.call_timeout);
  FEDGE_RETURN_IF_ERROR(
      FromGrpc(calls_->stub().Heartbeat(context.get(), request, &response), "heartbeat"));
  return response;
}

absl::Status GrpcTransport::Leave(const std::string& client_id, const std::string& reason) {
  v1::LeaveRequest request;
  request.set_client_id(client_id);
  request.set_reason(reason);
  v1::Ack ack;
  auto context = calls_->Context(options_.call_timeout);
  return FromGrpc(calls_->stub().Leave(context.get(), request, &ack), "leave");
}

std::pair<uint64_t, uint64_t> GrpcTransport::last_task() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_task_;
}

std::shared_ptr<const v1::ModelArtifact> GrpcTransport::current_model() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

const char* GrpcTransportName() { return "grpc"; }

namespace {

absl::StatusOr<std::unique_ptr<ClientTransport>> CreateGrpcClientTransport(
    const ClientTransportOptions& options) {
  absl::StatusOr<std::unique_ptr<GrpcTransport>> transport =
      GrpcTransport::Create(GrpcTransport::FromClientOptions(options));
  if (!transport.ok()) return transport.status();
  return std::unique_ptr<ClientTransport>(*std::move(transport));
}

[[maybe_unused]] const bool kRegistered =
    ClientTransports().Add(GrpcTransportName(), &CreateGrpcClientTransport);

}  // namespace

}  // namespace fedge::client
