// The configuration of fedge-client: the device keys it shares with the C
// API (fedge/client/device_config.h), the keys choosing its data, and the
// command-line flags, each of which sets one key.
#ifndef FEDGE_CLIENT_TOOLS_CLIENT_CONFIG_H_
#define FEDGE_CLIENT_TOOLS_CLIENT_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/client/device_config.h"
#include "fedge/client/drift_monitor.h"
#include "fedge/proto/key_table.h"
#include "fedge/data/drift_scenario.h"
#include "fedge/data/partition.h"

namespace fedge::client::tools {

struct ClientToolConfig {
  DeviceConfig device;
  // The IDX dataset whose training split is partitioned.
  std::string data_dir;
  // The partition fedge-sim makes of the training split for
  // partition.num_clients clients; this device trains on part `shard`.
  data::PartitionOptions partition;
  int shard = 0;
  // How the device reaches the aggregator: a registered client transport
  // (fedge/client/transport_registry.h). Default: grpc.
  std::string transport = "grpc";
  // Fault injection for tests (fault.secagg_drops, "ROUND:PHASE,..."): the
  // secure-aggregation phase this device drops out at, by round.
  std::map<uint64_t, int> secagg_drops;
  // Drift monitoring (monitor.enabled): the DeviceRunner's DriftMonitor on
  // the device's own data after each task, reporting drift to the
  // aggregator; its state is kept in the state directory.
  bool monitor = false;
  // Its detectors (monitor.detectors; DriftMonitorOptions' names).
  std::vector<std::string> monitor_detectors =
      DriftMonitorOptions{}.detectors;
  // Fault injection for tests (fault.drift*): from the task of round
  // drift.round on, the device's data is a drifted copy (rotation, noise or
  // label-swap, as fedge-sim's drift scenarios).
  data::DriftScenarioOptions drift;
};

// Parses fault.secagg_drops: "" or "ROUND:PHASE[,ROUND:PHASE...]" with
// ROUND >= 1 and PHASE in 1..4. INVALID_ARGUMENT names the bad entry.
absl::StatusOr<std::map<uint64_t, int>> ParseSecAggDrops(const std::string& text);

// Defaults: Fashion-MNIST, shard 0 of 1, dirichlet(0.5), seed 1, a
// 10-second long poll; state_dir empty (./fedge-device-ID).
ClientToolConfig DefaultClientToolConfig();

const config::KeyTable<ClientToolConfig>& ClientToolKeys();

// The --help text: usage, the flags with the keys they set, every key.
std::string ClientToolHelp();

// Applies the command line (no --help in it): the --config files first, then
// --set and the flags in order, then checks the result and fills the
// default state_dir. INVALID_ARGUMENT naming the flag or key.
absl::StatusOr<ClientToolConfig> LoadClientToolConfig(const std::vector<std::string>& args);

}  // namespace fedge::client::tools

#endif  // FEDGE_CLIENT_TOOLS_CLIENT_CONFIG_H_
