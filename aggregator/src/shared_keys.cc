#include "fedge/aggregator/shared_keys.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "fedge/privacy/clipper.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/update_privacy.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

using config::Key;

const config::KeyTable<StrategyChoice>& StrategyKeys() {
  using K = Key<StrategyChoice>;
  static const auto* table = new config::KeyTable<StrategyChoice>(
      "",
      {
          K::Enum(
              "strategy.name", "Aggregation strategy.", RegisteredStrategies,
              [](const StrategyChoice& c) { return c.name; },
              [](StrategyChoice& c, const std::string& v) { c.name = v; })
              .Alias("strategy")
              .Pluggable(),
          K::Double(
              "strategy.server_learning_rate",
              "Server learning rate applied to the aggregated update.",
              [](const StrategyChoice& c) { return c.options.server_learning_rate; },
              [](StrategyChoice& c, double v) { c.options.server_learning_rate = v; })
              .Above(0),
          K::Double(
              "strategy.server_momentum", "FedAvgM server momentum.",
              [](const StrategyChoice& c) { return c.options.server_momentum; },
              [](StrategyChoice& c, double v) { c.options.server_momentum = v; })
              .AtLeast(0)
              .Below(1),
          K::Double(
              "strategy.beta1", "FedAdam/FedYogi/FedAdagrad first-moment decay.",
              [](const StrategyChoice& c) { return c.options.beta1; },
              [](StrategyChoice& c, double v) { c.options.beta1 = v; })
              .AtLeast(0)
              .Below(1),
          K::Double(
              "strategy.beta2", "FedAdam/FedYogi second-moment decay.",
              [](const StrategyChoice& c) { return c.options.beta2; },
              [](StrategyChoice& c, double v) { c.options.beta2 = v; })
              .AtLeast(0)
              .Below(1),
          K::Double(
              "strategy.tau", "Adaptivity tau of the adaptive server optimizers.",
              [](const StrategyChoice& c) { return c.options.tau; },
              [](StrategyChoice& c, double v) { c.options.tau = v; })
              .Above(0),
          K::Double(
              "strategy.trim_fraction", "trimmed-mean: fraction dropped at each end.",
              [](const StrategyChoice& c) { return c.options.trim_fraction; },
              [](StrategyChoice& c, double v) { c.options.trim_fraction = v; })
              .AtLeast(0)
              .Below(0.5),
          K::Int(
              "strategy.krum_byzantine", "krum: Byzantine clients tolerated (f).",
              [](const StrategyChoice& c) { return c.options.krum_byzantine; },
              [](StrategyChoice& c, int64_t v) { c.options.krum_byzantine = static_cast<int>(v); })
              .Min(0)
              .Max(1'000'000),
          K::Int(
              "strategy.krum_select", "krum: best updates averaged (1 = Krum, >1 = Multi-Krum).",
              [](const StrategyChoice& c) { return c.options.krum_select; },
              [](StrategyChoice& c, int64_t v) { c.options.krum_select = static_cast<int>(v); })
              .Min(1)
              .Max(1'000'000),
      });
  return *table;
}

