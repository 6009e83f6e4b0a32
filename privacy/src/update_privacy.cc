#include "fedge/privacy/update_privacy.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/privacy/clipping.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/proto/status_macros.h"

namespace fedge::privacy {
namespace {

// Integers up to 2^52 are exact in a double and far from int64 overflow
// after noise is added.
constexpr double kMaxIntegerMagnitude = 4503599627370496.0;

}  // namespace

std::string_view PrivacyModeName(PrivacyMode mode) {
  switch (mode) {
    case PrivacyMode::kNone:
      return "none";
    case PrivacyMode::kCentral:
      return "central";
    case PrivacyMode::kLocal:
      return "local";
    case PrivacyMode::kDistributed:
      return "distributed";
  }
  return "unknown";
}

absl::StatusOr<PrivacyMode> ParsePrivacyMode(std::string_view name) {
  for (PrivacyMode mode : {PrivacyMode::kNone, PrivacyMode::kCentral, PrivacyMode::kLocal,
                           PrivacyMode::kDistributed}) {
    if (name == PrivacyModeName(mode)) return mode;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown privacy mode '", std::string(name),
                                                 "'; known: none, central, local, distributed"));
}

double IntegerSensitivity(double clip_norm, double integer_scale, std::size_t dimension) {
  return integer_scale * clip_norm + std::sqrt(static_cast<double>(dimension));
}

absl::StatusOr<PrivatizedUpdate> PrivatizeUpdate(const ClientPrivacy& privacy,
                                                 std::span<float> update, RandomSource& random) {
  if (!(privacy.clip_norm >= 0.0) || !std::isfinite(privacy.clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("privacy clip_norm must be finite and >= 0, got ", privacy.clip_norm));
  }
  if (privacy.norm != 1 && privacy.norm != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("privacy clip norm type must be 1 or 2, got ", privacy.norm));
  }
  const bool noised = !privacy.mechanism.empty() && privacy.mechanism != "none";
  std::unique_ptr<Mechanism> mechanism;
  if (noised) {
    if (!(privacy.clip_norm > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mechanism '", privacy.mechanism, "' needs a clip_norm > 0 to bound its sensitivity"));
    }
    MechanismOptions options;
    options.noise_multiplier = privacy.noise_multiplier;
    options.l1_sensitivity = privacy.clip_norm;
    options.l2_sensitivity = privacy.clip_norm;
    options.relation = NeighbouringRelation::kDevice;
    FEDGE_ASSIGN_OR_RETURN(mechanism, CreateMechanism(privacy.mechanism, options));
    if (mechanism->sensitivity_norm() != privacy.norm) {
      return absl::InvalidArgumentError(
          absl::StrCat("mechanism '", privacy.mechanism, "' is calibrated to an L",
                       mechanism->sensitivity_norm(), " sensitivity but the update is clipped in L",
                       privacy.norm));
    }
    if (mechanism->integer_valued()) {
      if (!(privacy.integer_scale > 0.0) || !std::isfinite(privacy.integer_scale)) {
        return absl::InvalidArgumentError(absl::StrCat("integer mechanism '", privacy.mechanism,
                                                       "' needs integer_scale > 0, got ",
                                                       privacy.integer_scale));
      }
      // After clipping every |x_i| <= C, so |γ x_i| <= γC: check it before
      // anything is changed.
      if (!(privacy.integer_scale * privacy.clip_norm < kMaxIntegerMagnitude)) {
        return absl::InvalidArgumentError(
            absl::StrCat("integer_scale ", privacy.integer_scale, " times clip_norm ",
                         privacy.clip_norm, " is too large for exact integers (limit 2^52)"));
      }
      options.l2_sensitivity =
          IntegerSensitivity(privacy.clip_norm, privacy.integer_scale, update.size());
      options.l1_sensitivity = options.l2_sensitivity;
      FEDGE_ASSIGN_OR_RETURN(mechanism, CreateMechanism(privacy.mechanism, options));
    }
  }

  PrivatizedUpdate result;
  if (privacy.clip_norm > 0.0) {
    result.norm_before_clip = privacy.norm == 1 ? L1Norm(update) : L2Norm(update);
    result.within_bound = result.norm_before_clip <= privacy.clip_norm;
    FEDGE_RETURN_IF_ERROR((privacy.norm == 1 ? ClipL1(update, privacy.clip_norm)
                                             : ClipL2(update, privacy.clip_norm))
                              .status());
  }
  if (!noised) return result;
  if (!mechanism->integer_valued()) {
    FEDGE_RETURN_IF_ERROR(mechanism->AddNoise(update, random));
    return result;
  }

  // Fixed point: scale, round stochastically (unbiased), noise, unscale.
  const double scale = privacy.integer_scale;
  std::vector<int64_t> integers(update.size());
  for (std::size_t i = 0; i < update.size(); ++i) {
    const double scaled = static_cast<double>(update[i]) * scale;
    const double floor = std::floor(scaled);
    integers[i] = static_cast<int64_t>(floor) + (UniformOpen01(random) < scaled - floor ? 1 : 0);
  }
  FEDGE_RETURN_IF_ERROR(mechanism->AddNoise(std::span<int64_t>(integers), random));
  for (std::size_t i = 0; i < update.size(); ++i) {
    update[i] = static_cast<float>(static_cast<double>(integers[i]) / scale);
  }
  return result;
}

}  // namespace fedge::privacy
