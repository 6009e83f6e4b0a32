#include "fedge/aggregator/shared_keys.h"

#include <cmath>
#include <cstdint>
#include <limits>

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
              .Alias("strategy"),
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

}  // namespace fedge::aggregator
