// fedge-aggregator: a federation's aggregator (gRPC over TLS), and the
// operator commands on its state directory.
//
//   fedge-aggregator [serve] --config FILE [--set key=value ...] [--insecure]
//   fedge-aggregator enroll  --state DIR ID [--token TOKEN | --generate-token]
//   fedge-aggregator revoke  --state DIR ID
//   fedge-aggregator rollback --state DIR --signing-key KEY VERSION
//   fedge-aggregator versions --state DIR
//   fedge-aggregator clients  --state DIR
#include <malloc.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/signing.h"
#include "fedge/privacy/secagg/protocol.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"
#include "validation_set.h"

namespace {

using fedge::aggregator::AggregatorServerOptions;

struct ServeConfig {
  AggregatorServerOptions server;
  std::string architecture = "cnn";
  std::vector<int64_t> input_shape = {1, 28, 28};
  int64_t num_classes = 10;
  uint64_t model_seed = 1;
  std::string port_file;
  std::string ops_port_file;
  // Secure-aggregation settings, applied when secure_aggregation is on.
  fedge::aggregator::SecureAggregationOptions secagg;
  // The validation set (IDX directory; empty: none) and its size.
  std::string validation_dir;
  int64_t validation_examples = 2000;
};

struct Key {
  const char* name;
  const char* help;
  std::function<absl::Status(ServeConfig&, const std::string&)> set;
};

absl::Status BadValue(const std::string& key, const std::string& value, const char* want) {
  return absl::InvalidArgumentError(
      absl::StrCat("config key '", key, "': '", value, "' is not ", want));
}

std::function<absl::Status(ServeConfig&, const std::string&)> IntKey(
    const char* key, std::function<void(ServeConfig&, int64_t)> set, int64_t min) {
  return [key, set, min](ServeConfig& c, const std::string& v) -> absl::Status {
    int64_t parsed;
    if (!absl::SimpleAtoi(v, &parsed) || parsed < min) {
      return BadValue(key, v, absl::StrCat("an integer >= ", min).c_str());
    }
    set(c, parsed);
    return absl::OkStatus();
  };
}

std::function<absl::Status(ServeConfig&, const std::string&)> FloatKey(
    const char* key, std::function<void(ServeConfig&, double)> set, double min, double max) {
  return [key, set, min, max](ServeConfig& c, const std::string& v) -> absl::Status {
    double parsed;
    if (!absl::SimpleAtod(v, &parsed) || !(parsed >= min && parsed <= max)) {
      return BadValue(key, v, absl::StrCat("a number in [", min, ", ", max, "]").c_str());
    }
    set(c, parsed);
    return absl::OkStatus();
  };
}

std::function<absl::Status(ServeConfig&, const std::string&)> BoolKey(
    const char* key, std::function<void(ServeConfig&, bool)> set) {
  return [key, set](ServeConfig& c, const std::string& v) -> absl::Status {
    if (v == "true" || v == "on" || v == "1") {
      set(c, true);
    } else if (v == "false" || v == "off" || v == "0") {
      set(c, false);
    } else {
      return BadValue(key, v, "true or false");
    }
    return absl::OkStatus();
  };
}

std::function<absl::Status(ServeConfig&, const std::string&)> StringKey(
    std::function<void(ServeConfig&, const std::string&)> set) {
  return [set](ServeConfig& c, const std::string& v) {
    set(c, v);
    return absl::OkStatus();
  };
}

// host:port with a port in [0, 65535], or empty (off).
std::function<absl::Status(ServeConfig&, const std::string&)> HostPortKey(
    const char* key, std::function<void(ServeConfig&, const std::string&)> set) {
  return [key, set](ServeConfig& c, const std::string& v) -> absl::Status {
    const size_t colon = v.rfind(':');
    int port;
    if (!v.empty() && (colon == std::string::npos || colon == 0 ||
                       !absl::SimpleAtoi(v.substr(colon + 1), &port) || port < 0 || port > 65535)) {
      return BadValue(key, v, "host:port (e.g. 127.0.0.1:9443)");
    }
    set(c, v);
    return absl::OkStatus();
  };
}

const std::vector<Key>& Keys() {
  static const std::vector<Key> keys = {
      {"listen", "host:port to serve on (port 0: any free port)",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.listen_address = v; })},
      {"ops.listen",
       "host:port of the ops endpoint: /metrics, status + admin API, dashboard (TLS with the "
       "aggregator's certificate; keep it on loopback); empty: none",
       HostPortKey("ops.listen",
                   [](ServeConfig& c, const std::string& v) { c.server.ops.listen = v; })},
      {"ops.port_file", "write the ops endpoint's bound port to this file once serving",
       StringKey([](ServeConfig& c, const std::string& v) { c.ops_port_file = v; })},
      {"ops.token_file", "operator token file, created (mode 0600) when missing; default: "
                         "<state_dir>/ops.token",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.ops.token_file = v; })},
      {"ops.metrics_public", "serve GET /metrics without the operator token",
       BoolKey("ops.metrics_public",
               [](ServeConfig& c, bool v) { c.server.ops.metrics_public = v; })},
      {"ops.threads", "threads serving the ops endpoint",
       IntKey(
           "ops.threads", [](ServeConfig& c, int64_t v) { c.server.ops.threads = v; }, 1)},
      {"ops.active_window_s", "a device seen within this many seconds is active, else idle",
       FloatKey("ops.active_window_s",
                [](ServeConfig& c, double v) {
                  c.server.ops.active_window =
                      std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
                },
                0.001, 1e7)},
      {"metrics.listen", "deprecated: ops.listen with ops.metrics_public",
       HostPortKey("metrics.listen",
                   [](ServeConfig& c, const std::string& v) { c.server.metrics_listen = v; })},
      {"port_file", "write the bound port to this file once serving",
       StringKey([](ServeConfig& c, const std::string& v) { c.port_file = v; })},
      {"state_dir", "the aggregator's state directory (SQLite + model versions)",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.state_dir = v; })},
      {"signing_key", "Ed25519 private key (PEM) that signs model versions",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.signing_key_file = v; })},
      {"tls.cert", "server certificate chain (PEM)",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.tls.cert_file = v; })},
      {"tls.key", "server private key (PEM)",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.tls.key_file = v; })},
      {"tls.client_ca", "CA of device certificates (PEM); empty: tokens only",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.tls.client_ca_file = v; })},
      {"tls.require_client_cert", "accept mutual-TLS devices only",
       BoolKey("tls.require_client_cert",
               [](ServeConfig& c, bool v) { c.server.tls.require_client_certificate = v; })},
      {"insecure", "serve plaintext (tests on loopback only)",
       BoolKey("insecure", [](ServeConfig& c, bool v) { c.server.tls.insecure = v; })},
      {"model.architecture", "model zoo architecture of a new federation",
       StringKey([](ServeConfig& c, const std::string& v) { c.architecture = v; })},
      {"model.seed", "initialization seed of a new federation's model",
       IntKey(
           "model.seed", [](ServeConfig& c, int64_t v) { c.model_seed = v; }, 0)},
      {"strategy", "aggregation strategy (fedavg, fedadam, ...)",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.strategy = v; })},
      {"strategy.server_learning_rate", "server learning rate",
       FloatKey(
           "strategy.server_learning_rate",
           [](ServeConfig& c, double v) { c.server.strategy_options.server_learning_rate = v; },
           1e-9, 1e9)},
      {"strategy.server_momentum", "FedAvgM server momentum",
       FloatKey(
           "strategy.server_momentum",
           [](ServeConfig& c, double v) { c.server.strategy_options.server_momentum = v; }, 0.0,
           0.999999)},
      {"strategy.beta1", "adaptive optimizers: first-moment decay",
       FloatKey(
           "strategy.beta1", [](ServeConfig& c, double v) { c.server.strategy_options.beta1 = v; },
           0.0, 0.999999)},
      {"strategy.beta2", "adaptive optimizers: second-moment decay",
       FloatKey(
           "strategy.beta2", [](ServeConfig& c, double v) { c.server.strategy_options.beta2 = v; },
           0.0, 0.999999)},
      {"strategy.tau", "adaptive optimizers: adaptivity",
       FloatKey(
           "strategy.tau", [](ServeConfig& c, double v) { c.server.strategy_options.tau = v; },
           1e-12, 1e6)},
      {"codec", "update codec devices must use",
       StringKey([](ServeConfig& c, const std::string& v) { c.server.codec = v; })},
      {"artifact", "what devices download: int8 | int8-per-tensor | fp32",
       [](ServeConfig& c, const std::string& v) -> absl::Status {
         FEDGE_ASSIGN_OR_RETURN(c.server.precision, fedge::models::ParseArtifactPrecision(v));
         return absl::OkStatus();
       }},
      {"rounds.count", "rounds to close before exiting (0: serve forever)",
       IntKey(
           "rounds.count", [](ServeConfig& c, int64_t v) { c.server.policy.rounds = v; }, 0)},
      {"rounds.goal", "updates that close a round early",
       IntKey(
           "rounds.goal", [](ServeConfig& c, int64_t v) { c.server.policy.goal = v; }, 0)},
      {"rounds.fraction", "goal as a fraction of available devices (when goal is 0)",
       FloatKey(
           "rounds.fraction", [](ServeConfig& c, double v) { c.server.policy.fraction = v; }, 0.0,
           1.0)},
      {"rounds.min_clients", "devices polling before a round opens",
       IntKey(
           "rounds.min_clients", [](ServeConfig& c, int64_t v) { c.server.policy.min_clients = v; },
           1)},
      {"rounds.over_selection", "extra devices selected, as a fraction of the goal",
       FloatKey(
           "rounds.over_selection",
           [](ServeConfig& c, double v) { c.server.policy.over_selection = v; }, 0.0, 10.0)},
      {"rounds.min_updates", "fewest updates with which a round closes at its deadline",
       IntKey(
           "rounds.min_updates", [](ServeConfig& c, int64_t v) { c.server.policy.min_updates = v; },
           1)},
      {"rounds.deadline_s", "seconds a round stays open",
       FloatKey(
           "rounds.deadline_s",
           [](ServeConfig& c, double v) {
             c.server.policy.deadline = std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
           },
           0.001, 1e7)},
      {"rounds.seed", "cohort sampling seed",
       IntKey(
           "rounds.seed", [](ServeConfig& c, int64_t v) { c.server.policy.seed = v; }, 0)},
      {"train.local_epochs", "local epochs per task",
       IntKey(
           "train.local_epochs",
           [](ServeConfig& c, int64_t v) { c.server.policy.train.set_local_epochs(v); }, 1)},
      {"train.batch_size", "local batch size",
       IntKey(
           "train.batch_size",
           [](ServeConfig& c, int64_t v) { c.server.policy.train.set_batch_size(v); }, 1)},
      {"train.learning_rate", "local learning rate",
       FloatKey(
           "train.learning_rate",
           [](ServeConfig& c, double v) { c.server.policy.train.set_learning_rate(v); }, 1e-9,
           1e3)},
      {"train.lr_decay", "learning rate of round r: learning_rate * lr_decay^(r-1)",
       FloatKey(
           "train.lr_decay", [](ServeConfig& c, double v) { c.server.policy.lr_decay = v; }, 1e-9,
           1.0)},
      {"train.momentum", "local SGD momentum",
       FloatKey(
           "train.momentum",
           [](ServeConfig& c, double v) { c.server.policy.train.set_momentum(v); }, 0.0, 1.0)},
      {"train.weight_decay", "local L2 weight decay",
       FloatKey(
           "train.weight_decay",
           [](ServeConfig& c, double v) { c.server.policy.train.set_weight_decay(v); }, 0.0, 1e3)},
      {"train.proximal_mu", "FedProx proximal term (0: off)",
       FloatKey(
           "train.proximal_mu",
           [](ServeConfig& c, double v) { c.server.policy.train.set_proximal_mu(v); }, 0.0, 1e6)},
      {"train.max_steps", "cap on local steps per task (0: none)",
       IntKey(
           "train.max_steps",
           [](ServeConfig& c, int64_t v) { c.server.policy.train.set_max_steps(v); }, 0)},
      {"train.seed", "training seed",
       IntKey(
           "train.seed", [](ServeConfig& c, int64_t v) { c.server.policy.train.set_seed(v); }, 0)},
      {"secure_aggregation", "none | secagg | secagg+: the aggregator learns only each round's sum",
       [](ServeConfig& c, const std::string& v) -> absl::Status {
         if (v == "none") {
           c.server.secure_aggregation.reset();
           return absl::OkStatus();
         }
         FEDGE_ASSIGN_OR_RETURN(auto protocol, fedge::privacy::secagg::ParseProtocol(v));
         if (!c.server.secure_aggregation) c.server.secure_aggregation.emplace();
         c.server.secure_aggregation->protocol.protocol = protocol;
         return absl::OkStatus();
       }},
      {"secure_aggregation.threshold", "shares that rebuild a secret: fraction of k, or a count",
       FloatKey("secure_aggregation.threshold",
                [](ServeConfig& c, double v) { c.secagg.protocol.threshold = v; }, 1e-9, 1e6)},
      {"secure_aggregation.neighbours", "SecAgg+ graph degree k (0: 3 log2 n, even)",
       IntKey("secure_aggregation.neighbours",
              [](ServeConfig& c, int64_t v) { c.secagg.protocol.neighbours = v; }, 0)},
      {"secure_aggregation.bound", "largest |value| of an update coordinate (fixed-point range)",
       FloatKey("secure_aggregation.bound",
                [](ServeConfig& c, double v) { c.secagg.protocol.clip_bound = v; }, 1e-9, 1e9)},
      {"secure_aggregation.max_weight",
       "weight cap (a device's example count); 0: every update weighs the same",
       IntKey("secure_aggregation.max_weight",
              [](ServeConfig& c, int64_t v) { c.secagg.max_weight = v; }, 0)},
      {"secure_aggregation.phase_timeout_s", "seconds each protocol phase after the first waits",
       FloatKey("secure_aggregation.phase_timeout_s",
                [](ServeConfig& c, double v) {
                  c.server.secagg_phase_timeout =
                      std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
                },
                0.001, 1e6)},
      {"validation.data",
       "IDX directory whose test split is the aggregator's validation set (every new version "
       "is evaluated on it; needed by rollout.enabled)",
       StringKey([](ServeConfig& c, const std::string& v) { c.validation_dir = v; })},
      {"validation.examples", "validation examples used (the first N of the test split)",
       IntKey("validation.examples", [](ServeConfig& c, int64_t v) { c.validation_examples = v; },
              1)},
      {"rollout.enabled", "gate new versions: validation, then a canary, else automatic rollback",
       BoolKey("rollout.enabled", [](ServeConfig& c, bool v) { c.server.rollout.enabled = v; })},
      {"rollout.max_validation_accuracy_drop",
       "largest validation-accuracy drop against the live version a new version may show",
       FloatKey("rollout.max_validation_accuracy_drop",
                [](ServeConfig& c, double v) { c.server.rollout.max_validation_accuracy_drop = v; },
                0.0, 1.0)},
      {"rollout.canary_fraction", "fraction of the devices that evaluate a candidate (0: no canary)",
       FloatKey("rollout.canary_fraction",
                [](ServeConfig& c, double v) { c.server.rollout.canary_fraction = v; }, 0.0, 1.0)},
      {"rollout.min_canary_reports", "fewest canary reports a verdict needs",
       IntKey("rollout.min_canary_reports",
              [](ServeConfig& c, int64_t v) { c.server.rollout.min_canary_reports = v; }, 1)},
      {"rollout.max_canary_accuracy_drop",
       "largest mean paired accuracy drop on the canary devices",
       FloatKey("rollout.max_canary_accuracy_drop",
                [](ServeConfig& c, double v) { c.server.rollout.max_canary_accuracy_drop = v; },
                0.0, 1.0)},
      {"rollout.max_canary_loss_increase", "largest mean paired loss rise on the canary devices",
       FloatKey("rollout.max_canary_loss_increase",
                [](ServeConfig& c, double v) { c.server.rollout.max_canary_loss_increase = v; },
                0.0, 1e6)},
      {"rollout.canary_timeout_s", "seconds the canary waits for reports",
       FloatKey("rollout.canary_timeout_s",
                [](ServeConfig& c, double v) {
                  c.server.rollout.canary_timeout =
                      std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
                },
                0.001, 1e7)},
      {"alerts.round_failure_rate", "alert when this share of the recent rounds failed (0: off)",
       FloatKey("alerts.round_failure_rate",
                [](ServeConfig& c, double v) { c.server.alerts.round_failure_rate = v; }, 0.0,
                1.0)},
      {"alerts.failure_window", "rounds the failure rate is taken over",
       IntKey("alerts.failure_window",
              [](ServeConfig& c, int64_t v) { c.server.alerts.failure_window = v; }, 1)},
      {"alerts.dropout", "alert when this share of a round's cohort sent no update (0: off)",
       FloatKey("alerts.dropout", [](ServeConfig& c, double v) { c.server.alerts.dropout = v; },
                0.0, 1.0)},
      {"alerts.drift_share", "alert when this share of the recently seen devices reports drift",
       FloatKey("alerts.drift_share",
                [](ServeConfig& c, double v) { c.server.alerts.drift_share = v; }, 0.0, 1.0)},
      {"alerts.drift_window_s", "seconds of drift reports and device activity the share counts",
       FloatKey("alerts.drift_window_s",
                [](ServeConfig& c, double v) {
                  c.server.alerts.drift_window =
                      std::chrono::milliseconds(static_cast<int64_t>(v * 1000));
                },
                0.001, 1e7)},
      {"alerts.accuracy_drop", "alert when a new version's validation accuracy drops this much",
       FloatKey("alerts.accuracy_drop",
                [](ServeConfig& c, double v) { c.server.alerts.accuracy_drop = v; }, 0.0, 1.0)},
      {"alerts.epsilon_budget", "alert when this share of the privacy budget is spent",
       FloatKey("alerts.epsilon_budget",
                [](ServeConfig& c, double v) { c.server.alerts.epsilon_budget = v; }, 0.0, 1.0)},
      {"checkpoint_every", "checkpoint the open round every N accepted updates (0: journal only)",
       IntKey(
           "checkpoint_every", [](ServeConfig& c, int64_t v) { c.server.checkpoint_every = v; },
           0)},
      {"max_concurrent_uploads", "updates received at once (bounds memory)",
       IntKey(
           "max_concurrent_uploads",
           [](ServeConfig& c, int64_t v) { c.server.max_concurrent_uploads = v; }, 1)},
      {"max_update_mb", "largest update accepted, in MiB",
       IntKey(
           "max_update_mb",
           [](ServeConfig& c, int64_t v) { c.server.max_update_bytes = uint64_t(v) << 20; }, 1)},
      {"workers", "threads that decode and fold updates",
       IntKey(
           "workers", [](ServeConfig& c, int64_t v) { c.server.workers = v; }, 1)},
  };
  return keys;
}

