// AggregatorServer's RPC edge: the handlers and streaming reactors, device
// authentication, held long polls, upload slots and the served bytes. Every
// round decision is the coordinator's (see server_impl.h).
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "server_impl.h"

namespace fedge::aggregator {
namespace {

// --- the gRPC service --------------------------------------------------------

// A unary call held until the aggregator can answer it (see Impl::Waiter).
template <typename Response>
class HeldReactor : public grpc::ServerUnaryReactor {
 public:
  HeldReactor(AggregatorServer::Impl* impl, Response* response)
      : impl_(impl), response_(response), waiter_(impl->NewWaiterId()) {}
  uint64_t waiter() const { return waiter_; }
  // What the waiter calls, exactly once; the reactor may be deleted after.
  std::function<void(grpc::Status, Response)> Completion() {
    return [this](grpc::Status status, Response response) {
      *response_ = std::move(response);
      Finish(status);
    };
  }
  void OnCancel() override { impl_->CancelWaiter(waiter_); }
  void OnDone() override { delete this; }

 private:
  AggregatorServer::Impl* impl_;
  Response* response_;
  const uint64_t waiter_;
};

class DownloadReactor : public grpc::ServerWriteReactor<v1::ModelChunk> {
 public:
  DownloadReactor(std::shared_ptr<const std::string> bytes, uint64_t version, uint64_t offset,
                  uint32_t chunk)
      : bytes_(std::move(bytes)), version_(version), offset_(offset), chunk_bytes_(chunk) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the download was interrupted"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (offset_ >= bytes_->size()) {
      Finish(grpc::Status::OK);
      return;
    }
    const size_t n = std::min<size_t>(chunk_bytes_, bytes_->size() - offset_);
    chunk_.set_version(version_);
    chunk_.set_offset(offset_);
    chunk_.set_total_bytes(bytes_->size());
    chunk_.set_data(bytes_->data() + offset_, n);
    offset_ += n;
    StartWrite(&chunk_);
  }
  std::shared_ptr<const std::string> bytes_;
  uint64_t version_;
  uint64_t offset_;
  uint32_t chunk_bytes_;
  v1::ModelChunk chunk_;
};

class SubmitReactor : public grpc::ServerReadReactor<v1::UpdateChunk> {
 public:
  SubmitReactor(AggregatorServer::Impl* impl, std::string client_id,
                v1::SubmitUpdateResponse* response)
      : impl_(impl), client_id_(std::move(client_id)), response_(response) {
    impl_->AcquireUploadSlot([this] {
      has_slot_ = true;
      StartRead(&chunk_);
    });
  }
  void OnReadDone(bool ok) override {
    if (!ok) {  // the client finished (or vanished)
      Complete();
      return;
    }
    if (first_) {
      first_ = false;
      if (!chunk_.has_header()) {
        return Fail(absl::InvalidArgumentError(
            "the first chunk of an update must carry its header (client, round, version, size)"));
      }
      header_ = chunk_.header();
      if (absl::Status s = impl_->CheckSubmitHeader(client_id_, header_); !s.ok()) return Fail(s);
      buffer_.reserve(header_.total_bytes());
    } else if (chunk_.has_header()) {
      return Fail(absl::InvalidArgumentError("only the first chunk of an update carries a header"));
    }
    if (buffer_.size() + chunk_.data().size() > header_.total_bytes()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "the update is longer than the ", header_.total_bytes(), " bytes its header announced")));
    }
    buffer_.append(chunk_.data());
    StartRead(&chunk_);
  }
  void OnDone() override {
    if (has_slot_) impl_->ReleaseUploadSlot();
    delete this;
  }

 private:
  void Fail(const absl::Status& status) {
    impl_->metrics.updates_refused += 1;
    impl_->NoteRefused(client_id_);
    LogEvent("warning", "update_refused",
             {{"client", client_id_}, {"round", std::to_string(header_.round())}},
             status.ToString());
    failed_ = true;
    Finish(ToGrpc(status));
  }
  void Complete() {
    if (failed_) return;
    if (first_) return Fail(absl::InvalidArgumentError("the update stream carried no chunks"));
    if (buffer_.size() != header_.total_bytes()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("the update ended after ", buffer_.size(),
                                                          " of the ", header_.total_bytes(),
                                                          " bytes its header announced")));
    }
    impl_->RunOnWorker([this] {
      v1::EncodedUpdate update;
      if (!update.ParseFromString(buffer_)) {
        return Fail(absl::InvalidArgumentError("the update bytes are not an EncodedUpdate"));
      }
      std::string().swap(buffer_);
      if (update.client_id() != header_.client_id() || update.round() != header_.round() ||
          update.model_version() != header_.model_version()) {
        return Fail(absl::InvalidArgumentError(
            "the update's client, round or model version differs from its header's"));
      }
      absl::Status status = impl_->AcceptUpdate(update);
      if (!status.ok()) return Fail(status);
      response_->set_round(update.round());
      Finish(grpc::Status::OK);
    });
  }

  AggregatorServer::Impl* impl_;
  std::string client_id_;
  v1::SubmitUpdateResponse* response_;
  v1::UpdateChunk chunk_;
  v1::UpdateHeader header_;
  std::string buffer_;
  bool first_ = true;
  bool failed_ = false;
  bool has_slot_ = false;
};

}  // namespace

