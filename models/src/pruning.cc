#include "fedge/models/pruning.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedge::models {
namespace {

bool IsWeight(const ParameterLayout& p) { return p.shape.size() >= 2 && p.numel > 0; }

// The bias paired with weight tensor `weight` ("x.weight" -> "x.bias", one
// entry per row), or -1.
int FindBias(const std::vector<ParameterLayout>& layout, int weight) {
  const ParameterLayout& w = layout[static_cast<size_t>(weight)];
  constexpr std::string_view kSuffix = "weight";
  if (w.name.size() < kSuffix.size() ||
      w.name.compare(w.name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    return -1;
  }
  const std::string bias = w.name.substr(0, w.name.size() - kSuffix.size()) + "bias";
  for (size_t i = 0; i < layout.size(); ++i) {
    if (layout[i].name == bias && layout[i].shape == std::vector<int64_t>{w.shape[0]}) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

// The `count` smallest of `candidates` by (score, index), in any order.
// REQUIRES: count <= candidates.size().
void SelectSmallest(std::vector<std::pair<float, int64_t>>& candidates, size_t count) {
  if (count == 0 || count >= candidates.size()) return;
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(count - 1),
                   candidates.end());
}

}  // namespace

absl::Status ValidatePruningOptions(const PruningOptions& options) {
  if (!(options.target_sparsity >= 0.0 && options.target_sparsity < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("PruningOptions.target_sparsity is ",
                                                   options.target_sparsity, "; must be in [0, 1)"));
  }
  if (!(options.initial_sparsity >= 0.0 && options.initial_sparsity <= options.target_sparsity)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PruningOptions.initial_sparsity is ", options.initial_sparsity,
                     "; must be in [0, target_sparsity = ", options.target_sparsity, "]"));
  }
  if (options.begin_round < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PruningOptions.begin_round is ", options.begin_round, "; must be >= 1"));
  }
  if (options.end_round < options.begin_round) {
    return absl::InvalidArgumentError(absl::StrCat("PruningOptions.end_round is ",
                                                   options.end_round, "; must be >= begin_round (",
                                                   options.begin_round, ")"));
  }
  if (options.frequency < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PruningOptions.frequency is ", options.frequency, "; must be >= 1"));
  }
  return absl::OkStatus();
}

double ScheduledSparsity(const PruningOptions& options, int64_t round) {
  if (round < options.begin_round) return 0.0;
  if (round >= options.end_round) return options.target_sparsity;
  // The last pruning step at or before `round`.
  const int64_t step =
      options.begin_round + (round - options.begin_round) / options.frequency * options.frequency;
  const double progress = static_cast<double>(step - options.begin_round) /
                          static_cast<double>(options.end_round - options.begin_round);
  const double remaining = 1.0 - progress;
  return options.target_sparsity +
         (options.initial_sparsity - options.target_sparsity) * remaining * remaining * remaining;
}

absl::StatusOr<MagnitudePruner> MagnitudePruner::Create(const PruningOptions& options,
                                                        std::vector<ParameterLayout> layout) {
  if (absl::Status s = ValidatePruningOptions(options); !s.ok()) return s;
  int last_weight = -1;
  for (size_t i = 0; i < layout.size(); ++i) {
    if (IsWeight(layout[i])) last_weight = static_cast<int>(i);
  }
  if (last_weight < 0) {
    return absl::InvalidArgumentError("the model has no weight tensor (rank >= 2) to prune");
  }
  std::vector<Channel> channels;
  if (options.structured) {
    for (int t = 0; t < last_weight; ++t) {
      const ParameterLayout& w = layout[static_cast<size_t>(t)];
      if (!IsWeight(w)) continue;
      const int bias = FindBias(layout, t);
      const int64_t rows = w.shape[0];
      for (int64_t r = 0; r < rows; ++r) {
        Channel c;
        c.row_size = w.numel / rows;
        c.weight_offset = w.offset + r * c.row_size;
        c.bias_offset = bias < 0 ? -1 : layout[static_cast<size_t>(bias)].offset + r;
        c.tensor = t;
        channels.push_back(c);
      }
    }
    if (channels.empty()) {
      return absl::InvalidArgumentError(
          "structured pruning needs a weight layer before the classifier; this model has none");
    }
  }
  return MagnitudePruner(options, std::move(layout), std::move(channels));
}

