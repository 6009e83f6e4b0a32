// fedge-client's command line: every flag sets one key of the device table,
// --config files load first, then --set and the flags in order.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "client_config.h"
#include "fedge/client/device_config.h"
#include "fedge/client/grpc_transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::client::tools {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Base() {
  return {"--aggregator", "agg.example:7443", "--id",    "dev-7", "--pinned-key", "signing.pub",
          "--ca",         "ca.pem",           "--token", "secret"};
}

std::vector<std::string> With(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST(ClientToolConfigTest, EveryFlagSetsItsKey) {
  absl::StatusOr<ClientToolConfig> c = LoadClientToolConfig(With(Base(), {"--cert",
                                                                          "dev.pem",
                                                                          "--key",
                                                                          "dev.key",
                                                                          "--data",
                                                                          "/data/fmnist",
                                                                          "--shard",
                                                                          "2",
                                                                          "--num-shards",
                                                                          "5",
                                                                          "--partition",
                                                                          "shards",
                                                                          "--alpha",
                                                                          "0.25",
                                                                          "--shards-per-client",
                                                                          "3",
                                                                          "--min-examples",
                                                                          "7",
                                                                          "--partition-seed",
                                                                          "11",
                                                                          "--state",
                                                                          "st",
                                                                          "--tasks",
                                                                          "4",
                                                                          "--codec",
                                                                          "int8",
                                                                          "--threads",
                                                                          "2",
                                                                          "--poll-wait-ms",
                                                                          "250"}));
  ASSERT_TRUE(c.ok()) << c.status();
  const ClientTransportOptions& t = c->device.transport;
  EXPECT_EQ(t.target, "agg.example:7443");
  EXPECT_EQ(t.client_id, "dev-7");
  EXPECT_EQ(t.pinned_key_file, "signing.pub");
  EXPECT_EQ(t.ca_file, "ca.pem");
  EXPECT_EQ(t.token, "secret");
  EXPECT_EQ(t.cert_file, "dev.pem");
  EXPECT_EQ(t.key_file, "dev.key");
  EXPECT_FALSE(t.insecure);
  EXPECT_EQ(t.poll_wait, std::chrono::milliseconds(250));
  EXPECT_EQ(c->data_dir, "/data/fmnist");
  EXPECT_EQ(c->shard, 2);
  EXPECT_EQ(c->partition.num_clients, 5);
  EXPECT_EQ(c->partition.method, "shards");
  EXPECT_DOUBLE_EQ(c->partition.alpha, 0.25);
  EXPECT_EQ(c->partition.shards_per_client, 3);
  EXPECT_EQ(c->partition.min_examples_per_client, 7);
  EXPECT_EQ(c->partition.seed, 11u);
  EXPECT_EQ(c->device.state_dir, "st");
  EXPECT_EQ(c->device.max_tasks, 4);
  EXPECT_EQ(c->device.codec, "int8");
  EXPECT_EQ(c->device.threads, 2);

  absl::StatusOr<ClientToolConfig> insecure =
      LoadClientToolConfig({"--aggregator", "h:1", "--id", "d", "--pinned-key", "k", "--insecure"});
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  EXPECT_TRUE(insecure->device.transport.insecure);
}

TEST(ClientToolConfigTest, DefaultsAreTheOldFlagDefaults) {
  absl::StatusOr<ClientToolConfig> c = LoadClientToolConfig(Base());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->device.state_dir, "fedge-device-dev-7");
  EXPECT_EQ(c->data_dir, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c->shard, 0);
  EXPECT_EQ(c->partition.num_clients, 1);
  EXPECT_EQ(c->partition.method, "dirichlet");
  EXPECT_EQ(c->partition.seed, 1u);
  EXPECT_EQ(c->device.transport.poll_wait, std::chrono::milliseconds(10'000));
  EXPECT_EQ(c->device.threads, 1);
  EXPECT_EQ(c->device.max_tasks, 0);
  EXPECT_EQ(c->transport, "grpc");
}

TEST(ClientToolConfigTest, SecAggDropsParseByRound) {
  absl::StatusOr<ClientToolConfig> config =
      LoadClientToolConfig(With(Base(), {"--set", "fault.secagg_drops=3:1,1:4"}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->secagg_drops, (std::map<uint64_t, int>{{1, 4}, {3, 1}}));
  EXPECT_TRUE(LoadClientToolConfig(Base())->secagg_drops.empty());
}

TEST(ClientToolConfigTest, TransportIsChosenByRegisteredName) {
  ASSERT_STREQ(GrpcTransportName(), "grpc");
  absl::StatusOr<ClientToolConfig> c = LoadClientToolConfig(With(Base(), {"--transport", "grpc"}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->transport, "grpc");
}

TEST(ClientToolConfigTest, ConfigFileThenSetAndFlagsInOrder) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("fedge_client_tool_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(file) << "aggregator: from-file:1\ndevice_id: dev-file\npinned_key: k\n"
                         "tls: {insecure: true}\npartition: {num_clients: 4, shard: 3}\n";
  // The file first (even though given last); then --set and flags in order.
  absl::StatusOr<ClientToolConfig> c =
      LoadClientToolConfig({"--set", "partition.shard=1", "--shard", "2", "--id", "dev-flag",
                            "--config", file.string()});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->device.transport.target, "from-file:1");
  EXPECT_EQ(c->device.transport.client_id, "dev-flag");
  EXPECT_EQ(c->shard, 2);
  EXPECT_EQ(c->partition.num_clients, 4);
  c = LoadClientToolConfig(
      {"--config", file.string(), "--shard", "2", "--set", "partition.shard=1"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->shard, 1);
  std::filesystem::remove(file);
}

TEST(ClientToolConfigTest, BadCommandLinesNameTheFlagAndKey) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {With(Base(), {"--frobnicate"}), "unknown flag --frobnicate"},
      {With(Base(), {"--shard"}), "--shard needs a value"},
      {With(Base(), {"--threads", "0"}),
       "--threads: config key 'threads': expected an integer >= 1, got '0'"},
      {With(Base(), {"--alpha", "-1"}), "--alpha: config key 'partition.alpha'"},
      {With(Base(), {"--partition", "random"}), "known: dirichlet"},
      {With(Base(), {"--transport", "pigeon"}), "--transport: config key 'transport'"},
      {With(Base(), {"--shard", "2", "--num-shards", "2"}),
       "partition.shard (--shard) 2 is not below partition.num_clients (--num-shards) 2"},
      {With(Base(), {"--set", "tls.ca_file=x"}),
       "--set tls.ca_file=x: unknown config key 'tls.ca_file'; did you mean 'tls.ca'?"},
      {With(Base(), {"--set", "novalue"}), "--set expects key=value"},
      {With(Base(), {"--set", "fault.secagg_drops=2:5"}),
       "config key 'fault.secagg_drops': expected ROUND:PHASE entries (round >= 1, phase 1-4), "
       "got '2:5'"},
      {With(Base(), {"--set", "fault.secagg_drops=1:2,x"}), "got 'x'"},
      // fedge-client runs no training budget or drift detector: refused, not ignored.
      {With(Base(), {"--set", "drift.detector=adwin"}), "unknown config key 'drift.detector'"},
      {With(Base(), {"--set", "budget.max_task_seconds=5"}), "unknown config key"},
      {With(Base(), {"--config", "/nonexistent/device.yaml"}), "cannot read config file"},
      {{"--aggregator", "h:1", "--id", "d", "--pinned-key", "k"},
       "config key 'tls.ca' is required unless tls.insecure is true"},
      {{"--id", "d", "--pinned-key", "k", "--insecure"}, "config key 'aggregator' is required"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ClientToolConfig> config = LoadClientToolConfig(c.args);
    ASSERT_FALSE(config.ok()) << c.expect;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << c.expect;
    EXPECT_THAT(config.status().message(), HasSubstr(c.expect));
  }
}

// The C API's table: every key reads back its own value.
TEST(DeviceConfigTest, EveryKeyReadsBackItsValue) {
  const DeviceConfig defaults = DefaultDeviceConfig();
  DeviceConfig config = defaults;
  const std::vector<config::KeyInfo> keys = DeviceKeys().Describe(defaults);
  ASSERT_EQ(keys.size(), 24u);
  for (const config::KeyInfo& k : keys) {
    EXPECT_FALSE(k.help.empty()) << k.key;
    EXPECT_TRUE(DeviceKeys().Set(config, k.key, k.value).ok()) << k.key << "=" << k.value;
  }
  std::string before, after;
  for (const config::KeyInfo& k : DeviceKeys().Describe(defaults)) before += k.key + "=" + k.value;
  for (const config::KeyInfo& k : DeviceKeys().Describe(config)) after += k.key + "=" + k.value;
  EXPECT_EQ(after, before);
  ASSERT_TRUE(DeviceKeys().Set(config, "budget.max_training_memory_mb", "64").ok());
  EXPECT_EQ(config.budget.max_training_bytes, 64 << 20);
  ASSERT_TRUE(DeviceKeys().Set(config, "budget.max_task_seconds", "30").ok());
  EXPECT_EQ(config.budget.max_training_time, std::chrono::seconds(30));
}

// tls.key may name a token key; its URI is checked when set, and enrollment
// needs what it sends and where it stores the result.
TEST(DeviceConfigTest, TokenKeysAndEnrollmentAreChecked) {
  DeviceConfig config = DefaultDeviceConfig();
  EXPECT_THAT(DeviceKeys().Set(config, "tls.key", "pkcs11:object=dev").message(),
              HasSubstr("module-path"));
  ASSERT_TRUE(DeviceKeys().Set(config, "tls.key", "pkcs11:object=dev?module-path=/m.so").ok());
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"aggregator", "agg:7443"}, {"device_id", "dev-7"}, {"pinned_key", "signing.pub"},
           {"state_dir", "state"}, {"tls.ca", "ca.pem"}, {"tls.cert", "dev-7.pem"},
           {"tls.enroll", "true"}}) {
    ASSERT_TRUE(DeviceKeys().Set(config, key, value).ok()) << key;
  }
  EXPECT_THAT(ValidateDeviceConfig(config).message(), HasSubstr("'tls.enroll' needs"));
  ASSERT_TRUE(DeviceKeys().Set(config, "tls.token", "secret").ok());
  EXPECT_TRUE(ValidateDeviceConfig(config).ok());
  ASSERT_TRUE(DeviceKeys().Set(config, "tls.insecure", "true").ok());
  EXPECT_THAT(ValidateDeviceConfig(config).message(), HasSubstr("not tls.insecure"));
}

TEST(ClientToolConfigTest, HelpListsEveryFlagAndKey) {
  const std::string help = ClientToolHelp();
  for (const std::string& key : ClientToolKeys().Names()) EXPECT_THAT(help, HasSubstr(key));
  for (const char* flag : {"--aggregator",   "--id",
                           "--pinned-key",   "--ca",
                           "--cert",         "--key",
                           "--token",        "--insecure",
                           "--data",         "--shard",
                           "--num-shards",   "--partition",
                           "--alpha",        "--shards-per-client",
                           "--min-examples", "--partition-seed",
                           "--state",        "--tasks",
                           "--codec",        "--threads",
                           "--poll-wait-ms", "--config",
                           "--set"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  EXPECT_THAT(help, HasSubstr("[int, default 1]"));
}

}  // namespace
}  // namespace fedge::client::tools
