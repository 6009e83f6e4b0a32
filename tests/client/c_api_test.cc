// The C API: every function with NULL / invalid handles and bad arguments,
// bad configs, failing app callbacks, and real tasks against a loopback
// AggregatorServer over mutual TLS.
#include "fedge/client/c_api.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "deploy/deploy_fixture.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"
#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::ScratchDir;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kFeatures = 16;
constexpr int32_t kClasses = 4;
constexpr int64_t kExamples = 96;

// The app's data: four Gaussian blobs in 16-D (seeded), in plain arrays.
struct AppData {
  std::vector<float> features;
  std::vector<int32_t> labels;
  int fail_with = 0;       // read_batch returns this when non-zero
  int32_t bad_label = -1;  // when >= 0, every label read is this
  std::atomic<int> reads{0};
};

void FillBlobs(AppData* data) {
  std::mt19937 rng(11);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  for (int64_t i = 0; i < kExamples; ++i) {
    const int32_t label = static_cast<int32_t>(i % kClasses);
    data->labels.push_back(label);
    for (int64_t f = 0; f < kFeatures; ++f) {
      data->features.push_back((f % kClasses == label ? 2.0f : 0.0f) + noise(rng));
    }
  }
}

extern "C" int ReadBatch(void* user, const int64_t* indices, size_t count, float* features,
                         int32_t* labels) {
  auto* data = static_cast<AppData*>(user);
  data->reads++;
  if (data->fail_with != 0) return data->fail_with;
  for (size_t i = 0; i < count; ++i) {
    std::copy_n(data->features.begin() + indices[i] * kFeatures, kFeatures,
                features + i * kFeatures);
    labels[i] = data->bad_label >= 0 ? data->bad_label : data->labels[indices[i]];
  }
  return 0;
}

struct EventLog {
  std::mutex mu;
  std::vector<fedge_event_type> types;
  std::vector<std::string> messages;
  std::vector<uint64_t> versions;
  std::vector<uint64_t> rounds;
  fedge_event_type fail_on = static_cast<fedge_event_type>(0);
  int fail_with = 0;

  std::vector<fedge_event_type> Types() {
    std::lock_guard<std::mutex> lock(mu);
    return types;
  }
};

extern "C" int OnEvent(void* user, const fedge_event* event) {
  auto* log = static_cast<EventLog*>(user);
  std::lock_guard<std::mutex> lock(log->mu);
  log->types.push_back(event->type);
  log->messages.emplace_back(event->message);
  log->versions.push_back(event->model_version);
  log->rounds.push_back(event->round);
  return event->type == log->fail_on ? log->fail_with : 0;
}

// Pauses on its 2nd and 3rd answers; returns `misbehave` instead when set.
struct Policy {
  std::atomic<int> calls{0};
  int misbehave = 0;
};

extern "C" int MayTrain(void* user) {
  auto* policy = static_cast<Policy*>(user);
  const int call = ++policy->calls;
  if (policy->misbehave != 0) return policy->misbehave;
  return call == 2 || call == 3 ? 0 : 1;
}

// A device config; `extra` is appended after the `budget:` section, so it
// may continue it with indented keys.
std::string DeviceConfig(int port, const std::string& id, const std::string& extra = "") {
  const std::string certs = CertDir().string();
  return "aggregator: localhost:" + std::to_string(port) + "\n" + "device_id: " + id + "\n" +
         "pinned_key: " + certs + "/signing.pub\n" +
         "state_dir: " + (ScratchDir() / ("capi-" + id)).string() + "\n" + "tls:\n  ca: " + certs +
         "/ca.pem\n  cert: " + certs + "/client-" + id + ".pem\n  key: " + certs + "/client-" + id +
         ".key\n" + "poll_wait_ms: 500\n" + "budget:\n  policy_poll_ms: 5\n" + extra;
}

class CApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models::SetComputeThreads(1);
    FillBlobs(&data_);
    ASSERT_EQ(fedge_client_create(&client_), FEDGE_OK);
    source_ = {kExamples, kFeatures, kClasses, &ReadBatch, &data_};
  }
  void TearDown() override { fedge_client_destroy(client_); }

  // An aggregator with the zoo's mlp for the blobs as version 0; rounds of
  // `goal` devices.
  std::unique_ptr<aggregator::AggregatorServer> StartServer(int rounds, int goal = 1,
                                                            int min_clients = 1,
                                                            int64_t features = kFeatures,
                                                            bool device_ca = false) {
    const std::filesystem::path state =
        ScratchDir() /
        ("capi-agg-" +
         std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(state);
    {
      auto store = aggregator::StateStore::Open(state);
      EXPECT_TRUE(store.ok());
      for (const char* id : {"dev-1", "dev-2", "dev-3"}) {
        EXPECT_TRUE((*store)->EnrollClient(id, "").ok());
      }
      EXPECT_TRUE((*store)->EnrollClient("dev-9", "enroll-me").ok());
    }
    aggregator::AggregatorServerOptions options = testing_util::ServerOptions(state);
    // The dev CA (tls.client_ca) issues device certificates at Enroll.
    if (device_ca) options.tls.client_ca_key = (CertDir() / "ca.key").string();
    models::ModelSpec spec{"mlp", {features}, kClasses};
    auto initial = models::ModelInstance::Create(spec, 1);
    EXPECT_TRUE(initial.ok());
    auto artifact = models::BuildFp32Artifact(spec, (*initial)->parameters().layout(),
                                              (*initial)->parameters().values(), {});
    EXPECT_TRUE(artifact.ok());
    options.initial_model = *std::move(artifact);
    options.policy.rounds = rounds;
    options.policy.goal = goal;
    options.policy.min_clients = min_clients;
    options.policy.train.set_local_epochs(3);
    options.policy.train.set_batch_size(8);
    options.policy.train.set_learning_rate(0.1f);
    auto server = aggregator::AggregatorServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // Configures the client for `server`, with the data source and events.
  void Ready(int port, const std::string& extra = "") {
    ASSERT_EQ(fedge_client_configure(client_, DeviceConfig(port, "dev-1", extra).c_str()), FEDGE_OK)
        << fedge_last_error();
    ASSERT_EQ(fedge_client_set_data_source(client_, &source_), FEDGE_OK);
    ASSERT_EQ(fedge_client_set_event_callback(client_, &OnEvent, &events_), FEDGE_OK);
  }

  fedge_client* client_ = nullptr;
  AppData data_;
  fedge_data_source source_{};
  EventLog events_;
};

// --- handles and arguments ----------------------------------------------------

// Calls every handle-taking function on `handle`; each must say
// FEDGE_ERR_INVALID_HANDLE with a message.
void ExpectEveryFunctionRefuses(fedge_client* handle) {
  fedge_data_source source{1, 1, 2, &ReadBatch, nullptr};
  fedge_model_info info;
  float features[1] = {0};
  int32_t labels[1];
  const std::vector<std::pair<const char*, fedge_status>> results = {
      {"configure", fedge_client_configure(handle, "aggregator: x")},
      {"set_data_source", fedge_client_set_data_source(handle, &source)},
      {"set_policy", fedge_client_set_policy(handle, &MayTrain, nullptr)},
      {"set_event_callback", fedge_client_set_event_callback(handle, &OnEvent, nullptr)},
      {"run_task", fedge_client_run_task(handle, 10)},
      {"start", fedge_client_start(handle)},
      {"stop", fedge_client_stop(handle)},
      {"join", fedge_client_join(handle)},
      {"sync_model", fedge_client_sync_model(handle)},
      {"enroll", fedge_client_enroll(handle)},
      {"model_info", fedge_client_model_info(handle, &info)},
      {"predict", fedge_client_predict(handle, features, 1, nullptr, labels)},
  };
  for (const auto& [name, status] : results) {
    EXPECT_EQ(status, FEDGE_ERR_INVALID_HANDLE) << name;
  }
  EXPECT_THAT(fedge_last_error(), HasSubstr("not a live fedge_client"));
  fedge_client_destroy(handle);  // nothing happens
}

TEST_F(CApiTest, NullUnknownAndDestroyedHandlesAreRefused) {
  ExpectEveryFunctionRefuses(nullptr);
  int not_a_client = 0;
  ExpectEveryFunctionRefuses(reinterpret_cast<fedge_client*>(&not_a_client));
  fedge_client* destroyed = nullptr;
  ASSERT_EQ(fedge_client_create(&destroyed), FEDGE_OK);
  fedge_client_destroy(destroyed);
  ExpectEveryFunctionRefuses(destroyed);
  EXPECT_EQ(fedge_client_create(nullptr), FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("out is NULL"));
}

TEST_F(CApiTest, StatusNamesAndVersion) {
  EXPECT_EQ(fedge_version(), FEDGE_C_API_VERSION);
  // The release string every tool prints for --version (tools.version).
  EXPECT_STREQ(fedge_client_version(), FEDGE_PROJECT_VERSION);
  EXPECT_STREQ(fedge_status_name(FEDGE_OK), "FEDGE_OK");
  for (int s = FEDGE_ERR_INVALID_ARGUMENT; s <= FEDGE_ERR_INTERNAL; ++s) {
    EXPECT_THAT(fedge_status_name(static_cast<fedge_status>(s)), HasSubstr("FEDGE_ERR_"));
    EXPECT_STRNE(fedge_status_name(static_cast<fedge_status>(s)), "FEDGE_ERR_UNKNOWN");
  }
  EXPECT_STREQ(fedge_status_name(static_cast<fedge_status>(99)), "FEDGE_ERR_UNKNOWN");
}

TEST_F(CApiTest, BadArgumentsAreRefusedWithAMessage) {
  EXPECT_EQ(fedge_client_configure(client_, nullptr), FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("config is NULL"));
  EXPECT_EQ(fedge_client_set_data_source(client_, nullptr), FEDGE_ERR_INVALID_ARGUMENT);
  fedge_data_source no_callback{10, 4, 2, nullptr, nullptr};
  EXPECT_EQ(fedge_client_set_data_source(client_, &no_callback), FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("read_batch is NULL"));
  for (fedge_data_source bad : {fedge_data_source{0, 4, 2, &ReadBatch, nullptr},
                                fedge_data_source{10, 0, 2, &ReadBatch, nullptr},
                                fedge_data_source{10, 4, 1, &ReadBatch, nullptr}}) {
    EXPECT_EQ(fedge_client_set_data_source(client_, &bad), FEDGE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(fedge_last_error(), HasSubstr("num_examples >= 1"));
  }
  EXPECT_EQ(fedge_client_run_task(client_, -1), FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("timeout_ms"));
  float features[kFeatures] = {};
  int32_t label;
  EXPECT_EQ(fedge_client_predict(client_, nullptr, 1, nullptr, &label), FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fedge_client_predict(client_, features, 0, nullptr, &label),
            FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fedge_client_predict(client_, features, 1, nullptr, nullptr),
            FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("logits or labels"));
  EXPECT_EQ(fedge_client_model_info(client_, nullptr), FEDGE_ERR_INVALID_ARGUMENT);
}

TEST_F(CApiTest, NothingRunsBeforeItIsReady) {
  EXPECT_EQ(fedge_client_run_task(client_, 100), FEDGE_ERR_STATE);
  EXPECT_THAT(fedge_last_error(), HasSubstr("configure the client first"));
  EXPECT_EQ(fedge_client_start(client_), FEDGE_ERR_STATE);
  EXPECT_EQ(fedge_client_sync_model(client_), FEDGE_ERR_STATE);
  EXPECT_EQ(fedge_client_enroll(client_), FEDGE_ERR_STATE);
  ASSERT_EQ(fedge_client_configure(client_, DeviceConfig(1, "dev-1").c_str()), FEDGE_OK)
      << fedge_last_error();
  // A certificate device without a token has nothing to enroll with.
  EXPECT_EQ(fedge_client_enroll(client_), FEDGE_ERR_BAD_CONFIG);
  EXPECT_THAT(fedge_last_error(), HasSubstr("tls.token"));
  EXPECT_EQ(fedge_client_run_task(client_, 100), FEDGE_ERR_STATE);
  EXPECT_THAT(fedge_last_error(), HasSubstr("set a data source first"));
  EXPECT_EQ(fedge_client_join(client_), FEDGE_ERR_STATE);
  EXPECT_THAT(fedge_last_error(), HasSubstr("no background run"));
  fedge_model_info info;
  EXPECT_EQ(fedge_client_model_info(client_, &info), FEDGE_ERR_NO_MODEL);
  float features[kFeatures] = {};
  int32_t label;
  EXPECT_EQ(fedge_client_predict(client_, features, 1, nullptr, &label), FEDGE_ERR_NO_MODEL);
  EXPECT_THAT(fedge_last_error(), HasSubstr("no model received yet"));
  EXPECT_EQ(fedge_client_stop(client_), FEDGE_OK);  // nothing runs: still fine
}

// --- configuration --------------------------------------------------------------

TEST_F(CApiTest, BadConfigsNameTheField) {
  const std::string good = DeviceConfig(1, "dev-1");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "not valid YAML or JSON"},
      {"- a\n- b\n", "must be a mapping"},
      {"device_id: d\npinned_key: k\nstate_dir: s\n", "'aggregator' is required"},
      {good + "tls_ca: x\n", "unknown config key 'tls_ca'"},
      {good + "thread: 2\n", "unknown config key 'thread'"},
      {good + "tls_ca: x\n", "did you mean 'tls.ca'?"},
      {good + "threads: 0\n", "config key 'threads': expected an integer >= 1, got '0'"},
      {good + "threads: many\n", "config key 'threads': expected an integer >= 1, got 'many'"},
      {good + "poll_wait_ms: 0\n", "config key 'poll_wait_ms': expected a number of milliseconds"},
      {"aggregator: a:1\ndevice_id: d\npinned_key: k\nstate_dir: s\ntls:\n  insecure: maybe\n",
       "config key 'tls.insecure': expected true or false, got 'maybe'"},
      {good + "  max_task_seconds: -1\n", "config key 'budget.max_task_seconds'"},
      {good + "codec: gzip\n", "config key 'codec'"},
      {good + "drift:\n  detector: ks\n", "config key 'drift.detector'"},
      {good + "max_tasks: [1, 2]\n", "'max_tasks' must be a single value"},
      {"aggregator: a:1\ndevice_id: d\npinned_key: k\nstate_dir: s\n", "'tls.ca' is required"},
      {"aggregator: a:1\ndevice_id: d\npinned_key: k\nstate_dir: s\ntls:\n  ca: c\n  cert: x\n",
       "'tls.cert' and 'tls.key' go together"},
      {"aggregator: a:1\ndevice_id: d\npinned_key: /nonexistent/signing.pub\nstate_dir: s\n"
       "tls:\n  ca: " +
           (CertDir() / "ca.pem").string() + "\n  token: t\n",
       "/nonexistent/signing.pub"},
  };
  for (const auto& [config, message] : cases) {
    EXPECT_EQ(fedge_client_configure(client_, config.c_str()), FEDGE_ERR_BAD_CONFIG) << config;
    EXPECT_THAT(fedge_last_error(), HasSubstr(message)) << config;
  }
}

