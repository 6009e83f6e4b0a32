// The round coordinator's test fixture: N fake devices (d0, d1, ...) whose
// updates differ per device and round, a manual clock, the in-memory store,
// and a listener that records every notice.
#ifndef FEDGE_TESTS_AGGREGATOR_COORDINATOR_FIXTURE_H_
#define FEDGE_TESTS_AGGREGATOR_COORDINATOR_FIXTURE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fedge/aggregator/in_memory_state_store.h"
#include "fedge/aggregator/round_coordinator.h"
#include "fedge/models/update_codec.h"
#include "fedge/proto/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "round_fixtures.h"
#include "status_matchers.h"

namespace fedge::aggregator::coordinator_testing {

using ::fedge::testing_util::IsOk;
using round_testing::kLayout;
using round_testing::kSpec;
using round_testing::Train;

inline const std::vector<float> kBase = {1, 2, 3, 4};

// What the listener heard.
class RecordingListener : public CoordinatorListener {
 public:
  void OnTasksChanged() override { ++tasks_changed; }
  void OnSecAggPhaseClosed(uint64_t round, v1::SecAggPhase phase) override {
    phases.emplace_back(round, phase);
  }
  void OnRoundOpened(const RoundOpened& round) override { opened.push_back(round); }
  void OnRoundEnded(const RoundEnded& round) override {
    ended.push_back(round.outcome);
    endings.push_back(round);
  }
  void OnVersionStored(uint64_t version) override { stored.push_back(version); }
  void OnFatal(const absl::Status& status) override { fatal = status; }

  int tasks_changed = 0;
  std::vector<std::pair<uint64_t, v1::SecAggPhase>> phases;
  std::vector<RoundOpened> opened;
  std::vector<RoundOutcome> ended;
  std::vector<RoundEnded> endings;
  std::vector<uint64_t> stored;
  absl::Status fatal;
};

// Device i's update: a delta that differs per device and round, with
// i + 1 examples.
inline std::vector<float> DeltaOf(int device, uint64_t round) {
  std::vector<float> delta(4);
  for (int k = 0; k < 4; ++k) {
    delta[k] = 0.1f * static_cast<float>(device + 1) - 0.03f * static_cast<float>(k * round) +
               0.01f * static_cast<float>(k);
  }
  return delta;
}

inline std::string Id(int device) { return std::string(1, 'd').append(std::to_string(device)); }
inline int Index(const std::string& id) { return std::stoi(id.substr(1)); }

inline v1::EncodedUpdate UpdateFor(const v1::Task& task) {
  const int device = Index(task.client_id());
  v1::EncodedUpdate update;
  update.set_round(task.round());
  update.set_model_version(task.model_version());
  update.set_client_id(task.client_id());
  update.set_num_examples(static_cast<uint64_t>(device + 1));
  EXPECT_THAT((*models::CreateUpdateCodec("fp32"))->Encode(DeltaOf(device, task.round()), &update),
              IsOk());
  (*update.mutable_metrics())["train_loss"] = 1.0;
  return update;
}

// Central DP with seeded noise: z = 1, clip 0.5, rate 0.5, cohorts of 3.
inline PrivateAggregationOptions SeededCentralDp() {
  PrivateAggregationOptions dp;
  dp.mode = privacy::PrivacyMode::kCentral;
  dp.noise_multiplier = 1.0;
  dp.clipper_options.clip_norm = 0.5;
  dp.sampling_rate = 0.5;
  dp.expected_cohort = 3.0;
  dp.seeded_random = true;
  dp.seed = 11;
  return dp;
}

class RoundCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FEDGE_ASSERT_OK_AND_ASSIGN(key_, models::SigningKey::Generate());
    models::ArtifactOptions artifact_options;
    artifact_options.created_at_unix_ms = clock_.WallMs();
    FEDGE_ASSERT_OK_AND_ASSIGN(initial_,
                               models::BuildFp32Artifact(kSpec, kLayout, kBase, artifact_options));
  }

  RoundCoordinatorOptions Options() {
    RoundCoordinatorOptions options;
    options.goal = 3;
    options.deadline = std::chrono::milliseconds(1000);
    options.train = Train();
    options.signing_key = &*key_;
    options.initial_model = initial_;
    options.seed = 7;
    return options;
  }

  absl::StatusOr<std::unique_ptr<RoundCoordinator>> Start(RoundCoordinatorOptions options,
                                                          StateStore* store = nullptr) {
    return RoundCoordinator::Start(std::move(options), store != nullptr ? store : &store_, &clock_,
                                   &listener_, &metrics_);
  }

  static void MarkAll(RoundCoordinator& c, int devices) {
    for (int i = 0; i < devices; ++i) c.MarkAvailable(Id(i));
  }

  // The cohort of the open round: the devices with a training task.
  static std::vector<v1::Task> Tasks(const RoundCoordinator& c, int devices) {
    std::vector<v1::Task> tasks;
    for (int i = 0; i < devices; ++i) {
      absl::StatusOr<v1::Task> task = c.TaskFor(Id(i));
      if (task.ok()) tasks.push_back(*task);
    }
    return tasks;
  }

  // base + the example-weighted mean of the given devices' deltas (FedAvg).
  static std::vector<double> WeightedMean(const std::vector<float>& base,
                                          const std::vector<int>& devices, uint64_t round) {
    std::vector<double> expected(base.begin(), base.end());
    double weight = 0.0;
    std::vector<double> sum(4, 0.0);
    for (int d : devices) {
      const std::vector<float> delta = DeltaOf(d, round);
      for (int k = 0; k < 4; ++k) sum[k] += (d + 1) * static_cast<double>(delta[k]);
      weight += d + 1;
    }
    for (int k = 0; k < 4; ++k) expected[k] += sum[k] / weight;
    return expected;
  }

  static std::vector<float> Latest(const RoundCoordinator& c) {
    absl::StatusOr<std::shared_ptr<const ModelVersion>> latest = c.registry().Latest();
    EXPECT_THAT(latest.status(), IsOk());
    return latest.ok() ? (*latest)->parameters : std::vector<float>();
  }

  std::optional<models::SigningKey> key_;
  v1::ModelArtifact initial_;
  ManualClock clock_;
  InMemoryStateStore store_;
  RecordingListener listener_;
  AggregatorMetrics metrics_;
};

}  // namespace fedge::aggregator::coordinator_testing

#endif  // FEDGE_TESTS_AGGREGATOR_COORDINATOR_FIXTURE_H_