absl::Status SetKey(ServeConfig& config, const std::string& key, const std::string& value) {
  for (const Key& k : Keys()) {
    if (key == k.name) return k.set(config, value);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown config key '", key, "' (fedge-aggregator --help lists them)"));
}

absl::Status ApplyYaml(ServeConfig& config, const YAML::Node& node, const std::string& prefix) {
  if (node.IsMap()) {
    for (const auto& entry : node) {
      const std::string key = entry.first.as<std::string>();
      FEDGE_RETURN_IF_ERROR(
          ApplyYaml(config, entry.second, prefix.empty() ? key : prefix + "." + key));
    }
    return absl::OkStatus();
  }
  if (!node.IsScalar()) {
    return absl::InvalidArgumentError(absl::StrCat("config key '", prefix, "' must be a value"));
  }
  return SetKey(config, prefix, node.as<std::string>());
}

void PrintHelp() {
  std::cout << R"(fedge-aggregator: the aggregator of a fedge federation (gRPC over TLS).

Usage:
  fedge-aggregator [serve] --config FILE [--set key=value ...] [--insecure] [--check]
  fedge-aggregator enroll   --state DIR ID [--token TOKEN | --generate-token]
  fedge-aggregator revoke   --state DIR ID
  fedge-aggregator rollback --state DIR --signing-key KEY VERSION
  fedge-aggregator versions --state DIR
  fedge-aggregator clients  --state DIR

serve: restores DIR (continuing an interrupted round) or starts a federation
with a new model, and runs rounds. Logs are JSON lines on stderr. --check
only reads the config and flags and reports the first error.
enroll: lets device ID join: by its certificate (CN=ID) or, with a token, by
ID and token. rollback: publishes version VERSION's model again as the newest
version (stop the aggregator first).

Keys for serve (YAML nesting maps to dots):
)";
  for (const Key& key : Keys()) std::cout << absl::StrFormat("  %-30s %s\n", key.name, key.help);
}