TEST_F(CApiTest, JsonAndYamlConfigsAreAccepted) {
  const std::string certs = CertDir().string();
  const std::string json = R"({"aggregator": "localhost:1", "device_id": "dev-2",
      "pinned_key": ")" + certs +
                           R"(/signing.pub", "state_dir": "/tmp/x",
      "tls": {"ca": ")" + certs +
                           R"(/ca.pem", "token": "secret"},
      "threads": 2, "codec": "int8", "budget": {"max_training_memory_mb": 64,
      "max_task_seconds": 30}, "drift": {"detector": "none"}})";
  EXPECT_EQ(fedge_client_configure(client_, json.c_str()), FEDGE_OK) << fedge_last_error();
  EXPECT_EQ(fedge_client_configure(client_, DeviceConfig(1, "dev-1").c_str()), FEDGE_OK)
      << fedge_last_error();
}

// --- real tasks -------------------------------------------------------------------

TEST_F(CApiTest, RunsTasksAndPredictsWithTheModelItReceived) {
  auto server = StartServer(/*rounds=*/2);
  ASSERT_NE(server, nullptr);
  Ready(server->port(), "max_tasks: 1\n");

  // One task in the foreground, then one in the background.
  ASSERT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_OK) << fedge_last_error();
  std::vector<fedge_event_type> types = events_.Types();
  ASSERT_GE(types.size(), 4u);
  EXPECT_EQ(types[0], FEDGE_EVENT_JOINED);
  EXPECT_THAT(types, Contains(FEDGE_EVENT_MODEL_UPDATED));
  EXPECT_THAT(types, Contains(FEDGE_EVENT_TRAINING_STARTED));
  EXPECT_EQ(types.back(), FEDGE_EVENT_UPDATE_SENT);
  fedge_model_info info;
  ASSERT_EQ(fedge_client_model_info(client_, &info), FEDGE_OK);
  EXPECT_EQ(info.version, 0u);
  EXPECT_EQ(info.example_size, kFeatures);
  EXPECT_EQ(info.num_classes, kClasses);
  EXPECT_STREQ(info.architecture, "mlp");

  ASSERT_EQ(fedge_client_start(client_), FEDGE_OK);
  EXPECT_EQ(fedge_client_configure(client_, DeviceConfig(1, "dev-1").c_str()), FEDGE_ERR_STATE);
  EXPECT_THAT(fedge_last_error(), HasSubstr("not while a run is in progress"));
  EXPECT_EQ(fedge_client_join(client_), FEDGE_OK) << fedge_last_error();
  ASSERT_EQ(fedge_client_model_info(client_, &info), FEDGE_OK);
  EXPECT_EQ(info.version, 1u);  // the second task brought version 1
  FEDGE_ASSERT_OK(server->Wait());

  // The federation published version 2 after the last task: sync, predict.
  ASSERT_EQ(fedge_client_sync_model(client_), FEDGE_OK) << fedge_last_error();
  ASSERT_EQ(fedge_client_model_info(client_, &info), FEDGE_OK);
  EXPECT_EQ(info.version, 2u);
  std::vector<int32_t> predicted(kExamples);
  std::vector<float> logits(kExamples * kClasses);
  ASSERT_EQ(fedge_client_predict(client_, data_.features.data(), kExamples, logits.data(),
                                 predicted.data()),
            FEDGE_OK);
  int correct = 0;
  for (int64_t i = 0; i < kExamples; ++i) correct += predicted[i] == data_.labels[i];
  EXPECT_GT(correct, kExamples * 3 / 4);
  // Labels agree with the logits.
  EXPECT_EQ(std::max_element(logits.begin(), logits.begin() + kClasses) - logits.begin(),
            predicted[0]);
  std::vector<fedge_event_type> all = events_.Types();
  EXPECT_EQ(std::count(all.begin(), all.end(), FEDGE_EVENT_UPDATE_SENT), 2);
  EXPECT_EQ(std::count(all.begin(), all.end(), FEDGE_EVENT_MODEL_UPDATED), 3);  // v0, v1, v2
}

