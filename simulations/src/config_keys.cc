// The key table of fedge-sim (ConfigTable() in config.h): one row per key,
// in --help order, with the strategy.* and train.* groups of
// fedge/aggregator/shared_keys.h included where they belong.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "fedge/aggregator/shared_keys.h"
#include "fedge/models/inference.h"
#include "fedge/models/model_zoo.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/clipper.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/update_privacy.h"
#include "fedge/proto/status_macros.h"
#include "fedge/simulations/config.h"

namespace fedge::simulations {
namespace {

using Key = config::Key<SimulationConfig>;

// Builders in the shape of this table's rows; the rules are the engine's
// (fedge/proto/key_table.h).

Key IntKey(std::string key, std::string help, int64_t lo, int64_t hi, Key::Get<int64_t> get,
           Key::Set<int64_t> set) {
  return Key::Int(std::move(key), std::move(help), std::move(get), std::move(set)).Min(lo).Max(hi);
}

// `lo_open`/`hi_open` make the bound exclusive.
Key FloatKey(std::string key, std::string help, double lo, bool lo_open, double hi, bool hi_open,
             Key::Get<double> get, Key::Set<double> set) {
  Key k = Key::Double(std::move(key), std::move(help), std::move(get), std::move(set));
  lo_open ? k.Above(lo) : k.AtLeast(lo);
  hi_open ? k.Below(hi) : k.AtMost(hi);
  return k;
}

Key StringKey(std::string key, std::string help, Key::Get<std::string> get,
              Key::Set<const std::string&> set) {
  return Key::String(std::move(key), std::move(help), std::move(get), std::move(set)).NonEmpty();
}

Key BoolKey(std::string key, std::string help, Key::Get<bool> get, Key::Set<bool> set) {
  return Key::Bool(std::move(key), std::move(help), std::move(get), std::move(set));
}

// A string from a set of names known when the key is set (`choices` is
// called then, so plug-ins registered at start-up are included).
Key ChoiceKey(std::string key, std::string help, std::function<std::vector<std::string>()> choices,
              Key::Get<std::string> get, Key::Set<const std::string&> set) {
  return Key::Enum(std::move(key), std::move(help), std::move(choices), std::move(get),
                   std::move(set));
}

absl::Status CheckDetectors(const config::Value& value) {
  const auto& names = std::get<std::vector<std::string>>(value);
  for (const std::string& name : names) {
    const std::string base = name.substr(0, name.find(':'));
    if (!client::DriftDetectors().Find(base).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected registered detectors (",
                       absl::StrJoin(client::RegisteredDriftDetectors(), ", "), "), got '",
                       absl::StrJoin(names, ","), "'"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> PartitionChoices() {
  std::vector<std::string> names = data::PartitionMethods();
  names.push_back("natural");
  std::sort(names.begin(), names.end());
  return names;
}

const config::KeyTable<SimulationConfig>& Table() {
  static const config::KeyTable<SimulationConfig>* table = [] {
    auto* t = new config::KeyTable<SimulationConfig>(
        "fedge-sim",
        {
            // run
            StringKey(
                "run.name", "Experiment title used in reports.", [](auto& c) { return c.run.name; },
                [](auto& c, auto& v) { c.run.name = v; }),
            IntKey(
                "run.seed",
                "Seed for every random choice: partition, model init, sampling, shuffling.", 0,
                std::numeric_limits<int64_t>::max(),
                [](auto& c) { return static_cast<int64_t>(c.run.seed); },
                [](auto& c, int64_t v) { c.run.seed = static_cast<uint64_t>(v); }),
            IntKey(
                "run.threads", "Worker threads training clients in parallel (0 = one per core).", 0,
                1024, [](auto& c) { return c.run.threads; },
                [](auto& c, int64_t v) { c.run.threads = static_cast<int>(v); }),
            IntKey(
                "run.intra_op_threads", "LibTorch/BLAS threads inside each worker.", 1, 256,
                [](auto& c) { return c.run.intra_op_threads; },
                [](auto& c, int64_t v) { c.run.intra_op_threads = static_cast<int>(v); }),
            ChoiceKey(
                "run.progress", "Live progress line: auto (when stderr is a terminal), on, off.",
                [] {
                  return std::vector<std::string>{"auto", "off", "on"};
                },
                [](auto& c) { return c.run.progress; },
                [](auto& c, auto& v) { c.run.progress = v; }),
            // data
            ChoiceKey(
                "data.dataset",
                "Dataset: IDX files in data.dir, or the generated Synthetic(alpha,beta).",
                [] {
                  return std::vector<std::string>{"fashion-mnist", "mnist", "synthetic"};
                },
                [](auto& c) { return c.data.dataset; },
                [](auto& c, auto& v) { c.data.dataset = v; }),
            StringKey(
                "data.dir", "Directory with the four IDX files (gzipped or not).",
                [](auto& c) { return c.data.dir; }, [](auto& c, auto& v) { c.data.dir = v; }),
            FloatKey(
                "data.synthetic.alpha", "Synthetic: model heterogeneity across devices.", 0, false,
                INFINITY, false, [](auto& c) { return c.data.synthetic.alpha; },
                [](auto& c, double v) { c.data.synthetic.alpha = v; }),
            FloatKey(
                "data.synthetic.beta", "Synthetic: input heterogeneity across devices.", 0, false,
                INFINITY, false, [](auto& c) { return c.data.synthetic.beta; },
                [](auto& c, double v) { c.data.synthetic.beta = v; }),
            IntKey(
                "data.synthetic.devices", "Synthetic: number of devices generated.", 1, 1'000'000,
                [](auto& c) { return c.data.synthetic.num_devices; },
                [](auto& c, int64_t v) { c.data.synthetic.num_devices = static_cast<int>(v); }),
            IntKey(
                "data.synthetic.dimension", "Synthetic: features per example.", 1, 100'000,
                [](auto& c) { return c.data.synthetic.dimension; },
                [](auto& c, int64_t v) { c.data.synthetic.dimension = static_cast<int>(v); }),
            // partition
            ChoiceKey(
                "partition.method",
                "How train examples are split among clients (natural = the dataset's own devices, "
                "Synthetic only).",
                PartitionChoices, [](auto& c) { return c.partition.method; },
                [](auto& c, auto& v) { c.partition.method = v; }),
            IntKey(
                "partition.num_clients", "Number of virtual clients.", 1, 10'000'000,
                [](auto& c) { return c.partition.num_clients; },
                [](auto& c, int64_t v) { c.partition.num_clients = static_cast<int>(v); }),
            FloatKey(
                "partition.alpha",
                "Dirichlet concentration (dirichlet, quantity-skew); smaller = more skew.", 0, true,
                INFINITY, false, [](auto& c) { return c.partition.alpha; },
                [](auto& c, double v) { c.partition.alpha = v; }),
            IntKey(
                "partition.shards_per_client", "Label shards per client (shards).", 1, 1'000'000,
                [](auto& c) { return c.partition.shards_per_client; },
                [](auto& c, int64_t v) { c.partition.shards_per_client = static_cast<int>(v); }),
            IntKey(
                "partition.min_examples",
                "Fewest examples a client may get (dirichlet, quantity-skew).", 0, 1'000'000,
                [](auto& c) { return c.partition.min_examples_per_client; },
                [](auto& c, int64_t v) {
                  c.partition.min_examples_per_client = static_cast<int>(v);
                }),
            // model
            ChoiceKey(
                "model.architecture", "Model zoo architecture.", models::RegisteredArchitectures,
                [](auto& c) { return c.model.architecture; },
                [](auto& c, auto& v) { c.model.architecture = v; })
                .Pluggable(),
            ChoiceKey(
                "model.artifact",
                "How published versions are stored for devices: fp32, int8 (symmetric, one scale "
                "per "
                "output channel) or int8-per-tensor. Devices dequantize to fine-tune.",
                models::ArtifactPrecisionNames, [](auto& c) { return c.artifact.precision; },
                [](auto& c, auto& v) { c.artifact.precision = v; }),
            ChoiceKey(
                "model.sparse_artifact",
                "Store zeros implicitly (a bitmap and the nonzero values): on, off, auto (on when "
                "pruning). Devices keep the entries left out at zero while fine-tuning.",
                [] {
                  return std::vector<std::string>{"auto", "off", "on"};
                },
                [](auto& c) { return c.artifact.sparse; },
                [](auto& c, auto& v) { c.artifact.sparse = v; }),
            // prune
            FloatKey(
                "prune.sparsity",
                "Target fraction of the weights pruned by magnitude (structured: of the output "
                "channels); 0 = no pruning.",
                0, false, 1, true, [](auto& c) { return c.prune.sparsity; },
                [](auto& c, double v) { c.prune.sparsity = v; }),
            IntKey(
                "prune.begin_round", "Round of the first pruning step.", 1, 1'000'000,
                [](auto& c) { return c.prune.begin_round; },
                [](auto& c, int64_t v) { c.prune.begin_round = static_cast<int>(v); }),
            IntKey(
                "prune.end_round",
                "Round at which the target sparsity is reached, along Zhu & Gupta's cubic schedule "
                "(0 = two thirds of round.rounds); later rounds fine-tune.",
                0, 1'000'000, [](auto& c) { return c.prune.end_round; },
                [](auto& c, int64_t v) { c.prune.end_round = static_cast<int>(v); }),
            IntKey(
                "prune.every", "Rounds between pruning steps.", 1, 1'000'000,
                [](auto& c) { return c.prune.every; },
                [](auto& c, int64_t v) { c.prune.every = static_cast<int>(v); }),
            BoolKey(
                "prune.structured",
                "Prune whole output channels (the same fraction of each layer, smallest L2 norm "
                "first) "
                "instead of single weights; the "
                "model then runs physically smaller.",
                [](auto& c) { return c.prune.structured; },
                [](auto& c, bool v) { c.prune.structured = v; }),
        });
    t->Include(
        aggregator::PrivacyKeys(), [](const SimulationConfig& c) { return c.privacy; },
        [](SimulationConfig& c, aggregator::PrivacyChoice v) { c.privacy = std::move(v); });
    t->Include(
        aggregator::TrainKeys(),
        [](const SimulationConfig& c) {
          return aggregator::TrainChoice{c.train, c.lr_decay};
        },
        [](SimulationConfig& c, aggregator::TrainChoice v) {
          c.train = std::move(v.train);
          c.lr_decay = v.lr_decay;
        });
    for (
        Key& key : std::vector<Key>{
            // round
            IntKey(
                "round.rounds", "Federated rounds to run.", 1, 1'000'000,
                [](auto&c) { return c.round.rounds; },
                [](auto&c, int64_t v) { c.round.rounds = static_cast<int>(v); }),
            IntKey(
                "round.clients_per_round", "Clients sampled per round (when round.fraction is 0).",
                1, 10'000'000, [](auto&c) { return c.round.clients_per_round; },
                [](auto&c, int64_t v) { c.round.clients_per_round = static_cast<int>(v); }),
            FloatKey(
                "round.fraction",
                "Fraction of clients sampled per round (0 = use round.clients_per_round).", 0,
                false, 1, false, [](auto&c) { return c.round.fraction; },
                [](auto&c, double v) { c.round.fraction = v; }),
            ChoiceKey(
                "round.sampling",
                "Cohort sampling: fixed (exactly the count), poisson (each client with probability "
                "count / clients; what DP accounting assumes), auto (poisson under central or "
                "distributed DP).",
                [] {
                  return std::vector<std::string>{"auto", "fixed", "poisson"};
                },
                [](auto&c) { return c.round.sampling; },
                [](auto&c, auto&v) { c.round.sampling = v; }),
        }) {
      t->Add(std::move(key));
    }
    t->Include(
        aggregator::StrategyKeys(),
        [](const SimulationConfig& c) {
          return aggregator::StrategyChoice{c.strategy, c.strategy_options};
        },
        [](SimulationConfig& c, aggregator::StrategyChoice v) {
          c.strategy = std::move(v.name);
          c.strategy_options = v.options;
        });
    for (
        Key& key : std::vector<Key>{
            // update
            ChoiceKey(
                "update.codec", "How clients encode updates.", models::RegisteredUpdateCodecs,
                [](auto&c) { return c.codec; }, [](auto&c, auto&v) { c.codec = v; })
                .Pluggable(),
            IntKey(
                "update.bits", "qsgd: bits per level (2^bits - 1 levels).", 1, 16,
                [](auto&c) { return c.codec_options.bits; },
                [](auto&c, int64_t v) { c.codec_options.bits = static_cast<int>(v); }),
            FloatKey(
                "update.density", "topk: fraction of the entries each update keeps.", 0, true, 1,
                false, [](auto&c) { return c.codec_options.density; },
                [](auto&c, double v) { c.codec_options.density = v; }),
            ChoiceKey(
                "update.error_feedback",
                "Devices keep what the codec dropped and send it later (Stich et al. 2018): on, "
                "off, "
                "auto (on for topk). Costs 4 bytes per parameter on every device that took part.",
                [] {
                  return std::vector<std::string>{"auto", "off", "on"};
                },
                [](auto&c) { return c.error_feedback; },
                [](auto&c, auto&v) { c.error_feedback = v; }),
            FloatKey(
                "update.clip_norm", "L2 bound on each client update (0 = no clipping).", 0, false,
                INFINITY, false, [](auto&c) { return c.clip_norm; },
                [](auto&c, double v) { c.clip_norm = v; }),
            // drift scenario
            ChoiceKey(
                "drift.type", "Drift injected into some clients' data (none = no drift).",
                DriftTypes, [](auto&c) { return c.drift.type; },
                [](auto&c, auto&v) { c.drift.type = v; }),
            IntKey(
                "drift.round", "First round whose data is drifted.", 1, 1'000'000,
                [](auto&c) { return c.drift.round; },
                [](auto&c, int64_t v) { c.drift.round = static_cast<int>(v); }),
            FloatKey(
                "drift.fraction", "Share of clients whose data drifts.", 0, true, 1, false,
                [](auto&c) { return c.drift.fraction; },
                [](auto&c, double v) { c.drift.fraction = v; }),
            ChoiceKey(
                "drift.mode",
                "sudden: all of a client's data at once; gradual: over drift.gradual_rounds.",
                DriftModes, [](auto&c) { return c.drift.mode; },
                [](auto&c, auto&v) { c.drift.mode = v; }),
            IntKey(
                "drift.gradual_rounds",
                "Rounds a gradual drift takes to reach all of a client's data.", 1, 1'000'000,
                [](auto&c) { return c.drift.gradual_rounds; },
                [](auto&c, int64_t v) { c.drift.gradual_rounds = static_cast<int>(v); }),
            FloatKey(
                "drift.rotation_degrees", "rotation: angle in degrees.", -360, false, 360, false,
                [](auto&c) { return c.drift.rotation_degrees; },
                [](auto&c, double v) { c.drift.rotation_degrees = v; }),
            FloatKey(
                "drift.noise_std", "noise: standard deviation, in units of the value range.", 0,
                false, INFINITY, false, [](auto&c) { return c.drift.noise_std; },
                [](auto&c, double v) { c.drift.noise_std = v; }),
            FloatKey(
                "drift.brightness", "brightness-contrast: added, in units of the value range.", -1,
                false, 1, false, [](auto&c) { return c.drift.brightness; },
                [](auto&c, double v) { c.drift.brightness = v; }),
            FloatKey(
                "drift.contrast", "brightness-contrast: factor about mid-range.", 0, true, INFINITY,
                false, [](auto&c) { return c.drift.contrast; },
                [](auto&c, double v) { c.drift.contrast = v; }),
            IntKey(
                "drift.occlusion_size", "occlusion: side of the square (features for vectors).", 1,
                1'000'000, [](auto&c) { return c.drift.occlusion_size; },
                [](auto&c, int64_t v) { c.drift.occlusion_size = static_cast<int>(v); }),
            IntKey(
                "drift.swap_a", "label-swap: first class.", 0, 1'000'000,
                [](auto&c) { return c.drift.swap_a; },
                [](auto&c, int64_t v) { c.drift.swap_a = static_cast<int>(v); }),
            IntKey(
                "drift.swap_b", "label-swap: second class.", 0, 1'000'000,
                [](auto&c) { return c.drift.swap_b; },
                [](auto&c, int64_t v) { c.drift.swap_b = static_cast<int>(v); }),
            FloatKey(
                "drift.label_shift_alpha",
                "label-shift: Dirichlet concentration of the new priors.", 0, true, INFINITY, false,
                [](auto&c) { return c.drift.label_shift_alpha; },
                [](auto&c, double v) { c.drift.label_shift_alpha = v; }),
            FloatKey(
                "drift.recovery_tolerance",
                "Recovered when accuracy on drifted test data reaches the pre-drift clean accuracy "
                "minus this.",
                0, false, 1, false, [](auto&c) { return c.reaction.recovery_tolerance; },
                [](auto&c, double v) { c.reaction.recovery_tolerance = v; }),
            // monitor
            ChoiceKey(
                "monitor.enabled", "Run a DriftMonitor on every client after each round.",
                [] {
                  return std::vector<std::string>{"off", "on"};
                },
                [](auto&c) { return std::string(c.monitor.enabled ? "on" : "off"); },
                [](auto&c, auto&v) { c.monitor.enabled = v == "on"; }),
            Key::List(
                "monitor.detectors",
                "Comma-separated detectors, each name or name:stream (error, loss, confidence, "
                "features).",
                [](const SimulationConfig&c) { return c.monitor.options.detectors; },
                [](SimulationConfig&c, std::vector<std::string> v) {
                  c.monitor.options.detectors = std::move(v);
                })
                .NonEmpty()
                .Check(CheckDetectors),
            StringKey(
                "monitor.trigger", "Detector whose alarms are reported (or 'any').",
                [](auto&c) { return c.monitor.options.trigger; },
                [](auto&c, auto&v) { c.monitor.options.trigger = v; }),
            IntKey(
                "monitor.cooldown_rounds", "Least rounds between two reports of one client.", 0,
                1'000'000, [](auto&c) { return c.monitor.options.cooldown; },
                [](auto&c, int64_t v) { c.monitor.options.cooldown = v; }),
            IntKey(
                "monitor.samples_per_round", "Stream examples each client observes per round.", 1,
                1'000'000, [](auto&c) { return c.monitor.samples_per_round; },
                [](auto&c, int64_t v) { c.monitor.samples_per_round = static_cast<int>(v); }),
            FloatKey(
                "monitor.label_fraction", "Share of observed examples whose labels arrive.", 0,
                false, 1, false, [](auto&c) { return c.monitor.label_fraction; },
                [](auto&c, double v) { c.monitor.label_fraction = v; }),
            IntKey(
                "monitor.reference_size", "Training examples in each client's reference window.", 2,
                1'000'000, [](auto&c) { return c.monitor.reference_size; },
                [](auto&c, int64_t v) { c.monitor.reference_size = static_cast<int>(v); }),
            IntKey(
                "monitor.fine_tune_epochs",
                "Local epochs of fine-tuning on recent data after a drift report (0 = none).", 0,
                1000, [](auto&c) { return c.monitor.fine_tune_epochs; },
                [](auto&c, int64_t v) { c.monitor.fine_tune_epochs = static_cast<int>(v); }),
            IntKey(
                "monitor.summary_grid", "Images are average-pooled to grid x grid input summaries.",
                1, 64, [](auto&c) { return c.monitor.summary_grid; },
                [](auto&c, int64_t v) { c.monitor.summary_grid = static_cast<int>(v); }),
            FloatKey(
                "monitor.page_hinkley.delta", "page-hinkley: tolerated change.", 0, false, INFINITY,
                false, [](auto&c) { return c.monitor.options.detector_options.page_hinkley.delta; },
                [](auto&c, double v) {
                  c.monitor.options.detector_options.page_hinkley.delta = v;
                }),
            FloatKey(
                "monitor.page_hinkley.threshold", "page-hinkley: alarm threshold lambda.", 0, true,
                INFINITY, false,
                [](auto&c) { return c.monitor.options.detector_options.page_hinkley.threshold; },
                [](auto&c, double v) {
                  c.monitor.options.detector_options.page_hinkley.threshold = v;
                }),
            FloatKey(
                "monitor.adwin.delta", "adwin: confidence of the cut test.", 0, true, 1, true,
                [](auto&c) { return c.monitor.options.detector_options.adwin.delta; },
                [](auto&c, double v) { c.monitor.options.detector_options.adwin.delta = v; }),
            FloatKey(
                "monitor.ddm.drift_level", "ddm: drift level in standard deviations.", 0, true,
                INFINITY, false,
                [](auto&c) { return c.monitor.options.detector_options.ddm.drift_level; },
                [](auto&c, double v) { c.monitor.options.detector_options.ddm.drift_level = v; }),
            FloatKey(
                "monitor.confidence.threshold",
                "confidence: CUSUM threshold h (reference std devs).", 0, true, INFINITY, false,
                [](auto&c) { return c.monitor.options.detector_options.confidence.threshold; },
                [](auto&c, double v) {
                  c.monitor.options.detector_options.confidence.threshold = v;
                }),
            FloatKey(
                "monitor.ks.alpha", "ks: significance level after correction.", 0, true, 1, true,
                [](auto&c) { return c.monitor.options.detector_options.ks.alpha; },
                [](auto&c, double v) { c.monitor.options.detector_options.ks.alpha = v; }),
            ChoiceKey(
                "monitor.ks.correction", "ks: multiple-testing correction.",
                [] {
                  return std::vector<std::string>{"benjamini-hochberg", "bonferroni"};
                },
                [](auto&c) { return c.monitor.options.detector_options.ks.correction; },
                [](auto&c, auto&v) { c.monitor.options.detector_options.ks.correction = v; }),
            IntKey(
                "monitor.ks.window", "ks: observations per tested window.", 8, 1'000'000,
                [](auto&c) { return c.monitor.options.detector_options.ks.window; },
                [](auto&c, int64_t v) { c.monitor.options.detector_options.ks.window = v; }),
            FloatKey(
                "monitor.psi.threshold", "psi: alarm level of the mean PSI over features.", 0, true,
                INFINITY, false,
                [](auto&c) { return c.monitor.options.detector_options.psi.threshold; },
                [](auto&c, double v) { c.monitor.options.detector_options.psi.threshold = v; }),
            IntKey(
                "monitor.psi.window", "psi: observations per tested window.", 8, 1'000'000,
                [](auto&c) { return c.monitor.options.detector_options.psi.window; },
                [](auto&c, int64_t v) { c.monitor.options.detector_options.psi.window = v; }),
            // aggregator reaction
            ChoiceKey(
                "policy.reaction", "What the aggregator does when enough clients report drift.",
                aggregator::DriftReactions, [](auto&c) { return c.reaction.policy.reaction; },
                [](auto&c, auto&v) { c.reaction.policy.reaction = v; }),
            IntKey(
                "policy.window_rounds", "Rounds over which reporting clients are counted.", 1,
                1'000'000, [](auto&c) { return c.reaction.policy.window_rounds; },
                [](auto&c, int64_t v) { c.reaction.policy.window_rounds = static_cast<int>(v); }),
            FloatKey(
                "policy.threshold",
                "Share of all clients reporting in the window that triggers it.", 0, true, 1, false,
                [](auto&c) { return c.reaction.policy.threshold; },
                [](auto&c, double v) { c.reaction.policy.threshold = v; }),
            IntKey(
                "policy.cooldown_rounds", "Rounds after a reaction before the next.", 0, 1'000'000,
                [](auto&c) { return c.reaction.policy.cooldown_rounds; },
                [](auto&c, int64_t v) { c.reaction.policy.cooldown_rounds = static_cast<int>(v); }),
            IntKey(
                "policy.extra_rounds", "Consecutive rounds given an extra round by one reaction.",
                1, 1'000'000, [](auto&c) { return c.reaction.extra_rounds; },
                [](auto&c, int64_t v) { c.reaction.extra_rounds = static_cast<int>(v); }),
            IntKey(
                "policy.extra_round_clients",
                "Clients in an extra round (those that asked first; 0 = round.clients_per_round).",
                0, 10'000'000, [](auto&c) { return c.reaction.extra_round_clients; },
                [](auto&c, int64_t v) { c.reaction.extra_round_clients = static_cast<int>(v); }),
            // eval
            IntKey(
                "eval.every", "Evaluate the global model every N rounds (the last round always).",
                1, 1'000'000, [](auto&c) { return c.eval.every; },
                [](auto&c, int64_t v) { c.eval.every = static_cast<int>(v); }),
            IntKey(
                "eval.batch_size", "Evaluation batch size.", 1, 1'000'000,
                [](auto&c) { return c.eval.batch_size; },
                [](auto&c, int64_t v) { c.eval.batch_size = static_cast<int>(v); }),
            BoolKey(
                "eval.int8",
                "After the last round, run the final model (and the student) through the fp32 and "
                "int8 inference engines: test accuracy and batch-1 latency of each, in the same "
                "run. "
                "Needs proxy.examples for calibration.",
                [](auto&c) { return c.eval.int8; }, [](auto&c, bool v) { c.eval.int8 = v; }),
            ChoiceKey(
                "eval.int8_engine",
                "LibTorch quantized engine for int8 inference (qnnpack: what ARM devices use).",
                models::QuantizedEngines, [](auto&c) { return c.eval.int8_engine; },
                [](auto&c, auto&v) { c.eval.int8_engine = v; }),
            IntKey(
                "eval.latency_runs",
                "Single-example inferences timed per engine (median reported).", 1, 1'000'000,
                [](auto&c) { return c.eval.latency_runs; },
                [](auto&c, int64_t v) { c.eval.latency_runs = static_cast<int>(v); }),
            // proxy
            IntKey(
                "proxy.examples",
                "Training examples held out from the clients as the aggregator's unlabeled proxy "
                "set "
                "(int8 calibration, distillation); 0 = none.",
                0, 100'000'000, [](auto&c) { return c.proxy.examples; },
                [](auto&c, int64_t v) { c.proxy.examples = static_cast<int>(v); }),
            IntKey(
                "proxy.calibration_examples",
                "Proxy examples int8 activation ranges are calibrated on (every published int8 "
                "version, and the final model).",
                1, 100'000'000, [](auto&c) { return c.proxy.calibration_examples; },
                [](auto&c, int64_t v) { c.proxy.calibration_examples = static_cast<int>(v); }),
            // distill
            ChoiceKey(
                "distill.student",
                "After the last round, distill the global model into this architecture on the "
                "proxy "
                "set (Hinton et al. 2015) and report it as the device model; none = off.",
                [] {
                  std::vector<std::string> names = models::RegisteredArchitectures();
                  names.insert(names.begin(), "none");
                  return names;
                },
                [](auto&c) { return c.distill.student; },
                [](auto&c, auto&v) { c.distill.student = v; }),
            FloatKey(
                "distill.temperature", "Softmax temperature T of the distillation loss.", 0, true,
                INFINITY, false, [](auto&c) { return c.distill.temperature; },
                [](auto&c, double v) { c.distill.temperature = v; }),
            IntKey(
                "distill.epochs", "Passes of the student over the proxy set.", 1, 1'000'000,
                [](auto&c) { return c.distill.epochs; },
                [](auto&c, int64_t v) { c.distill.epochs = static_cast<int>(v); }),
            IntKey(
                "distill.batch_size", "Student minibatch size.", 1, 1'000'000,
                [](auto&c) { return c.distill.batch_size; },
                [](auto&c, int64_t v) { c.distill.batch_size = static_cast<int>(v); }),
            FloatKey(
                "distill.learning_rate", "Student Adam learning rate.", 0, true, INFINITY, false,
                [](auto&c) { return c.distill.learning_rate; },
                [](auto&c, double v) { c.distill.learning_rate = v; }),
            // secure aggregation
            ChoiceKey(
                "secure_aggregation",
                "Secure aggregation: none, secagg (Bonawitz et al. 2017: every client masks with "
                "every "
                "other), secagg+ (Bell et al. 2020: masks over a random k-regular graph, k ~ log "
                "n). "
                "Shorthand for secure_aggregation.protocol.",
                [] {
                  return std::vector<std::string>{"none", "secagg", "secagg+"};
                },
                [](auto&c) { return c.secure_aggregation.protocol; },
                [](auto&c, auto&v) { c.secure_aggregation.protocol = v; }),
            ChoiceKey(
                "secure_aggregation.protocol", "Same as secure_aggregation.",
                [] {
                  return std::vector<std::string>{"none", "secagg", "secagg+"};
                },
                [](auto&c) { return c.secure_aggregation.protocol; },
                [](auto&c, auto&v) { c.secure_aggregation.protocol = v; }),
            FloatKey(
                "secure_aggregation.threshold",
                "Shares needed to rebuild a client's secrets: a fraction (< 1) of its "
                "neighbourhood (at least 2), or a whole count (>= 2). Below it the round aborts "
                "and publishes nothing.",
                0, true, INFINITY, false, [](auto&c) { return c.secure_aggregation.threshold; },
                [](auto&c, double v) { c.secure_aggregation.threshold = v; }),
            IntKey(
                "secure_aggregation.neighbours",
                "secagg+: neighbours k of each client (even); 0 = 3 ceil(log2 n) rounded up to "
                "even, at "
                "most n - 1.",
                0, 65534, [](auto&c) { return c.secure_aggregation.neighbours; },
                [](auto&c, int64_t v) { c.secure_aggregation.neighbours = static_cast<int>(v); }),
            IntKey(
                "secure_aggregation.min_survivors",
                "Fewest devices whose masked updates must be in the sum before it is unmasked; a "
                "round with fewer aborts without revealing anything (>= 2).",
                2, 65535, [](auto&c) { return c.secure_aggregation.min_survivors; },
                [](auto&c, int64_t v) {
                  c.secure_aggregation.min_survivors = static_cast<int>(v);
                }),
            FloatKey(
                "secure_aggregation.bound",
                "Per-coordinate bound B of the fixed-point encoding when neither clip_norm nor DP "
                "sets "
                "one (larger values are clipped to it).",
                0, true, INFINITY, false, [](auto&c) { return c.secure_aggregation.bound; },
                [](auto&c, double v) { c.secure_aggregation.bound = v; }),
            FloatKey(
                "secure_aggregation.dropout",
                "Simulated dropouts: share of each cohort that vanishes, each at a phase drawn "
                "uniformly "
                "from the four (seeded by run.seed).",
                0, false, 1, true, [](auto&c) { return c.secure_aggregation.dropout; },
                [](auto&c, double v) { c.secure_aggregation.dropout = v; }),
        }) {
      t->Add(std::move(key));
    }
    // Names users bring from Flower, FedML or PyTorch scripts, mapped to
    // ours: only ever used to suggest, never accepted silently.
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"lr", "learning_rate"},
             {"epochs", "local_epochs"},
             {"local_steps", "max_steps"},
             {"batch", "batch_size"},
             {"mu", "proximal_mu"},
             {"num_rounds", "rounds"},
             {"clients", "num_clients"},
             {"fraction_fit", "fraction"},
             {"server_lr", "server_learning_rate"},
             {"model", "architecture"},
             {"strategy", "name"},
         }) {
      t->SuggestLeaf(from, to);
    }
    return t;
  }();
  return *table;
}

}  // namespace

const config::KeyTable<SimulationConfig>& ConfigTable() { return Table(); }

}  // namespace fedge::simulations
