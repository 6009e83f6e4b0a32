// SimulationConfig: everything one `fedge-sim` run needs, as plain structs.
//
// Config files are YAML whose nested keys map one to one onto the fields
// below ("train.learning_rate" is `train: {learning_rate: ...}`); command-line
// overrides use the same dotted keys (--set train.learning_rate=0.05). One
// table of keys (ConfigKeys()) drives parsing, validation and --help, so a
// key cannot be documented without being parsed, or parsed without being
// validated.
//
// Bad input never half-applies: an unknown key (with a suggestion), a value
// of the wrong type or out of range, or an inconsistent combination is an
// INVALID_ARGUMENT that names the key, and leaves the config unchanged.
#ifndef FEDGE_SIMULATIONS_CONFIG_H_
#define FEDGE_SIMULATIONS_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/aggregator/drift_tracker.h"
#include "fedge/aggregator/private_aggregation.h"
#include "fedge/aggregator/shared_keys.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/proto/key_table.h"
#include "fedge/client/drift_monitor.h"
#include "fedge/data/dataset.h"
#include "fedge/data/partition.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_spec.h"
#include "fedge/models/pruning.h"
#include "fedge/models/update_codec.h"
#include "fedge/data/drift_scenario.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::simulations {

// The drift scenarios live in fedge::data (fedge-client injects them too).
using data::ChooseDriftedClients;
using data::DriftedShare;
using data::DriftModes;
using data::DriftScenarioOptions;
using data::DriftTypes;
using data::ExampleDrifted;
using data::LabelShiftIndices;
using data::MakeDriftedCopy;


struct DataOptions {
  // "fashion-mnist", "mnist" (IDX files in `dir`) or "synthetic".
  std::string dataset = "fashion-mnist";
  std::string dir = data::kDefaultFashionMnistDir;
  data::SyntheticOptions synthetic;
};

struct RoundOptions {
  int rounds = 80;
  // Clients sampled per round; used when `fraction` is 0.
  int clients_per_round = 10;
  // If > 0, sample ceil(fraction * num_clients) clients per round instead.
  double fraction = 0.0;
  // How cohorts are drawn: "fixed" (exactly clients_per_round, uniformly),
  // "poisson" (each client independently with probability
  // clients_per_round / num_clients, what DP accounting assumes), or "auto"
  // (poisson with central or distributed DP, fixed otherwise).
  std::string sampling = "auto";
};

// Differential privacy (see fedge/aggregator/private_aggregation.h).
// privacy.*: the keys fedge-aggregator has too (fedge/aggregator/shared_keys.h).
using PrivacyOptions = aggregator::PrivacyChoice;

// How published versions are stored for devices (model.artifact,
// model.sparse_artifact; see fedge/models/artifact.h).
struct ArtifactOptions {
  std::string precision = "fp32";  // fp32 | int8 | int8-per-tensor
  std::string sparse = "auto";     // on | off | auto (on when pruning)
};

// Gradual magnitude pruning of the global model (fedge/models/pruning.h).
struct PruneOptions {
  double sparsity = 0.0;  // target; 0 = no pruning
  int begin_round = 1;
  int end_round = 0;  // 0 = two thirds of round.rounds
  int every = 1;
  bool structured = false;
};

// The aggregator's unlabeled proxy set: training examples held out from the
// clients, used to calibrate int8 activations and to distill a student.
struct ProxyOptions {
  int examples = 0;  // 0 = none
  int calibration_examples = 256;
};

// Knowledge distillation into a small student after the last round
// (fedge/models/distillation.h).
struct DistillOptions {
  std::string student = "none";  // a zoo architecture, or "none"
  double temperature = 4.0;
  int epochs = 20;
  int batch_size = 64;
  double learning_rate = 0.003;
};

struct EvalOptions {
  int every = 1;         // evaluate the global model every N rounds (and the last)
  int batch_size = 256;  // bounds activation memory: ~12 MB per worker for cnn
  // After the last round, run the final model (and the student) through the
  // fp32 and int8 inference engines: accuracy and batch-1 latency of each.
  bool int8 = false;
  std::string int8_engine = "qnnpack";
  int latency_runs = 200;
};

struct RunOptions {
  uint64_t seed = 42;
  int threads = 0;                // worker threads; 0 = one per core
  int intra_op_threads = 1;       // LibTorch threads inside each worker
  std::string progress = "auto";  // "auto" (when stderr is a terminal), "on", "off"
  std::string name = "fedavg-cnn-fashion-mnist";
};

// Every client's DriftMonitor (see fedge/client/drift_monitor.h). After each
// round each client runs the newest model on `samples_per_round` fresh
// examples of its own distribution (its class mix, drawn from the whole
// train split; its own examples, resampled, under partition.method natural;
// drifted like its data) and feeds the monitor: input summaries (images
// average-pooled to summary_grid x summary_grid; vectors pooled to at most 64
// values) and top-class probabilities, then losses and 0/1 errors of the
// first label_fraction of them (labelled feedback).
struct MonitorConfig {
  bool enabled = false;
  // options.cooldown is in rounds; options.features is set by the runner.
  client::DriftMonitorOptions options;
  int samples_per_round = 64;
  double label_fraction = 1.0;
  // Reference window: this many of the client's training examples.
  int reference_size = 256;
  int summary_grid = 7;
  // Local epochs a client fine-tunes the global model on its recent data
  // after it reports drift (0 = no fine-tune).
  int fine_tune_epochs = 1;
};