// A device with only a token enrolls at configure time (a CSR for its own
// key, the CA's certificate stored) and then runs over mutual TLS;
// fedge_client_enroll renews the certificate with the same key.
TEST_F(CApiTest, EnrollsForACertificateThenRunsATask) {
  auto server = StartServer(/*rounds=*/1, 1, 1, kFeatures, /*device_ca=*/true);
  ASSERT_NE(server, nullptr);
  const std::filesystem::path dir = ScratchDir() / "capi-enroll";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string certs = CertDir().string();
  const std::string config =
      "aggregator: localhost:" + std::to_string(server->port()) + "\ndevice_id: dev-9\n" +
      "pinned_key: " + certs + "/signing.pub\nstate_dir: " + (dir / "state").string() + "\n" +
      "tls:\n  ca: " + certs + "/ca.pem\n  token: enroll-me\n  enroll: true\n" +
      "  cert: " + (dir / "dev-9.pem").string() + "\n  key: " + (dir / "dev-9.key").string() +
      "\npoll_wait_ms: 500\nmax_tasks: 1\n";
  ASSERT_EQ(fedge_client_configure(client_, config.c_str()), FEDGE_OK) << fedge_last_error();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string first, proto::ReadFile(dir / "dev-9.pem"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string key, proto::ReadFile(dir / "dev-9.key"));
  ASSERT_EQ(fedge_client_set_data_source(client_, &source_), FEDGE_OK);
  ASSERT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_OK) << fedge_last_error();
  ASSERT_EQ(fedge_client_enroll(client_), FEDGE_OK) << fedge_last_error();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string second, proto::ReadFile(dir / "dev-9.pem"));
  EXPECT_NE(second, first);  // a new certificate (new serial) ...
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string same_key, proto::ReadFile(dir / "dev-9.key"));
  EXPECT_EQ(same_key, key);  // ... for the same key
  ASSERT_EQ(fedge_client_sync_model(client_), FEDGE_OK) << fedge_last_error();
  FEDGE_ASSERT_OK(server->Wait());
}

