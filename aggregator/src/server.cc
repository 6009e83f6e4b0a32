#include "fedge/aggregator/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "fedge/aggregator/metrics.h"
#include "fedge/aggregator/ops_server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "fedge/v1/service.grpc.pb.h"
#include "ops_api.h"

namespace fedge::aggregator {
namespace {

using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::string Sha256(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// The serialized artifacts of one version, as served.
struct ServedVersion {
  std::shared_ptr<const std::string> artifact;  // int8 (or the configured precision)
  std::shared_ptr<const std::string> master;    // fp32
  std::string artifact_sha256;
};

class FederationService;

}  // namespace

class AggregatorServer::Impl : public FleetControl {
 public:
  explicit Impl(AggregatorServerOptions options) : options_(std::move(options)) {}
  ~Impl() { Shutdown(); }

  absl::Status Init();
  void Shutdown();
  absl::Status Wait();

  // --- called by the service -------------------------------------------
  // The enrolled, unrevoked device behind a call, or the error to return.
  absl::StatusOr<std::string> Authenticate(grpc::CallbackServerContext* context,
                                           const std::string& claimed_id) const;
  void MarkAvailable(const std::string& client_id);
  void FillJoin(v1::JoinResponse* response) const;
  // A task for the device now, or nullopt.
  std::optional<v1::PollTaskResponse> TaskNow(const std::string& client_id) const;
  // Registers waiting poll `id` (from NewWaiterId); `done` is called exactly
  // once (from some thread, maybe before AddWaiter returns) with a task
  // response, an empty one at the timeout, or an error at shutdown/cancel.
  uint64_t NewWaiterId();
  void AddWaiter(uint64_t id, const std::string& client_id, std::chrono::milliseconds wait,
                 std::function<void(grpc::Status, v1::PollTaskResponse)> done);
  void AddSecAggWaiter(uint64_t id, const v1::SecAggPollRequest& request,
                       std::chrono::milliseconds wait,
                       std::function<void(grpc::Status, v1::SecAggServerMessage)> done);
  // Secure aggregation: a device's phase message; its answer (UNAVAILABLE
  // until the phase closed).
  absl::Status SecAggReceive(const std::string& client_id, const v1::SecAggClientMessage& message);
  absl::StatusOr<v1::SecAggServerMessage> SecAggAnswer(const std::string& client_id,
                                                       const v1::SecAggPollRequest& request) const;
  bool secure() const { return secure_ != nullptr; }
  void CancelWaiter(uint64_t id);
  absl::StatusOr<std::shared_ptr<const std::string>> ServedBytes(uint64_t version,
                                                                 v1::TensorEncoding encoding) const;
  // Validates, journals and folds one update (on a worker thread).
  absl::Status AcceptUpdate(const v1::EncodedUpdate& update);
  // Admission of uploads: `start` runs now or when a slot frees.
  void AcquireUploadSlot(std::function<void()> start);
  void ReleaseUploadSlot();
  void RunOnWorker(std::function<void()> task) { asio::post(*workers_, std::move(task)); }
  absl::Status CheckSubmitHeader(const std::string& client_id,
                                 const v1::UpdateHeader& header) const;
  const AggregatorServerOptions& options() const { return options_; }
  void RecordMetrics(const v1::MetricsReport& report);
  absl::Status RecordDrift(const std::string& client_id, const v1::DriftReport& report);
  v1::HeartbeatResponse HeartbeatFor(const std::string& client_id);

  uint64_t live_version() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_version_;
  }

  int port = 0;
  std::unique_ptr<ModelRegistry> registry;
  AggregatorMetrics metrics;
  // Fleet events for operators (status API, dashboard, fedge_events_total).
  EventLog event_log;
  std::unique_ptr<OpsHttpServer> ops_server;
  std::string ops_token;

  // --- operations (FleetControl; see the "fleet status" section) -----------
  FleetOverview Overview() const override;
  CurrentRound Round() const override;
  std::vector<RoundSummary> RoundHistory(size_t limit, uint64_t before) const override;
  absl::StatusOr<DevicePage> Devices(const DeviceQuery& query) const override;
  absl::StatusOr<std::vector<VersionStatus>> Versions() const override;
  const EventLog& events() const override { return event_log; }
  std::string RenderMetrics() const override;
  absl::Status RevokeDevice(const std::string& id, const std::string& reason) override;
  absl::Status PauseRounds(const std::string& reason) override;
  absl::Status ResumeRounds(const std::string& reason) override;
  absl::Status Promote(uint64_t version, const std::string& reason) override;
  absl::StatusOr<uint64_t> RollBackTo(uint64_t version, const std::string& reason) override;
  // Device tracking: what the status API reports per device.
  void NoteDownload(const std::string& client_id, uint64_t version, uint64_t bytes);
  void NoteRefused(const std::string& client_id);

 private:
  friend class AggregatorServer;
  absl::Status RestoreOrInitModel();
  absl::Status RestoreOpenRound();
  absl::Status StartGrpc();
  void Tick();
  void MaybeOpenRound();
  void CloseRound(const char* why);
  void Checkpoint();
  void ArmDeadline(std::chrono::milliseconds after);
  void Serve(uint64_t version, const v1::ModelArtifact& artifact, const v1::ModelArtifact& master);
  // Answers every held call (or one) that can be answered now.
  void WakeWaiters();
  void WakeWaiter(uint64_t id);
  void AnswerIfReady(uint64_t id, const std::function<std::function<void()>()>& probe);
  struct Waiter;
  void RegisterWaiter(uint64_t id, Waiter waiter, std::chrono::milliseconds wait);
  void CloseSecAggPhase(const char* why);
  void Fatal(const absl::Status& status);
  // --- gated rollout and alerts (round thread) ---
  absl::Status RestoreRollout();
  // Evaluates `master` with options_.validate: {accuracy, loss}.
  absl::StatusOr<std::pair<double, double>> Validate(const v1::ModelArtifact& master);
  // Publishes `target`'s stored model as a new live version.
  absl::StatusOr<uint64_t> Republish(uint64_t target, const std::string& note);
  // Starts a waiting canary, or acts on a running one's verdict.
  void AdvanceRollout();
  void GoLive(uint64_t version, double validation_accuracy);
  void RaiseAlerts(const std::vector<Alert>& alerts);
  // Devices that polled within the longest poll wait (plus a second); mu_ held.
  std::vector<std::string> AvailableLocked() const;
  std::optional<v1::PollTaskResponse> EvaluationTaskLocked(const std::string& client_id) const;
  // Fleet status: restores the device table and round history; runs `task`
  // on the round thread (inline when called from it).
  absl::Status RestoreFleet();
  absl::Status StartOps();
  absl::Status RunOnRoundThread(const std::function<absl::Status()>& task);
  absl::Status RollBackOnRoundThread(uint64_t target, const std::string& reason,
                                     uint64_t* published);
  void UpdateDevice(const std::string& client_id, const std::function<void(DeviceStatus&)>& update);
  std::string DeviceState(const DeviceStatus& device, int64_t now_ms) const;

  AggregatorServerOptions options_;
  std::unique_ptr<StateStore> store_;
  std::optional<models::SigningKey> key_;
  models::ModelSpec spec_;
  std::vector<models::ParameterLayout> layout_;
  std::unique_ptr<RoundManager> rounds_;
  std::unique_ptr<SecureAggregation> secure_;
  std::unique_ptr<FederationService> service_;
  std::unique_ptr<grpc::Server> server_;

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::optional<asio::steady_timer> tick_timer_;
  std::optional<asio::steady_timer> deadline_timer_;
  std::thread io_thread_;
  std::unique_ptr<asio::thread_pool> workers_;

  std::mutex shutdown_mu_;
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  bool stopping_ = false;
  bool finished_ = false;
  absl::Status fatal_;
  bool replaying_ = false;
  bool round_open_ = false;
  bool closing_ = false;
  uint64_t round_ = 0;
  uint64_t next_round_ = 1;
  uint64_t closed_rounds_ = 0;
  size_t goal_ = 0;
  int64_t deadline_wall_ms_ = 0;
  std::set<std::string, std::less<>> cohort_;
  std::set<std::string, std::less<>> submitted_;
  std::map<std::string, Clock::time_point, std::less<>> last_seen_;
  // A held call (task poll or secure-aggregation poll). `probe` returns
  // the completion to run when the call can be answered now, or an empty
  // function; `expire` answers it at its timeout; `abort` at shutdown or
  // cancellation.
  struct Waiter {
    std::function<std::function<void()>()> probe;
    std::function<void()> expire;
    std::function<void(grpc::Status)> abort;
    std::shared_ptr<asio::steady_timer> timer;
  };
  std::map<uint64_t, Waiter> waiters_;
  uint64_t next_waiter_ = 1;
  std::map<uint64_t, ServedVersion> served_;
  std::map<std::string, std::map<std::string, double>> round_metrics_;
  // Secure aggregation: devices that answered the collecting phase, and how
  // many are expected to (those that answered the phase before).
  std::set<std::string, std::less<>> phase_senders_;
  size_t phase_expected_ = 0;
  uint64_t secagg_bytes_up_ = 0;  // protocol messages received this round

  // Rollout: the version every device is served, its validation accuracy
  // (NaN when not evaluated), and a validated candidate whose canary has
  // not started yet (no device was available).
  uint64_t live_version_ = 0;
  double live_accuracy_ = std::numeric_limits<double>::quiet_NaN();
  std::unique_ptr<RolloutGate> rollout_;
  std::optional<uint64_t> canary_waiting_;
  uint64_t candidate_round_ = 0;
  double candidate_accuracy_ = std::numeric_limits<double>::quiet_NaN();
  std::unique_ptr<AlertMonitor> alerts_;
  std::map<std::string, Clock::time_point, std::less<>> last_drift_;

  std::mutex upload_mu_;
  int uploads_active_ = 0;
  std::deque<std::function<void()>> upload_queue_;

  // Fleet status. `paused_` and `round_summary_` are guarded by mu_; the
  // device table, the round history and the signature cache by fleet_mu_
  // (never held while taking mu_).
  bool paused_ = false;
  RoundSummary round_summary_;  // the open round's figures so far
  mutable std::mutex fleet_mu_;
  std::map<std::string, DeviceStatus, std::less<>> devices_;
  std::deque<RoundSummary> history_;  // finished rounds, oldest first
  mutable std::map<uint64_t, std::string> signatures_;
};

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
    impl_->FillJoin(response);
    impl_->metrics.clients_joined += 1;
    LogEvent("info", "client_joined", {{"client", *id}, {"software", request->software()}});
    reactor->Finish(grpc::Status::OK);
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
        impl_->metrics.drift_reports += 1;
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

}  // namespace