struct DriftReactionConfig {
  aggregator::DriftPolicyOptions policy;
  // Clients in an extra round: those that asked to join, filled up (or cut
  // down) to this many; 0 = round.clients_per_round.
  int extra_round_clients = 0;
  // An "extra-round" reaction adds one extra round to each of this many
  // rounds, serving the same joiners (and any that ask meanwhile).
  int extra_rounds = 1;
  // Accuracy on the drifted test data counts as recovered at the pre-drift
  // accuracy on clean test data minus this.
  double recovery_tolerance = 0.05;
};

// Secure aggregation (fedge/aggregator/secure_aggregation.h).
struct SecureAggregationConfig {
  std::string protocol = "none";  // none | secagg | secagg+
  double threshold = 0.5;         // fraction (< 1) of the neighbourhood, or a count
  int neighbours = 0;             // secagg+: 0 = default (Bell et al.)
  int min_survivors = 3;          // fewest masked inputs the sum is unmasked with
  double bound = 1.0;             // fixed-point bound without clipping
  double dropout = 0.0;           // simulated: share of each cohort that drops
};

struct SimulationConfig {
  DataOptions data;
  data::PartitionOptions partition;
  models::ModelSpec model;  // input_shape/num_classes are taken from the dataset
  ArtifactOptions artifact;
  PruneOptions prune;
  v1::TrainConfig train;
  // Client learning rate in round r is train.learning_rate * lr_decay^(r-1).
  double lr_decay = 1.0;
  aggregator::StrategyOptions strategy_options;
  std::string strategy = "fedavg";
  std::string codec = "fp32";
  // bits (qsgd) and density (topk); the seed comes from run.seed.
  models::UpdateCodecOptions codec_options;
  // Error feedback on the devices: "on", "off", or "auto" (on for topk,
  // the codec that needs it, off otherwise).
  std::string error_feedback = "auto";
  double clip_norm = 0.0;
  PrivacyOptions privacy;
  SecureAggregationConfig secure_aggregation;
  ProxyOptions proxy;
  DistillOptions distill;
  RoundOptions round;
  EvalOptions eval;
  RunOptions run;
  DriftScenarioOptions drift;
  MonitorConfig monitor;
  DriftReactionConfig reaction;
};

// The default experiment: Fashion-MNIST, 100 clients, Dirichlet(0.5) label
// skew, 10 clients per round, cnn, FedAvg.
SimulationConfig DefaultConfig();

// The key table of fedge-sim (fedge/proto/key_table.h); its `strategy.*`
// and `train.*` keys are the groups fedge-aggregator includes too
// (fedge/aggregator/shared_keys.h). ConfigTable().Help(DefaultConfig()) is
// the --help key reference.
const config::KeyTable<SimulationConfig>& ConfigTable();

// Documentation of one key, for --help.
struct ConfigKeyInfo {
  std::string key;
  std::string type;  // "int", "float", "string", "bool" or "a|b|c"
  std::string default_value;
  std::string help;
};
std::vector<ConfigKeyInfo> ConfigKeys();

// Sets one key from its text form. INVALID_ARGUMENT (naming the key) for an
// unknown key, a malformed value or one out of range; `config` is unchanged
// on error.
absl::Status SetConfigValue(SimulationConfig& config, const std::string& key,
                            const std::string& value);

// Applies a YAML document (nested maps of scalars) on top of `config`.
// `origin` (a file name) appears in error messages. All-or-nothing.
absl::Status ApplyYaml(SimulationConfig& config, const std::string& yaml_text,
                       const std::string& origin);

// Applies a command line's layers: the YAML `files`, then the "key=value"
// `assignments` of --set (labelled by `labels` in errors), all or nothing; a
// key --set names is not read from the files (config::KeyTable::ApplyLayers).
absl::Status ApplyConfigLayers(SimulationConfig& config, const std::vector<std::string>& files,
                               const std::vector<std::string>& assignments,
                               const std::vector<std::string>& labels);

// Checks cross-field constraints that no single key can (e.g. more clients
// per round than clients). Call after all sources are applied.
absl::Status ValidateConfig(const SimulationConfig& config);

// Every key with its current value as text, in key order.
std::vector<std::pair<std::string, std::string>> DescribeConfig(const SimulationConfig& config);

// Clients sampled per round under `config` (fraction or count); with
// Poisson sampling, the expected number.
int ClientsPerRound(const SimulationConfig& config);

// Simulated secure-aggregation dropouts (secure_aggregation.dropout) of
// round `round`: for each position of its cohort (as the coordinator drew
// it), the phase 1-4 that device drops out at (it does not act in that
// phase or later; 1: it never runs its task), or 5 for none. A seeded
// round(dropout x cohort) of the cohort drop, each at a uniformly drawn
// phase. fedge-sim --mode multiprocess tells each fedge-client the same.
std::vector<int> SecAggDropPhases(const SimulationConfig& config, uint64_t round,
                                  size_t cohort_size);

// True when devices keep an error-feedback residual (update.error_feedback,
// resolving "auto").
bool UsesErrorFeedback(const SimulationConfig& config);

// The pruning schedule for `config` (prune.*, resolving end_round 0), or
// nullopt when prune.sparsity is 0.
std::optional<models::PruningOptions> PruningOptionsFor(const SimulationConfig& config);

// How `config` stores published versions (model.artifact and
// model.sparse_artifact, resolving "auto").
absl::StatusOr<models::ArtifactEncoding> ArtifactEncodingFor(const SimulationConfig& config);

// True when cohorts are Poisson samples (round.sampling, resolving "auto").
bool UsesPoissonSampling(const SimulationConfig& config);

// The aggregator's DP options for `config` over `num_clients` clients with
// data (sampling rate = clients per round / num_clients). INVALID_ARGUMENT
// for an unknown privacy.mode.
absl::StatusOr<aggregator::PrivateAggregationOptions> PrivateAggregationOptionsFor(
    const SimulationConfig& config, int num_clients);

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_CONFIG_H_