// drift.detector (page-hinkley by default) runs inside the device runtime:
// when the device's labels change, the loss of the federation's model on
// them rises, DRIFT_DETECTED is raised, and the detector's state is kept in
// state_dir.
TEST_F(CApiTest, ChangedLabelsRaiseDriftDetected) {
  auto server = StartServer(/*rounds=*/3);
  ASSERT_NE(server, nullptr);
  Ready(server->port(), "max_tasks: 1\n");
  for (int task = 0; task < 2; ++task) {
    ASSERT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_OK) << fedge_last_error();
  }
  EXPECT_THAT(events_.Types(), Not(Contains(FEDGE_EVENT_DRIFT_DETECTED)));
  EXPECT_TRUE(std::filesystem::exists(ScratchDir() / "capi-dev-1" / "drift_monitor.state"));

  for (int32_t& label : data_.labels) label = (label + 1) % kClasses;
  ASSERT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_OK) << fedge_last_error();
  const std::vector<fedge_event_type> types = events_.Types();
  const auto drift = std::find(types.begin(), types.end(), FEDGE_EVENT_DRIFT_DETECTED);
  ASSERT_NE(drift, types.end());
  {
    std::lock_guard<std::mutex> lock(events_.mu);
    const size_t i = static_cast<size_t>(drift - types.begin());
    EXPECT_THAT(events_.messages[i], HasSubstr("page-hinkley"));
    EXPECT_EQ(events_.versions[i], 2u);  // the version the third task ran
  }
  FEDGE_ASSERT_OK(server->Wait());
}

