// What simulated devices see when drift is injected or monitored: each
// client's clean and drifted data, the stream its model classifies, its
// DriftMonitor, and the figures drift.json reports. Internal to fedge::sim.
//
// With drift or monitoring on, the train store holds the clean split followed
// by its drifted copy (indices n..2n-1), so a drifted client's data moves by
// re-pointing its indices. What a client's model sees at inference (its
// stream) is fresh data from the client's own distribution: examples of the
// whole train split drawn with the client's class mix (the label-shifted mix
// once a label-shift drift has started), moved to the drifted copy like the
// client's own data. With a natural partition (devices that differ in their
// inputs, not only in their labels) the stream resamples the client's own
// examples instead. Reference windows come from the client's own examples.
#ifndef FEDGE_SIMULATIONS_SRC_DRIFT_STREAMS_H_
#define FEDGE_SIMULATIONS_SRC_DRIFT_STREAMS_H_

#include <torch/torch.h>

#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/client/device_client.h"
#include "fedge/client/drift_monitor.h"
#include "fedge/client/local_data.h"
#include "fedge/client/trainer.h"
#include "fedge/client/transport.h"
#include "fedge/data/dataset.h"
#include "fedge/data/partition.h"
#include "fedge/models/model_instance.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/report.h"
#include "fedge/simulations/worker_pool.h"
#include "fedge/v1/drift.pb.h"

namespace fedge::simulations::internal {

struct ClientDrift {
  std::vector<int32_t> train;         // clean indices
  std::vector<double> class_weights;  // the client's class mix
  std::vector<int32_t> shifted;       // label-shift: replacements of train, by position
  bool drifted = false;
  std::vector<int32_t> reference;  // reference window (store indices)
  std::unique_ptr<client::DriftMonitor> monitor;
  uint64_t samples_at_injection = 0;
  struct Alarm {
    std::string key;
    int round;
    uint64_t samples;
  };
  std::vector<Alarm> alarms;
  // Stream accuracy of the global model and of the fine-tuned one, per fine-tune.
  std::vector<std::pair<double, double>> fine_tunes;
};

struct DriftSetup {
  bool active = false;  // drift injected or monitoring on
  bool label_shift = false;
  // Streams resample the client's own examples instead of its class mix
  // (natural partitions, whose devices differ in their inputs too).
  bool own_stream = false;
  int64_t clean_size = 0;  // n: size of the clean half
  uint64_t seed = 0;
  std::vector<ClientDrift> clients;  // by partition entry
  std::shared_ptr<const client::ExampleStore> drifted_test;
  std::vector<std::vector<int32_t>> by_class;  // clean train indices of each class
  int features = 0;
};

// Chooses the drifted clients of `partition`, their shifted indices, builds
// the drifted test store and appends the drifted copy of the train split to
// data.train (covariate drift). With drift and monitoring off, `drift` stays
// inactive and nothing changes.
absl::Status PrepareDrift(const SimulationConfig& config, const data::Partition& partition,
                          data::TrainTest& data, DriftSetup& drift);

// The indices client `c` trains on in a round where `share` of its data is
// drifted.
std::vector<int32_t> CurrentIndices(const DriftSetup& setup, const ClientDrift& c, double share);

// Creates the DriftMonitor of every client with data (`partition_of[k]` is
// client k's partition entry, `ids[k]` its id), with its reference window.
absl::Status CreateMonitors(const SimulationConfig& config, const std::vector<std::string>& ids,
                            const std::vector<size_t>& partition_of,
                            const client::ExampleStore& train,
                            const std::vector<int64_t>& example_shape, DriftSetup& drift);

// What one round of monitoring needs.
struct MonitorRound {
  const SimulationConfig* config = nullptr;
  std::shared_ptr<const client::ExampleStore> train;
  std::vector<client::DeviceClient>* clients = nullptr;
  const std::vector<size_t>* partition_of = nullptr;
  std::vector<std::unique_ptr<models::ModelInstance>>* replicas = nullptr;
  WorkerPool* pool = nullptr;
  client::ClientTransport* transport = nullptr;
  const client::Trainer* trainer = nullptr;
};

// Every monitored client runs `parameters` (version `version`) on its
// stream of regular round `round` and feeds its DriftMonitor; reports go to
// the aggregator through the transport, and a reporting client fine-tunes
// on its recent data and takes it as its new reference. Returns the number
// of reports sent.
absl::StatusOr<int> MonitorClients(const MonitorRound& run, int round, uint64_t version,
                                   const std::vector<float>& parameters, DriftSetup& drift);

// drift.json's figures at the end of the run: detection per detector,
// recovery, fine-tunes.
void FinishDriftSummary(const SimulationConfig& config, const DriftSetup& drift,
                        const std::vector<size_t>& partition_of, DriftRunSummary& summary);

}  // namespace fedge::simulations::internal

#endif  // FEDGE_SIMULATIONS_SRC_DRIFT_STREAMS_H_
