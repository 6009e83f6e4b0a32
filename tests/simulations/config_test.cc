#include "fedge/simulations/config.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "fedge/aggregator/shared_keys.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::simulations {
namespace {

using ::testing::HasSubstr;

TEST(ConfigTest, DefaultIsTheDocumentedExperimentAndValid) {
  SimulationConfig config = DefaultConfig();
  EXPECT_EQ(config.data.dataset, "fashion-mnist");
  EXPECT_EQ(config.partition.num_clients, 100);
  EXPECT_EQ(config.partition.method, "dirichlet");
  EXPECT_DOUBLE_EQ(config.partition.alpha, 0.5);
  EXPECT_EQ(ClientsPerRound(config), 10);
  EXPECT_EQ(config.model.architecture, "cnn");
  EXPECT_EQ(config.strategy, "fedavg");
  EXPECT_TRUE(ValidateConfig(config).ok());
}

TEST(ConfigTest, SetsEveryKindOfKey) {
  SimulationConfig config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "train.learning_rate", "0.25").ok());
  ASSERT_TRUE(SetConfigValue(config, "round.rounds", "7").ok());
  ASSERT_TRUE(SetConfigValue(config, "strategy.name", "fedadam").ok());
  ASSERT_TRUE(SetConfigValue(config, "data.dir", "/tmp/x").ok());
  EXPECT_FLOAT_EQ(config.train.learning_rate(), 0.25f);
  EXPECT_EQ(config.round.rounds, 7);
  EXPECT_EQ(config.strategy, "fedadam");
  EXPECT_EQ(config.data.dir, "/tmp/x");
}

TEST(ConfigTest, UnknownKeySuggestsTheClosestOne) {
  SimulationConfig config = DefaultConfig();
  absl::Status status = SetConfigValue(config, "train.learning_rat", "0.1");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("unknown config key 'train.learning_rat'"));
  EXPECT_THAT(status.message(), HasSubstr("did you mean 'train.learning_rate'"));
  status = SetConfigValue(config, "round.local_epochs", "3");  // right name, wrong section
  EXPECT_THAT(status.message(), HasSubstr("did you mean 'train.local_epochs'"));
}

TEST(ConfigTest, BadValuesNameTheKeyAndChangeNothing) {
  const SimulationConfig original = DefaultConfig();
  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"train.learning_rate", "-0.1", "train.learning_rate"},
      {"train.learning_rate", "fast", "expected a number > 0"},
      {"train.learning_rate", "nan", "train.learning_rate"},
      {"partition.alpha", "0", "partition.alpha"},
      {"partition.alpha", "-1", "a number > 0"},
      {"round.rounds", "1.5", "an integer in [1,"},
      {"round.rounds", "0", "round.rounds"},
      {"partition.num_clients", "99999999999999999999", "partition.num_clients"},
      {"train.momentum", "1", "[0, 1)"},
      {"round.fraction", "1.5", "round.fraction"},
      {"run.name", "", "non-empty"},
  };
  for (const Case& c : cases) {
    SimulationConfig config = original;
    absl::Status status = SetConfigValue(config, c.key, c.value);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.key << "=" << c.value;
    EXPECT_THAT(status.message(), HasSubstr(c.expect)) << c.key << "=" << c.value;
    EXPECT_EQ(DescribeConfig(config), DescribeConfig(original));
  }
}

TEST(ConfigTest, UnknownNamesListTheKnownOnes) {
  SimulationConfig config = DefaultConfig();
  absl::Status strategy = SetConfigValue(config, "strategy.name", "fedmagic");
  EXPECT_THAT(strategy.message(), HasSubstr("fedmagic"));
  EXPECT_THAT(strategy.message(), HasSubstr("fedavg"));
  EXPECT_THAT(strategy.message(), HasSubstr("krum"));
  absl::Status model = SetConfigValue(config, "model.architecture", "vgg");
  EXPECT_THAT(model.message(), HasSubstr("cnn-large"));
  absl::Status partition = SetConfigValue(config, "partition.method", "random");
  EXPECT_THAT(partition.message(), HasSubstr("dirichlet"));
}