TEST_F(CApiTest, PolicyPausesAndResumesTraining) {
  auto server = StartServer(1);
  ASSERT_NE(server, nullptr);
  Ready(server->port());
  Policy policy;
  ASSERT_EQ(fedge_client_set_policy(client_, &MayTrain, &policy), FEDGE_OK);
  ASSERT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_OK) << fedge_last_error();
  std::vector<fedge_event_type> types = events_.Types();
  auto paused = std::find(types.begin(), types.end(), FEDGE_EVENT_TRAINING_PAUSED);
  auto resumed = std::find(types.begin(), types.end(), FEDGE_EVENT_TRAINING_RESUMED);
  auto sent = std::find(types.begin(), types.end(), FEDGE_EVENT_UPDATE_SENT);
  ASSERT_NE(paused, types.end());
  ASSERT_NE(resumed, types.end());
  ASSERT_NE(sent, types.end());
  EXPECT_LT(paused, resumed);
  EXPECT_LT(resumed, sent);
  // Each event names the task it is about: the round and version the update
  // was sent for (they used to say round 0, version 0).
  const size_t p = static_cast<size_t>(paused - types.begin());
  const size_t r = static_cast<size_t>(resumed - types.begin());
  const size_t u = static_cast<size_t>(sent - types.begin());
  EXPECT_GE(events_.rounds[u], 1u);
  for (size_t i : {p, r}) {
    EXPECT_EQ(events_.rounds[i], events_.rounds[u]) << i;
    EXPECT_EQ(events_.versions[i], events_.versions[u]) << i;
  }
  auto started = std::find(types.begin(), types.end(), FEDGE_EVENT_TRAINING_STARTED);
  ASSERT_NE(started, types.end());
  EXPECT_EQ(events_.rounds[static_cast<size_t>(started - types.begin())], events_.rounds[u]);
  // Every step asked, plus the two refusals: 3 epochs of 12 batches.
  EXPECT_EQ(policy.calls.load(), 3 * kExamples / 8 + 2);
  FEDGE_EXPECT_OK(server->Wait());
}

TEST_F(CApiTest, FailingDataCallbackIsReported) {
  auto server = StartServer(1);
  ASSERT_NE(server, nullptr);
  Ready(server->port());
  data_.fail_with = 7;
  EXPECT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_ERR_CALLBACK);
  EXPECT_THAT(fedge_last_error(), HasSubstr("the data callback returned 7"));
  EXPECT_THAT(events_.Types(), Contains(FEDGE_EVENT_ERROR));
  EXPECT_THAT(events_.Types(), Not(Contains(FEDGE_EVENT_UPDATE_SENT)));

  // Labels out of range are the callback's failure too.
  data_.fail_with = 0;
  data_.bad_label = kClasses;
  EXPECT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_ERR_CALLBACK);
  EXPECT_THAT(fedge_last_error(), HasSubstr("gave label 4"));
}

