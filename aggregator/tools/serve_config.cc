#include "serve_config.h"

#include <chrono>
#include <filesystem>

#include "fedge/aggregator/shared_keys.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_zoo.h"
#include "fedge/models/pkcs11.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/secagg/protocol.h"

namespace fedge::aggregator::tools {
namespace {

using Key = config::Key<ServeConfig>;
using config::DurationUnit;
using std::chrono::milliseconds;

std::string PrecisionName(models::ArtifactEncoding::Precision precision) {
  for (const std::string& name : models::ArtifactPrecisionNames()) {
    absl::StatusOr<models::ArtifactEncoding::Precision> p = models::ParseArtifactPrecision(name);
    if (p.ok() && *p == precision) return name;
  }
  return "";
}

// A file or directory; `field` returns the path member of a const or
// mutable config.
template <typename Field>
Key Path(std::string name, std::string help, Field field) {
  return Key::String(
      std::move(name), std::move(help), [field](const ServeConfig& c) { return field(c).string(); },
      [field](ServeConfig& c, const std::string& v) { field(c) = v; });
}

// A key a config names by reference: a PEM file's path, or a PKCS#11 URI
// ("pkcs11:...") whose syntax is checked here, before anything starts.
template <typename Field>
Key KeyRef(std::string name, std::string help, Field field) {
  return Key::String(
             std::move(name), std::move(help), [field](const ServeConfig& c) { return field(c); },
             [field](ServeConfig& c, const std::string& v) { field(c) = v; })
      .Check([](const config::Value& v) { return models::CheckKeyRef(std::get<std::string>(v)); });
}

// The keys of the aggregator's own (not shared) settings, in --help order.
std::vector<Key> EndpointKeys() {
  return {
      Key::HostPort(
          "listen", "host:port to serve on (port 0: any free port)",
          [](const ServeConfig& c) { return c.server.listen_address; },
          [](ServeConfig& c, const std::string& v) { c.server.listen_address = v; }),
      Key::HostPort(
          "ops.listen",
          "host:port of the ops endpoint: /metrics, status + admin API, dashboard (TLS with the "
          "aggregator's certificate; keep it on loopback); empty: none",
          [](const ServeConfig& c) { return c.server.ops.listen; },
          [](ServeConfig& c, const std::string& v) { c.server.ops.listen = v; })
          .Optional(),
      Key::String(
          "ops.port_file", "write the ops endpoint's bound port to this file once serving",
          [](const ServeConfig& c) { return c.ops_port_file; },
          [](ServeConfig& c, const std::string& v) { c.ops_port_file = v; }),
      Path(
          "ops.token_file",
          "operator token file, created (mode 0600) when missing; default: "
          "<state_dir>/ops.token",
          [](auto& c) -> auto& { return c.server.ops.token_file; }),
      Key::Bool(
          "ops.metrics_public", "serve GET /metrics without the operator token",
          [](const ServeConfig& c) { return c.server.ops.metrics_public; },
          [](ServeConfig& c, bool v) { c.server.ops.metrics_public = v; }),
      Key::Int(
          "ops.threads", "threads serving the ops endpoint",
          [](const ServeConfig& c) { return c.server.ops.threads; },
          [](ServeConfig& c, int64_t v) { c.server.ops.threads = static_cast<int>(v); })
          .Min(1)
          .Max(1024),
      Key::Duration(
          "ops.active_window_s",
          "a connected device that called for work within this many seconds is active, else idle",
          DurationUnit::kSeconds, [](const ServeConfig& c) { return c.server.ops.active_window; },
          [](ServeConfig& c, milliseconds v) { c.server.ops.active_window = v; })
          .AtLeast(0.001)
          .AtMost(1e7),
      Key::Duration(
          "devices.heartbeat_interval_s",
          "devices heartbeat this often (0: none; then only a device's leave marks it gone)",
          DurationUnit::kSeconds,
          [](const ServeConfig& c) { return c.server.liveness.heartbeat_interval; },
          [](ServeConfig& c, milliseconds v) { c.server.liveness.heartbeat_interval = v; })
          .AtLeast(0)
          .AtMost(3600),
      Key::Duration(
          "devices.gone_after_s",
          "a heartbeating device silent this long is gone, and no round waits for it "
          "(must exceed devices.heartbeat_interval_s)",
          DurationUnit::kSeconds, [](const ServeConfig& c) { return c.server.liveness.gone_after; },
          [](ServeConfig& c, milliseconds v) { c.server.liveness.gone_after = v; })
          .AtLeast(0.001)
          .AtMost(1e7),
      Key::HostPort(
          "metrics.listen", "deprecated: ops.listen with ops.metrics_public",
          [](const ServeConfig& c) { return c.server.metrics_listen; },
          [](ServeConfig& c, const std::string& v) { c.server.metrics_listen = v; })
          .Optional(),
      Key::String(
          "port_file", "write the bound port to this file once serving",
          [](const ServeConfig& c) { return c.port_file; },
          [](ServeConfig& c, const std::string& v) { c.port_file = v; }),
      Path(
          "state_dir", "the aggregator's state directory (SQLite + model versions)",
          [](auto& c) -> auto& { return c.server.state_dir; }),
      KeyRef(
          "signing_key",
          "Ed25519 key that signs model versions: a PEM file, or a PKCS#11 URI "
          "(pkcs11:token=..;object=..?module-path=..&pin-source=..) of a key on a token",
          [](auto& c) -> auto& { return c.server.signing_key_file; }),
      Path(
          "signing_key_chain",
          "key chain file (fedge-ctl endorse-key) from the key devices pin to signing_key",
          [](auto& c) -> auto& { return c.server.signing_key_chain; }),
      Path(
          "tls.cert", "server certificate chain (PEM)",
          [](auto& c) -> auto& { return c.server.tls.cert_file; }),
      KeyRef(
          "tls.key", "server private key: a PEM file, or a PKCS#11 URI of an EC P-256 token key",
          [](auto& c) -> auto& { return c.server.tls.key_file; }),
      Path(
          "tls.client_ca", "CA of device certificates (PEM); empty: tokens only",
          [](auto& c) -> auto& { return c.server.tls.client_ca_file; }),
      KeyRef(
          "tls.client_ca_key",
          "key of tls.client_ca (PEM file or PKCS#11 URI): issue device certificates at Enroll",
          [](auto& c) -> auto& { return c.server.tls.client_ca_key; }),
      Key::Int(
          "tls.device_cert_days", "validity of issued device certificates, in days",
          [](const ServeConfig& c) { return c.server.tls.device_certificate_days; },
          [](ServeConfig& c, int64_t v) { c.server.tls.device_certificate_days = static_cast<int>(v); })
          .Min(1)
          .Max(3650),
      Key::Bool(
          "tls.require_client_cert", "accept mutual-TLS devices only",
          [](const ServeConfig& c) { return c.server.tls.require_client_certificate; },
          [](ServeConfig& c, bool v) { c.server.tls.require_client_certificate = v; }),
      Key::Bool(
          "tls.insecure", "serve plaintext (tests on loopback only)",
          [](const ServeConfig& c) { return c.server.tls.insecure; },
          [](ServeConfig& c, bool v) { c.server.tls.insecure = v; })
          .Alias("insecure"),
      Key::Enum(
          "model.architecture", "model zoo architecture of a new federation",
          models::RegisteredArchitectures, [](const ServeConfig& c) { return c.architecture; },
          [](ServeConfig& c, const std::string& v) { c.architecture = v; })
          .Pluggable(),
      Key::Int(
          "model.seed", "initialization seed of a new federation's model",
          [](const ServeConfig& c) { return static_cast<int64_t>(c.model_seed); },
          [](ServeConfig& c, int64_t v) { c.model_seed = static_cast<uint64_t>(v); })
          .Min(0),
  };
}

std::vector<Key> RoundKeys() {
  return {
      Key::Enum(
          "update.codec", "update codec devices must use", models::RegisteredUpdateCodecs,
          [](const ServeConfig& c) { return c.server.codec; },
          [](ServeConfig& c, const std::string& v) { c.server.codec = v; })
          .Alias("codec")
          .Pluggable(),
      Key::Enum(
          "model.artifact", "what devices download (the fp32 master is kept beside it)",
          models::ArtifactPrecisionNames,
          [](const ServeConfig& c) { return PrecisionName(c.server.precision); },
          [](ServeConfig& c, const std::string& v) {
            if (auto p = models::ParseArtifactPrecision(v); p.ok()) c.server.precision = *p;
          })
          .Alias("artifact"),
      Key::Int(
          "rounds.count", "rounds to close before exiting (0: serve forever)",
          [](const ServeConfig& c) { return static_cast<int64_t>(c.server.policy.rounds); },
          [](ServeConfig& c, int64_t v) { c.server.policy.rounds = static_cast<uint64_t>(v); })
          .Min(0),
      Key::Int(
          "rounds.goal", "updates that close a round early",
          [](const ServeConfig& c) { return c.server.policy.goal; },
          [](ServeConfig& c, int64_t v) { c.server.policy.goal = static_cast<int>(v); })
          .Min(0)
          .Max(10'000'000),
      Key::Double(
          "rounds.fraction", "goal as a fraction of available devices (when goal is 0)",
          [](const ServeConfig& c) { return c.server.policy.fraction; },
          [](ServeConfig& c, double v) { c.server.policy.fraction = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Int(
          "rounds.min_clients", "devices polling before a round opens",
          [](const ServeConfig& c) { return c.server.policy.min_clients; },
          [](ServeConfig& c, int64_t v) { c.server.policy.min_clients = static_cast<int>(v); })
          .Min(1)
          .Max(10'000'000),
      Key::Double(
          "rounds.over_selection", "extra devices selected, as a fraction of the goal",
          [](const ServeConfig& c) { return c.server.policy.over_selection; },
          [](ServeConfig& c, double v) { c.server.policy.over_selection = v; })
          .AtLeast(0)
          .AtMost(10),
      Key::Int(
          "rounds.min_updates", "fewest updates with which a round closes at its deadline",
          [](const ServeConfig& c) { return c.server.policy.min_updates; },
          [](ServeConfig& c, int64_t v) { c.server.policy.min_updates = static_cast<int>(v); })
          .Min(1)
          .Max(10'000'000),
      Key::Duration(
          "rounds.deadline_s", "seconds a round stays open", DurationUnit::kSeconds,
          [](const ServeConfig& c) { return c.server.policy.deadline; },
          [](ServeConfig& c, milliseconds v) { c.server.policy.deadline = v; })
          .AtLeast(0.001)
          .AtMost(1e7),
      Key::Int(
          "rounds.seed", "cohort sampling seed",
          [](const ServeConfig& c) { return static_cast<int64_t>(c.server.policy.seed); },
          [](ServeConfig& c, int64_t v) { c.server.policy.seed = static_cast<uint64_t>(v); })
          .Min(0),
      Key::Enum(
          "rounds.sampling",
          "cohorts: fixed (goal devices) or poisson (each device with probability goal / "
          "enrolled; what the DP accountant assumes; drawn from OpenSSL unless "
          "privacy.random=seeded)",
          [] {
            return std::vector<std::string>{"fixed", "poisson"};
          },
          [](const ServeConfig& c) { return c.server.sampling; },
          [](ServeConfig& c, const std::string& v) { c.server.sampling = v; }),
      Key::Enum(
          "rounds.sampling_random",
          "where cohort draws come from: openssl (nobody can predict a cohort) or seeded "
          "(reproducible from rounds.seed; simulations and tests)",
          [] { return std::vector<std::string>{"openssl", "seeded"}; },
          [](const ServeConfig& c) { return c.server.seeded_sampling ? "seeded" : "openssl"; },
          [](ServeConfig& c, const std::string& v) { c.server.seeded_sampling = v == "seeded"; }),
  };
}

// The task's shuffling seed and secure aggregation.
std::vector<Key> TaskKeys() {
  return {
      Key::Int(
          "train.seed", "training seed",
          [](const ServeConfig& c) { return static_cast<int64_t>(c.server.policy.train.seed()); },
          [](ServeConfig& c, int64_t v) {
            c.server.policy.train.set_seed(static_cast<uint64_t>(v));
          })
          .Min(0),
      Key::Enum(
          "secure_aggregation",
          "none | secagg | secagg+: the aggregator learns only each round's sum",
          [] {
            return std::vector<std::string>{"none", "secagg", "secagg+"};
          },
          [](const ServeConfig& c) {
            return c.server.secure_aggregation ? privacy::secagg::ProtocolName(
                                                     c.server.secure_aggregation->protocol.protocol)
                                               : std::string("none");
          },
          [](ServeConfig& c, const std::string& v) {
            absl::StatusOr<v1::SecAggConfig::Protocol> protocol = privacy::secagg::ParseProtocol(v);
            if (v == "none" || !protocol.ok()) {
              c.server.secure_aggregation.reset();
              return;
            }
            if (!c.server.secure_aggregation) c.server.secure_aggregation.emplace();
            c.server.secure_aggregation->protocol.protocol = *protocol;
          }),
      Key::Double(
          "secure_aggregation.threshold",
          "shares that rebuild a secret: fraction of k (at least 2), or a count >= 2",
          [](const ServeConfig& c) { return c.secagg.protocol.threshold; },
          [](ServeConfig& c, double v) { c.secagg.protocol.threshold = v; })
          .AtLeast(1e-9)
          .AtMost(1e6),
      Key::Int(
          "secure_aggregation.neighbours", "SecAgg+ graph degree k (0: 3 log2 n, even)",
          [](const ServeConfig& c) { return c.secagg.protocol.neighbours; },
          [](ServeConfig& c, int64_t v) { c.secagg.protocol.neighbours = static_cast<int>(v); })
          .Min(0)
          .Max(65534),
      Key::Int(
          "secure_aggregation.min_survivors",
          "fewest masked updates the sum must hold before it is unmasked (>= 2)",
          [](const ServeConfig& c) { return c.secagg.protocol.min_survivors; },
          [](ServeConfig& c, int64_t v) { c.secagg.protocol.min_survivors = static_cast<int>(v); })
          .Min(2)
          .Max(65535),
      Key::Double(
          "secure_aggregation.bound", "largest |value| of an update coordinate (fixed-point range)",
          [](const ServeConfig& c) { return c.secagg.protocol.clip_bound; },
          [](ServeConfig& c, double v) { c.secagg.protocol.clip_bound = v; })
          .AtLeast(1e-9)
          .AtMost(1e9),
      Key::Int(
          "secure_aggregation.max_weight",
          "weight cap (a device's example count); 0: every update weighs the same",
          [](const ServeConfig& c) { return static_cast<int64_t>(c.secagg.max_weight); },
          [](ServeConfig& c, int64_t v) { c.secagg.max_weight = static_cast<uint64_t>(v); })
          .Min(0),
      Key::Duration(
          "secure_aggregation.phase_timeout_s", "seconds each protocol phase after the first waits",
          DurationUnit::kSeconds,
          [](const ServeConfig& c) { return c.server.secagg_phase_timeout; },
          [](ServeConfig& c, milliseconds v) { c.server.secagg_phase_timeout = v; })
          .AtLeast(0.001)
          .AtMost(1e6),
  };
}

// The drift reaction policy (fedge-sim's policy.* keys): what the aggregator
// does when enough devices report drift. Set policy.reaction to turn it on.
DriftPolicyOptions& Drift(ServeConfig& c) {
  if (!c.server.drift.has_value()) c.server.drift.emplace();
  return *c.server.drift;
}
DriftPolicyOptions DriftOf(const ServeConfig& c) {
  return c.server.drift.value_or(DriftPolicyOptions{});
}

std::vector<Key> DriftPolicyKeys() {
  return {
      Key::Enum(
          "policy.reaction",
          "what the aggregator does when enough devices report drift: none (reports are kept), "
          "alert, or extra-round (the reporting devices train in an extra round)",
          DriftReactions, [](const ServeConfig& c) { return DriftOf(c).reaction; },
          [](ServeConfig& c, const std::string& v) { Drift(c).reaction = v; }),
      Key::Int(
          "policy.window_rounds", "rounds over which reporting devices are counted",
          [](const ServeConfig& c) { return static_cast<int64_t>(DriftOf(c).window_rounds); },
          [](ServeConfig& c, int64_t v) { Drift(c).window_rounds = static_cast<int>(v); })
          .Min(1)
          .Max(1'000'000),
      Key::Double(
          "policy.threshold", "share of the enrolled devices that must report within the window",
          [](const ServeConfig& c) { return DriftOf(c).threshold; },
          [](ServeConfig& c, double v) { Drift(c).threshold = v; })
          .AtLeast(1e-9)
          .AtMost(1),
      Key::Int(
          "policy.cooldown_rounds", "rounds after a reaction before the next",
          [](const ServeConfig& c) { return static_cast<int64_t>(DriftOf(c).cooldown_rounds); },
          [](ServeConfig& c, int64_t v) { Drift(c).cooldown_rounds = static_cast<int>(v); })
          .Min(0)
          .Max(1'000'000),
  };
}

std::vector<Key> OperationKeys() {
  return {
      Key::String(
          "validation.data",
          "IDX directory whose test split is the aggregator's validation set (every new version "
          "is evaluated on it; needed by rollout.enabled)",
          [](const ServeConfig& c) { return c.validation_dir; },
          [](ServeConfig& c, const std::string& v) { c.validation_dir = v; }),
      Key::Int(
          "validation.examples", "validation examples used (the first N of the test split)",
          [](const ServeConfig& c) { return c.validation_examples; },
          [](ServeConfig& c, int64_t v) { c.validation_examples = v; })
          .Min(1),
      Key::Bool(
          "rollout.enabled",
          "gate new versions: validation, then a canary, else automatic rollback",
          [](const ServeConfig& c) { return c.server.rollout.enabled; },
          [](ServeConfig& c, bool v) { c.server.rollout.enabled = v; }),
      Key::Double(
          "rollout.max_validation_accuracy_drop",
          "largest validation-accuracy drop against the live version a new version may show",
          [](const ServeConfig& c) { return c.server.rollout.max_validation_accuracy_drop; },
          [](ServeConfig& c, double v) { c.server.rollout.max_validation_accuracy_drop = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Double(
          "rollout.canary_fraction",
          "fraction of the devices that evaluate a candidate (0: no canary)",
          [](const ServeConfig& c) { return c.server.rollout.canary_fraction; },
          [](ServeConfig& c, double v) { c.server.rollout.canary_fraction = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Int(
          "rollout.min_canary_reports", "fewest canary reports a verdict needs",
          [](const ServeConfig& c) { return c.server.rollout.min_canary_reports; },
          [](ServeConfig& c, int64_t v) {
            c.server.rollout.min_canary_reports = static_cast<int>(v);
          })
          .Min(1)
          .Max(10'000'000),
      Key::Double(
          "rollout.max_canary_accuracy_drop",
          "largest mean paired accuracy drop on the canary devices",
          [](const ServeConfig& c) { return c.server.rollout.max_canary_accuracy_drop; },
          [](ServeConfig& c, double v) { c.server.rollout.max_canary_accuracy_drop = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Double(
          "rollout.max_canary_loss_increase", "largest mean paired loss rise on the canary devices",
          [](const ServeConfig& c) { return c.server.rollout.max_canary_loss_increase; },
          [](ServeConfig& c, double v) { c.server.rollout.max_canary_loss_increase = v; })
          .AtLeast(0)
          .AtMost(1e6),
      Key::Duration(
          "rollout.canary_timeout_s", "seconds the canary waits for reports",
          DurationUnit::kSeconds,
          [](const ServeConfig& c) { return c.server.rollout.canary_timeout; },
          [](ServeConfig& c, milliseconds v) { c.server.rollout.canary_timeout = v; })
          .AtLeast(0.001)
          .AtMost(1e7),
      Key::Double(
          "alerts.round_failure_rate", "alert when this share of the recent rounds failed (0: off)",
          [](const ServeConfig& c) { return c.server.alerts.round_failure_rate; },
          [](ServeConfig& c, double v) { c.server.alerts.round_failure_rate = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Int(
          "alerts.failure_window", "rounds the failure rate is taken over",
          [](const ServeConfig& c) { return c.server.alerts.failure_window; },
          [](ServeConfig& c, int64_t v) { c.server.alerts.failure_window = static_cast<int>(v); })
          .Min(1)
          .Max(1'000'000),
      Key::Double(
          "alerts.dropout", "alert when this share of a round's cohort sent no update (0: off)",
          [](const ServeConfig& c) { return c.server.alerts.dropout; },
          [](ServeConfig& c, double v) { c.server.alerts.dropout = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Double(
          "alerts.drift_share", "alert when this share of the recently seen devices reports drift",
          [](const ServeConfig& c) { return c.server.alerts.drift_share; },
          [](ServeConfig& c, double v) { c.server.alerts.drift_share = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Duration(
          "alerts.drift_window_s", "seconds of drift reports and device activity the share counts",
          DurationUnit::kSeconds, [](const ServeConfig& c) { return c.server.alerts.drift_window; },
          [](ServeConfig& c, milliseconds v) { c.server.alerts.drift_window = v; })
          .AtLeast(0.001)
          .AtMost(1e7),
      Key::Double(
          "alerts.accuracy_drop", "alert when a new version's validation accuracy drops this much",
          [](const ServeConfig& c) { return c.server.alerts.accuracy_drop; },
          [](ServeConfig& c, double v) { c.server.alerts.accuracy_drop = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Double(
          "alerts.epsilon_budget", "alert when this share of the privacy budget is spent",
          [](const ServeConfig& c) { return c.server.alerts.epsilon_budget; },
          [](ServeConfig& c, double v) { c.server.alerts.epsilon_budget = v; })
          .AtLeast(0)
          .AtMost(1),
      Key::Int(
          "checkpoint_every",
          "checkpoint the open round every N accepted updates (0: journal only)",
          [](const ServeConfig& c) { return c.server.checkpoint_every; },
          [](ServeConfig& c, int64_t v) { c.server.checkpoint_every = static_cast<int>(v); })
          .Min(0)
          .Max(1'000'000'000),
      Key::Int(
          "max_concurrent_uploads", "updates received at once (bounds memory)",
          [](const ServeConfig& c) { return c.server.max_concurrent_uploads; },
          [](ServeConfig& c, int64_t v) { c.server.max_concurrent_uploads = static_cast<int>(v); })
          .Min(1)
          .Max(1'000'000),
      Key::Int(
          "max_update_mb", "largest update accepted, in MiB",
          [](const ServeConfig& c) {
            return static_cast<int64_t>(c.server.max_update_bytes >> 20);
          },
          [](ServeConfig& c, int64_t v) { c.server.max_update_bytes = uint64_t(v) << 20; })
          .Min(1)
          .Max(1 << 20),
      Key::Int(
          "workers", "threads that decode and fold updates",
          [](const ServeConfig& c) { return c.server.workers; },
          [](ServeConfig& c, int64_t v) { c.server.workers = static_cast<int>(v); })
          .Min(1)
          .Max(1024),
  };
}

}  // namespace

ServeConfig DefaultServeConfig() {
  ServeConfig config;
  config.server.policy.goal = 2;
  config.server.policy.train.set_local_epochs(1);
  config.server.policy.train.set_batch_size(32);
  config.server.policy.train.set_learning_rate(0.05f);
  return config;
}

const config::KeyTable<ServeConfig>& ServeKeys() {
  static const config::KeyTable<ServeConfig>* table = [] {
    auto* t = new config::KeyTable<ServeConfig>("fedge-aggregator", EndpointKeys());
    t->Include(
        StrategyKeys(),
        [](const ServeConfig& c) {
          return StrategyChoice{c.server.strategy, c.server.strategy_options};
        },
        [](ServeConfig& c, StrategyChoice v) {
          c.server.strategy = std::move(v.name);
          c.server.strategy_options = v.options;
        });
    for (Key& key : RoundKeys()) t->Add(std::move(key));
    t->Include(
        TrainKeys(),
        [](const ServeConfig& c) {
          return TrainChoice{c.server.policy.train, c.server.policy.lr_decay};
        },
        [](ServeConfig& c, TrainChoice v) {
          c.server.policy.train = std::move(v.train);
          c.server.policy.lr_decay = v.lr_decay;
        });
    for (Key& key : TaskKeys()) t->Add(std::move(key));
    t->Include(
        PrivacyKeys(), [](const ServeConfig& c) { return c.privacy; },
        [](ServeConfig& c, PrivacyChoice v) { c.privacy = std::move(v); });
    for (Key& key : OperationKeys()) t->Add(std::move(key));
    for (Key& key : DriftPolicyKeys()) t->Add(std::move(key));
    return t;
  }();
  return *table;
}

}  // namespace fedge::aggregator::tools