// --- Impl: start-up and restore ------------------------------------------------

absl::Status AggregatorServer::Impl::Init() {
  const RoundPolicy& policy = options_.policy;
  if (policy.goal < 0 || (policy.goal == 0 && !(policy.fraction > 0.0 && policy.fraction <= 1.0))) {
    return absl::InvalidArgumentError(
        "round policy: set goal >= 1 updates per round, or a fraction in (0, 1]");
  }
  if (policy.min_clients < 1) {
    return absl::InvalidArgumentError("round policy: min_clients must be >= 1");
  }
  if (policy.min_updates < 1) {
    return absl::InvalidArgumentError("round policy: min_updates must be >= 1");
  }
  if (!(policy.over_selection >= 0.0)) {
    return absl::InvalidArgumentError("round policy: over_selection must be >= 0");
  }
  if (!(policy.lr_decay > 0.0 && policy.lr_decay <= 1.0)) {
    return absl::InvalidArgumentError("round policy: lr_decay must be in (0, 1]");
  }
  if (policy.deadline.count() <= 0) {
    return absl::InvalidArgumentError("round policy: the deadline must be > 0");
  }
  if (options_.workers < 1 || options_.max_concurrent_uploads < 1 || options_.chunk_bytes < 1024) {
    return absl::InvalidArgumentError(
        "workers and max_concurrent_uploads must be >= 1 and chunk_bytes >= 1024");
  }
  if (options_.signing_key_file.empty()) {
    return absl::InvalidArgumentError("the aggregator needs a model-signing key (signing_key)");
  }
  FEDGE_RETURN_IF_ERROR(ValidateRolloutPolicy(options_.rollout));
  FEDGE_RETURN_IF_ERROR(ValidateAlertRules(options_.alerts));
  if (options_.rollout.enabled && !options_.validate) {
    return absl::InvalidArgumentError(
        "rollout.enabled needs a validation set to evaluate new versions on (validation.*)");
  }
  if (options_.rollout.enabled) rollout_ = std::make_unique<RolloutGate>(options_.rollout);
  alerts_ = std::make_unique<AlertMonitor>(options_.alerts);
  absl::StatusOr<models::SigningKey> key = models::SigningKey::LoadPem(options_.signing_key_file);
  if (!key.ok()) {
    return absl::Status(key.status().code(), absl::StrCat("signing key: ", key.status().message()));
  }
  key_.emplace(*std::move(key));
  FEDGE_ASSIGN_OR_RETURN(store_, StateStore::Open(options_.state_dir));
  FEDGE_RETURN_IF_ERROR(RestoreOrInitModel());
  FEDGE_RETURN_IF_ERROR(RestoreRollout());

  FEDGE_ASSIGN_OR_RETURN(std::unique_ptr<Strategy> strategy,
                         CreateStrategy(options_.strategy, options_.strategy_options));
  FEDGE_ASSIGN_OR_RETURN(std::string strategy_state, store_->GetSetting("strategy_state"));
  if (!strategy_state.empty()) {
    if (absl::Status s = strategy->RestoreState(strategy_state); !s.ok()) {
      return absl::DataLossError(
          absl::StrCat("the stored state of strategy '", options_.strategy,
                       "' does not restore (was the strategy changed?): ", s.message()));
    }
  }
  RoundManagerOptions round_options;
  round_options.codec = options_.codec;
  round_options.min_updates = policy.min_updates;
  round_options.on_accept = [this](const v1::EncodedUpdate& update, uint64_t sequence) {
    if (replaying_) return absl::OkStatus();
    return store_->JournalUpdate(update.round(), sequence, update);
  };
  if (options_.secure_aggregation.has_value()) {
    FEDGE_ASSIGN_OR_RETURN(secure_,
                           SecureAggregation::Create(*options_.secure_aggregation, *strategy));
  }
  FEDGE_ASSIGN_OR_RETURN(
      rounds_, RoundManager::Create(std::move(strategy), registry.get(), std::move(round_options)));
  FEDGE_ASSIGN_OR_RETURN(std::vector<RoundRecord> history, store_->Rounds());
  for (const RoundRecord& record : history) {
    if (record.state == RoundState::kClosed) ++closed_rounds_;
  }
  FEDGE_ASSIGN_OR_RETURN(uint64_t last_round, store_->LastRoundId());
  next_round_ = last_round + 1;
  workers_ = std::make_unique<asio::thread_pool>(options_.workers);
  FEDGE_RETURN_IF_ERROR(RestoreOpenRound());
  FEDGE_RETURN_IF_ERROR(RestoreFleet());
  FEDGE_RETURN_IF_ERROR(StartGrpc());
  FEDGE_RETURN_IF_ERROR(StartOps());
  if (auto latest = registry->Latest(); latest.ok()) metrics.model_version = (*latest)->version;

  work_.emplace(io_.get_executor());
  tick_timer_.emplace(io_);
  deadline_timer_.emplace(io_);
  io_thread_ = std::thread([this] { io_.run(); });
  asio::post(io_, [this] {
    if (round_open_) ArmDeadline(options_.policy.deadline);
    Tick();
  });
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::RestoreOrInitModel() {
  ModelRegistryOptions registry_options;
  registry_options.keep_latest = 4;
  registry_options.encoding.precision = options_.precision;
  registry_options.annotate = [this](std::span<const float>, v1::ModelArtifact& artifact) {
    return models::SignArtifact(artifact, *key_);
  };
  absl::StatusOr<VersionRecord> latest = store_->LatestVersion();
  if (latest.ok()) {
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(latest->version));
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(latest->version));
    for (const v1::ModelArtifact* stored : {&master, &artifact}) {
      if (absl::Status s = models::VerifySignedArtifact(*stored, key_->public_key()); !s.ok()) {
        return absl::DataLossError(
            absl::StrCat("stored model version ", latest->version,
                         " does not verify with the signing key: ", s.message()));
      }
    }
    FEDGE_ASSIGN_OR_RETURN(spec_, models::FromProto(master.header().model()));
    FEDGE_ASSIGN_OR_RETURN(layout_, models::LayoutOfArtifact(master));
    ModelVersion version;
    version.version = latest->version;
    version.parent_version = latest->parent;
    version.parameters.resize(static_cast<size_t>(models::LayoutSize(layout_)));
    FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(master, layout_, version.parameters));
    version.artifact_bytes = artifact.ByteSizeLong();
    version.fp32_artifact_bytes = master.ByteSizeLong();
    version.artifact = std::make_shared<const v1::ModelArtifact>(artifact);
    registry = std::make_unique<ModelRegistry>(spec_, layout_, registry_options);
    FEDGE_RETURN_IF_ERROR(registry->Adopt(std::move(version)));
    Serve(latest->version, artifact, master);
    LogEvent("info", "state_restored",
             {{"state_dir", options_.state_dir.string()},
              {"latest_version", std::to_string(latest->version)}});
    return absl::OkStatus();
  }
  if (latest.status().code() != absl::StatusCode::kNotFound) return latest.status();
  if (!options_.initial_model.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("state directory ", options_.state_dir.string(),
                     " holds no model version and no initial model was given"));
  }
  const v1::ModelArtifact& initial = *options_.initial_model;
  FEDGE_RETURN_IF_ERROR(models::VerifyArtifact(initial));
  FEDGE_ASSIGN_OR_RETURN(spec_, models::FromProto(initial.header().model()));
  FEDGE_ASSIGN_OR_RETURN(layout_, models::LayoutOfArtifact(initial));
  std::vector<float> parameters(static_cast<size_t>(models::LayoutSize(layout_)));
  FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(initial, layout_, parameters));
  registry = std::make_unique<ModelRegistry>(spec_, layout_, registry_options);
  FEDGE_ASSIGN_OR_RETURN(auto published, registry->Publish(parameters, 0, {}));
  models::ArtifactOptions master_options;
  master_options.version = published->version;
  master_options.created_at_unix_ms = published->artifact->header().created_at_unix_ms();
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master,
                         models::BuildFp32Artifact(spec_, layout_, parameters, master_options));
  FEDGE_RETURN_IF_ERROR(models::SignArtifact(master, *key_));
  VersionRecord record;
  record.version = published->version;
  record.created_at_ms = master_options.created_at_unix_ms;
  record.note = "initial model";
  record.master_bytes = master.ByteSizeLong();
  record.artifact_bytes = published->artifact_bytes;
  FEDGE_RETURN_IF_ERROR(store_->AddVersion(record, master, *published->artifact));
  Serve(published->version, *published->artifact, master);
  LogEvent("info", "state_initialized",
           {{"state_dir", options_.state_dir.string()},
            {"architecture", spec_.architecture},
            {"parameters", std::to_string(parameters.size())},
            {"artifact_bytes", std::to_string(record.artifact_bytes)},
            {"fp32_bytes", std::to_string(record.master_bytes)}});
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::RestoreOpenRound() {
  FEDGE_ASSIGN_OR_RETURN(std::optional<OpenRoundState> open, store_->LoadOpenRound());
  if (!open.has_value()) return absl::OkStatus();
  const RoundRecord& record = open->record;
  if (secure_ != nullptr) {
    // The protocol's secrets lived in the killed process: this round cannot
    // finish. Nothing of it was aggregated, so nothing is lost.
    LogEvent("warning", "round_failed", {{"round", std::to_string(record.round)}},
             "a secure-aggregation round does not survive a restart");
    return store_->FailRound(record.round,
                             "interrupted by a restart (secure aggregation keeps no state)");
  }
  FEDGE_RETURN_IF_ERROR(rounds_->ResumeRound(record.round, record.model_version, record.cohort,
                                             record.train,
                                             open->checkpoint ? &*open->checkpoint : nullptr));
  replaying_ = true;
  for (const v1::EncodedUpdate& update : open->journal) {
    if (absl::Status s = rounds_->Submit(update); !s.ok()) {
      replaying_ = false;
      return absl::DataLossError(absl::StrCat("replaying round ", record.round,
                                              "'s journal: the update of '", update.client_id(),
                                              "' is refused: ", s.message()));
    }
  }
  replaying_ = false;
  std::lock_guard<std::mutex> lock(mu_);
  round_open_ = true;
  round_ = record.round;
  // The deadline is re-armed in full at start (see Init).
  deadline_wall_ms_ = WallMs() + options_.policy.deadline.count();
  round_summary_ = RoundSummary{.round = record.round,
                                .model_version = record.model_version,
                                .outcome = "open",
                                .opened_at_ms = record.opened_at_ms,
                                .selected = record.cohort.size()};
  cohort_.insert(record.cohort.begin(), record.cohort.end());
  FEDGE_ASSIGN_OR_RETURN(std::vector<std::string> accepted, store_->AcceptedClients(record.round));
  submitted_.insert(accepted.begin(), accepted.end());
  goal_ = options_.policy.goal > 0
              ? std::min<size_t>(static_cast<size_t>(options_.policy.goal), record.cohort.size())
              : static_cast<size_t>(std::ceil(static_cast<double>(record.cohort.size()) /
                                              (1.0 + options_.policy.over_selection)));
  goal_ = std::max<size_t>(goal_, 1);
  LogEvent("info", "round_resumed",
           {{"round", std::to_string(record.round)},
            {"accepted", std::to_string(rounds_->accepted())},
            {"from_checkpoint",
             open->checkpoint ? std::to_string(open->checkpoint->accepted()) : std::string("0")},
            {"replayed", std::to_string(open->journal.size())}});
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::StartGrpc() {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  const ServerTlsOptions& tls = options_.tls;
  if (tls.insecure) {
    LogEvent("warning", "insecure", {{"listen", options_.listen_address}},
             "serving WITHOUT TLS: device updates, tokens and models cross the network in the "
             "clear; use only on loopback for tests");
    credentials = grpc::InsecureServerCredentials();
  } else {
    if (tls.cert_file.empty() || tls.key_file.empty()) {
      return absl::InvalidArgumentError(
          "TLS needs a server certificate and key (tls.cert, tls.key), or --insecure");
    }
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    FEDGE_ASSIGN_OR_RETURN(pair.cert_chain, proto::ReadFile(tls.cert_file));
    FEDGE_ASSIGN_OR_RETURN(pair.private_key, proto::ReadFile(tls.key_file));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    if (!tls.client_ca_file.empty()) {
      FEDGE_ASSIGN_OR_RETURN(ssl.pem_root_certs, proto::ReadFile(tls.client_ca_file));
      ssl.client_certificate_request =
          tls.require_client_certificate
              ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
              : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    } else if (tls.require_client_certificate) {
      return absl::InvalidArgumentError(
          "require_client_certificate needs the CA of device certificates (tls.client_ca)");
    }
    credentials = grpc::SslServerCredentials(ssl);
  }
  service_ = std::make_unique<FederationService>(this);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, credentials, &port);
  builder.RegisterService(service_.get());
  // Masked vectors of secure aggregation arrive in one message (4 bytes per
  // parameter, plus the weight).
  const int64_t secagg_bytes =
      secure_ != nullptr ? 4 * (registry->num_parameters() + 1) + (64 << 10) : 0;
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::max<int64_t>(static_cast<int64_t>(options_.chunk_bytes) + (64 << 10), secagg_bytes)));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.chunk_bytes) + (64 << 10));
  // Flow control: with gRPC's BDP probe on, every stream's receive window
  // grows to about twice the connection's bandwidth-delay product, which on a
  // fast link is megabytes, so an upload waiting for a slot (see
  // max_concurrent_uploads) would be received anyway and sit in memory: with
  // 1,000 devices submitting 2.3 MB updates at once, RSS rose by ~1.4 GB in
  // seconds (bench/load.sh). Without the probe a stream nobody reads holds at
  // most the default 64 KiB window; a stream being read still gets the window
  // of the message it reads.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address,
                     " (address in use, or a certificate or key that does not load)"));
  }
  LogEvent("info", "listening",
           {{"address", options_.listen_address},
            {"port", std::to_string(port)},
            {"tls", tls.insecure ? "off" : (tls.client_ca_file.empty() ? "server" : "mutual")}});
  return absl::OkStatus();
}

