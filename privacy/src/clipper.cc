// Built-in clippers ("fixed", "adaptive") and the clipper registry.
#include "fedge/privacy/clipper.h"

#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fedge/privacy/clipping.h"
#include "fedge/proto/registry.h"
#include "fedge/proto/status_macros.h"

namespace fedge::privacy {
namespace {

absl::Status ValidateCommon(const ClipperOptions& options) {
  if (!(options.clip_norm > 0.0) || !std::isfinite(options.clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClipperOptions.clip_norm must be finite and > 0, got ", options.clip_norm));
  }
  if (options.norm != 1 && options.norm != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClipperOptions.norm must be 1 or 2, got ", options.norm));
  }
  return absl::OkStatus();
}

class FixedClipper final : public Clipper {
 public:
  explicit FixedClipper(const ClipperOptions& options)
      : Clipper(options.norm), clip_norm_(options.clip_norm) {}
  std::string_view name() const override { return "fixed"; }
  double clip_norm() const override { return clip_norm_; }
  void RecordCounts(int64_t, int64_t) override {}
  absl::StatusOr<double> EndRound(RandomSource&, double) override { return clip_norm_; }
  absl::StatusOr<double> SumNoiseMultiplier(double target) const override { return target; }
  std::string Serialize() const override { return "fedge.fixed_clipper.v1"; }
  absl::Status Restore(std::string_view serialized) override {
    if (serialized != "fedge.fixed_clipper.v1") {
      return absl::InvalidArgumentError("not a fixed clipper state");
    }
    return absl::OkStatus();
  }

 private:
  double clip_norm_;
};

class QuantileClipper final : public Clipper {
 public:
  QuantileClipper(const ClipperOptions& options, AdaptiveClipper clipper)
      : Clipper(options.norm),
        count_noise_stddev_(options.count_noise_stddev),
        clipper_(std::move(clipper)) {}
  std::string_view name() const override { return "adaptive"; }
  double clip_norm() const override { return clipper_.clip_norm(); }
  void RecordCounts(int64_t updates, int64_t within_bound) override {
    clipper_.RecordCounts(updates, within_bound);
  }
  absl::StatusOr<double> EndRound(RandomSource& random, double expected_updates) override {
    if (clipper_.updates() > 0) {
      FEDGE_RETURN_IF_ERROR(clipper_.EndRound(random, expected_updates).status());
    }
    return clipper_.clip_norm();
  }
  absl::StatusOr<double> SumNoiseMultiplier(double target) const override {
    if (!(target > 0.0) || !std::isfinite(target)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the target noise multiplier must be finite and > 0, got ", target));
    }
    const double count_term = 1.0 / (4.0 * count_noise_stddev_ * count_noise_stddev_);
    const double remaining = 1.0 / (target * target) - count_term;
    if (!(remaining > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "adaptive clipping: the count noise std ", count_noise_stddev_,
          " is too small for noise multiplier ", target, " (needs 2 * count_noise_stddev > ",
          target, "; Andrew et al. suggest about clients_per_round / 20)"));
    }
    return 1.0 / std::sqrt(remaining);
  }
  std::string Serialize() const override { return clipper_.Serialize(); }
  absl::Status Restore(std::string_view serialized) override {
    return clipper_.Restore(serialized);
  }

 private:
  double count_noise_stddev_;
  AdaptiveClipper clipper_;
};

absl::StatusOr<std::unique_ptr<Clipper>> MakeFixed(const ClipperOptions& options) {
  FEDGE_RETURN_IF_ERROR(ValidateCommon(options));
  return std::make_unique<FixedClipper>(options);
}

absl::StatusOr<std::unique_ptr<Clipper>> MakeAdaptive(const ClipperOptions& options) {
  FEDGE_RETURN_IF_ERROR(ValidateCommon(options));
  if (!(options.count_noise_stddev > 0.0) || !std::isfinite(options.count_noise_stddev)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClipperOptions.count_noise_stddev must be finite and > 0 for adaptive "
                     "clipping (a noiseless count would make the bound itself not private), got ",
                     options.count_noise_stddev));
  }
  AdaptiveClipperOptions adaptive;
  adaptive.initial_clip_norm = options.clip_norm;
  adaptive.target_quantile = options.target_quantile;
  adaptive.learning_rate = options.learning_rate;
  adaptive.count_noise_stddev = options.count_noise_stddev;
  FEDGE_ASSIGN_OR_RETURN(AdaptiveClipper clipper, AdaptiveClipper::Create(adaptive));
  return std::make_unique<QuantileClipper>(options, std::move(clipper));
}

Registry<ClipperFactory>& Clippers() {
  static auto* registry = new Registry<ClipperFactory>("clipper");
  return *registry;
}

[[maybe_unused]] const bool kFixedRegistered = RegisterClipper("fixed", MakeFixed);
[[maybe_unused]] const bool kAdaptiveRegistered = RegisterClipper("adaptive", MakeAdaptive);

}  // namespace

absl::StatusOr<bool> Clipper::Clip(std::span<float> update) const {
  const double bound = clip_norm();
  if (norm_ == 1) {
    const bool within = L1Norm(update) <= bound;
    FEDGE_RETURN_IF_ERROR(ClipL1(update, bound).status());
    return within;
  }
  const bool within = L2Norm(update) <= bound;
  FEDGE_RETURN_IF_ERROR(ClipL2(update, bound).status());
  return within;
}

absl::StatusOr<std::unique_ptr<Clipper>> CreateClipper(std::string_view name,
                                                       const ClipperOptions& options) {
  FEDGE_ASSIGN_OR_RETURN(ClipperFactory factory, Clippers().Find(name));
  return factory(options);
}

bool RegisterClipper(std::string_view name, ClipperFactory factory) {
  return Clippers().Add(name, std::move(factory));
}

std::vector<std::string> RegisteredClippers() { return Clippers().Names(); }

}  // namespace fedge::privacy