class FederationService final : public v1::Federation::CallbackService {
 public:
  explicit FederationService(AggregatorServer::Impl* impl) : impl_(impl) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* context,
                                 const v1::JoinRequest* request,
                                 v1::JoinResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    if (!id.ok()) {
      reactor->Finish(ToGrpc(id.status()));
      return reactor;
    }
    impl_->MarkAvailable(*id);
    impl_->NoteJoined(*id);
    impl_->FillJoin(response);
    impl_->metrics.clients_joined += 1;
    // Free text from the device: kept short and printable in the event.
    std::string software = request->software().substr(0, 100);
    for (char& c : software) {
      if (c < 0x20 || c > 0x7e) c = '?';
    }
    impl_->event_log.Record("info", "client_joined",
                            absl::StrCat("device ", *id, " joined (", software, ")"),
                            {{"client", *id}, {"software", software}});
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* context,
                                  const v1::LeaveRequest* request, v1::Ack* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    if (id.ok() && request->reason().size() > 200) {
      id = absl::InvalidArgumentError(
          absl::StrCat("leave: the reason is ", request->reason().size(),
                       " bytes (at most 200)"));
    }
    if (id.ok()) impl_->LeaveFor(*id, request->reason());
    reactor->Finish(ToGrpc(id.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* context,
                                   const v1::EnrollRequest* request,
                                   v1::EnrollResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    absl::StatusOr<v1::EnrollResponse> issued =
        id.ok() ? impl_->IssueDeviceCertificate(*id, request->csr_pem()) : id.status();
    if (issued.ok()) *response = *std::move(issued);
    reactor->Finish(ToGrpc(issued.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* PollTask(grpc::CallbackServerContext* context,
                                     const v1::PollTaskRequest* request,
                                     v1::PollTaskResponse* response) override {
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    if (!id.ok()) {
      auto* reactor = context->DefaultReactor();
      reactor->Finish(ToGrpc(id.status()));
      return reactor;
    }
    impl_->MarkAvailable(*id);
    if (std::optional<v1::PollTaskResponse> now = impl_->TaskNow(*id);
        now.has_value() || request->wait_ms() == 0) {
      auto* reactor = context->DefaultReactor();
      if (now.has_value()) *response = std::move(*now);
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    auto* reactor = new HeldReactor<v1::PollTaskResponse>(impl_, response);
    impl_->AddWaiter(
        reactor->waiter(), *id,
        std::min(std::chrono::milliseconds(request->wait_ms()), impl_->options().max_poll_wait),
        reactor->Completion());
    return reactor;
  }

  grpc::ServerWriteReactor<v1::ModelChunk>* DownloadModel(
      grpc::CallbackServerContext* context, const v1::DownloadModelRequest* request) override {
    absl::StatusOr<std::string> id = impl_->Authenticate(context, "");
    absl::StatusOr<std::shared_ptr<const std::string>> bytes =
        id.ok() ? impl_->ServedBytes(request->version(), request->encoding()) : id.status();
    if (bytes.ok() && request->offset() > (*bytes)->size()) {
      bytes = absl::OutOfRangeError(absl::StrCat("offset ", request->offset(),
                                                 " is past the end of the ", (*bytes)->size(),
                                                 "-byte artifact"));
    }
    if (!bytes.ok()) {
      class Refused : public grpc::ServerWriteReactor<v1::ModelChunk> {
       public:
        explicit Refused(grpc::Status status) { Finish(std::move(status)); }
        void OnDone() override { delete this; }
      };
      return new Refused(ToGrpc(bytes.status()));
    }
    if (request->offset() == 0) impl_->metrics.model_downloads += 1;
    impl_->NoteDownload(*id, request->version(), (*bytes)->size() - request->offset());
    const uint32_t max_chunk = impl_->options().chunk_bytes;
    const uint32_t chunk =
        request->chunk_bytes() == 0 ? max_chunk : std::min(request->chunk_bytes(), max_chunk);
    return new DownloadReactor(*std::move(bytes), request->version(), request->offset(),
                               std::max<uint32_t>(chunk, 1024));
  }

  grpc::ServerReadReactor<v1::UpdateChunk>* SubmitUpdate(
      grpc::CallbackServerContext* context, v1::SubmitUpdateResponse* response) override {
    absl::StatusOr<std::string> id = impl_->Authenticate(context, "");
    if (!id.ok()) {
      class Refused : public grpc::ServerReadReactor<v1::UpdateChunk> {
       public:
        explicit Refused(grpc::Status status) { Finish(std::move(status)); }
        void OnDone() override { delete this; }
      };
      return new Refused(ToGrpc(id.status()));
    }
    return new SubmitReactor(impl_, *id, response);
  }

  grpc::ServerUnaryReactor* ReportMetrics(grpc::CallbackServerContext* context,
                                          const v1::MetricsReport* request,
                                          v1::Ack* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    if (id.ok()) {
      v1::MetricsReport report = *request;
      report.set_client_id(*id);
      impl_->RecordMetrics(report);
    }
    reactor->Finish(ToGrpc(id.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* ReportDrift(grpc::CallbackServerContext* context,
                                        const v1::DriftReport* request,
                                        v1::Ack* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    if (id.ok()) {
      if (request->events_size() == 0) {
        id = absl::InvalidArgumentError("a drift report must carry at least one event");
      } else if (absl::Status s = impl_->RecordDrift(*id, *request); !s.ok()) {
        id = s;
      } else {
        LogEvent("info", "drift_reported",
                 {{"client", *id},
                  {"model_version", std::to_string(request->model_version())},
                  {"detector", request->events(0).detector()},
                  {"stream", request->events(0).stream()}});
      }
    }
    reactor->Finish(ToGrpc(id.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    if (id.ok()) *response = impl_->HeartbeatFor(*id);
    reactor->Finish(ToGrpc(id.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* SecAggSend(grpc::CallbackServerContext* context,
                                       const v1::SecAggClientMessage* request,
                                       v1::Ack* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<std::string> id = impl_->Authenticate(context, "");
    absl::Status status = id.ok() ? impl_->SecAggReceive(*id, *request) : id.status();
    if (!status.ok()) {
      LogEvent("warning", "secagg_message_refused",
               {{"client", id.ok() ? *id : std::string("?")},
                {"round", std::to_string(request->round())}},
               status.ToString());
    }
    reactor->Finish(ToGrpc(status));
    return reactor;
  }

  grpc::ServerUnaryReactor* SecAggPoll(grpc::CallbackServerContext* context,
                                       const v1::SecAggPollRequest* request,
                                       v1::SecAggServerMessage* response) override {
    absl::StatusOr<std::string> id = impl_->Authenticate(context, request->client_id());
    absl::StatusOr<v1::SecAggServerMessage> answer =
        id.ok() ? impl_->SecAggAnswer(*id, *request) : id.status();
    if (!absl::IsUnavailable(answer.status()) || request->wait_ms() == 0) {
      auto* reactor = context->DefaultReactor();
      if (answer.ok()) *response = *std::move(answer);
      reactor->Finish(ToGrpc(answer.status()));
      return reactor;
    }
    auto* reactor = new HeldReactor<v1::SecAggServerMessage>(impl_, response);
    impl_->AddSecAggWaiter(
        reactor->waiter(), *request,
        std::min(std::chrono::milliseconds(request->wait_ms()), impl_->options().max_poll_wait),
        reactor->Completion());
    return reactor;
  }

 private:
  AggregatorServer::Impl* impl_;
};

std::unique_ptr<grpc::Service> NewFederationService(AggregatorServer::Impl* impl) {
  return std::make_unique<FederationService>(impl);
}

// --- Impl: serving -----------------------------------------------------------------

absl::StatusOr<std::string> AggregatorServer::Impl::Authenticate(
    grpc::CallbackServerContext* context, const std::string& claimed_id) const {
  std::string id;
  bool by_certificate = false;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth != nullptr) {
    std::vector<grpc::string_ref> names = auth->FindPropertyValues("x509_common_name");
    if (!names.empty()) {
      id.assign(names[0].data(), names[0].size());
      by_certificate = true;
    }
  }
  std::string token;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("x-fedge-token"); it != metadata.end()) {
    token.assign(it->second.data(), it->second.size());
  }
  if (!by_certificate) {
    auto it = metadata.find("x-fedge-client-id");
    if (it == metadata.end() || token.empty()) {
      return absl::UnauthenticatedError(
          "the device presented neither a client certificate nor an id and enrollment token");
    }
    id.assign(it->second.data(), it->second.size());
  }
  if (!claimed_id.empty() && claimed_id != id) {
    return absl::PermissionDeniedError(
        absl::StrCat("device '", id, "' claims to be '", claimed_id, "'"));
  }
  absl::StatusOr<ClientRecord> record = store_->GetClient(id);
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnauthenticatedError(absl::StrCat("device '", id, "' is not enrolled"));
    }
    return record.status();
  }
  if (record->revoked) {
    return absl::PermissionDeniedError(absl::StrCat("device '", id, "' has been revoked"));
  }
  if (!by_certificate) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
    if (record->token_sha256.size() != sizeof(digest) ||
        CRYPTO_memcmp(digest, record->token_sha256.data(), sizeof(digest)) != 0) {
      return absl::UnauthenticatedError(
          absl::StrCat("wrong enrollment token for device '", id, "'"));
    }
  }
  return id;
}

void AggregatorServer::Impl::MarkAvailable(const std::string& client_id) {
  coordinator_->MarkAvailable(client_id);
  UpdateDevice(client_id, [](DeviceStatus&) {});
}

void AggregatorServer::Impl::FillJoin(v1::JoinResponse* response) const {
  response->set_protocol_version(1);
  *response->mutable_model() = models::ToProto(coordinator_->spec());
  response->set_latest_version(live_version());
  response->set_signing_key_id(key_->key_id());
  response->set_max_chunk_bytes(options_.chunk_bytes);
  response->set_heartbeat_interval_ms(
      static_cast<uint32_t>(options_.liveness.heartbeat_interval.count()));
  *response->mutable_key_chain() = key_chain_.endorsements();
}

std::optional<v1::PollTaskResponse> AggregatorServer::Impl::TaskNow(
    const std::string& client_id) const {
  absl::StatusOr<v1::Task> task = coordinator_->TaskFor(client_id);
  if (!task.ok()) return std::nullopt;
  int64_t deadline_ms;
  if (task->kind() == v1::Task::KIND_EVALUATE) {
    deadline_ms = options_.rollout.canary_timeout.count();
  } else {
    const CoordinatorRoundStatus round = coordinator_->round_status();
    if (!round.open || round.round != task->round()) return std::nullopt;
    deadline_ms = std::max<int64_t>(round.deadline_at_ms - WallMs(), 0);
  }
  v1::PollTaskResponse response;
  // An evaluation task's baseline is older than its candidate, which the
  // canary device downloads first: the record lets it go back.
  const uint64_t oldest =
      task->kind() == v1::Task::KIND_EVALUATE ? task->baseline_version() : task->model_version();
  if (std::optional<v1::RollbackRecord> rollback = RollbackFor(oldest)) {
    *response.mutable_rollback() = *std::move(rollback);
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto served = served_.find(task->model_version());
  if (served == served_.end()) return std::nullopt;
  response.set_artifact_bytes(served->second.artifact->size());
  response.set_artifact_sha256(served->second.artifact_sha256);
  response.set_deadline_ms(static_cast<uint32_t>(deadline_ms));
  *response.mutable_task() = *std::move(task);
  return response;
}

uint64_t AggregatorServer::Impl::NewWaiterId() {
  std::lock_guard<std::mutex> lock(mu_);
  return next_waiter_++;
}

void AggregatorServer::Impl::RegisterWaiter(uint64_t id, Waiter waiter,
                                            std::chrono::milliseconds wait) {
  waiter.timer = std::make_shared<asio::steady_timer>(io_, wait);
  std::shared_ptr<asio::steady_timer> timer = waiter.timer;
  std::function<void(grpc::Status)> abort;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      abort = std::move(waiter.abort);
    } else {
      waiters_[id] = std::move(waiter);
    }
  }
  if (abort) {  // not registered: shutting down
    abort(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the aggregator is shutting down"));
    return;
  }
  timer->async_wait([this, id](const boost::system::error_code& ec) {
    if (ec) return;
    std::function<void()> expire;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = waiters_.find(id);
      if (it == waiters_.end()) return;
      expire = std::move(it->second.expire);
      waiters_.erase(it);
    }
    expire();
  });
  // The call may have become answerable between the caller's check and the
  // registration: probe this one waiter (not all of them, which would make a
  // fleet's polls quadratic).
  asio::post(io_, [this, id] { WakeWaiter(id); });
}

void AggregatorServer::Impl::AddWaiter(
    uint64_t id, const std::string& client_id, std::chrono::milliseconds wait,
    std::function<void(grpc::Status, v1::PollTaskResponse)> done) {
  Waiter waiter;
  waiter.probe = [this, client_id, done]() -> std::function<void()> {
    std::optional<v1::PollTaskResponse> task = TaskNow(client_id);
    if (!task.has_value()) return {};
    return [done, response = *std::move(task)]() { done(grpc::Status::OK, response); };
  };
  waiter.expire = [done] { done(grpc::Status::OK, {}); };  // no task this time
  waiter.abort = [done](grpc::Status status) { done(std::move(status), {}); };
  RegisterWaiter(id, std::move(waiter), wait);
}

void AggregatorServer::Impl::AddSecAggWaiter(
    uint64_t id, const v1::SecAggPollRequest& request, std::chrono::milliseconds wait,
    std::function<void(grpc::Status, v1::SecAggServerMessage)> done) {
  Waiter waiter;
  const std::string client_id = request.client_id();
  waiter.probe = [this, client_id, request, done]() -> std::function<void()> {
    absl::StatusOr<v1::SecAggServerMessage> answer = SecAggAnswer(client_id, request);
    if (absl::IsUnavailable(answer.status())) return {};
    return [done, answer = std::move(answer)]() {
      done(ToGrpc(answer.status()), answer.ok() ? *answer : v1::SecAggServerMessage());
    };
  };
  waiter.expire = [done] {
    done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the phase has not closed yet; poll again"),
         {});
  };
  waiter.abort = [done](grpc::Status status) { done(std::move(status), {}); };
  RegisterWaiter(id, std::move(waiter), wait);
}

void AggregatorServer::Impl::CancelWaiter(uint64_t id) {
  std::function<void(grpc::Status)> abort;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    abort = std::move(it->second.abort);
    it->second.timer->cancel();
    waiters_.erase(it);
  }
  abort(grpc::Status(grpc::StatusCode::CANCELLED, "the poll was cancelled"));
}

void AggregatorServer::Impl::WakeWaiters() {
  std::vector<std::pair<uint64_t, std::function<std::function<void()>()>>> probes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, waiter] : waiters_) probes.emplace_back(id, waiter.probe);
  }
  for (auto& [id, probe] : probes) AnswerIfReady(id, probe);
}

void AggregatorServer::Impl::WakeWaiter(uint64_t id) {
  std::function<std::function<void()>()> probe;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    probe = it->second.probe;
  }
  AnswerIfReady(id, probe);
}

void AggregatorServer::Impl::AnswerIfReady(uint64_t id,
                                           const std::function<std::function<void()>()>& probe) {
  std::function<void()> completion = probe();
  if (!completion) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;  // answered meanwhile
    it->second.timer->cancel();
    waiters_.erase(it);
  }
  completion();
}