// --- Impl: rounds ----------------------------------------------------------------

std::vector<std::string> AggregatorServer::Impl::AvailableLocked() const {
  // Available: polled within the longest poll wait plus a second of grace.
  std::vector<std::string> available;
  const auto horizon = Clock::now() - options_.max_poll_wait - std::chrono::seconds(1);
  for (const auto& [id, seen] : last_seen_) {
    if (seen >= horizon) available.push_back(id);
  }
  return available;
}

void AggregatorServer::Impl::Tick() {
  AdvanceRollout();
  MaybeOpenRound();
  tick_timer_->expires_after(std::chrono::milliseconds(50));
  tick_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

void AggregatorServer::Impl::MaybeOpenRound() {
  std::vector<std::string> available;
  uint64_t round;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || finished_ || round_open_ || paused_) return;
    if (options_.policy.rounds > 0 && closed_rounds_ >= options_.policy.rounds) return;
    // Rounds train from the live version only: none opens during a canary.
    if (canary_waiting_.has_value() || (rollout_ != nullptr && rollout_->canary_active())) return;
    available = AvailableLocked();
    round = next_round_;
  }
  const RoundPolicy& policy = options_.policy;
  if (available.size() < static_cast<size_t>(policy.min_clients)) return;
  size_t goal =
      policy.goal > 0
          ? static_cast<size_t>(policy.goal)
          : static_cast<size_t>(std::ceil(policy.fraction * static_cast<double>(available.size())));
  goal = std::clamp<size_t>(goal, 1, available.size());
  const size_t selected = std::min(
      available.size(),
      static_cast<size_t>(std::ceil(static_cast<double>(goal) * (1.0 + policy.over_selection))));
  absl::StatusOr<std::vector<std::string>> cohort =
      RoundManager::SelectCohort(available, static_cast<int>(selected), policy.seed, round);
  if (!cohort.ok()) return Fatal(cohort.status());
  v1::TrainConfig train = policy.train;
  train.set_seed(policy.train.seed() ^ (0x9E3779B97F4A7C15ULL * round));
  train.set_learning_rate(static_cast<float>(
      policy.train.learning_rate() * std::pow(policy.lr_decay, static_cast<double>(round - 1))));
  RoundRecord record;
  record.round = round;
  record.cohort = *cohort;
  record.train = train;
  record.opened_at_ms = WallMs();
  record.deadline_at_ms = record.opened_at_ms + policy.deadline.count();
  absl::StatusOr<std::shared_ptr<const ModelVersion>> base = registry->Latest();
  if (!base.ok()) return Fatal(base.status());
  record.model_version = (*base)->version;
  // Durable first: a round the store does not know of must not hand out tasks.
  if (absl::Status s = store_->BeginRound(record); !s.ok()) return Fatal(s);
  if (absl::Status s = rounds_->OpenRound(round, *cohort, train); !s.ok()) return Fatal(s);
  if (secure_ != nullptr) {
    absl::StatusOr<v1::SecAggConfig> started = secure_->StartRound(
        round, *cohort, static_cast<uint64_t>(registry->num_parameters()), v1::PrivacyConfig());
    if (!started.ok()) return Fatal(started.status());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    phase_senders_.clear();
    phase_expected_ = cohort->size();
    secagg_bytes_up_ = 0;
    round_open_ = true;
    round_ = round;
    next_round_ = round + 1;
    goal_ = goal;
    deadline_wall_ms_ = record.deadline_at_ms;
    cohort_ = {cohort->begin(), cohort->end()};
    submitted_.clear();
    round_metrics_.clear();
    round_summary_ = RoundSummary{.round = round,
                                  .model_version = record.model_version,
                                  .outcome = "open",
                                  .opened_at_ms = record.opened_at_ms,
                                  .selected = selected};
  }
  for (const std::string& id : *cohort) {
    UpdateDevice(id, [](DeviceStatus& d) { d.rounds_selected += 1; });
  }
  metrics.rounds_opened += 1;
  metrics.clients_selected += selected;
  metrics.clients_available = available.size();
  metrics.round_open = 1;
  event_log.Record("info", "round_opened",
                   absl::StrCat("round ", round, " opened on version ", record.model_version,
                                " with ", selected, " of ", available.size(), " devices"),
                   {{"round", std::to_string(round)},
                    {"model_version", std::to_string(record.model_version)},
                    {"available", std::to_string(available.size())},
                    {"selected", std::to_string(selected)},
                    {"goal", std::to_string(goal)},
                    {"deadline_ms", std::to_string(policy.deadline.count())}});
  ArmDeadline(policy.deadline);
  WakeWaiters();
}

void AggregatorServer::Impl::ArmDeadline(std::chrono::milliseconds after) {
  const uint64_t round = round_;
  deadline_timer_->expires_after(after);
  deadline_timer_->async_wait([this, round](const boost::system::error_code& ec) {
    if (ec) return;
    bool current;
    {
      std::lock_guard<std::mutex> lock(mu_);
      current = round_open_ && round_ == round;
    }
    if (!current) return;
    if (secure_ != nullptr) {
      CloseSecAggPhase("deadline");
    } else {
      CloseRound("deadline");
    }
  });
}

void AggregatorServer::Impl::CloseSecAggPhase(const char* why) {
  const v1::SecAggPhase closing = secure_->phase();
  if (closing == v1::SECAGG_PHASE_UNSPECIFIED) return;  // finished already
  absl::Status closed = secure_->ClosePhase();
  size_t answered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    answered = phase_senders_.size();
    phase_expected_ = answered;
    phase_senders_.clear();
  }
  LogEvent(closed.ok() ? "info" : "warning", "secagg_phase_closed",
           {{"round", std::to_string(round_)},
            {"phase", v1::SecAggPhase_Name(closing)},
            {"answered", std::to_string(answered)},
            {"why", why}},
           closed.ok() ? std::string() : std::string(closed.message()));
  if (!closed.ok()) {
    WakeWaiters();  // polls of this round now learn it ended
    return CloseRound("secure aggregation aborted");
  }
  if (closing == v1::SECAGG_PHASE_UNMASKING) {
    absl::StatusOr<SecureRoundOutcome> finished = secure_->Finish(*rounds_);
    if (!finished.ok()) {
      LogEvent("warning", "secagg_aborted", {{"round", std::to_string(round_)}},
               std::string(finished.status().message()));
    }
    WakeWaiters();
    return CloseRound("secure aggregation finished");
  }
  ArmDeadline(options_.secagg_phase_timeout);
  WakeWaiters();
}

