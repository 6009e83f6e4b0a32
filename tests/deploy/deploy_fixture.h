// Shared set-up of the deployment tests: development certificates (made once
// per test binary with scripts/make-dev-certs.sh), a small LibTorch-free
// model, and an aggregator on a loopback port.
#ifndef FEDGE_TESTS_DEPLOY_DEPLOY_FIXTURE_H_
#define FEDGE_TESTS_DEPLOY_DEPLOY_FIXTURE_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/client/grpc_transport.h"
#include "fedge/models/artifact.h"
#include "fedge/models/update_codec.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::testing_util {

// The test binary's scratch directory (unique per process).
inline std::filesystem::path ScratchDir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d =
        std::filesystem::path(FEDGE_TEST_TMP_DIR) / ("deploy-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Certificates for devices dev-1 .. dev-6, plus "rogue" ones from a second CA.
inline std::filesystem::path CertDir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d = ScratchDir() / "certs";
    const std::string make = std::string("bash ") + FEDGE_MAKE_DEV_CERTS + " ";
    EXPECT_EQ(
        std::system(
            (make + d.string() + " dev-1 dev-2 dev-3 dev-4 dev-5 dev-6 > /dev/null 2>&1").c_str()),
        0);
    EXPECT_EQ(
        std::system((make + (ScratchDir() / "rogue").string() + " dev-1 > /dev/null 2>&1").c_str()),
        0);
    return d;
  }();
  return dir;
}

// A LibTorch-free model: 256x1024 weights (so the int8 artifact, with one
// scale per output row, is ~4x smaller than fp32) and a bias.
constexpr int64_t kSmallWeights = 256 * 1024;
constexpr size_t kSmallModelSize = kSmallWeights + 256;
inline v1::ModelArtifact SmallModel(float fill = 0.5f) {
  models::ModelSpec spec;
  spec.architecture = "mlp";
  spec.input_shape = {1024};
  spec.num_classes = 256;
  std::vector<models::ParameterLayout> layout = {{"fc.weight", {256, 1024}, 0, kSmallWeights},
                                                 {"fc.bias", {256}, kSmallWeights, 256}};
  std::vector<float> values(kSmallModelSize);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-fill, fill);
  for (float& v : values) v = u(rng);
  models::ArtifactOptions options;
  absl::StatusOr<v1::ModelArtifact> artifact =
      models::BuildFp32Artifact(spec, layout, values, options);
  EXPECT_TRUE(artifact.ok()) << artifact.status();
  return *artifact;
}

inline aggregator::AggregatorServerOptions ServerOptions(const std::filesystem::path& state) {
  aggregator::AggregatorServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.state_dir = state;
  options.signing_key_file = CertDir() / "signing.key";
  options.tls.cert_file = CertDir() / "server.pem";
  options.tls.key_file = CertDir() / "server.key";
  options.tls.client_ca_file = CertDir() / "ca.pem";
  options.initial_model = SmallModel();
  options.policy.goal = 2;
  options.policy.min_clients = 2;
  options.policy.deadline = std::chrono::seconds(60);
  options.policy.train.set_local_epochs(1);
  options.policy.train.set_batch_size(8);
  options.policy.train.set_learning_rate(0.1f);
  return options;
}

// A device that authenticates with its certificate.
inline client::GrpcTransportOptions CertDevice(const std::string& id, int port) {
  client::GrpcTransportOptions options;
  options.target = "localhost:" + std::to_string(port);
  options.client_id = id;
  options.ca_file = CertDir() / "ca.pem";
  options.cert_file = CertDir() / ("client-" + id + ".pem");
  options.key_file = CertDir() / ("client-" + id + ".key");
  options.pinned_key_file = CertDir() / "signing.pub";
  options.poll_wait = std::chrono::milliseconds(2000);
  options.call_timeout = std::chrono::seconds(30);
  return options;
}

// A device that authenticates with an enrollment token.
inline client::GrpcTransportOptions TokenDevice(const std::string& id, const std::string& token,
                                                int port) {
  client::GrpcTransportOptions options = CertDevice(id, port);
  options.cert_file.clear();
  options.key_file.clear();
  options.token = token;
  return options;
}

// Polls until the device has a task (at most `polls` long polls).
inline absl::StatusOr<v1::Task> WaitForTask(client::GrpcTransport& transport, int polls = 30) {
  for (int i = 0; i < polls; ++i) {
    absl::StatusOr<v1::Task> task = transport.PollTask(transport.options().client_id);
    if (task.ok() || task.status().code() != absl::StatusCode::kNotFound) return task;
  }
  return absl::DeadlineExceededError("no task came");
}

// An fp32 update of `dimension` values all equal to `value`.
inline v1::EncodedUpdate MakeUpdate(const v1::Task& task, size_t dimension, float value,
                                    uint64_t examples = 10) {
  v1::EncodedUpdate update;
  update.set_round(task.round());
  update.set_model_version(task.model_version());
  update.set_client_id(task.client_id());
  update.set_num_examples(examples);
  auto codec = models::CreateUpdateCodec("fp32");
  EXPECT_TRUE(codec.ok());
  std::vector<float> delta(dimension, value);
  EXPECT_TRUE((*codec)->Encode(delta, &update).ok());
  return update;
}

}  // namespace fedge::testing_util

#endif  // FEDGE_TESTS_DEPLOY_DEPLOY_FIXTURE_H_