MagnitudePruner::MagnitudePruner(const PruningOptions& options, std::vector<ParameterLayout> layout,
                                 std::vector<Channel> channels)
    : options_(options),
      layout_(std::move(layout)),
      channels_(std::move(channels)),
      channel_pruned_(channels_.size(), 0),
      kept_(static_cast<size_t>(LayoutSize(layout_)), 1) {
  for (const ParameterLayout& p : layout_) {
    if (IsWeight(p)) num_weights_ += p.numel;
  }
}

double MagnitudePruner::sparsity() const {
  return static_cast<double>(pruned_weights_) / static_cast<double>(num_weights_);
}

absl::Status MagnitudePruner::Prune(int64_t round, std::span<float> parameters) {
  if (parameters.size() != kept_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot prune ", parameters.size(),
                                                   " parameters with a pruner for ", kept_.size()));
  }
  const double target = ScheduledSparsity(options_, round);
  if (options_.structured) {
    PruneChannels(target, parameters);
  } else {
    PruneWeights(target, parameters);
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (kept_[i] == 0) parameters[i] = 0.0f;
  }
  return absl::OkStatus();
}

void MagnitudePruner::PruneWeights(double sparsity, std::span<const float> parameters) {
  const auto wanted =
      static_cast<int64_t>(std::llround(sparsity * static_cast<double>(num_weights_)));
  if (wanted <= pruned_weights_) return;
  std::vector<std::pair<float, int64_t>> candidates;
  candidates.reserve(static_cast<size_t>(num_weights_ - pruned_weights_));
  for (const ParameterLayout& p : layout_) {
    if (!IsWeight(p)) continue;
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
      if (kept_[static_cast<size_t>(i)]) {
        candidates.emplace_back(std::fabs(parameters[static_cast<size_t>(i)]), i);
      }
    }
  }
  const auto count = static_cast<size_t>(wanted - pruned_weights_);
  SelectSmallest(candidates, count);
  for (size_t j = 0; j < count; ++j) kept_[static_cast<size_t>(candidates[j].second)] = 0;
  pruned_weights_ = wanted;
}

void MagnitudePruner::PruneChannels(double sparsity, std::span<const float> parameters) {
  // channels_ lists each prunable layer's rows together, in layout order.
  for (size_t begin = 0; begin < channels_.size();) {
    const int tensor = channels_[begin].tensor;
    size_t end = begin;
    int64_t already = 0;
    while (end < channels_.size() && channels_[end].tensor == tensor)
      already += channel_pruned_[end++];
    const auto rows = static_cast<int64_t>(end - begin);
    // The same fraction of every layer, and never its last channel.
    const int64_t wanted = std::min(
        rows - 1, static_cast<int64_t>(std::llround(sparsity * static_cast<double>(rows))));
    if (wanted > already) {
      std::vector<std::pair<float, int64_t>> candidates;
      for (size_t c = begin; c < end; ++c) {
        if (channel_pruned_[c]) continue;
        const Channel& ch = channels_[c];
        double sum = 0.0;
        for (int64_t i = ch.weight_offset; i < ch.weight_offset + ch.row_size; ++i) {
          sum += static_cast<double>(parameters[static_cast<size_t>(i)]) *
                 parameters[static_cast<size_t>(i)];
        }
        candidates.emplace_back(static_cast<float>(std::sqrt(sum)), static_cast<int64_t>(c));
      }
      const auto count = static_cast<size_t>(wanted - already);
      SelectSmallest(candidates, count);
      for (size_t k = 0; k < count; ++k) {
        const size_t c = static_cast<size_t>(candidates[k].second);
        const Channel& ch = channels_[c];
        channel_pruned_[c] = 1;
        std::fill_n(kept_.begin() + ch.weight_offset, ch.row_size, 0);
        if (ch.bias_offset >= 0) kept_[static_cast<size_t>(ch.bias_offset)] = 0;
        pruned_weights_ += ch.row_size;
      }
      pruned_channels_ += static_cast<int64_t>(count);
    }
    begin = end;
  }
}

}  // namespace fedge::models