void AggregatorServer::Impl::CloseRound(const char* why) {
  uint64_t round;
  int selected;
  int reported;
  RoundSummary summary;
  std::vector<std::string> missing;  // cohort devices without an accepted update
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!round_open_) return;
    round = round_;
    round_open_ = false;
    selected = static_cast<int>(cohort_.size());
    reported = static_cast<int>(submitted_.size());
    summary = round_summary_;
    if (secure_ == nullptr) {
      for (const std::string& id : cohort_) {
        if (!submitted_.contains(id)) missing.push_back(id);
      }
    }
  }
  // The round's figures for the history and the metrics; `reported` is
  // the number of updates the round counted.
  auto finish = [&](const char* outcome, uint64_t reported, uint64_t new_version,
                    std::string reason) {
    summary.outcome = outcome;
    summary.closed_at_ms = WallMs();
    summary.reported = reported;
    summary.dropped = summary.selected > reported ? summary.selected - reported : 0;
    summary.new_version = new_version;
    summary.reason = std::move(reason);
    metrics.clients_reported += reported;
    metrics.clients_dropped += summary.dropped;
    metrics.last_round_seconds = (summary.closed_at_ms - summary.opened_at_ms) / 1000.0;
    std::lock_guard<std::mutex> lock(fleet_mu_);
    for (const std::string& id : missing) {
      if (auto it = devices_.find(id); it != devices_.end()) it->second.tasks_failed += 1;
    }
    history_.push_back(summary);
    while (history_.size() > 10'000) history_.pop_front();
  };
  deadline_timer_->cancel();
  const auto close_start = Clock::now();
  metrics.round_open = 0;
  absl::StatusOr<RoundOutcome> outcome = rounds_->CloseRound();
  if (!outcome.ok()) {
    if (outcome.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Fatal(outcome.status());
    }
    metrics.rounds_failed += 1;
    if (secure_ != nullptr) missing.clear();
    finish("failed", 0, 0, std::string(outcome.status().message()));
    event_log.Record(
        "warning", "round_failed",
        absl::StrCat("round ", round, " failed (", why, "): ", outcome.status().message()),
        {{"round", std::to_string(round)}, {"why", why}});
    {
      std::lock_guard<std::mutex> lock(mu_);
      RaiseAlerts(alerts_->OnRound(round, true, selected, reported));
    }
    if (absl::Status s = store_->FailRound(round, std::string(outcome.status().message()));
        !s.ok()) {
      return Fatal(s);
    }
    if (options_.on_round_closed) {
      RoundOutcome failed;
      failed.round = round;
      options_.on_round_closed(failed);
    }
    WakeWaiters();
    return;
  }
  absl::StatusOr<std::shared_ptr<const ModelVersion>> version = registry->Get(outcome->new_version);
  if (!version.ok()) return Fatal(version.status());
  models::ArtifactOptions master_options;
  master_options.version = (*version)->version;
  master_options.parent_version = (*version)->parent_version;
  master_options.created_at_unix_ms = (*version)->artifact->header().created_at_unix_ms();
  for (const auto& [key, value] : (*version)->artifact->header().metrics()) {
    master_options.metrics[key] = value;
  }
  absl::StatusOr<v1::ModelArtifact> master =
      models::BuildFp32Artifact(spec_, layout_, (*version)->parameters, master_options);
  if (!master.ok()) return Fatal(master.status());
  if (absl::Status s = models::SignArtifact(*master, *key_); !s.ok()) return Fatal(s);
  VersionRecord record;
  record.version = (*version)->version;
  record.parent = (*version)->parent_version;
  record.created_at_ms = master_options.created_at_unix_ms;
  record.round = round;
  record.master_bytes = master->ByteSizeLong();
  record.artifact_bytes = (*version)->artifact_bytes;
  record.metrics = master_options.metrics;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, values] : round_metrics_) {
      double sum = 0.0;
      for (const auto& [client, value] : values) sum += value;
      if (!values.empty()) record.metrics["clients_" + key] = sum / values.size();
    }
  }
  record.metrics["participants"] = outcome->participants;
  {
    std::lock_guard<std::mutex> lock(mu_);
    record.metrics["bytes_up"] = static_cast<double>(outcome->bytes_up + secagg_bytes_up_);
    record.metrics["bytes_down"] = static_cast<double>(round_summary_.bytes_down);
    summary.bytes_up = outcome->bytes_up + secagg_bytes_up_;
    summary.bytes_down = round_summary_.bytes_down;
  }
  // The rollout gates: validation now, then (see AdvanceRollout) a canary.
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  std::optional<RolloutDecision> decision;
  std::string validation_error;
  if (options_.validate) {
    absl::StatusOr<std::pair<double, double>> evaluated = Validate(*master);
    if (evaluated.ok()) {
      accuracy = evaluated->first;
      record.metrics["validation_accuracy"] = evaluated->first;
      record.metrics["validation_loss"] = evaluated->second;
      std::lock_guard<std::mutex> lock(mu_);
      RaiseAlerts(alerts_->OnVersion(record.version, accuracy, live_accuracy_));
    } else {
      validation_error = std::string(evaluated.status().message());
      LogEvent("error", "validation_failed", {{"version", std::to_string(record.version)}},
               validation_error);
    }
  }
  if (rollout_ != nullptr) {
    if (!validation_error.empty()) {
      decision =
          RolloutDecision{.kind = RolloutDecision::Kind::kReject,
                          .reason = absl::StrCat("version ", record.version,
                                                 " could not be validated: ", validation_error)};
    } else {
      decision = rollout_->Validate(record.version, accuracy, live_accuracy_);
    }
    record.status = decision->kind == RolloutDecision::Kind::kReject    ? "rejected"
                    : decision->kind == RolloutDecision::Kind::kPending ? "canary"
                                                                        : "live";
    record.status_reason = decision->reason;
  }
  if (absl::Status s = store_->CloseRound(round, outcome->participants, record, *master,
                                          *(*version)->artifact, rounds_->StrategyState());
      !s.ok()) {
    return Fatal(s);
  }
  Serve(record.version, *(*version)->artifact, *master);
  metrics.rounds_closed += 1;
  metrics.model_version = record.version;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RaiseAlerts(alerts_->OnRound(round, false, selected, outcome->participants));
  }
  if (!decision.has_value()) {
    GoLive(record.version, accuracy);
  } else if (decision->kind == RolloutDecision::Kind::kPromote) {
    metrics.rollouts_promoted += 1;
    event_log.Record("info", "rollout_promoted", decision->reason,
                     {{"version", std::to_string(record.version)}, {"stage", "validation"}});
    GoLive(record.version, accuracy);
  } else if (decision->kind == RolloutDecision::Kind::kReject) {
    metrics.rollouts_rejected += 1;
    event_log.Record("warning", "rollout_rejected", decision->reason,
                     {{"version", std::to_string(record.version)}, {"stage", "validation"}});
    const uint64_t live = live_version();
    if (absl::StatusOr<uint64_t> republished = Republish(
            live, absl::StrCat("rollback to ", live, ": version ", record.version, " rejected"));
        !republished.ok()) {
      return Fatal(republished.status());
    }
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    canary_waiting_ = record.version;
    candidate_round_ = round;
    candidate_accuracy_ = accuracy;
  }
  metrics.last_close_seconds = std::chrono::duration<double>(Clock::now() - close_start).count();
  metrics.close_seconds_sum = metrics.close_seconds_sum.load() + metrics.last_close_seconds.load();
  finish("closed", static_cast<uint64_t>(outcome->participants), record.version, why);
  uint64_t closed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed = ++closed_rounds_;
    submitted_.clear();
    cohort_.clear();
  }
  event_log.Record("info", "round_closed",
                   absl::StrCat("round ", round, " closed (", why, ") with ", outcome->participants,
                                " of ", outcome->cohort_size, " updates: version ", record.version),
                   {{"round", std::to_string(round)},
                    {"why", why},
                    {"participants", std::to_string(outcome->participants)},
                    {"cohort", std::to_string(outcome->cohort_size)},
                    {"new_version", std::to_string(record.version)},
                    {"train_loss", std::to_string(outcome->train_loss)},
                    {"artifact_bytes", std::to_string(record.artifact_bytes)},
                    {"fp32_bytes", std::to_string(record.master_bytes)}});
  if (options_.on_round_closed) options_.on_round_closed(*outcome);
  if (options_.policy.rounds > 0 && closed >= options_.policy.rounds) {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    done_cv_.notify_all();
  }
  WakeWaiters();
}

// --- Impl: gated rollout and alerts ---------------------------------------------

absl::Status AggregatorServer::Impl::RestoreRollout() {
  FEDGE_ASSIGN_OR_RETURN(VersionRecord latest, store_->LatestVersion());
  FEDGE_ASSIGN_OR_RETURN(VersionRecord live, store_->LatestLiveVersion());
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_version_ = live.version;
  }
  if (live.version != latest.version) {
    // A candidate is held back: keep serving the live version beside it.
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(live.version));
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(live.version));
    for (const v1::ModelArtifact* stored : {&master, &artifact}) {
      if (absl::Status s = models::VerifySignedArtifact(*stored, key_->public_key()); !s.ok()) {
        return absl::DataLossError(
            absl::StrCat("stored model version ", live.version,
                         " does not verify with the signing key: ", s.message()));
      }
    }
    Serve(live.version, artifact, master);
  }
  if (auto it = live.metrics.find("validation_accuracy"); it != live.metrics.end()) {
    live_accuracy_ = it->second;
  } else if (options_.validate) {
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(live.version));
    absl::StatusOr<std::pair<double, double>> evaluated = Validate(master);
    if (!evaluated.ok()) {
      return absl::Status(evaluated.status().code(),
                          absl::StrCat("validating the live model version ", live.version, ": ",
                                       evaluated.status().message()));
    }
    live_accuracy_ = evaluated->first;
  }
  if (latest.status == "canary") {
    if (rollout_ != nullptr) {
      // The canary's reports lived in memory: it starts over.
      candidate_round_ = latest.round;
      auto it = latest.metrics.find("validation_accuracy");
      candidate_accuracy_ = it != latest.metrics.end() ? it->second : candidate_accuracy_;
      canary_waiting_ = latest.version;
    } else {
      FEDGE_RETURN_IF_ERROR(
          store_->SetVersionStatus(latest.version, "live", "the rollout gate was turned off"));
      GoLive(latest.version, std::numeric_limits<double>::quiet_NaN());
    }
  } else if (latest.status != "live") {
    // Stopped between refusing a version and publishing the live one again.
    FEDGE_RETURN_IF_ERROR(
        Republish(live.version, absl::StrCat("rollback to ", live.version, ": version ",
                                             latest.version, " ", latest.status))
            .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<double, double>> AggregatorServer::Impl::Validate(
    const v1::ModelArtifact& master) {
  absl::StatusOr<std::map<std::string, double>> evaluated = options_.validate(master);
  if (!evaluated.ok()) return evaluated.status();
  auto accuracy = evaluated->find("accuracy");
  auto loss = evaluated->find("loss");
  if (accuracy == evaluated->end() || loss == evaluated->end() ||
      !(accuracy->second >= 0.0 && accuracy->second <= 1.0) || !std::isfinite(loss->second)) {
    return absl::InternalError(
        "the validation hook must return an accuracy in [0, 1] and a finite loss");
  }
  LogEvent("info", "version_validated",
           {{"version", std::to_string(master.header().version())},
            {"accuracy", std::to_string(accuracy->second)},
            {"loss", std::to_string(loss->second)}});
  return std::make_pair(accuracy->second, loss->second);
}

absl::StatusOr<uint64_t> AggregatorServer::Impl::Republish(uint64_t target,
                                                           const std::string& note) {
  uint64_t published = 0;
  FEDGE_RETURN_IF_ERROR(RollBackOnRoundThread(target, note, &published));
  WakeWaiters();
  return published;
}

void AggregatorServer::Impl::GoLive(uint64_t version, double validation_accuracy) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_version_ = version;
  }
  live_accuracy_ = validation_accuracy;
}