const config::KeyTable<TrainChoice>& TrainKeys() {
  using K = Key<TrainChoice>;
  static const auto* table = new config::KeyTable<TrainChoice>(
      "",
      {
          K::Int(
              "train.local_epochs", "Local epochs per round.",
              [](const TrainChoice& c) { return static_cast<int64_t>(c.train.local_epochs()); },
              [](TrainChoice& c, int64_t v) { c.train.set_local_epochs(static_cast<uint32_t>(v)); })
              .Min(1)
              .Max(10'000),
          K::Int(
              "train.batch_size", "Local minibatch size.",
              [](const TrainChoice& c) { return static_cast<int64_t>(c.train.batch_size()); },
              [](TrainChoice& c, int64_t v) { c.train.set_batch_size(static_cast<uint32_t>(v)); })
              .Min(1)
              .Max(1'000'000),
          K::Double(
              "train.learning_rate", "Client SGD learning rate.",
              [](const TrainChoice& c) { return static_cast<double>(c.train.learning_rate()); },
              [](TrainChoice& c, double v) { c.train.set_learning_rate(static_cast<float>(v)); })
              .Above(0),
          K::Double(
              "train.momentum", "Client SGD momentum.",
              [](const TrainChoice& c) { return static_cast<double>(c.train.momentum()); },
              [](TrainChoice& c, double v) { c.train.set_momentum(static_cast<float>(v)); })
              .AtLeast(0)
              .Below(1),
          K::Double(
              "train.weight_decay", "Client L2 weight decay.",
              [](const TrainChoice& c) { return static_cast<double>(c.train.weight_decay()); },
              [](TrainChoice& c, double v) { c.train.set_weight_decay(static_cast<float>(v)); })
              .AtLeast(0),
          K::Double(
              "train.proximal_mu", "FedProx proximal term mu (0 = off).",
              [](const TrainChoice& c) { return static_cast<double>(c.train.proximal_mu()); },
              [](TrainChoice& c, double v) { c.train.set_proximal_mu(static_cast<float>(v)); })
              .AtLeast(0),
          K::Double(
              "train.lr_decay",
              "Per-round factor on the client learning rate (round r uses lr * decay^(r-1)).",
              [](const TrainChoice& c) { return c.lr_decay; },
              [](TrainChoice& c, double v) { c.lr_decay = v; })
              .Above(0)
              .AtMost(1),
          K::Int(
              "train.max_steps", "Cap on local optimizer steps per round (0 = no cap).",
              [](const TrainChoice& c) { return static_cast<int64_t>(c.train.max_steps()); },
              [](TrainChoice& c, int64_t v) { c.train.set_max_steps(static_cast<uint32_t>(v)); })
              .Min(0)
              .Max(std::numeric_limits<uint32_t>::max()),
      });
  return *table;
}

const config::KeyTable<PrivacyChoice>& PrivacyKeys() {
  using K = Key<PrivacyChoice>;
  using C = PrivacyChoice;
  static const auto* table = [] {
    auto* t = new config::KeyTable<PrivacyChoice>(
      "",
      {
          K::Enum(
              "privacy.mode",
              "Differential privacy: none, central (aggregator noises the sum; DP-FedAvg), local "
              "(each device noises its update), distributed (each device adds a share of the "
              "noise).",
              [] {
                return std::vector<std::string>{"central", "distributed", "local", "none"};
              },
              [](const C& c) { return c.mode; }, [](C& c, const std::string& v) { c.mode = v; }),
          K::Enum(
              "privacy.mechanism", "DP noise mechanism.", privacy::RegisteredMechanisms,
              [](const C& c) { return c.mechanism; },
              [](C& c, const std::string& v) { c.mechanism = v; })
              .Pluggable(),
          K::Double(
              "privacy.noise_multiplier",
              "Noise std on each round's sum, in units of the clip norm (z; the value "
              "accounted).",
              [](const C& c) { return c.noise_multiplier; },
              [](C& c, double v) { c.noise_multiplier = v; })
              .Above(0),
          K::Enum(
              "privacy.clipping", "How the per-update bound is chosen: fixed or adaptive (quantile).",
              privacy::RegisteredClippers, [](const C& c) { return c.clipping; },
              [](C& c, const std::string& v) { c.clipping = v; })
              .Pluggable(),
          K::Double(
              "privacy.clip_norm", "Bound on each device's update (adaptive: the first round's).",
              [](const C& c) { return c.clip_norm; }, [](C& c, double v) { c.clip_norm = v; })
              .Above(0),
          K::Double(
              "privacy.target_quantile", "Adaptive clipping: quantile of update norms to track.",
              [](const C& c) { return c.target_quantile; },
              [](C& c, double v) { c.target_quantile = v; })
              .AtLeast(0)
              .AtMost(1),
          K::Double(
              "privacy.clip_learning_rate", "Adaptive clipping: geometric learning rate.",
              [](const C& c) { return c.clip_learning_rate; },
              [](C& c, double v) { c.clip_learning_rate = v; })
              .Above(0),
          K::Double(
              "privacy.count_noise_stddev",
              "Adaptive clipping: noise std on the count of unclipped updates (0 = devices per "
              "round / 20).",
              [](const C& c) { return c.count_noise_stddev; },
              [](C& c, double v) { c.count_noise_stddev = v; })
              .AtLeast(0),
          K::Double(
              "privacy.delta", "delta at which epsilon is reported.",
              [](const C& c) { return c.delta; }, [](C& c, double v) { c.delta = v; })
              .Above(0)
              .Below(1),
          K::Double(
              "privacy.epsilon_budget",
              "Largest total epsilon; a round that would exceed it is refused and rounds stop "
              "(0 = no budget).",
              [](const C& c) { return c.epsilon_budget; },
              [](C& c, double v) { c.epsilon_budget = v; })
              .AtLeast(0),
          K::Double(
              "privacy.integer_scale",
              "Integer mechanisms: fixed-point scale of the clipped update (0 = 20 sqrt(d) / "
              "clip).",
              [](const C& c) { return c.integer_scale; },
              [](C& c, double v) { c.integer_scale = v; })
              .AtLeast(0),
          K::Enum(
              "privacy.random",
              "Noise source: secure (OpenSSL, seeded by the OS) or seeded (reproducible; for "
              "simulations and tests, the noise is predictable).",
              [] {
                return std::vector<std::string>{"secure", "seeded"};
              },
              [](const C& c) { return c.random; }, [](C& c, const std::string& v) { c.random = v; }),
      });
    // The keys plug-ins declare (privacy.<mechanism>.<key>), with their checks.
    t->Include(
        config::PluginKeys(), [](const C& c) { return c.params; },
        [](C& c, config::PluginParams p) { c.params = std::move(p); });
    return t;
  }();
  return *table;
}

absl::StatusOr<PrivateAggregationOptions> PrivateAggregationOptionsFrom(
    const PrivacyChoice& choice, int expected_cohort, double sampling_rate, uint64_t seed) {
  PrivateAggregationOptions options;
  FEDGE_ASSIGN_OR_RETURN(options.mode, privacy::ParsePrivacyMode(choice.mode));
  options.mechanism = choice.mechanism;
  options.mechanism_params = config::WithPluginDefaults(choice.params);
  options.noise_multiplier = choice.noise_multiplier;
  options.clipper = choice.clipping;
  options.clipper_options.clip_norm = choice.clip_norm;
  options.clipper_options.target_quantile = choice.target_quantile;
  options.clipper_options.learning_rate = choice.clip_learning_rate;
  options.clipper_options.count_noise_stddev =
      choice.count_noise_stddev > 0.0 ? choice.count_noise_stddev : expected_cohort / 20.0;
  options.sampling_rate = sampling_rate;
  options.expected_cohort = expected_cohort;
  options.delta = choice.delta;
  options.epsilon_budget = choice.epsilon_budget;
  options.integer_scale = choice.integer_scale;
  options.seeded_random = choice.random == "seeded";
  options.seed = seed ^ 0xA5A5A5A5DEADBEEFULL;
  return options;
}

}  // namespace fedge::aggregator
