// AggregatorServer: a federation's aggregator as a gRPC service (see
// proto/fedge/v1/service.proto) over a RoundCoordinator
// (round_coordinator.h), the engine that owns every round decision, with its
// state in a SQLite StateStore directory (sqlite_state_store.h). The service
// itself is only the RPC edge: TLS, device authentication, streaming
// transfers, held long polls, upload admission and the ops endpoint.
//
// What it does, in order:
//  * on start, restores the state directory: the latest model version (its
//    signed files are verified with the aggregator's own key), the
//    strategy's optimizer state, and an open round with its checkpoint and
//    journal, so a killed aggregator continues the round it was in;
//  * serves devices over TLS (mutual TLS or enrollment tokens identify them;
//    unknown and revoked devices are refused);
//  * runs rounds: when at least `min_clients` devices are polling, draws a
//    cohort (the goal count, or a fraction of the devices available, times
//    1 + over_selection for stragglers), hands them tasks, folds their
//    updates as they stream in, and closes the round as soon as `goal`
//    updates arrived, or at the deadline (checked every 50 ms) with what
//    arrived if that is at least `min_updates`; otherwise the round fails
//    and publishes nothing;
//  * publishes each new version as an fp32 master and an int8 per-channel
//    artifact, both signed with Ed25519.
//
// Logs are JSON lines on stderr: {"ts_ms":..,"level":..,"event":..,...}.
//
// Thread safety: Start, Wait and Shutdown may be called from any thread;
// the accessors are safe while the server runs.
#ifndef FEDGE_AGGREGATOR_SERVER_H_
#define FEDGE_AGGREGATOR_SERVER_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "fedge/aggregator/alerts.h"
#include "fedge/aggregator/drift_tracker.h"
#include "fedge/aggregator/event_log.h"
#include "fedge/aggregator/fleet_status.h"
#include "fedge/aggregator/metrics.h"
#include "fedge/aggregator/private_aggregation.h"
#include "fedge/aggregator/rollout.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/aggregator/secure_aggregation.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/models/artifact.h"
#include "fedge/v1/federation.pb.h"
#include "fedge/v1/model.pb.h"

