// fedge-aggregator's key table: every key reads back its own value, the
// shipped config loads, and the aliases of the old names set what they did.
#include "serve_config.h"

#include "fedge/aggregator/shared_keys.h"
#include "fedge/privacy/secagg/protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::aggregator::tools {
namespace {

using ::testing::HasSubstr;

std::vector<std::pair<std::string, std::string>> Values(const ServeConfig& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const config::KeyInfo& k : ServeKeys().Describe(c)) out.emplace_back(k.key, k.value);
  return out;
}

TEST(ServeConfigTest, EveryKeyIsDocumentedAndReadsBackItsValue) {
  const ServeConfig defaults = DefaultServeConfig();
  ServeConfig config = defaults;
  const std::vector<config::KeyInfo> keys = ServeKeys().Describe(defaults);
  ASSERT_GE(keys.size(), 60u);
  for (const config::KeyInfo& k : keys) {
    EXPECT_FALSE(k.help.empty()) << k.key;
    EXPECT_TRUE(ServeKeys().Set(config, k.key, k.value).ok()) << k.key << "=" << k.value;
  }
  EXPECT_EQ(Values(config), Values(defaults));
}

// Keys named by reference are checked when set: a malformed PKCS#11 URI is
// an error naming what is wrong; a path is left to the loader.
TEST(ServeConfigTest, KeyReferencesAreChecked) {
  ServeConfig config = DefaultServeConfig();
  for (const char* key : {"signing_key", "tls.key", "tls.client_ca_key"}) {
    EXPECT_THAT(std::string(ServeKeys().Set(config, key, "pkcs11:object=k;slot=1").message()),
                HasSubstr("slot")) << key;
    EXPECT_TRUE(ServeKeys().Set(config, key, "pkcs11:object=k?module-path=/m.so").ok()) << key;
    EXPECT_TRUE(ServeKeys().Set(config, key, "keys/k.pem").ok()) << key;
  }
  EXPECT_EQ(config.server.signing_key_file, "keys/k.pem");
  EXPECT_FALSE(ServeKeys().Set(config, "tls.device_cert_days", "0").ok());
  EXPECT_FALSE(ServeKeys().Set(config, "tls.device_cert_days", "3651").ok());
  ASSERT_TRUE(ServeKeys().Set(config, "tls.device_cert_days", "30").ok());
  EXPECT_EQ(config.server.tls.device_certificate_days, 30);
  ASSERT_TRUE(ServeKeys().Set(config, "signing_key_chain", "state/signing.chain").ok());
  EXPECT_EQ(config.server.signing_key_chain, "state/signing.chain");
}

TEST(ServeConfigTest, ShippedConfigLoads) {
  ServeConfig config = DefaultServeConfig();
  ASSERT_TRUE(ServeKeys().ApplyFile(config, "configs/deploy/aggregator.yaml").ok());
  EXPECT_EQ(config.server.listen_address, "127.0.0.1:7443");
  EXPECT_EQ(config.server.strategy, "fedavg");
  EXPECT_EQ(config.server.precision, models::ArtifactEncoding::Precision::kInt8PerChannel);
  EXPECT_EQ(config.server.policy.rounds, 0u);  // serves until stopped
  EXPECT_EQ(config.server.policy.deadline, std::chrono::seconds(120));
  EXPECT_FLOAT_EQ(config.server.policy.train.learning_rate(), 0.05f);
  EXPECT_EQ(config.server.state_dir, "agg-state");
}

TEST(ServeConfigTest, OldNamesAreAliasesOfTheSharedKeys) {
  ServeConfig config = DefaultServeConfig();
  ASSERT_TRUE(ServeKeys()
                  .ApplyYaml(config,
                             "strategy: fedadam\ncodec: int8\nartifact: fp32\ninsecure: true\n"
                             "secure_aggregation: secagg\n",
                             "old.yaml")
                  .ok());
  EXPECT_EQ(config.server.strategy, "fedadam");
  EXPECT_EQ(config.server.codec, "int8");
  EXPECT_EQ(config.server.precision, models::ArtifactEncoding::Precision::kFp32);
  EXPECT_TRUE(config.server.tls.insecure);
  ASSERT_TRUE(config.server.secure_aggregation.has_value());
  EXPECT_EQ(config.server.secure_aggregation->protocol.protocol, v1::SecAggConfig::PROTOCOL_SECAGG);
  ASSERT_TRUE(ServeKeys().Set(config, "secure_aggregation", "none").ok());
  EXPECT_FALSE(config.server.secure_aggregation.has_value());

  // strategy.* and train.* are the groups fedge-sim includes: same keys here.
  for (const std::string& key : StrategyKeys().Names()) EXPECT_TRUE(ServeKeys().Contains(key));
  for (const std::string& key : TrainKeys().Names()) EXPECT_TRUE(ServeKeys().Contains(key));
  ASSERT_TRUE(ServeKeys().Set(config, "strategy.krum_select", "3").ok());
  EXPECT_EQ(config.server.strategy_options.krum_select, 3);
  ASSERT_TRUE(ServeKeys().Set(config, "train.lr_decay", "0.5").ok());
  EXPECT_DOUBLE_EQ(config.server.policy.lr_decay, 0.5);
}

