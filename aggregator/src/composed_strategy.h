// Builds a Strategy out of its two halves: an aggregation rule (which
// accumulator a round uses) and a server optimizer (the Apply step). Every
// built-in strategy is such a pair; the registration files only validate
// options and pick the pair. Private to fedge::aggregator.
#ifndef FEDGE_AGGREGATOR_SRC_COMPOSED_STRATEGY_H_
#define FEDGE_AGGREGATOR_SRC_COMPOSED_STRATEGY_H_

#include <memory>
#include <string>

#include "fedge/aggregator/strategy.h"
#include "server_optimizers.h"
#include "update_accumulators.h"

namespace fedge::aggregator {

// The returned strategy is thread-compatible: NewAccumulator and Restore are
// const and may run concurrently; Apply, RestoreState and SerializeState must
// not run concurrently with each other.
std::unique_ptr<Strategy> NewComposedStrategy(std::string name, const AggregationConfig& config,
                                              std::unique_ptr<ServerOptimizer> optimizer);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_COMPOSED_STRATEGY_H_
