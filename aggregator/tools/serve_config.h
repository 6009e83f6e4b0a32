// ServeConfig: what `fedge-aggregator serve` runs with, and its key table
// (fedge/proto/key_table.h). The `strategy.*`, `train.*` and `privacy.*`
// keys are the groups fedge-sim includes too (fedge/aggregator/shared_keys.h).
#ifndef FEDGE_AGGREGATOR_TOOLS_SERVE_CONFIG_H_
#define FEDGE_AGGREGATOR_TOOLS_SERVE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "fedge/aggregator/secure_aggregation.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/shared_keys.h"
#include "fedge/proto/key_table.h"

namespace fedge::aggregator::tools {

struct ServeConfig {
  AggregatorServerOptions server;
  std::string architecture = "cnn";
  std::vector<int64_t> input_shape = {1, 28, 28};
  int64_t num_classes = 10;
  uint64_t model_seed = 1;
  std::string port_file;
  std::string ops_port_file;
  // Secure-aggregation settings, applied when secure_aggregation is on.
  SecureAggregationOptions secagg;
  // privacy.*: the keys fedge-sim has (shared_keys.h); applied when
  // privacy.mode is not "none".
  PrivacyChoice privacy;
  // The validation set (IDX directory; empty: none) and its size.
  std::string validation_dir;
  int64_t validation_examples = 2000;
};

// The defaults of `serve` before any file or --set: rounds of 2 updates,
// one local epoch of batch 32 at learning rate 0.05.
ServeConfig DefaultServeConfig();

// Every key of `serve`; unknown keys point at `fedge-aggregator --help`.
const config::KeyTable<ServeConfig>& ServeKeys();

}  // namespace fedge::aggregator::tools

#endif  // FEDGE_AGGREGATOR_TOOLS_SERVE_CONFIG_H_