// privacy.* is fedge-sim's group too: a deployment is configured with the
// keys a simulation was, and rounds.sampling picks the accountant's Poisson
// cohorts.
TEST(ServeConfigTest, PrivacyKeysAreTheSimulationsAndSet) {
  ServeConfig config = DefaultServeConfig();
  EXPECT_EQ(config.privacy.mode, "none");
  for (const std::string& key : PrivacyKeys().Names()) EXPECT_TRUE(ServeKeys().Contains(key));
  ASSERT_TRUE(ServeKeys().Set(config, "privacy.mode", "central").ok());
  ASSERT_TRUE(ServeKeys().Set(config, "privacy.noise_multiplier", "0.7").ok());
  ASSERT_TRUE(ServeKeys().Set(config, "privacy.clipping", "adaptive").ok());
  ASSERT_TRUE(ServeKeys().Set(config, "privacy.epsilon_budget", "4").ok());
  ASSERT_TRUE(ServeKeys().Set(config, "rounds.sampling", "poisson").ok());
  EXPECT_EQ(config.privacy.mode, "central");
  EXPECT_DOUBLE_EQ(config.privacy.noise_multiplier, 0.7);
  EXPECT_EQ(config.privacy.clipping, "adaptive");
  EXPECT_EQ(config.server.sampling, "poisson");
  absl::StatusOr<PrivateAggregationOptions> options =
      PrivateAggregationOptionsFrom(config.privacy, /*expected_cohort=*/10, 0.1, /*seed=*/3);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->mode, privacy::PrivacyMode::kCentral);
  EXPECT_DOUBLE_EQ(options->noise_multiplier, 0.7);
  EXPECT_DOUBLE_EQ(options->epsilon_budget, 4.0);
  EXPECT_DOUBLE_EQ(options->sampling_rate, 0.1);
  EXPECT_DOUBLE_EQ(options->clipper_options.count_noise_stddev, 0.5);  // 10 / 20
  EXPECT_FALSE(options->seeded_random);
}

TEST(ServeConfigTest, BadValuesNameTheKeyAndChangeNothing) {
  const ServeConfig original = DefaultServeConfig();
  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"listen", "7443", "config key 'listen': expected host:port"},
      {"ops.listen", "localhost", "config key 'ops.listen': expected host:port"},
      {"rounds.goal", "many", "config key 'rounds.goal': expected an integer"},
      {"rounds.deadline_s", "0", "config key 'rounds.deadline_s': expected a number of seconds"},
      {"rounds.fraction", "2", "a number in [0, 1]"},
      {"model.architecture", "vgg", "known: cnn"},
      {"update.codec", "gzip", "config key 'update.codec': unknown value 'gzip'"},
      {"codec", "gzip", "config key 'codec': unknown value 'gzip'"},
      {"artifact", "int4", "int8-per-tensor"},
      {"secure_aggregation", "secagg++", "known: none, secagg, secagg+"},
      {"strategy.name", "fedmagic", "known: fedadagrad"},
      {"train.momentum", "1", "[0, 1)"},
      {"max_update_mb", "0", "config key 'max_update_mb'"},
      {"privacy.mode", "centre", "known: central"},
      {"privacy.noise_multiplier", "0", "config key 'privacy.noise_multiplier'"},
      {"rounds.sampling", "bernoulli", "known: fixed, poisson"},
  };
  for (const Case& c : cases) {
    ServeConfig config = original;
    EXPECT_THAT(ServeKeys().Set(config, c.key, c.value).message(), HasSubstr(c.expect))
        << c.key << "=" << c.value;
    EXPECT_EQ(Values(config), Values(original)) << c.key;
  }
}

}  // namespace
}  // namespace fedge::aggregator::tools
