// AggregatorServer::Impl: the gRPC edge of an aggregator over a
// RoundCoordinator (round_coordinator.h), which owns every round decision.
// What stays here is what only a network service has:
//
//   server.cc          start-up (TLS, the state directory, the coordinator),
//                      the Boost.Asio thread whose timer calls Tick(), the
//                      listener that wakes held calls, shutdown
//   server_service.cc  the RPC handlers and streaming reactors, device
//                      authentication, held long polls (waiters), upload
//                      slots, the served artifact bytes
//   server_tls.cc      TLS credentials (file or PKCS#11 keys), the
//                      handshake check of revoked devices, the device CA
//                      (Enroll), rollback records and the key chain
//   server_fleet.cc    the operator's view (FleetControl): the device table,
//                      round history, versions, metrics, admin actions
//
// Thread safety: every method may be called from any gRPC or worker thread.
// mu_ guards the waiters and the served bytes; fleet_mu_ the device table
// and history (never held while taking mu_); the coordinator has its own
// locks and calls the listener methods with none of them held.
#ifndef FEDGE_AGGREGATOR_SRC_SERVER_IMPL_H_
#define FEDGE_AGGREGATOR_SRC_SERVER_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "fedge/aggregator/ops_server.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/models/certificates.h"
#include "fedge/models/signing.h"
#include "fedge/v1/service.grpc.pb.h"

namespace fedge::aggregator {

namespace asio = boost::asio;

grpc::Status ToGrpc(const absl::Status& status);
int64_t WallMs();

// The serialized artifacts of one version, as served.
struct ServedVersion {
  std::shared_ptr<const std::string> artifact;  // int8 (or the configured precision)
  std::shared_ptr<const std::string> master;    // fp32
  std::string artifact_sha256;
};

class FederationService;

// The ids of revoked devices, shared with the TLS handshake verifier
// (server_tls.cc), which may outlive the Impl. Thread-safe.
class RevokedDevices {
 public:
  bool Contains(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_.contains(id);
  }
  void Add(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.insert(id);
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string> ids_;
};

// The Federation service's handlers over `impl` (server_service.cc).
std::unique_ptr<grpc::Service> NewFederationService(AggregatorServer::Impl* impl);

class AggregatorServer::Impl : public FleetControl, public CoordinatorListener {
 public:
  explicit Impl(AggregatorServerOptions options);
  ~Impl() override;

  absl::Status Init();
  void Shutdown();
  absl::Status Wait();

  // --- called by the service (server_service.cc) ---------------------------
  // The enrolled, unrevoked device behind a call, or the error to return.
  absl::StatusOr<std::string> Authenticate(grpc::CallbackServerContext* context,
                                           const std::string& claimed_id) const;
  void MarkAvailable(const std::string& client_id);
  void FillJoin(v1::JoinResponse* response) const;
  // Enroll (server_tls.cc): a certificate for `client_id`'s CSR.
  // FAILED_PRECONDITION when this aggregator is no device CA.
  absl::StatusOr<v1::EnrollResponse> IssueDeviceCertificate(const std::string& client_id,
                                                           const std::string& csr_pem);
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
  absl::Status SecAggReceive(const std::string& client_id, const v1::SecAggClientMessage& message);
  absl::StatusOr<v1::SecAggServerMessage> SecAggAnswer(const std::string& client_id,
                                                       const v1::SecAggPollRequest& request) const;
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
  // The device said it is stopping: gone now, and no round waits for it.
  void LeaveFor(const std::string& client_id, const std::string& reason);
  // A device (re)joined: it is there, and is judged by heartbeats again
  // only once it sends one.
  void NoteJoined(const std::string& client_id);
  // Device tracking: what the status API reports per device.
  void NoteDownload(const std::string& client_id, uint64_t version, uint64_t bytes);
  void NoteRefused(const std::string& client_id);

  uint64_t live_version() const { return coordinator_->live_version(); }
  uint64_t closed_rounds() const { return coordinator_->closed_rounds(); }
  const ModelRegistry& registry() const { return coordinator_->registry(); }

  int port = 0;
  AggregatorMetrics metrics;
  // Fleet events for operators (status API, dashboard, fedge_events_total).
  EventLog event_log;
  std::unique_ptr<OpsHttpServer> ops_server;
  std::string ops_token;

