#include "composed_strategy.h"

#include <utility>

namespace fedge::aggregator {
namespace {

class ComposedStrategy final : public Strategy {
 public:
  ComposedStrategy(std::string name, const AggregationConfig& config,
                   std::unique_ptr<ServerOptimizer> optimizer)
      : name_(std::move(name)), config_(config), optimizer_(std::move(optimizer)) {}

  std::string_view name() const override { return name_; }

  std::unique_ptr<UpdateAccumulator> NewAccumulator(std::size_t dimension) const override {
    return NewUpdateAccumulator(config_, dimension);
  }

  absl::StatusOr<std::unique_ptr<UpdateAccumulator>> Restore(
      std::string_view serialized) const override {
    return RestoreUpdateAccumulator(config_, serialized);
  }

  absl::Status Apply(std::span<const float> aggregated_delta, std::span<float> global) override {
    return optimizer_->Apply(aggregated_delta, global);
  }

  std::string SerializeState() const override { return optimizer_->SerializeState(); }

  absl::Status RestoreState(std::string_view serialized) override {
    return optimizer_->RestoreState(serialized);
  }

 private:
  std::string name_;
  AggregationConfig config_;
  std::unique_ptr<ServerOptimizer> optimizer_;
};

}  // namespace

std::unique_ptr<Strategy> NewComposedStrategy(std::string name, const AggregationConfig& config,
                                              std::unique_ptr<ServerOptimizer> optimizer) {
  return std::make_unique<ComposedStrategy>(std::move(name), config, std::move(optimizer));
}

}  // namespace fedge::aggregator