void AggregatorServer::Impl::AdvanceRollout() {
  if (rollout_ == nullptr) return;
  RolloutDecision decision;
  uint64_t candidate = 0;
  uint64_t baseline = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (canary_waiting_.has_value()) {
      const std::vector<std::string> available = AvailableLocked();
      if (available.empty()) return;
      if (absl::Status s =
              rollout_->StartCanary(*canary_waiting_, live_version_, available, Clock::now());
          !s.ok()) {
        LogEvent("error", "canary_not_started", {}, s.ToString());
        return;
      }
      canary_waiting_.reset();
      event_log.Record("info", "rollout_canary",
                       absl::StrCat("version ", rollout_->candidate(), " goes to ",
                                    rollout_->canary_devices().size(), " of ", available.size(),
                                    " devices for evaluation against version ", live_version_),
                       {{"version", std::to_string(rollout_->candidate())},
                        {"devices", std::to_string(rollout_->canary_devices().size())}});
      candidate = 0;  // started: wake the canary devices' held polls below
    } else {
      if (!rollout_->canary_active()) return;
      candidate = rollout_->candidate();
      baseline = rollout_->baseline();
      decision = rollout_->Decide(Clock::now());
    }
  }
  if (decision.kind == RolloutDecision::Kind::kPending) {
    if (candidate == 0) WakeWaiters();  // the canary started: its devices may hold polls
    return;
  }
  const std::map<std::string, std::string> fields = {
      {"version", std::to_string(candidate)},
      {"stage", "canary"},
      {"reports", std::to_string(decision.reports)},
      {"accuracy_change", std::to_string(decision.accuracy_change)},
      {"loss_change", std::to_string(decision.loss_change)}};
  if (decision.kind == RolloutDecision::Kind::kPromote) {
    if (absl::Status s = store_->SetVersionStatus(candidate, "live", decision.reason); !s.ok()) {
      return Fatal(s);
    }
    metrics.rollouts_promoted += 1;
    event_log.Record("info", "rollout_promoted", decision.reason, fields);
    GoLive(candidate, candidate_accuracy_);
  } else {
    if (absl::Status s = store_->SetVersionStatus(candidate, "rolled_back", decision.reason);
        !s.ok()) {
      return Fatal(s);
    }
    metrics.rollouts_rolled_back += 1;
    event_log.Record("warning", "rollout_rolled_back", decision.reason, fields);
    if (absl::StatusOr<uint64_t> republished =
            Republish(baseline, absl::StrCat("rollback to ", baseline, ": canary of version ",
                                             candidate, " regressed"));
        !republished.ok()) {
      return Fatal(republished.status());
    }
  }
  WakeWaiters();
}

std::optional<v1::PollTaskResponse> AggregatorServer::Impl::EvaluationTaskLocked(
    const std::string& client_id) const {
  const uint64_t candidate = rollout_->candidate();
  auto served = served_.find(candidate);
  if (served == served_.end()) return std::nullopt;
  v1::PollTaskResponse response;
  v1::Task* task = response.mutable_task();
  task->set_kind(v1::Task::KIND_EVALUATE);
  task->set_round(candidate_round_);
  task->set_model_version(candidate);
  task->set_baseline_version(rollout_->baseline());
  task->set_client_id(client_id);
  task->mutable_train()->set_batch_size(std::max<uint32_t>(options_.policy.train.batch_size(), 32));
  response.set_artifact_bytes(served->second.artifact->size());
  response.set_artifact_sha256(served->second.artifact_sha256);
  response.set_deadline_ms(static_cast<uint32_t>(options_.rollout.canary_timeout.count()));
  return response;
}

void AggregatorServer::Impl::RaiseAlerts(const std::vector<Alert>& alerts) {
  for (const Alert& alert : alerts) {
    metrics.CountAlert(alert.rule);
    event_log.Record("warning", "alert", alert.message,
                     {{"rule", alert.rule},
                      {"value", std::to_string(alert.value)},
                      {"threshold", std::to_string(alert.threshold)}});
  }
}

absl::Status AggregatorServer::Impl::RecordDrift(const std::string& client_id,
                                                 const v1::DriftReport& report) {
  v1::DriftReport stored = report;
  stored.set_client_id(client_id);
  FEDGE_RETURN_IF_ERROR(store_->RecordDrift(stored));
  UpdateDevice(client_id, [&](DeviceStatus& d) {
    d.last_drift_ms = WallMs();
    d.drift_reports += 1;
    if (report.events_size() > 0) {
      d.last_drift_detector = report.events(0).detector();
      d.last_drift_stream = report.events(0).stream();
    }
  });
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  last_drift_[client_id] = now;
  const auto horizon = now - options_.alerts.drift_window;
  size_t drifting = 0;
  for (const auto& [id, at] : last_drift_) drifting += at >= horizon ? 1 : 0;
  size_t seen = 0;
  for (const auto& [id, at] : last_seen_) seen += at >= horizon ? 1 : 0;
  RaiseAlerts(alerts_->OnDrift(drifting, std::max(seen, drifting)));
  return absl::OkStatus();
}

void AggregatorServer::Impl::Checkpoint() {
  absl::StatusOr<v1::RoundCheckpoint> checkpoint = rounds_->Checkpoint();
  if (!checkpoint.ok()) return;  // the round closed meanwhile
  if (absl::Status s = store_->WriteCheckpoint(*checkpoint); !s.ok()) return Fatal(s);
}

void AggregatorServer::Impl::Serve(uint64_t version, const v1::ModelArtifact& artifact,
                                   const v1::ModelArtifact& master) {
  ServedVersion served;
  auto bytes = std::make_shared<std::string>(artifact.SerializeAsString());
  served.artifact_sha256 = Sha256(*bytes);
  served.artifact = std::move(bytes);
  served.master = std::make_shared<const std::string>(master.SerializeAsString());
  std::lock_guard<std::mutex> lock(mu_);
  served_[version] = std::move(served);
  // The four newest stay served, and the live version always.
  for (auto it = served_.begin(); served_.size() > 4 && it != served_.end();) {
    it = it->first == live_version_ ? std::next(it) : served_.erase(it);
  }
}

void AggregatorServer::Impl::Fatal(const absl::Status& status) {
  LogEvent("error", "fatal", {}, status.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  if (fatal_.ok()) fatal_ = status;
  finished_ = true;
  done_cv_.notify_all();
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_seen_[client_id] = Clock::now();
  }
  UpdateDevice(client_id, [](DeviceStatus&) {});
}

void AggregatorServer::Impl::FillJoin(v1::JoinResponse* response) const {
  response->set_protocol_version(1);
  *response->mutable_model() = models::ToProto(spec_);
  response->set_latest_version(live_version());
  response->set_signing_key_id(key_->key_id());
  response->set_max_chunk_bytes(options_.chunk_bytes);
  response->set_heartbeat_interval_ms(10'000);
}

std::optional<v1::PollTaskResponse> AggregatorServer::Impl::TaskNow(
    const std::string& client_id) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rollout_ != nullptr && rollout_->AwaitingReport(client_id)) {
      return EvaluationTaskLocked(client_id);
    }
  }
  absl::StatusOr<v1::Task> task = rounds_->TaskFor(client_id);
  if (!task.ok()) return std::nullopt;
  if (secure_ != nullptr) {
    absl::StatusOr<v1::SecAggConfig> config = secure_->ConfigFor(task->round());
    if (!config.ok()) return std::nullopt;
    // Only while the first phase collects: a device that comes later cannot
    // join the protocol.
    if (secure_->phase() != v1::SECAGG_PHASE_ADVERTISE_KEYS) return std::nullopt;
    *task->mutable_secagg() = *std::move(config);
  }
  v1::PollTaskResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  if (!round_open_ || task->round() != round_) return std::nullopt;
  auto served = served_.find(task->model_version());
  if (served == served_.end()) return std::nullopt;
  response.set_artifact_bytes(served->second.artifact->size());
  response.set_artifact_sha256(served->second.artifact_sha256);
  const int64_t left = deadline_wall_ms_ - WallMs();
  response.set_deadline_ms(static_cast<uint32_t>(std::max<int64_t>(left, 0)));
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
  if (secure_ != nullptr) {
    return absl::FailedPreconditionError(
        "this aggregator runs secure aggregation: devices send their masked updates through "
        "SecAggSend, never in the clear");
  }
  // Refuse a stale or foreign update before receiving its bytes.
  absl::StatusOr<v1::Task> task = rounds_->TaskFor(client_id);
  if (!task.ok()) {
    if (task.status().code() == absl::StatusCode::kNotFound) {
      const uint64_t open = rounds_->round();
      if (rounds_->round_open() && header.round() == open) {
        return absl::PermissionDeniedError(
            absl::StrCat("client '", client_id, "' is not in the cohort of round ", open));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "update is for round ", header.round(), ", which is not open (",
          rounds_->round_open() ? absl::StrCat("round ", open, " is") : std::string("none is"),
          ")"));
    }
    return task.status();
  }
  if (header.round() != task->round() || header.model_version() != task->model_version()) {
    return absl::FailedPreconditionError(
        absl::StrCat("update is for round ", header.round(), " on version ", header.model_version(),
                     "; the open round is ", task->round(), " on version ", task->model_version()));
  }
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::SecAggReceive(const std::string& client_id,
                                                   const v1::SecAggClientMessage& message) {
  if (secure_ == nullptr) {
    return absl::FailedPreconditionError("this aggregator runs no secure aggregation");
  }
  if (message.client_id() != client_id) {
    return absl::PermissionDeniedError(absl::StrCat("device '", client_id,
                                                    "' sends a secure-aggregation message as '",
                                                    message.client_id(), "'"));
  }
  FEDGE_RETURN_IF_ERROR(secure_->Receive(message));
  bool complete;
  {
    std::lock_guard<std::mutex> lock(mu_);
    secagg_bytes_up_ += message.ByteSizeLong();
    metrics.secagg_messages += 1;
    metrics.update_bytes_received += message.ByteSizeLong();
    phase_senders_.insert(client_id);
    complete = phase_senders_.size() >= phase_expected_;
  }
  if (complete) asio::post(io_, [this] { CloseSecAggPhase("every device answered"); });
  return absl::OkStatus();
}