  // --- FleetControl (server_fleet.cc) --------------------------------------
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

  // --- CoordinatorListener (server.cc) ---------------------------------------
  void OnTasksChanged() override;
  void OnSecAggPhaseClosed(uint64_t round, v1::SecAggPhase phase) override;
  void OnRoundOpened(const RoundOpened& opened) override;
  void OnRoundEnded(const RoundEnded& ended) override;
  void OnVersionStored(uint64_t version) override;
  void OnFatal(const absl::Status& status) override;

 private:
  absl::Status StartGrpc();
  // server_tls.cc: the signing key and its chain, the device CA, the
  // revoked devices; then the listening port's credentials.
  absl::Status LoadKeys();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials();
  // The signed record that lets devices running newer versions go back to
  // `version` (cached), or nullopt when `version` is the newest.
  std::optional<v1::RollbackRecord> RollbackFor(uint64_t version) const;
  absl::Status StartOps();
  RoundCoordinatorOptions CoordinatorOptions() const;
  // Serves `version`'s stored files (reads and caches their bytes).
  absl::Status ServeStored(uint64_t version);
  void Serve(uint64_t version, const v1::ModelArtifact& artifact, const v1::ModelArtifact& master);
  void ScheduleTick();
  void Fatal(const absl::Status& status);
  // Answers every held call (or one) that can be answered now.
  void WakeWaiters();
  void WakeWaiter(uint64_t id);
  void AnswerIfReady(uint64_t id, const std::function<std::function<void()>()>& probe);
  struct Waiter;
  void RegisterWaiter(uint64_t id, Waiter waiter, std::chrono::milliseconds wait);
  // Fleet status: restores the device table and round history.
  absl::Status RestoreFleet();
  // Stamps the device seen (and, unless `heartbeat`, working) now.
  void UpdateDevice(const std::string& client_id, const std::function<void(DeviceStatus&)>& update,
                    bool heartbeat = false);
  // Updates the device's record without counting it as heard from.
  void NoteDevice(const std::string& client_id, const std::function<void(DeviceStatus&)>& update);
  std::string DeviceState(const DeviceStatus& device, int64_t now_ms) const;
  // Devices that stopped heartbeating: recorded gone once, and forgotten by
  // the coordinator (an open round stops waiting for them). Round thread.
  void SweepLiveness();
  // Tells the coordinator `id` is not there; the open round it was dropped
  // from, if any.
  std::optional<uint64_t> DropFromRound(const std::string& id);

  AggregatorServerOptions options_;
  SystemClock clock_;
  std::unique_ptr<StateStore> store_;
  std::optional<models::SigningKey> key_;
  v1::KeyChain key_chain_;
  std::optional<models::DeviceCertificateAuthority> device_ca_;
  std::shared_ptr<RevokedDevices> revoked_ = std::make_shared<RevokedDevices>();
  // Rollback records by (version, supersedes), guarded by mu_.
  mutable std::map<std::pair<uint64_t, uint64_t>, v1::RollbackRecord> rollbacks_;
  std::unique_ptr<RoundCoordinator> coordinator_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::optional<asio::steady_timer> tick_timer_;
  std::thread io_thread_;
  std::unique_ptr<asio::thread_pool> workers_;

  std::mutex shutdown_mu_;
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  bool stopping_ = false;
  bool finished_ = false;
  absl::Status fatal_;
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

  std::mutex upload_mu_;
  int uploads_active_ = 0;
  std::deque<std::function<void()>> upload_queue_;

  // Fleet status, guarded by fleet_mu_: the open round's figures so far, the
  // device table, the finished rounds (oldest first), the signature cache.
  mutable std::mutex fleet_mu_;
  RoundSummary round_summary_;
  std::map<std::string, DeviceStatus, std::less<>> devices_;
  // Devices already recorded gone (by Leave or silence) since they were last
  // heard; a call from one clears it.
  std::set<std::string, std::less<>> gone_;
  int64_t last_sweep_ms_ = 0;  // round thread only
  std::deque<RoundSummary> history_;
  mutable std::map<uint64_t, std::string> signatures_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_SERVER_IMPL_H_