TEST(ConfigTest, CrossFieldChecks) {
  SimulationConfig config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "round.clients_per_round", "101").ok());
  absl::Status status = ValidateConfig(config);
  EXPECT_THAT(status.message(),
              HasSubstr("round.clients_per_round (101) exceeds partition.num_clients (100)"));

  config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "round.fraction", "0.25").ok());
  EXPECT_EQ(ClientsPerRound(config), 25);

  config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "strategy.name", "fedprox").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("train.proximal_mu"));
  ASSERT_TRUE(SetConfigValue(config, "train.proximal_mu", "0.01").ok());
  EXPECT_TRUE(ValidateConfig(config).ok());

  config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "data.dataset", "mnist").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("data.dir"));
  ASSERT_TRUE(SetConfigValue(config, "data.dir", "/data/mnist").ok());
  EXPECT_TRUE(ValidateConfig(config).ok());

  config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "partition.method", "natural").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("synthetic"));

  config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "privacy.mode", "distributed").ok());
  ASSERT_TRUE(SetConfigValue(config, "update.codec", "topk").ok());
  // A device's share of the noise protects it only inside the secure sum.
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("without secure_aggregation"));
  ASSERT_TRUE(SetConfigValue(config, "privacy.mode", "local").ok());
  EXPECT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
}

TEST(ConfigTest, PruningAndArtifactKeys) {
  SimulationConfig config = DefaultConfig();
  EXPECT_FALSE(PruningOptionsFor(config).has_value());
  auto encoding = ArtifactEncodingFor(config);
  ASSERT_TRUE(encoding.ok());
  EXPECT_EQ(encoding->precision, models::ArtifactEncoding::Precision::kFp32);
  EXPECT_FALSE(encoding->sparse);

  ASSERT_TRUE(SetConfigValue(config, "prune.sparsity", "0.8").ok());
  ASSERT_TRUE(SetConfigValue(config, "prune.structured", "true").ok());
  ASSERT_TRUE(SetConfigValue(config, "prune.every", "2").ok());
  ASSERT_TRUE(SetConfigValue(config, "model.artifact", "int8").ok());
  std::optional<models::PruningOptions> pruning = PruningOptionsFor(config);
  ASSERT_TRUE(pruning.has_value());
  EXPECT_DOUBLE_EQ(pruning->target_sparsity, 0.8);
  EXPECT_EQ(pruning->begin_round, 1);
  EXPECT_EQ(pruning->end_round, 53);  // two thirds of 80 rounds
  EXPECT_EQ(pruning->frequency, 2);
  EXPECT_TRUE(pruning->structured);
  encoding = ArtifactEncodingFor(config);
  ASSERT_TRUE(encoding.ok());
  EXPECT_EQ(encoding->precision, models::ArtifactEncoding::Precision::kInt8PerChannel);
  EXPECT_TRUE(encoding->sparse);  // auto: pruning
  EXPECT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);

  ASSERT_TRUE(SetConfigValue(config, "prune.end_round", "81").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("never be reached"));
  ASSERT_TRUE(SetConfigValue(config, "prune.end_round", "20").ok());
  ASSERT_TRUE(SetConfigValue(config, "prune.begin_round", "30").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("before prune.begin_round"));
  ASSERT_TRUE(SetConfigValue(config, "prune.begin_round", "10").ok());
  ASSERT_TRUE(SetConfigValue(config, "model.sparse_artifact", "off").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("model.sparse_artifact"));

  EXPECT_THAT(SetConfigValue(config, "prune.sparsity", "1").message(), HasSubstr("[0, 1)"));
  EXPECT_THAT(SetConfigValue(config, "prune.structured", "maybe").message(),
              HasSubstr("true or false"));
  EXPECT_THAT(SetConfigValue(config, "model.artifact", "int4").message(),
              HasSubstr("int8-per-tensor"));
}

TEST(ConfigTest, ProxyDistillationAndInt8EvaluationKeys) {
  SimulationConfig config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "eval.int8", "true").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("proxy.examples"));
  ASSERT_TRUE(SetConfigValue(config, "proxy.examples", "2000").ok());
  EXPECT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
  ASSERT_TRUE(SetConfigValue(config, "eval.int8", "false").ok());
  ASSERT_TRUE(SetConfigValue(config, "proxy.examples", "0").ok());
  ASSERT_TRUE(SetConfigValue(config, "distill.student", "mobilenet-tiny").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("distill.student"));
  ASSERT_TRUE(SetConfigValue(config, "proxy.examples", "500").ok());
  ASSERT_TRUE(SetConfigValue(config, "distill.temperature", "2").ok());
  ASSERT_TRUE(SetConfigValue(config, "distill.epochs", "30").ok());
  ASSERT_TRUE(SetConfigValue(config, "eval.int8_engine", "qnnpack").ok());
  EXPECT_TRUE(ValidateConfig(config).ok());
  EXPECT_EQ(config.distill.student, "mobilenet-tiny");
  EXPECT_DOUBLE_EQ(config.distill.temperature, 2.0);
  EXPECT_EQ(config.distill.epochs, 30);
  EXPECT_THAT(SetConfigValue(config, "distill.student", "resnet").message(), HasSubstr("none"));
  EXPECT_THAT(SetConfigValue(config, "distill.temperature", "0").message(),
              HasSubstr("distill.temperature"));
  EXPECT_THAT(SetConfigValue(config, "eval.int8_engine", "tpu").message(), HasSubstr("qnnpack"));
  EXPECT_THAT(SetConfigValue(config, "proxy.examples", "-1").message(),
              HasSubstr("proxy.examples"));
}