absl::StatusOr<v1::SecAggServerMessage> AggregatorServer::Impl::SecAggAnswer(
    const std::string& client_id, const v1::SecAggPollRequest& request) const {
  if (secure_ == nullptr) {
    return absl::FailedPreconditionError("this aggregator runs no secure aggregation");
  }
  if (!request.client_id().empty() && request.client_id() != client_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("device '", client_id, "' polls as '", request.client_id(), "'"));
  }
  return secure_->Poll(client_id, request.round(), request.phase());
}

absl::Status AggregatorServer::Impl::AcceptUpdate(const v1::EncodedUpdate& update) {
  if (absl::Status s = rounds_->Submit(update); !s.ok()) return s;
  metrics.updates_accepted += 1;
  metrics.update_bytes_received += update.ByteSizeLong();
  UpdateDevice(update.client_id(), [&](DeviceStatus& d) {
    d.updates_accepted += 1;
    d.model_version = update.model_version();
    d.has_model_version = true;
  });
  size_t accepted;
  size_t goal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!round_open_ || round_ != update.round()) return absl::OkStatus();  // closing now
    submitted_.insert(update.client_id());
    accepted = submitted_.size();
    goal = goal_;
  }
  LogEvent("info", "update_accepted",
           {{"client", update.client_id()},
            {"round", std::to_string(update.round())},
            {"accepted", std::to_string(accepted)},
            {"bytes", std::to_string(update.ByteSizeLong())}});
  if (options_.checkpoint_every > 0 && accepted % options_.checkpoint_every == 0 &&
      accepted < goal) {
    asio::post(io_, [this] { Checkpoint(); });
  }
  if (accepted >= goal) asio::post(io_, [this] { CloseRound("goal reached"); });
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
  UpdateDevice(report.client_id(), [&](DeviceStatus& d) {
    for (const auto& [key, value] : report.metrics()) {
      if (std::isfinite(value)) d.last_metrics[key] = value;
    }
  });
  std::lock_guard<std::mutex> lock(mu_);
  if (rollout_ != nullptr && rollout_->canary_active() &&
      report.model_version() == rollout_->candidate() &&
      report.metrics().contains("eval_accuracy")) {
    auto figure = [&](const char* key) {
      auto it = report.metrics().find(key);
      return it == report.metrics().end() ? std::numeric_limits<double>::quiet_NaN() : it->second;
    };
    CanaryReport canary{.accuracy = figure("eval_accuracy"),
                        .loss = figure("eval_loss"),
                        .baseline_accuracy = figure("baseline_accuracy"),
                        .baseline_loss = figure("baseline_loss"),
                        .examples = static_cast<int64_t>(figure("eval_examples"))};
    absl::Status added = rollout_->AddReport(report.client_id(), report.model_version(), canary);
    LogEvent(added.ok() ? "info" : "warning", "canary_report",
             {{"client", report.client_id()},
              {"version", std::to_string(report.model_version())},
              {"accuracy", std::to_string(canary.accuracy)},
              {"baseline_accuracy", std::to_string(canary.baseline_accuracy)}},
             added.ok() ? std::string() : std::string(added.message()));
    return;
  }
  if (!round_open_ || report.round() != round_) return;
  for (const auto& [key, value] : report.metrics()) {
    if (std::isfinite(value)) round_metrics_[key][report.client_id()] = value;
  }
}

v1::HeartbeatResponse AggregatorServer::Impl::HeartbeatFor(const std::string& client_id) {
  MarkAvailable(client_id);
  v1::HeartbeatResponse response;
  response.set_latest_version(live_version());
  response.set_round_open(rounds_->round_open());
  return response;
}

// --- Impl: shutdown ---------------------------------------------------------------

void AggregatorServer::Impl::Shutdown() {
  // A second caller waits until the first one has finished.
  std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
  std::map<uint64_t, Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    finished_ = true;
    waiters.swap(waiters_);
    done_cv_.notify_all();
  }
  ops_server.reset();  // no admin action starts from here on
  for (auto& [id, waiter] : waiters) {
    waiter.timer->cancel();
    waiter.abort(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the aggregator is shutting down"));
  }
  // Uploads waiting for a slot start now, so that they see the shutdown and
  // finish.
  std::deque<std::function<void()>> queued;
  {
    std::lock_guard<std::mutex> lock(upload_mu_);
    queued.swap(upload_queue_);
    uploads_active_ += static_cast<int>(queued.size());
  }
  for (auto& start : queued) start();
  if (server_ != nullptr)
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (workers_ != nullptr) workers_->join();
  work_.reset();
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  if (server_ != nullptr) server_->Wait();
}

absl::Status AggregatorServer::Impl::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return finished_; });
  return fatal_;
}

// --- Impl: fleet status and operator actions (FleetControl) ---------------------

absl::Status AggregatorServer::Impl::RestoreFleet() {
  FEDGE_ASSIGN_OR_RETURN(std::vector<ClientRecord> clients, store_->Clients());
  FEDGE_ASSIGN_OR_RETURN(std::vector<v1::DriftReport> drift, store_->DriftReports());
  FEDGE_ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds, store_->Rounds());
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, store_->Versions());
  FEDGE_ASSIGN_OR_RETURN(std::string paused, store_->GetSetting("rounds_paused"));
  std::map<uint64_t, const VersionRecord*> by_version;
  for (const VersionRecord& v : versions) by_version[v.version] = &v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = paused == "1";
  }
  std::lock_guard<std::mutex> lock(fleet_mu_);
  for (const ClientRecord& c : clients) {
    DeviceStatus& d = devices_[c.id];
    d.id = c.id;
    d.auth = c.token_sha256.empty() ? "certificate" : "token";
    d.enrolled_at_ms = c.enrolled_at_ms;
    if (c.revoked) d.status = "revoked";
  }
  for (const v1::DriftReport& report : drift) {
    auto it = devices_.find(report.client_id());
    if (it == devices_.end() || report.events_size() == 0) continue;
    it->second.drift_reports += 1;
    // Devices stamp events in ms since the epoch (simulations: a round number).
    const int64_t time = report.events(0).time();
    it->second.last_drift_ms = time > 100'000'000'000 ? time : 0;
    it->second.last_drift_detector = report.events(0).detector();
    it->second.last_drift_stream = report.events(0).stream();
  }
  for (const RoundRecord& r : rounds) {
    for (const std::string& id : r.cohort) {
      if (auto it = devices_.find(id); it != devices_.end()) it->second.rounds_selected += 1;
    }
    if (r.state == RoundState::kOpen) continue;
    RoundSummary summary{.round = r.round,
                         .model_version = r.model_version,
                         .outcome = r.state == RoundState::kClosed ? "closed" : "failed",
                         .opened_at_ms = r.opened_at_ms,
                         .closed_at_ms = r.deadline_at_ms,  // failed rounds: at their deadline
                         .selected = r.cohort.size(),
                         .reported = static_cast<uint64_t>(std::max(r.participants, 0)),
                         .new_version = r.new_version,
                         .reason = r.reason};
    summary.dropped = summary.selected > summary.reported ? summary.selected - summary.reported : 0;
    if (auto it = by_version.find(r.new_version);
        r.state == RoundState::kClosed && it != by_version.end()) {
      const VersionRecord& v = *it->second;
      summary.closed_at_ms = v.created_at_ms;
      if (auto m = v.metrics.find("bytes_up"); m != v.metrics.end()) summary.bytes_up = m->second;
      if (auto m = v.metrics.find("bytes_down"); m != v.metrics.end()) {
        summary.bytes_down = m->second;
      }
    }
    history_.push_back(summary);
  }
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::StartOps() {
  OpsOptions ops = options_.ops;
  if (ops.listen.empty() && !options_.metrics_listen.empty()) {
    ops.listen = options_.metrics_listen;
    ops.metrics_public = true;
  }
  if (ops.listen.empty()) return absl::OkStatus();
  if (ops.active_window.count() <= 0) {
    return absl::InvalidArgumentError("ops.active_window must be > 0");
  }
  if (!ops.token.empty()) {
    ops_token = ops.token;
  } else {
    FEDGE_ASSIGN_OR_RETURN(
        ops_token, LoadOrCreateOpsToken(ops.token_file.empty() ? options_.state_dir / "ops.token"
                                                               : ops.token_file));
  }
  OpsServerOptions server;
  server.listen = ops.listen;
  server.token = ops_token;
  server.threads = ops.threads;
  if (!options_.tls.insecure) {
    server.cert_file = options_.tls.cert_file;
    server.key_file = options_.tls.key_file;
  }
  FEDGE_ASSIGN_OR_RETURN(ops_server,
                         OpsHttpServer::Start(server, FleetOpsRoutes(this, ops.metrics_public)));
  LogEvent("info", "ops_listening",
           {{"port", std::to_string(ops_server->port())},
            {"tls", ops_server->tls() ? "on" : "off"},
            {"metrics_public", ops.metrics_public ? "true" : "false"}});
  return absl::OkStatus();
}

void AggregatorServer::Impl::UpdateDevice(const std::string& client_id,
                                          const std::function<void(DeviceStatus&)>& update) {
  const int64_t now = WallMs();
  std::lock_guard<std::mutex> lock(fleet_mu_);
  auto it = devices_.find(client_id);
  if (it == devices_.end()) return;  // only enrolled devices get this far
  it->second.last_seen_ms = now;
  update(it->second);
}