int Fail(const absl::Status& status) {
  std::cerr << "fedge-aggregator: error: " << status.message() << "\n";
  return 2;
}

absl::StatusOr<fedge::v1::ModelArtifact> InitialModel(const ServeConfig& config) {
  fedge::models::ModelSpec spec;
  spec.architecture = config.architecture;
  spec.input_shape = config.input_shape;
  spec.num_classes = config.num_classes;
  FEDGE_ASSIGN_OR_RETURN(auto model, fedge::models::ModelInstance::Create(spec, config.model_seed));
  fedge::models::ArtifactOptions options;
  return fedge::models::BuildFp32Artifact(spec, model->parameters().layout(),
                                          model->parameters().values(), options);
}

volatile std::sig_atomic_t g_stop = 0;

// Memory of the serve path goes back to the system (bench/load.sh, 1,000
// devices submitting 2.3 MB cnn-large updates, 3 rounds, BDP probe off):
//  * the large buffers (an update's bytes, the parsed update, its journal
//    record, the decoded delta) are allocated on one thread and freed on
//    another; glibc raises its mmap threshold to the largest block freed, so
//    they end up in per-thread arenas and stay there: peak RSS 2.47 GB after
//    2 rounds;
//  * with a fixed 128 KiB threshold, gRPC's 64 KiB read slices still
//    fragmented the arenas of its I/O threads (malloc_stats: 2.35 GB taken
//    from the system, 315 MB in use): peak 2.40 GB; trimming once a second
//    brought it to 1.96 GB;
//  * a fixed 32 KiB threshold (read slices get their own mappings, unmapped
//    on free) and the trim: peak 775 MB.
// Set before serving; the library is left alone (embedders own their
// allocator policy).
void ReturnFreedMemoryToTheSystem() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 * 1024);  // setting it turns the dynamic threshold off
#endif
}