absl::StatusOr<std::shared_ptr<const std::string>> AggregatorServer::Impl::ServedBytes(
    uint64_t version, v1::TensorEncoding encoding) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = served_.find(version);
  if (it == served_.end()) {
    return absl::NotFoundError(absl::StrCat("model version ", version, " is not served"));
  }
  if (encoding == v1::TENSOR_ENCODING_FP32) return it->second.master;
  return it->second.artifact;
}

absl::Status AggregatorServer::Impl::CheckSubmitHeader(const std::string& client_id,
                                                       const v1::UpdateHeader& header) const {
  if (header.client_id() != client_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("device '", client_id, "' submits an update as '", header.client_id(), "'"));
  }
  if (header.total_bytes() == 0 || header.total_bytes() > options_.max_update_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("an update of ", header.total_bytes(),
                                                   " bytes; this aggregator accepts 1 to ",
                                                   options_.max_update_bytes));
  }
  // Refuse a stale or foreign update before receiving its bytes.
  return coordinator_->CheckSubmission(client_id, header.round(), header.model_version());
}

absl::Status AggregatorServer::Impl::SecAggReceive(const std::string& client_id,
                                                   const v1::SecAggClientMessage& message) {
  if (!options_.secure_aggregation.has_value()) {
    return absl::FailedPreconditionError("this aggregator runs no secure aggregation");
  }
  if (message.client_id() != client_id) {
    return absl::PermissionDeniedError(absl::StrCat("device '", client_id,
                                                    "' sends a secure-aggregation message as '",
                                                    message.client_id(), "'"));
  }
  return coordinator_->SecAggReceive(message);
}