void AggregatorServer::Impl::NoteDownload(const std::string& client_id, uint64_t version,
                                          uint64_t bytes) {
  metrics.model_bytes_served += bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (round_open_) round_summary_.bytes_down += bytes;
  }
  UpdateDevice(client_id, [version](DeviceStatus& d) {
    d.model_version = version;
    d.has_model_version = true;
  });
}

void AggregatorServer::Impl::NoteRefused(const std::string& client_id) {
  UpdateDevice(client_id, [](DeviceStatus& d) { d.updates_refused += 1; });
}

std::string AggregatorServer::Impl::DeviceState(const DeviceStatus& device, int64_t now_ms) const {
  if (device.status == "revoked") return "revoked";
  return device.last_seen_ms > 0 &&
                 now_ms - device.last_seen_ms <= options_.ops.active_window.count()
             ? "active"
             : "idle";
}

CurrentRound AggregatorServer::Impl::Round() const {
  CurrentRound current;
  const auto horizon = Clock::now() - options_.max_poll_wait - std::chrono::seconds(1);
  std::lock_guard<std::mutex> lock(mu_);
  current.open = round_open_;
  current.paused = paused_;
  current.min_clients = static_cast<uint64_t>(options_.policy.min_clients);
  current.next_round = next_round_;
  current.closed_rounds = closed_rounds_;
  for (const auto& [id, seen] : last_seen_) current.devices_available += seen >= horizon ? 1 : 0;
  if (round_open_) {
    current.round = round_summary_;
    current.round.reported = secure_ != nullptr ? phase_senders_.size() : submitted_.size();
    current.goal = goal_;
    current.deadline_at_ms = deadline_wall_ms_;
    current.phase = secure_ != nullptr ? v1::SecAggPhase_Name(secure_->phase()) : "training";
  } else if (finished_) {
    current.phase = "finished";
  } else {
    current.phase = paused_ ? "paused" : "waiting";
  }
  return current;
}

std::vector<RoundSummary> AggregatorServer::Impl::RoundHistory(size_t limit,
                                                               uint64_t before) const {
  std::vector<RoundSummary> out;
  std::lock_guard<std::mutex> lock(fleet_mu_);
  for (auto it = history_.rbegin(); it != history_.rend() && out.size() < limit; ++it) {
    if (before == 0 || it->round < before) out.push_back(*it);
  }
  return out;
}

absl::StatusOr<DevicePage> AggregatorServer::Impl::Devices(const DeviceQuery& query) const {
  if (query.limit < 1 || query.limit > 1000) {
    return absl::InvalidArgumentError("limit must be in [1, 1000]");
  }
  if (!query.status.empty() && query.status != "active" && query.status != "idle" &&
      query.status != "revoked") {
    return absl::InvalidArgumentError(
        absl::StrCat("status '", query.status, "' is not active, idle or revoked"));
  }
  DevicePage page;
  page.offset = query.offset;
  const int64_t now = WallMs();
  std::lock_guard<std::mutex> lock(fleet_mu_);
  for (const auto& [id, device] : devices_) {
    if (!query.id_contains.empty() && id.find(query.id_contains) == std::string::npos) continue;
    if (query.drift.has_value() && (device.drift_reports > 0) != *query.drift) continue;
    std::string state = DeviceState(device, now);
    if (!query.status.empty() && state != query.status) continue;
    if (page.total++ < query.offset || page.devices.size() >= query.limit) continue;
    page.devices.push_back(device);
    page.devices.back().status = std::move(state);
  }
  return page;
}

absl::StatusOr<std::vector<VersionStatus>> AggregatorServer::Impl::Versions() const {
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> records, store_->Versions());
  std::vector<VersionStatus> out;
  out.reserve(records.size());
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    VersionStatus status;
    status.record = *it;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status.served = served_.contains(it->version);
    }
    // Files never change once written, so each version is verified once
    // (outside fleet_mu_: reading a large model must not hold up devices).
    std::optional<std::string> cached;
    {
      std::lock_guard<std::mutex> lock(fleet_mu_);
      if (auto found = signatures_.find(it->version); found != signatures_.end()) {
        cached = found->second;
      }
    }
    if (!cached.has_value()) {
      std::string verdict = "verified";
      for (bool master : {true, false}) {
        absl::StatusOr<v1::ModelArtifact> artifact =
            master ? store_->ReadMaster(it->version) : store_->ReadArtifact(it->version);
        if (!artifact.ok()) {
          verdict = absl::StrCat("missing: ", artifact.status().message());
          break;
        }
        if (absl::Status s = models::VerifySignedArtifact(*artifact, key_->public_key()); !s.ok()) {
          verdict = absl::StrCat("invalid: ", s.message());
          break;
        }
      }
      std::lock_guard<std::mutex> lock(fleet_mu_);
      cached = signatures_.emplace(it->version, std::move(verdict)).first->second;
    }
    status.signature = *cached;
    out.push_back(std::move(status));
  }
  return out;
}

FleetOverview AggregatorServer::Impl::Overview() const {
  FleetOverview overview;
  overview.round = Round();
  if (auto latest = registry->Latest(); latest.ok()) overview.latest_version = (*latest)->version;
  absl::StatusOr<VersionRecord> live = absl::NotFoundError("no live version");
  if (absl::StatusOr<std::vector<VersionRecord>> versions = store_->Versions(); versions.ok()) {
    const uint64_t served = live_version();
    for (const VersionRecord& v : *versions) {
      if (v.version == served) live = v;
    }
  }
  if (live.ok()) {
    overview.live_version = live->version;
    auto metric = [&](const char* key) -> std::optional<double> {
      auto it = live->metrics.find(key);
      if (it == live->metrics.end() || !std::isfinite(it->second)) return std::nullopt;
      return it->second;
    };
    overview.accuracy = metric("validation_accuracy");
    overview.accuracy_source = "validation_accuracy";
    if (!overview.accuracy.has_value()) {
      overview.accuracy = metric("clients_train_accuracy");
      overview.accuracy_source = overview.accuracy.has_value() ? "clients_train_accuracy" : "";
    }
    overview.loss = metric("validation_loss");
    if (!overview.loss.has_value()) overview.loss = metric("clients_train_loss");
    overview.epsilon_spent = metric("epsilon_spent").value_or(0.0);
    overview.epsilon_budget = metric("epsilon_budget");
  }
  const std::map<std::string, uint64_t> counts = event_log.CountsByKind();
  if (auto it = counts.find("alert"); it != counts.end()) overview.alerts = it->second;
  overview.last_event = event_log.last_sequence();
  overview.rounds_failed = metrics.rounds_failed.load();
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    const int64_t now = WallMs();
    for (const char* s : {"active", "idle", "revoked"}) overview.devices_by_status[s] = 0;
    for (const auto& [id, device] : devices_) {
      overview.devices_by_status[DeviceState(device, now)] += 1;
      overview.devices_with_drift += device.drift_reports > 0 ? 1 : 0;
    }
    overview.devices = devices_.size();
  }
  return overview;
}

std::string AggregatorServer::Impl::RenderMetrics() const {
  std::string out = metrics.RenderPrometheus();
  const FleetOverview overview = Overview();
  std::map<std::string, double> by_status, by_version;
  for (const auto& [status, count] : overview.devices_by_status) by_status[status] = count;
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    for (const auto& [id, device] : devices_) {
      if (device.has_model_version) by_version[std::to_string(device.model_version)] += 1;
    }
  }
  AppendMetricFamily(out, "fedge_devices", "gauge",
                     "Enrolled devices by status (active: seen within the active window).",
                     "status", by_status);
  AppendMetric(out, "fedge_clients_connected", "gauge",
               "Devices seen within the active window (ops.active_window_s).", by_status["active"]);
  AppendMetricFamily(out, "fedge_devices_by_model_version", "gauge",
                     "Devices by the model version they last downloaded or trained on.",
                     "model_version", by_version);
  std::map<std::string, double> events;
  for (const auto& [kind, count] : event_log.CountsByKind()) events[kind] = count;
  AppendMetricFamily(out, "fedge_events_total", "counter", "Fleet events by kind.", "kind", events);
  AppendMetric(out, "fedge_live_model_version", "gauge", "Newest live (served) model version.",
               static_cast<double>(overview.live_version.value_or(0)));
  std::map<std::string, double> accuracy, loss;
  if (overview.accuracy.has_value()) accuracy[overview.accuracy_source] = *overview.accuracy;
  if (overview.loss.has_value()) loss[overview.accuracy_source] = *overview.loss;
  AppendMetricFamily(out, "fedge_model_accuracy", "gauge",
                     "Accuracy of the live version: its validation accuracy, else the mean "
                     "train accuracy devices reported in the round that produced it.",
                     "source", accuracy);
  AppendMetricFamily(out, "fedge_model_loss", "gauge",
                     "Loss of the live version (same sources as fedge_model_accuracy).", "source",
                     loss);
  AppendMetric(out, "fedge_privacy_epsilon_spent", "gauge",
               "Differential-privacy epsilon spent (0 without differential privacy).",
               overview.epsilon_spent);
  std::map<std::string, double> budget;
  if (overview.epsilon_budget.has_value()) budget["total"] = *overview.epsilon_budget;
  AppendMetricFamily(out, "fedge_privacy_epsilon_budget", "gauge",
                     "Differential-privacy epsilon budget (no sample without one).", "budget",
                     budget);
  AppendMetric(out, "fedge_rounds_paused", "gauge", "1 while an operator has paused rounds.",
               overview.round.paused ? 1 : 0);
  return out;
}

absl::Status AggregatorServer::Impl::RunOnRoundThread(const std::function<absl::Status()>& task) {
  if (io_.get_executor().running_in_this_thread()) return task();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the aggregator is shutting down");
  }
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> done = promise->get_future();
  asio::post(io_, [promise, task] { promise->set_value(task()); });
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    return absl::DeadlineExceededError("the round thread did not run the action within 60 s");
  }
  return done.get();
}