TEST(ConfigTest, CodecOptionsAndErrorFeedback) {
  SimulationConfig config = DefaultConfig();
  EXPECT_FALSE(UsesErrorFeedback(config));  // fp32 loses nothing
  ASSERT_TRUE(SetConfigValue(config, "update.codec", "topk").ok());
  EXPECT_TRUE(UsesErrorFeedback(config));  // auto: on for topk
  ASSERT_TRUE(SetConfigValue(config, "update.error_feedback", "off").ok());
  EXPECT_FALSE(UsesErrorFeedback(config));
  ASSERT_TRUE(SetConfigValue(config, "update.codec", "int8").ok());
  ASSERT_TRUE(SetConfigValue(config, "update.error_feedback", "on").ok());
  EXPECT_TRUE(UsesErrorFeedback(config));
  ASSERT_TRUE(SetConfigValue(config, "update.density", "0.001").ok());
  ASSERT_TRUE(SetConfigValue(config, "update.bits", "4").ok());
  EXPECT_DOUBLE_EQ(config.codec_options.density, 0.001);
  EXPECT_EQ(config.codec_options.bits, 4);
  EXPECT_THAT(SetConfigValue(config, "update.density", "0").message(), HasSubstr("update.density"));
  EXPECT_THAT(SetConfigValue(config, "update.density", "1.5").message(), HasSubstr("(0, 1]"));
  EXPECT_THAT(SetConfigValue(config, "update.bits", "17").message(), HasSubstr("[1, 16]"));
  EXPECT_THAT(SetConfigValue(config, "update.error_feedback", "yes").message(),
              HasSubstr("auto, off, on"));
}

TEST(ConfigTest, DriftKeysAreValidated) {
  SimulationConfig config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "policy.reaction", "extra-round").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("needs monitor.enabled on"));
  ASSERT_TRUE(SetConfigValue(config, "monitor.enabled", "on").ok());
  EXPECT_TRUE(ValidateConfig(config).ok());
  ASSERT_TRUE(SetConfigValue(config, "monitor.trigger", "cusum").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("monitor: DriftMonitorOptions.trigger"));

  config = DefaultConfig();
  ASSERT_TRUE(SetConfigValue(config, "drift.type", "rotation").ok());
  ASSERT_TRUE(SetConfigValue(config, "drift.round", "81").ok());
  EXPECT_THAT(ValidateConfig(config).message(), HasSubstr("drift.round (81)"));

  const SimulationConfig before = DefaultConfig();
  config = before;
  EXPECT_THAT(SetConfigValue(config, "monitor.detectors", "ks,cusum").message(),
              HasSubstr("registered detectors (adwin, confidence, ddm, ks, page-hinkley, psi)"));
  EXPECT_THAT(SetConfigValue(config, "drift.type", "snow").message(), HasSubstr("drift.type"));
  EXPECT_THAT(SetConfigValue(config, "drift.fraction", "0").message(), HasSubstr("drift.fraction"));
  EXPECT_THAT(SetConfigValue(config, "policy.threshold", "1.5").message(),
              HasSubstr("policy.threshold"));
  EXPECT_EQ(DescribeConfig(config), DescribeConfig(before));
  ASSERT_TRUE(SetConfigValue(config, "monitor.detectors", " ks , adwin:loss ").ok());
  EXPECT_EQ(config.monitor.options.detectors, (std::vector<std::string>{"ks", "adwin:loss"}));
}