absl::StatusOr<v1::SecAggServerMessage> AggregatorServer::Impl::SecAggAnswer(
    const std::string& client_id, const v1::SecAggPollRequest& request) const {
  if (!options_.secure_aggregation.has_value()) {
    return absl::FailedPreconditionError("this aggregator runs no secure aggregation");
  }
  if (!request.client_id().empty() && request.client_id() != client_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("device '", client_id, "' polls as '", request.client_id(), "'"));
  }
  return coordinator_->SecAggPoll(client_id, request.round(), request.phase());
}

absl::Status AggregatorServer::Impl::AcceptUpdate(const v1::EncodedUpdate& update) {
  // The coordinator journals and folds it, and closes the round (on this
  // worker thread) when it reaches the goal.
  FEDGE_RETURN_IF_ERROR(coordinator_->Submit(update));
  UpdateDevice(update.client_id(), [&](DeviceStatus& d) {
    d.updates_accepted += 1;
    d.model_version = update.model_version();
    d.has_model_version = true;
  });
  LogEvent("info", "update_accepted",
           {{"client", update.client_id()},
            {"round", std::to_string(update.round())},
            {"bytes", std::to_string(update.ByteSizeLong())}});
  return absl::OkStatus();
}

void AggregatorServer::Impl::AcquireUploadSlot(std::function<void()> start) {
  {
    std::lock_guard<std::mutex> lock(upload_mu_);
    if (uploads_active_ >= options_.max_concurrent_uploads) {
      upload_queue_.push_back(std::move(start));
      return;
    }
    ++uploads_active_;
  }
  start();
}