TEST_F(CApiTest, MisbehavingPolicyIsReported) {
  auto server = StartServer(1);
  ASSERT_NE(server, nullptr);
  Ready(server->port());
  Policy policy;
  policy.misbehave = 5;
  ASSERT_EQ(fedge_client_set_policy(client_, &MayTrain, &policy), FEDGE_OK);
  EXPECT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_ERR_CALLBACK);
  EXPECT_THAT(fedge_last_error(), HasSubstr("the policy callback returned 5"));
  EXPECT_EQ(policy.calls.load(), 1);
}

TEST_F(CApiTest, FailingEventCallbackStopsTheRun) {
  auto server = StartServer(1);
  ASSERT_NE(server, nullptr);
  Ready(server->port());
  events_.fail_on = FEDGE_EVENT_JOINED;
  events_.fail_with = 3;
  EXPECT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_ERR_CALLBACK);
  EXPECT_THAT(fedge_last_error(), HasSubstr("the event callback returned 3 for event 'joined'"));
  EXPECT_EQ(data_.reads.load(), 0);  // it never trained
}

TEST_F(CApiTest, DataSourceMustFitTheFederationsModel) {
  auto server = StartServer(1);
  ASSERT_NE(server, nullptr);
  Ready(server->port());
  source_.example_size = kFeatures + 1;
  ASSERT_EQ(fedge_client_set_data_source(client_, &source_), FEDGE_OK);
  EXPECT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_ERR_INVALID_ARGUMENT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("example_size 17"));
}

extern "C" int ZeroBatch(void* user, const int64_t* indices, size_t count, float* features,
                         int32_t* labels) {
  const int64_t example_size = *static_cast<const int64_t*>(user);
  std::fill(features, features + count * example_size, 0.0f);
  std::fill(labels, labels + count, 0);
  return 0;
}

TEST_F(CApiTest, MemoryBudgetRefusesATaskThatCannotFit) {
  // An mlp on 1024 inputs: ~246,000 parameters, so the task's state alone
  // (global copy + delta) is ~2 MB, over a 1 MB budget.
  int64_t wide = 1024;
  auto server = StartServer(1, 1, 1, wide);
  ASSERT_NE(server, nullptr);
  Ready(server->port(), "  max_training_memory_mb: 1\n");
  fedge_data_source zeros{kExamples, wide, kClasses, &ZeroBatch, &wide};
  ASSERT_EQ(fedge_client_set_data_source(client_, &zeros), FEDGE_OK);
  EXPECT_EQ(fedge_client_run_task(client_, 120'000), FEDGE_ERR_RESOURCE);
  EXPECT_THAT(fedge_last_error(), HasSubstr("the memory budget is 1 MiB"));
  EXPECT_THAT(events_.Types(), Contains(FEDGE_EVENT_BUDGET_LIMITED));
  EXPECT_THAT(events_.Types(), Not(Contains(FEDGE_EVENT_UPDATE_SENT)));
}

TEST_F(CApiTest, TimeoutAndStopEndARunWithoutATask) {
  // Rounds wait for two devices; only this one comes, so no task ever does.
  auto server = StartServer(1, /*goal=*/2, /*min_clients=*/2);
  ASSERT_NE(server, nullptr);
  Ready(server->port());
  EXPECT_EQ(fedge_client_run_task(client_, 1500), FEDGE_ERR_TIMEOUT);
  EXPECT_THAT(fedge_last_error(), HasSubstr("timed out after 1500 ms"));

  ASSERT_EQ(fedge_client_start(client_), FEDGE_OK);
  EXPECT_EQ(fedge_client_start(client_), FEDGE_ERR_STATE);
  EXPECT_EQ(fedge_client_stop(client_), FEDGE_OK);
  EXPECT_EQ(fedge_client_join(client_), FEDGE_ERR_CANCELLED);
  EXPECT_THAT(fedge_last_error(), HasSubstr("stopped"));
  EXPECT_EQ(fedge_client_join(client_), FEDGE_ERR_STATE);  // already joined

  // Destroy stops and joins a background run that is still going.
  ASSERT_EQ(fedge_client_start(client_), FEDGE_OK);
  fedge_client_destroy(client_);
  client_ = nullptr;
}

}  // namespace
}  // namespace fedge