namespace fedge::aggregator {

struct ServerTlsOptions {
  // Plaintext. Only for tests and loopback experiments: logs a warning.
  bool insecure = false;
  // The server's certificate chain (PEM) and private key: a PEM file, or a
  // PKCS#11 URI ("pkcs11:...", fedge/models/pkcs11.h) of an EC P-256 key
  // on a token, which then never leaves it. Required unless insecure.
  std::filesystem::path cert_file;
  std::string key_file;
  // The CA that signs device certificates (PEM). Empty: devices
  // authenticate with enrollment tokens only. When set, every handshake
  // with a client certificate is also checked against the revoked devices:
  // a revoked device is refused at its next handshake.
  std::filesystem::path client_ca_file;
  // The key of client_ca_file's CA (a PEM file or a PKCS#11 URI). Set: the
  // aggregator is the device CA and answers Enroll, turning a device's CSR
  // (sent with its enrollment token) into a certificate. Default: empty.
  std::string client_ca_key;
  // Validity of the device certificates it issues. Default: 365 days.
  int device_certificate_days = 365;
  // Refuse TLS handshakes without a client certificate (mutual TLS only).
  bool require_client_certificate = false;
};

// RoundPolicy (how rounds are scheduled) is the coordinator's: see
// fedge/aggregator/round_coordinator.h.

// The operations endpoint (ops_server.h, docs/operations.md): /metrics, the
// JSON status and admin API, and the dashboard, on a port of its own. It
// uses the aggregator's TLS certificate and key (plain HTTP only when the
// aggregator runs insecure).
struct OpsOptions {
  // host:port (port 0 picks a free one; see ops_port()). Keep it on
  // loopback unless operators reach it from elsewhere. Empty: no endpoint.
  // Default: off.
  std::string listen;
  // The operator token's file, created (32 random bytes, hex, mode 0600)
  // when missing. Default (empty): <state_dir>/ops.token.
  std::filesystem::path token_file;
  // The token itself, instead of a file (tests, embedders). Default: empty.
  std::string token;
  // GET /metrics without the token, for a scraper that cannot send one.
  // Default: false (every route but the dashboard's files needs the token).
  bool metrics_public = false;
  // Threads serving the endpoint. Default: 2.
  int threads = 2;
  // A connected device that called for work (anything but a heartbeat)
  // within this window is "active", else "idle".
  std::chrono::milliseconds active_window{60'000};
};

// How the aggregator tells a device that is there from one that is gone.
// Devices heartbeat every `heartbeat_interval` (told at Join); one that has
// heartbeated and then stays silent for `gone_after`, or that says Leave, is
// gone: the status API counts it so and an open round stops waiting for it.
// A device that never heartbeats (an older client) is never judged gone by
// silence; it is "idle" once silent for the active window.
struct LivenessOptions {
  // 0: ask devices for no heartbeats (then only Leave marks a device gone).
  std::chrono::milliseconds heartbeat_interval{5'000};
  // REQUIRES: > heartbeat_interval (a device must be able to miss one).
  std::chrono::milliseconds gone_after{15'000};
};

struct AggregatorServerOptions {
  // host:port; port 0 picks a free port (see port()).
  std::string listen_address = "127.0.0.1:7443";
  ServerTlsOptions tls;
  LivenessOptions liveness;
  std::filesystem::path state_dir;
  // The aggregator's Ed25519 model-signing key: a PKCS#8 PEM file, or a
  // PKCS#11 URI of a key on a token. Required.
  std::string signing_key_file;
  // The signing key's rotations (fedge-ctl endorse-key writes the file;
  // fedge/models/model_trust.h): handed to devices at Join so they can
  // follow it from the key they pin. Its last key must be signing_key's.
  // Default: empty (devices pin the signing key itself).
  std::filesystem::path signing_key_chain;
  std::string strategy = "fedavg";
  StrategyOptions strategy_options;
  // Update codec devices must use.
  std::string codec = "fp32";
  // What devices download by default.
  models::ArtifactEncoding::Precision precision =
      models::ArtifactEncoding::Precision::kInt8PerChannel;
  RoundPolicy policy;
  // How cohorts are drawn: "fixed" (goal x (1 + over_selection) of the
  // available devices) or "poisson" (each available device independently
  // with probability goal / enrolled devices, and the round waits for every
  // device drawn: the sampling the DP accountant assumes). Both draw from
  // OpenSSL's generator, so nobody can predict a cohort, unless
  // `seeded_sampling` (simulations and tests: reproducible from policy.seed).
  std::string sampling = "fixed";
  bool seeded_sampling = false;
  // Checkpoint the open round's partial aggregate every this many accepted
  // updates (0: never; the journal alone then restores the round).
  int checkpoint_every = 64;
  // Largest serialized update accepted, and the chunk sizes on the wire.
  uint64_t max_update_bytes = 256ull << 20;
  uint32_t chunk_bytes = 1u << 20;
  // Updates being received at once; further uploads wait (gRPC flow control
  // holds them back), which bounds memory at about this many updates.
  int max_concurrent_uploads = 32;
  // Threads that decode and fold updates.
  int workers = 2;
  // Longest a PollTask may be held.
  std::chrono::milliseconds max_poll_wait{30'000};
  // Secure aggregation (fedge/aggregator/secure_aggregation.h): the
  // aggregator only learns each round's sum. Devices train, then run the
  // four protocol phases (SecAggSend / SecAggPoll). The first phase closes
  // when every cohort device has advertised its keys or at the round
  // deadline; each later phase when every device of the phase before has
  // answered or after `secagg_phase_timeout`. A round that falls below the
  // threshold publishes nothing. Such a round does not survive a restart of
  // the aggregator (its protocol secrets live only in memory): it is marked
  // failed and the next round starts. Default: off.
  std::optional<SecureAggregationOptions> secure_aggregation;
  std::chrono::milliseconds secagg_phase_timeout{30'000};
  // Differential privacy (private_aggregation.h), applied by the round
  // coordinator as in simulations: the clip bound (and device noise) in
  // every task, central noise on the sum, the accountant and the budget
  // (rounds stop once it is spent). Its state is stored with each version.
  // Default: off.
  std::optional<PrivateAggregationOptions> privacy;
  // The drift reaction policy (drift_tracker.h) over the devices enrolled
  // at start: "extra-round" opens a round for the devices that asked to
  // join. Default: off (drift reports are stored and feed the drift alert).
  std::optional<DriftPolicyOptions> drift;
  OpsOptions ops;
  // Deprecated: when ops.listen is empty, sets it, with ops.metrics_public.
  std::string metrics_listen;
  // Evaluates a version's fp32 master on the aggregator's validation set;
  // returns at least "accuracy" and "loss" (fedge-aggregator evaluates with
  // LibTorch on an IDX data set: validation.*). Called on the round thread
  // for the first live version and for every version a round produces; the
  // figures are stored as the version's validation_accuracy and
  // validation_loss. Empty: versions are not evaluated.
  std::function<absl::StatusOr<std::map<std::string, double>>(const v1::ModelArtifact& master)>
      validate;
  // Gated rollout (see rollout.h): new versions go live only through
  // validation and a canary stage. REQUIRES: `validate` when enabled.
  // Default: off.
  RolloutPolicy rollout;
  // Operator alerts (see alerts.h): raised as events of kind "alert",
  // counted in fedge_alerts_total and logged.
  AlertRules alerts;
  // The model of version 0, for an empty state directory: an fp32 artifact
  // (models::BuildFp32Artifact). Ignored when the directory has a version.
  std::optional<v1::ModelArtifact> initial_model;
  // Called on the round thread after each round closes (or fails, with
  // participants == 0 and new_version == 0).
  std::function<void(const RoundOutcome&)> on_round_closed;
};

class AggregatorServer {
 public:
  // Restores the state directory and starts serving. Errors name what is
  // wrong (a missing key or certificate file, a state directory in use, a
  // stored artifact that does not verify, a bad option).
  static absl::StatusOr<std::unique_ptr<AggregatorServer>> Start(AggregatorServerOptions options);
  ~AggregatorServer();  // Shutdown()

  // The port it listens on, and the ops endpoint's port (0 without one;
  // metrics_port() is the same: /metrics is served there).
  int port() const;
  int ops_port() const;
  int metrics_port() const;
  // The operator token of the ops endpoint (empty without one).
  const std::string& ops_token() const;
  // Blocks until `policy.rounds` rounds have closed or Shutdown is called;
  // returns the first error that stopped the server (e.g. the state
  // directory became unwritable), OK otherwise.
  absl::Status Wait();
  // Stops serving: waiting polls get UNAVAILABLE, the open round stays open
  // in the state directory for the next start.
  void Shutdown();

  // The newest published version and the number of closed rounds.
  uint64_t latest_version() const;
  // The version every device is served (the newest that went live).
  uint64_t live_version() const;
  // The counters and gauges the metrics endpoint renders.
  const AggregatorMetrics& metrics() const;
  uint64_t closed_rounds() const;
  const ModelRegistry& registry() const;

  // The operator's view and controls (what the ops endpoint serves), and
  // the fleet events shown to operators.
  FleetControl& fleet();
  EventLog& events();
  // See FleetControl::Promote and FleetControl::RollBackTo.
  absl::Status Promote(uint64_t version, const std::string& reason);
  absl::StatusOr<uint64_t> RollBackTo(uint64_t version, const std::string& reason);

  class Impl;

 private:
  explicit AggregatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SERVER_H_