TEST(ConfigTest, YamlMapsNestedKeysAndIsAllOrNothing) {
  SimulationConfig config = DefaultConfig();
  ASSERT_TRUE(ApplyYaml(config, R"(
train:
  learning_rate: 0.02
  local_epochs: 3
strategy:
  name: fedyogi
data:
  synthetic:
    alpha: 0.5
)",
                        "exp.yaml")
                  .ok());
  EXPECT_FLOAT_EQ(config.train.learning_rate(), 0.02f);
  EXPECT_EQ(config.train.local_epochs(), 3u);
  EXPECT_EQ(config.strategy, "fedyogi");
  EXPECT_DOUBLE_EQ(config.data.synthetic.alpha, 0.5);

  const auto before = DescribeConfig(config);
  absl::Status status = ApplyYaml(config, "train:\n  batch_size: 8\n  lr: 0.1\n", "bad.yaml");
  EXPECT_THAT(status.message(), HasSubstr("bad.yaml"));
  EXPECT_THAT(status.message(), HasSubstr("train.lr"));
  EXPECT_EQ(DescribeConfig(config), before);  // batch_size was not applied either

  EXPECT_THAT(ApplyYaml(config, "train: [1, 2]", "list.yaml").message(), HasSubstr("not a list"));
  EXPECT_THAT(ApplyYaml(config, "train: {lr: [", "broken.yaml").message(),
              HasSubstr("not valid YAML"));
  EXPECT_THAT(ApplyYaml(config, "round:\n  rounds:\n", "null.yaml").message(),
              HasSubstr("no value"));
  EXPECT_TRUE(ApplyYaml(config, "", "empty.yaml").ok());
}

// strategy.* and train.* are the groups fedge-aggregator includes too
// (fedge/aggregator/shared_keys.h): same names, types and checks.
TEST(ConfigTest, StrategyAndTrainKeysAreTheSharedGroups) {
  std::map<std::string, std::string> types;
  for (const config::KeyInfo& k : ConfigTable().Describe(DefaultConfig())) types[k.key] = k.type;
  const aggregator::StrategyChoice strategy;
  for (const config::KeyInfo& k : aggregator::StrategyKeys().Describe(strategy)) {
    EXPECT_EQ(types[k.key], k.type) << k.key;
  }
  const aggregator::TrainChoice train;
  for (const config::KeyInfo& k : aggregator::TrainKeys().Describe(train)) {
    EXPECT_EQ(types[k.key], k.type) << k.key;
  }
  EXPECT_GE(aggregator::StrategyKeys().Names().size(), 9u);
  EXPECT_GE(aggregator::TrainKeys().Names().size(), 8u);

  // The aggregator's name for strategy.name is accepted here too.
  SimulationConfig config = DefaultConfig();
  ASSERT_TRUE(ApplyYaml(config, "strategy: fedadam\n", "alias.yaml").ok());
  EXPECT_EQ(config.strategy, "fedadam");
  EXPECT_THAT(SetConfigValue(config, "strategy", "fedmagic").message(),
              HasSubstr("config key 'strategy': unknown value 'fedmagic'"));
  EXPECT_THAT(SetConfigValue(config, "strategy.trim_fraction", "0.5").message(),
              HasSubstr("[0, 0.5)"));
  // A section given a value says so.
  EXPECT_THAT(ApplyYaml(config, "train: 3\n", "section.yaml").message(),
              HasSubstr("config key 'train' is a section"));
  EXPECT_EQ(config.strategy, "fedadam");
}

TEST(ConfigTest, EveryKeyIsDocumentedAndRoundTrips) {
  const std::vector<ConfigKeyInfo> keys = ConfigKeys();
  ASSERT_GE(keys.size(), 30u);
  SimulationConfig config = DefaultConfig();
  for (const ConfigKeyInfo& key : keys) {
    EXPECT_FALSE(key.help.empty()) << key.key;
    EXPECT_FALSE(key.type.empty()) << key.key;
    // Setting a key to its own described value is accepted and changes nothing.
    EXPECT_TRUE(SetConfigValue(config, key.key, key.default_value).ok()) << key.key;
  }
  EXPECT_EQ(DescribeConfig(config), DescribeConfig(DefaultConfig()));
}

}  // namespace
}  // namespace fedge::simulations

namespace fedge::simulations {
namespace {

// Every example config shipped in configs/ must load and validate.
TEST(ConfigTest, ShippedConfigsAreValid) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator("configs")) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    SimulationConfig config = DefaultConfig();
    EXPECT_TRUE(ApplyYaml(config, text.str(), entry.path().string()).ok()) << entry.path();
    EXPECT_TRUE(ValidateConfig(config).ok()) << entry.path() << ": " << ValidateConfig(config);
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

}  // namespace
}  // namespace fedge::simulations