// Releases the free pages inside malloc's arenas (glibc otherwise returns
// only an arena's top). Called about once a second; it costs milliseconds.
void ReleaseFreeArenaPages() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

int Serve(ServeConfig config) {
  if (config.server.secure_aggregation.has_value()) {
    const auto protocol = config.server.secure_aggregation->protocol.protocol;
    config.server.secure_aggregation = config.secagg;
    config.server.secure_aggregation->protocol.protocol = protocol;
    config.server.secure_aggregation->graph_seed = config.server.policy.seed;
  }
  if (config.server.state_dir.empty()) {
    return Fail(absl::InvalidArgumentError("state_dir is not set (--state DIR)"));
  }
  ReturnFreedMemoryToTheSystem();
  if (!config.validation_dir.empty()) {
    absl::StatusOr<std::shared_ptr<const fedge::aggregator::ValidationSet>> validation =
        fedge::aggregator::ValidationSet::Load(config.validation_dir, config.validation_examples);
    if (!validation.ok()) {
      return Fail(absl::Status(validation.status().code(),
                               absl::StrCat("validation.data: ", validation.status().message())));
    }
    fedge::LogEvent(
        "info", "validation_set",
        {{"dir", config.validation_dir}, {"examples", std::to_string((*validation)->size())}});
    config.server.validate = [set = *validation](const fedge::v1::ModelArtifact& master) {
      return set->Evaluate(master);
    };
  }
  absl::StatusOr<std::unique_ptr<fedge::aggregator::StateStore>> probe =
      fedge::aggregator::StateStore::Open(config.server.state_dir);
  if (!probe.ok()) return Fail(probe.status());
  const bool empty = !(*probe)->LatestVersion().ok();
  probe->reset();
  if (empty) {
    absl::StatusOr<fedge::v1::ModelArtifact> initial = InitialModel(config);
    if (!initial.ok()) return Fail(initial.status());
    config.server.initial_model = *std::move(initial);
  }
  absl::StatusOr<std::unique_ptr<fedge::aggregator::AggregatorServer>> server =
      fedge::aggregator::AggregatorServer::Start(config.server);
  if (!server.ok()) return Fail(server.status());
  if (!config.port_file.empty()) {
    absl::Status s =
        fedge::proto::WriteFileAtomic(config.port_file, std::to_string((*server)->port()) + "\n");
    if (!s.ok()) return Fail(s);
  }
  if (!config.ops_port_file.empty()) {
    if ((*server)->ops_port() == 0) {
      return Fail(absl::InvalidArgumentError("ops.port_file is set but ops.listen is not"));
    }
    absl::Status s = fedge::proto::WriteFileAtomic(config.ops_port_file,
                                                   std::to_string((*server)->ops_port()) + "\n");
    if (!s.ok()) return Fail(s);
  }
  // SIGINT/SIGTERM: stop serving; an open round stays open in the state
  // directory and continues at the next start.
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    for (int tick = 1; !done.load(); ++tick) {
      if (g_stop) {
        (*server)->Shutdown();
        return;
      }
      if (tick % 20 == 0) ReleaseFreeArenaPages();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  absl::Status status = (*server)->Wait();
  done = true;
  watcher.join();
  (*server)->Shutdown();
  if (!status.ok()) return Fail(status);
  return 0;
}

int Rollback(const std::string& state_dir, const std::string& key_file, uint64_t target) {
  absl::StatusOr<fedge::models::SigningKey> key = fedge::models::SigningKey::LoadPem(key_file);
  if (!key.ok()) return Fail(key.status());
  auto store = fedge::aggregator::StateStore::Open(state_dir);
  if (!store.ok()) return Fail(store.status());
  auto latest = (*store)->LatestVersion();
  if (!latest.ok()) return Fail(latest.status());
  auto master = (*store)->ReadMaster(target);
  if (!master.ok()) return Fail(master.status());
  auto artifact = (*store)->ReadArtifact(target);
  if (!artifact.ok()) return Fail(artifact.status());
  const uint64_t version = latest->version + 1;
  fedge::aggregator::VersionRecord record;
  record.version = version;
  record.parent = target;
  record.created_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  record.note = absl::StrCat("rollback to ", target);
  for (fedge::v1::ModelArtifact* a : {&*master, &*artifact}) {
    absl::Status s = fedge::models::VerifySignedArtifact(*a, key->public_key());
    if (!s.ok()) return Fail(s);
    a->mutable_header()->set_version(version);
    a->mutable_header()->set_parent_version(target);
    a->mutable_header()->set_created_at_unix_ms(record.created_at_ms);
    (*a->mutable_header()->mutable_metrics())["rollback_of"] = static_cast<double>(target);
    s = fedge::models::SignArtifact(*a, *key);
    if (!s.ok()) return Fail(s);
  }
  record.master_bytes = master->ByteSizeLong();
  record.artifact_bytes = artifact->ByteSizeLong();
  record.metrics["rollback_of"] = static_cast<double>(target);
  absl::Status s = (*store)->AddVersion(record, *master, *artifact);
  if (!s.ok()) return Fail(s);
  std::cout << "published version " << version << " = the model of version " << target << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string command = "serve";
  if (!args.empty() && args[0].rfind("--", 0) != 0) {
    command = args[0];
    args.erase(args.begin());
  }
  if (command == "help" || (!args.empty() && (args[0] == "--help" || args[0] == "-h"))) {
    PrintHelp();
    return 0;
  }
  ServeConfig config;
  config.server.policy.goal = 2;
  config.server.policy.train.set_local_epochs(1);
  config.server.policy.train.set_batch_size(32);
  config.server.policy.train.set_learning_rate(0.05f);
  std::vector<std::string> positional;
  std::string state_dir, signing_key, token;
  bool generate_token = false;
  bool check_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        std::cerr << "fedge-aggregator: error: " << arg << " needs a value\n";
        std::exit(2);
      }
      return args[++i];
    };
    if (arg == "--config") {
      const std::string file = value();
      try {
        absl::Status s = ApplyYaml(config, YAML::LoadFile(file), "");
        if (!s.ok()) return Fail(absl::InvalidArgumentError(absl::StrCat(file, ": ", s.message())));
      } catch (const YAML::Exception& e) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(file, ": ", e.what())));
      }
    } else if (arg == "--set") {
      const std::string kv = value();
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) {
        return Fail(absl::InvalidArgumentError(absl::StrCat("--set ", kv, ": expected key=value")));
      }
      if (absl::Status s = SetKey(config, kv.substr(0, eq), kv.substr(eq + 1)); !s.ok()) {
        return Fail(s);
      }
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--insecure") {
      config.server.tls.insecure = true;
    } else if (arg == "--state") {
      state_dir = value();
      config.server.state_dir = state_dir;
    } else if (arg == "--signing-key") {
      signing_key = value();
    } else if (arg == "--token") {
      token = value();
    } else if (arg == "--generate-token") {
      generate_token = true;
    } else if (arg.rfind("--", 0) == 0) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg)));
    } else {
      positional.push_back(arg);
    }
  }
  if (command == "serve") {
    if (!positional.empty()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unexpected argument ", positional[0])));
    }
    if (check_only) {
      std::cout << "config OK\n";
      return 0;
    }
    return Serve(std::move(config));
  }
  if (state_dir.empty()) return Fail(absl::InvalidArgumentError("--state DIR is required"));
  if (command == "enroll" || command == "revoke") {
    if (positional.size() != 1) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(command, " takes one device id")));
    }
    auto store = fedge::aggregator::StateStore::Open(state_dir);
    if (!store.ok()) return Fail(store.status());
    if (command == "revoke") {
      if (absl::Status s = (*store)->RevokeClient(positional[0]); !s.ok()) return Fail(s);
      std::cout << "revoked " << positional[0] << "\n";
      return 0;
    }
    if (generate_token) token = fedge::aggregator::GenerateEnrollmentToken();
    if (absl::Status s = (*store)->EnrollClient(positional[0], token); !s.ok()) return Fail(s);
    if (token.empty()) {
      std::cout << "enrolled " << positional[0] << " (certificate CN=" << positional[0] << ")\n";
    } else {
      std::cout << "enrolled " << positional[0] << " with token " << token << "\n";
    }
    return 0;
  }
  if (command == "rollback") {
    uint64_t target;
    if (positional.size() != 1 || !absl::SimpleAtoi(positional[0], &target)) {
      return Fail(absl::InvalidArgumentError("rollback takes one version number"));
    }
    if (signing_key.empty()) return Fail(absl::InvalidArgumentError("--signing-key is required"));
    return Rollback(state_dir, signing_key, target);
  }
  if (command == "versions" || command == "clients") {
    auto store = fedge::aggregator::StateStore::Open(state_dir);
    if (!store.ok()) return Fail(store.status());
    if (command == "clients") {
      auto clients = (*store)->Clients();
      if (!clients.ok()) return Fail(clients.status());
      for (const auto& c : *clients) {
        std::cout << absl::StrFormat("%-24s %-12s %s\n", c.id,
                                     c.token_sha256.empty() ? "certificate" : "token",
                                     c.revoked ? "revoked" : "enrolled");
      }
      return 0;
    }
    auto versions = (*store)->Versions();
    if (!versions.ok()) return Fail(versions.status());
    std::cout << absl::StrFormat("%-8s %-8s %-6s %-12s %-12s %-12s %s\n", "version", "parent",
                                 "round", "int8_bytes", "fp32_bytes", "status", "note");
    for (const auto& v : *versions) {
      std::string note = v.note;
      if (!v.status_reason.empty()) note += (note.empty() ? "" : "; ") + v.status_reason;
      std::cout << absl::StrFormat("%-8d %-8d %-6d %-12d %-12d %-12s %s\n", v.version, v.parent,
                                   v.round, v.artifact_bytes, v.master_bytes, v.status, note);
    }
    return 0;
  }
  return Fail(absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'")));
}