void AggregatorServer::Impl::ReleaseUploadSlot() {
  std::function<void()> next;
  {
    std::lock_guard<std::mutex> lock(upload_mu_);
    if (upload_queue_.empty()) {
      --uploads_active_;
      return;
    }
    next = std::move(upload_queue_.front());
    upload_queue_.pop_front();
  }
  next();  // the slot passes to the next upload
}

void AggregatorServer::Impl::RecordMetrics(const v1::MetricsReport& report) {
  if (!report.task_refused().empty()) {
    coordinator_->RecordRefusal(report.client_id(), report.round(), report.task_refused());
    return;
  }
  UpdateDevice(report.client_id(), [&](DeviceStatus& d) {
    for (const auto& [key, value] : report.metrics()) {
      if (std::isfinite(value)) d.last_metrics[key] = value;
    }
  });
  coordinator_->RecordMetrics(report.client_id(), report.round(), report.model_version(),
                              {report.metrics().begin(), report.metrics().end()});
}

absl::Status AggregatorServer::Impl::RecordDrift(const std::string& client_id,
                                                 const v1::DriftReport& report) {
  FEDGE_RETURN_IF_ERROR(coordinator_->RecordDrift(client_id, report));
  UpdateDevice(client_id, [&](DeviceStatus& d) {
    d.last_drift_ms = WallMs();
    d.drift_reports += 1;
    if (report.events_size() > 0) {
      d.last_drift_detector = report.events(0).detector();
      d.last_drift_stream = report.events(0).stream();
    }
  });
  return absl::OkStatus();
}

v1::HeartbeatResponse AggregatorServer::Impl::HeartbeatFor(const std::string& client_id) {
  coordinator_->MarkAvailable(client_id);
  UpdateDevice(client_id, [](DeviceStatus& d) { d.heartbeats = true; }, /*heartbeat=*/true);
  v1::HeartbeatResponse response;
  response.set_latest_version(live_version());
  response.set_round_open(coordinator_->round_status().open);
  return response;
}

}  // namespace fedge::aggregator