absl::Status AggregatorServer::Impl::RevokeDevice(const std::string& id,
                                                  const std::string& reason) {
  absl::StatusOr<ClientRecord> client = store_->GetClient(id);
  if (absl::IsNotFound(client.status())) {
    return absl::NotFoundError(absl::StrCat("unknown device '", id, "'"));
  }
  FEDGE_RETURN_IF_ERROR(client.status());
  if (client->revoked) {
    return absl::FailedPreconditionError(absl::StrCat("device '", id, "' is revoked already"));
  }
  FEDGE_RETURN_IF_ERROR(store_->RevokeClient(id));
  {
    std::lock_guard<std::mutex> lock(fleet_mu_);
    if (auto it = devices_.find(id); it != devices_.end()) it->second.status = "revoked";
  }
  bool dropped = false;
  bool close = false;
  uint64_t round = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_seen_.erase(id);
    if (round_open_ && !submitted_.contains(id) && cohort_.erase(id) > 0) {
      dropped = true;
      round = round_;
      // The goal cannot exceed the devices left to deliver.
      goal_ = std::max<size_t>(1, std::min(goal_, cohort_.size()));
      close = secure_ == nullptr && !submitted_.empty() && submitted_.size() >= goal_;
    }
  }
  event_log.Record("warning", "device_revoked",
                   absl::StrCat("device ", id, " revoked",
                                dropped ? absl::StrCat(" and dropped from round ", round) : "",
                                reason.empty() ? "" : ": " + reason),
                   {{"device", id}, {"reason", reason}});
  if (close) asio::post(io_, [this] { CloseRound("goal reached after a revocation"); });
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::PauseRounds(const std::string& reason) {
  bool open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_) return absl::FailedPreconditionError("rounds are paused already");
    paused_ = true;
    open = round_open_;
  }
  FEDGE_RETURN_IF_ERROR(store_->PutSetting("rounds_paused", "1"));
  event_log.Record("info", "rounds_paused",
                   absl::StrCat("rounds paused", open ? " (the open round finishes)" : "",
                                reason.empty() ? "" : ": " + reason),
                   {{"reason", reason}});
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::ResumeRounds(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!paused_) return absl::FailedPreconditionError("rounds are not paused");
    paused_ = false;
  }
  FEDGE_RETURN_IF_ERROR(store_->PutSetting("rounds_paused", "0"));
  event_log.Record("info", "rounds_resumed",
                   absl::StrCat("rounds resumed", reason.empty() ? "" : ": " + reason),
                   {{"reason", reason}});
  return absl::OkStatus();
}

absl::Status AggregatorServer::Impl::Promote(uint64_t version, const std::string& reason) {
  return RunOnRoundThread([&]() -> absl::Status {
    FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, store_->Versions());
    auto it = std::find_if(versions.begin(), versions.end(),
                           [&](const VersionRecord& v) { return v.version == version; });
    if (it == versions.end()) {
      return absl::NotFoundError(absl::StrCat(
          "unknown model version ", version,
          versions.empty() ? std::string()
                           : absl::StrCat(" (the newest is ", versions.back().version, ")")));
    }
    if (it->status == "live") {
      return absl::FailedPreconditionError(absl::StrCat("version ", version, " is live already"));
    }
    const std::string from = it->status;
    FEDGE_RETURN_IF_ERROR(store_->SetVersionStatus(
        version, "live", reason.empty() ? "promoted by an operator" : reason));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rollout_ != nullptr && rollout_->canary_active() && rollout_->candidate() == version) {
        rollout_->Cancel();
      }
      if (canary_waiting_ == version) canary_waiting_.reset();
    }
    auto accuracy = it->metrics.find("validation_accuracy");
    GoLive(version, accuracy != it->metrics.end() ? accuracy->second
                                                  : std::numeric_limits<double>::quiet_NaN());
    bool served;
    {
      std::lock_guard<std::mutex> lock(mu_);
      served = served_.contains(version);
    }
    if (!served) {
      FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(version));
      FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(version));
      Serve(version, artifact, master);
    }
    event_log.Record("info", "version_promoted",
                     absl::StrCat("version ", version, " promoted from ", from, " to live",
                                  reason.empty() ? "" : ": " + reason),
                     {{"version", std::to_string(version)}, {"from", from}, {"reason", reason}});
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> AggregatorServer::Impl::RollBackTo(uint64_t version,
                                                            const std::string& reason) {
  uint64_t published = 0;
  FEDGE_RETURN_IF_ERROR(RunOnRoundThread(
      [&]() -> absl::Status { return RollBackOnRoundThread(version, reason, &published); }));
  return published;
}

absl::Status AggregatorServer::Impl::RollBackOnRoundThread(uint64_t target,
                                                           const std::string& reason,
                                                           uint64_t* published) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (round_open_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "round ", round_,
          " is open and would publish a version built on the one being "
          "withdrawn: pause rounds, let the round finish, then roll back (and resume)"));
    }
  }
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, store_->Versions());
  auto it = std::find_if(versions.begin(), versions.end(),
                         [&](const VersionRecord& v) { return v.version == target; });
  if (it != versions.end()) {
    // A running canary is withdrawn with the rollback.
    std::optional<uint64_t> withdrawn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (rollout_ != nullptr && rollout_->canary_active()) {
        withdrawn = rollout_->candidate();
        rollout_->Cancel();
      } else if (canary_waiting_.has_value()) {
        withdrawn = canary_waiting_;
      }
      canary_waiting_.reset();
    }
    if (withdrawn.has_value()) {
      FEDGE_RETURN_IF_ERROR(store_->SetVersionStatus(
          *withdrawn, "rolled_back", reason.empty() ? "rolled back by an operator" : reason));
      if (auto w = std::find_if(versions.begin(), versions.end(),
                                [&](const VersionRecord& v) { return v.version == *withdrawn; });
          w != versions.end()) {
        w->status = "rolled_back";
      }
    }
  }
  if (it == versions.end() || versions.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "unknown model version ", target,
        versions.empty() ? std::string()
                         : absl::StrCat(" (the newest is ", versions.back().version, ")")));
  }
  const VersionRecord& newest = versions.back();
  if (target == newest.version) {
    return absl::FailedPreconditionError(
        absl::StrCat("version ", target, " is the newest version already"));
  }
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store_->ReadMaster(target));
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store_->ReadArtifact(target));
  VersionRecord record;
  record.version = newest.version + 1;
  record.parent = target;
  record.created_at_ms = WallMs();
  record.round = 0;
  record.note = absl::StrCat("rollback to ", target);
  record.metrics = it->metrics;  // the same parameters, the same figures
  record.metrics["rollback_of"] = static_cast<double>(target);
  if (!record.metrics.contains("validation_accuracy") && target == live_version() &&
      !std::isnan(live_accuracy_)) {
    record.metrics["validation_accuracy"] = live_accuracy_;  // evaluated at start, not stored
  }
  record.status_reason = reason.empty() ? "rolled back by an operator" : reason;
  for (v1::ModelArtifact* a : {&master, &artifact}) {
    if (absl::Status s = models::VerifySignedArtifact(*a, key_->public_key()); !s.ok()) {
      return absl::DataLossError(
          absl::StrCat("stored version ", target, " does not verify: ", s.message()));
    }
    a->mutable_header()->set_version(record.version);
    a->mutable_header()->set_parent_version(target);
    a->mutable_header()->set_created_at_unix_ms(record.created_at_ms);
    (*a->mutable_header()->mutable_metrics())["rollback_of"] = static_cast<double>(target);
    FEDGE_RETURN_IF_ERROR(models::SignArtifact(*a, *key_));
  }
  record.master_bytes = master.ByteSizeLong();
  record.artifact_bytes = artifact.ByteSizeLong();
  ModelVersion adopted;
  adopted.version = record.version;
  adopted.parent_version = target;
  adopted.parameters.resize(static_cast<size_t>(models::LayoutSize(layout_)));
  FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(master, layout_, adopted.parameters));
  adopted.artifact_bytes = record.artifact_bytes;
  adopted.fp32_artifact_bytes = record.master_bytes;
  adopted.artifact = std::make_shared<const v1::ModelArtifact>(artifact);
  FEDGE_RETURN_IF_ERROR(store_->AddVersion(record, master, artifact));
  if (absl::Status s = registry->Adopt(std::move(adopted)); !s.ok()) {
    Fatal(s);  // the store and the registry disagree: restart from the store
    return s;
  }
  Serve(record.version, artifact, master);
  metrics.model_version = record.version;
  auto accuracy = record.metrics.find("validation_accuracy");
  GoLive(record.version, accuracy != record.metrics.end()
                             ? accuracy->second
                             : std::numeric_limits<double>::quiet_NaN());
  *published = record.version;
  event_log.Record("warning", "version_rolled_back",
                   absl::StrCat("rolled back to version ", target, ", published as version ",
                                record.version, reason.empty() ? "" : ": " + reason),
                   {{"target", std::to_string(target)},
                    {"version", std::to_string(record.version)},
                    {"reason", reason}});
  return absl::OkStatus();
}

// --- AggregatorServer -----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<AggregatorServer>> AggregatorServer::Start(
    AggregatorServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  FEDGE_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<AggregatorServer>(new AggregatorServer(std::move(impl)));
}

AggregatorServer::AggregatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AggregatorServer::~AggregatorServer() { Shutdown(); }

int AggregatorServer::port() const { return impl_->port; }
int AggregatorServer::ops_port() const {
  return impl_->ops_server != nullptr ? impl_->ops_server->port() : 0;
}
int AggregatorServer::metrics_port() const { return ops_port(); }
const std::string& AggregatorServer::ops_token() const { return impl_->ops_token; }
FleetControl& AggregatorServer::fleet() { return *impl_; }
EventLog& AggregatorServer::events() { return impl_->event_log; }
absl::Status AggregatorServer::Promote(uint64_t version, const std::string& reason) {
  return impl_->Promote(version, reason);
}
absl::StatusOr<uint64_t> AggregatorServer::RollBackTo(uint64_t version, const std::string& reason) {
  return impl_->RollBackTo(version, reason);
}
absl::Status AggregatorServer::Wait() { return impl_->Wait(); }
void AggregatorServer::Shutdown() { impl_->Shutdown(); }

uint64_t AggregatorServer::latest_version() const {
  absl::StatusOr<std::shared_ptr<const ModelVersion>> latest = impl_->registry->Latest();
  return latest.ok() ? (*latest)->version : 0;
}

uint64_t AggregatorServer::live_version() const { return impl_->live_version(); }

const AggregatorMetrics& AggregatorServer::metrics() const { return impl_->metrics; }

uint64_t AggregatorServer::closed_rounds() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->closed_rounds_;
}

const ModelRegistry& AggregatorServer::registry() const { return *impl_->registry; }

}  // namespace fedge::aggregator
