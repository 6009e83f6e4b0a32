#include "fedge/aggregator/private_aggregation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/privacy/clipping.h"
#include "fedge/proto/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace fedge::aggregator {
namespace {

using privacy::PrivacyMode;

constexpr double kInf = std::numeric_limits<double>::infinity();

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("privacy: ", message));
}

v1::PrivacyConfig::Mode ProtoMode(PrivacyMode mode) {
  switch (mode) {
    case PrivacyMode::kNone:
      return v1::PrivacyConfig::MODE_NONE;
    case PrivacyMode::kCentral:
      return v1::PrivacyConfig::MODE_CENTRAL;
    case PrivacyMode::kLocal:
      return v1::PrivacyConfig::MODE_LOCAL;
    case PrivacyMode::kDistributed:
      return v1::PrivacyConfig::MODE_DISTRIBUTED;
  }
  return v1::PrivacyConfig::MODE_NONE;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrivateAggregation>> PrivateAggregation::Create(
    const PrivateAggregationOptions& options, std::size_t dimension) {
  if (options.mode == PrivacyMode::kNone) {
    return Invalid("mode 'none' needs no PrivateAggregation");
  }
  if (!(options.noise_multiplier > 0.0) || !std::isfinite(options.noise_multiplier)) {
    return Invalid(
        absl::StrCat("noise_multiplier must be finite and > 0, got ", options.noise_multiplier));
  }
  if (!(options.sampling_rate > 0.0 && options.sampling_rate <= 1.0)) {
    return Invalid(absl::StrCat("sampling_rate must be in (0, 1], got ", options.sampling_rate));
  }
  if (!(options.expected_cohort > 0.0) || !std::isfinite(options.expected_cohort)) {
    return Invalid(
        absl::StrCat("expected_cohort must be finite and > 0, got ", options.expected_cohort));
  }
  if (!(options.delta > 0.0 && options.delta < 1.0)) {
    return Invalid(absl::StrCat("delta must be in (0, 1), got ", options.delta));
  }
  if (!(options.epsilon_budget >= 0.0) || std::isnan(options.epsilon_budget)) {
    return Invalid(absl::StrCat("epsilon_budget must be >= 0, got ", options.epsilon_budget));
  }
  if (!(options.integer_scale >= 0.0) || !std::isfinite(options.integer_scale)) {
    return Invalid(
        absl::StrCat("integer_scale must be finite and >= 0, got ", options.integer_scale));
  }
  if (dimension == 0) return Invalid("the model has no parameters");

  privacy::MechanismOptions mechanism_options;
  mechanism_options.noise_multiplier = options.noise_multiplier;
  mechanism_options.l2_sensitivity = options.clipper_options.clip_norm;
  mechanism_options.l1_sensitivity = options.clipper_options.clip_norm;
  mechanism_options.relation = privacy::NeighbouringRelation::kDevice;
  mechanism_options.delta = options.delta;
  mechanism_options.params = options.mechanism_params;
  if (!(options.clipper_options.clip_norm > 0.0)) {
    return Invalid(absl::StrCat("clip_norm must be > 0, got ", options.clipper_options.clip_norm));
  }
  FEDGE_ASSIGN_OR_RETURN(auto mechanism,
                         privacy::CreateMechanism(options.mechanism, mechanism_options));

  const std::string name(mechanism->name());
  if (options.mode == PrivacyMode::kCentral && mechanism->integer_valued()) {
    return Invalid(absl::StrCat("mechanism '", name,
                                "' noises integers; use it with mode 'distributed' (each client "
                                "noises its fixed-point update) or 'local', or use 'gaussian'"));
  }
  if (options.mode == PrivacyMode::kDistributed && !mechanism->divisible()) {
    return Invalid(absl::StrCat("mechanism '", name,
                                "' cannot be split into per-client shares that add up to its "
                                "noise; distributed mode needs gaussian or discrete-gaussian"));
  }
  // What the mechanism states it costs (never the config alone: see
  // privacy::MechanismAccounting).
  const absl::StatusOr<privacy::MechanismAccounting> stated = mechanism->accounting();
  if (!stated.ok() && options.epsilon_budget > 0.0) {
    return Invalid(absl::StrCat("mechanism '", name,
                                "' states no guarantee an accountant can compose (accounting(): ",
                                stated.status().message(),
                                "), so it cannot run under an epsilon budget"));
  }
  if (stated.ok() && !stated->accountant.empty() &&
      (!(stated->noise_multiplier > 0.0) || !std::isfinite(stated->noise_multiplier))) {
    return Invalid(absl::StrCat("mechanism '", name, "' states noise multiplier ",
                                stated->noise_multiplier, " for accountant '", stated->accountant,
                                "' (must be finite and > 0)"));
  }
  // The clipper's count release is a Gaussian, accounted in RDP with the sum:
  // it composes with any mechanism that states an RDP bound.
  const bool gaussian_accounting =
      stated.ok() && (stated->accountant == "rdp" || stated->accountant == "zcdp");
  if (options.clipper != "fixed" && !gaussian_accounting) {
    return Invalid(absl::StrCat(
        "clipper '", options.clipper, "' releases a Gaussian count, accounted in RDP with the ",
        "sum; mechanism '", name, "' states ",
        stated.ok() ? absl::StrCat("accountant '", stated->accountant, "'")
                    : std::string("no accountant"),
        " (adaptive clipping needs one that states 'rdp' or 'zcdp')"));
  }

  if (options.clipper != "fixed" && options.mode != PrivacyMode::kCentral) {
    return Invalid(absl::StrCat(
        "clipper '", options.clipper, "' needs the count of updates within the bound, noised by a ",
        "trusted aggregator; in ", std::string(privacy::PrivacyModeName(options.mode)),
        " mode the aggregator is not trusted with it (each client's bit would reach it in the ",
        "clear); use the fixed clipper, or mode 'central'"));
  }

  privacy::ClipperOptions clipper_options = options.clipper_options;
  clipper_options.norm = mechanism->sensitivity_norm();
  FEDGE_ASSIGN_OR_RETURN(auto clipper, privacy::CreateClipper(options.clipper, clipper_options));
  // The count noise must leave room for the sum's noise (adaptive).
  FEDGE_RETURN_IF_ERROR(clipper->SumNoiseMultiplier(options.noise_multiplier).status());

  std::unique_ptr<privacy::RandomSource> random;
  if (options.seeded_random) {
    random = std::make_unique<privacy::SeededRandom>(options.seed);
  } else {
    random = std::make_unique<privacy::SecureRandom>();
  }
  auto aggregation = std::unique_ptr<PrivateAggregation>(new PrivateAggregation(
      options, dimension, std::move(mechanism), std::move(clipper), std::move(random)));
  if (!stated.ok() || stated->accountant.empty()) {
    aggregation->epsilon_ = kInf;  // "none", or no statement: no privacy claimed
  } else {
    FEDGE_ASSIGN_OR_RETURN(aggregation->accountant_, privacy::CreateAccountant(stated->accountant));
    aggregation->accounting_scale_ = stated->noise_multiplier / options.noise_multiplier;
  }
  return aggregation;
}

PrivateAggregation::PrivateAggregation(const PrivateAggregationOptions& options,
                                       std::size_t dimension,
                                       std::unique_ptr<privacy::Mechanism> mechanism,
                                       std::unique_ptr<privacy::Clipper> clipper,
                                       std::unique_ptr<privacy::RandomSource> random)
    : options_(options),
      dimension_(dimension),
      mechanism_(std::move(mechanism)),
      clipper_(std::move(clipper)),
      random_(std::move(random)) {
  integer_scale_ = options.integer_scale > 0.0 ? options.integer_scale
                                               : 20.0 * std::sqrt(static_cast<double>(dimension)) /
                                                     options.clipper_options.clip_norm;
}

absl::StatusOr<double> PrivateAggregation::AccountedNoise(std::size_t cohort_size,
                                                          std::size_t participants) const {
  const double target = options_.noise_multiplier;
  // What the mechanism states it adds, per unit of the noise asked of it.
  const double scale = accounting_scale_;
  // Local: a device's update against any other it could have sent (the
  // replace relation), 2C apart.
  if (options_.mode == PrivacyMode::kLocal) return scale * target / 2.0;
  // Central, with a mechanism that adds what it was asked: the noise that,
  // together with the clipper's count, costs as much as one release with
  // the target (exactly the target, as the formula below gives it).
  if (options_.mode == PrivacyMode::kCentral && scale == 1.0) return target;
  // The sum's noise and the clipper's count release (adaptive clipping)
  // compose in RDP: 1/z² = 1/z_sum² + count_term. Distributed: the sum
  // carries k shares of m; for k = m and a Gaussian that is the target again.
  FEDGE_ASSIGN_OR_RETURN(const double z_sum, clipper_->SumNoiseMultiplier(target));
  const double count_term = 1.0 / (target * target) - 1.0 / (z_sum * z_sum);
  const double k = options_.mode == PrivacyMode::kDistributed
                       ? static_cast<double>(std::min(participants, cohort_size))
                       : 1.0;
  const double m = options_.mode == PrivacyMode::kDistributed ? static_cast<double>(cohort_size)
                                                              : 1.0;
  const double z_carried = scale * z_sum * std::sqrt(k / m);
  double rho = 1.0 / (2.0 * z_carried * z_carried) + count_term / 2.0;
  if (options_.mode == PrivacyMode::kDistributed && mechanism_->integer_valued()) {
    // Kairouz et al. 2021, Theorem 1: the sum of k discrete Gaussians with
    // std s each is (Δ²/(2ks²) + τ·d)-zCDP, τ = 10 Σ_{j<k} exp(-2π² s² j/(j+1)).
    const double sensitivity =
        privacy::IntegerSensitivity(clipper_->clip_norm(), integer_scale_, dimension_);
    const double share_std = z_sum / std::sqrt(m) * sensitivity;
    double tau = 0.0;
    for (double j = 1.0; j < k; j += 1.0) {
      tau += 10.0 * std::exp(-2.0 * std::numbers::pi * std::numbers::pi * share_std * share_std *
                             j / (j + 1.0));
    }
    rho += tau * static_cast<double>(dimension_);
  }
  return 1.0 / std::sqrt(2.0 * rho);
}

absl::StatusOr<double> PrivateAggregation::EpsilonAfter(double z,
                                                        int64_t local_participations) const {
  if (accountant_ == nullptr) return kInf;
  FEDGE_ASSIGN_OR_RETURN(auto scratch, privacy::CreateAccountant(accountant_->name()));
  if (options_.mode == PrivacyMode::kLocal) {
    // Each device's own releases, at full rate: the aggregator sees whose
    // update is whose, so sampling does not hide participation.
    FEDGE_RETURN_IF_ERROR(scratch->Step(1.0, z, local_participations));
  } else {
    FEDGE_RETURN_IF_ERROR(scratch->Restore(accountant_->Serialize()));
    FEDGE_RETURN_IF_ERROR(scratch->Step(options_.sampling_rate, z, 1));
  }
  return scratch->Epsilon(options_.delta);
}

absl::Status PrivateAggregation::CheckBudget(const std::vector<std::string>& cohort) const {
  return CheckBudgetFor(cohort.size(), cohort);
}

absl::Status PrivateAggregation::CheckBudgetFor(
    std::size_t cohort_size, const std::vector<std::string>& participants) const {
  if (options_.epsilon_budget <= 0.0) return absl::OkStatus();
  int64_t most = max_participations_;
  if (options_.mode == PrivacyMode::kLocal) {
    for (const std::string& client : participants) {
      auto it = participations_.find(client);
      most = std::max<int64_t>(most, (it == participations_.end() ? 0 : it->second) + 1);
    }
  }
  FEDGE_ASSIGN_OR_RETURN(const double z,
                         AccountedNoise(cohort_size, std::max<std::size_t>(participants.size(), 1)));
  FEDGE_ASSIGN_OR_RETURN(const double after, EpsilonAfter(z, most));
  if (after > options_.epsilon_budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "privacy budget: this round (%d of %d updates, noise multiplier %.4g) would spend epsilon "
        "%.4g in total (delta %g), over the budget of %.4g; %d rounds have spent %.4g",
        static_cast<int>(participants.size()), static_cast<int>(cohort_size), z, after,
        options_.delta, options_.epsilon_budget, rounds_, epsilon_));
  }
  return absl::OkStatus();
}

v1::PrivacyConfig PrivateAggregation::TaskConfig(std::size_t cohort_size) const {
  v1::PrivacyConfig config;
  config.set_mode(ProtoMode(options_.mode));
  // Central: the aggregator clips what it sees, but under secure aggregation
  // it sees only the sum, so the devices clip to the same bound first.
  config.set_clip_norm(clipper_->clip_norm());
  config.set_clip_norm_type(static_cast<uint32_t>(clipper_->norm()));
  // For device floors: the noise the mechanism states it adds.
  config.set_aggregate_noise_multiplier(accounting_scale_ * options_.noise_multiplier);
  if (options_.mode == PrivacyMode::kCentral) return config;
  config.set_mechanism(std::string(mechanism_->name()));
  // SumNoiseMultiplier cannot fail here: Create checked it for this target.
  const double z_sum = *clipper_->SumNoiseMultiplier(options_.noise_multiplier);
  if (options_.mode == PrivacyMode::kLocal) {
    config.set_noise_multiplier(options_.noise_multiplier);
  } else {
    config.set_noise_multiplier(
        z_sum / std::sqrt(static_cast<double>(std::max<std::size_t>(cohort_size, 1))));
  }
  if (mechanism_->integer_valued()) config.set_integer_scale(integer_scale_);
  return config;
}

absl::StatusOr<bool> PrivateAggregation::ClipUpdate(std::span<float> delta,
                                                    double bound) const {
  if (options_.mode == PrivacyMode::kCentral) {
    if (clipper_->norm() == 1) {
      const bool within = privacy::L1Norm(delta) <= bound;
      FEDGE_RETURN_IF_ERROR(privacy::ClipL1(delta, bound).status());
      return within;
    }
    const bool within = privacy::L2Norm(delta) <= bound;
    FEDGE_RETURN_IF_ERROR(privacy::ClipL2(delta, bound).status());
    return within;
  }
  // Local and distributed: the device clipped before noising; the fixed
  // clipper (the only one these modes allow) needs no bit.
  return true;
}

void PrivateAggregation::Record(bool within_bound) { clipper_->Record(within_bound); }

void PrivateAggregation::RecordCounts(int64_t updates, int64_t within_bound) {
  clipper_->RecordCounts(updates, within_bound);
}

absl::Status PrivateAggregation::Finalize(std::span<float> mean, int participants) {
  if (mean.size() != dimension_) {
    return absl::InvalidArgumentError(
        absl::StrCat("privacy: aggregate has ", mean.size(), " entries, expected ", dimension_));
  }
  const double k = static_cast<double>(participants);
  for (float& value : mean) value = static_cast<float>(value * k);
  if (options_.mode == PrivacyMode::kCentral) {
    FEDGE_ASSIGN_OR_RETURN(const double z_sum,
                           clipper_->SumNoiseMultiplier(options_.noise_multiplier));
    privacy::MechanismOptions noise = mechanism_->options();
    noise.noise_multiplier = z_sum;
    noise.l2_sensitivity = clipper_->clip_norm();
    noise.l1_sensitivity = clipper_->clip_norm();
    FEDGE_ASSIGN_OR_RETURN(auto mechanism, privacy::CreateMechanism(mechanism_->name(), noise));
    FEDGE_RETURN_IF_ERROR(mechanism->AddNoise(mean, *random_));
  }
  const double denominator = options_.expected_cohort;
  for (float& value : mean) value = static_cast<float>(value / denominator);
  return absl::OkStatus();
}

absl::StatusOr<RoundPrivacy> PrivateAggregation::EndRound(
    std::size_t cohort_size, const std::vector<std::string>& participants) {
  RoundPrivacy round;
  round.clip_norm = clipper_->clip_norm();
  round.delta = options_.delta;
  FEDGE_ASSIGN_OR_RETURN(round.noise_multiplier, AccountedNoise(cohort_size, participants.size()));
  if (accountant_ != nullptr) {
    if (options_.mode == PrivacyMode::kLocal) {
      for (const std::string& client : participants) {
        max_participations_ = std::max(max_participations_, ++participations_[client]);
      }
      FEDGE_ASSIGN_OR_RETURN(epsilon_, EpsilonAfter(round.noise_multiplier, max_participations_));
    } else {
      FEDGE_RETURN_IF_ERROR(accountant_->Step(options_.sampling_rate, round.noise_multiplier, 1));
      FEDGE_ASSIGN_OR_RETURN(epsilon_, accountant_->Epsilon(options_.delta));
    }
  }
  round.epsilon = epsilon_;
  ++rounds_;
  FEDGE_RETURN_IF_ERROR(clipper_->EndRound(*random_, options_.expected_cohort).status());
  return round;
}

}  // namespace fedge::aggregator

namespace fedge::aggregator {

std::string PrivateAggregation::Serialize() const {
  v1::PrivacyState state;
  state.set_rounds(static_cast<uint64_t>(rounds_));
  if (accountant_ != nullptr) state.set_accountant(accountant_->Serialize());
  state.set_clipper(clipper_->Serialize());
  for (const auto& [client, count] : participations_) {
    (*state.mutable_participations())[client] = count;
  }
  // Deterministic, so that equal states give equal bytes (maps sorted).
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    state.SerializeToCodedStream(&coded);
  }
  return bytes;
}

absl::Status PrivateAggregation::Restore(std::string_view serialized) {
  v1::PrivacyState state;
  if (!state.ParseFromArray(serialized.data(), static_cast<int>(serialized.size()))) {
    return absl::InvalidArgumentError("privacy state: not a PrivacyState message");
  }
  // Build everything aside, then swap in: a bad state changes nothing.
  std::unique_ptr<privacy::Accountant> accountant;
  if (accountant_ != nullptr) {
    FEDGE_ASSIGN_OR_RETURN(accountant, privacy::CreateAccountant(accountant_->name()));
    if (absl::Status s = accountant->Restore(state.accountant()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("privacy state: accountant: ", s.message()));
    }
  }
  privacy::ClipperOptions clipper_options = options_.clipper_options;
  clipper_options.norm = clipper_->norm();
  FEDGE_ASSIGN_OR_RETURN(auto clipper, privacy::CreateClipper(clipper_->name(), clipper_options));
  if (absl::Status s = clipper->Restore(state.clipper()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("privacy state: clipper: ", s.message()));
  }
  std::map<std::string, int64_t, std::less<>> participations;
  int64_t max_participations = 0;
  for (const auto& [client, count] : state.participations()) {
    if (count < 1 || static_cast<uint64_t>(count) > state.rounds()) {
      return absl::InvalidArgumentError(absl::StrCat("privacy state: client '", client,
                                                     "' took part in ", count, " of ",
                                                     state.rounds(), " rounds"));
    }
    participations.emplace(client, count);
    max_participations = std::max(max_participations, count);
  }
  double epsilon = kInf;
  if (accountant != nullptr) {
    if (options_.mode == PrivacyMode::kLocal) {
      FEDGE_ASSIGN_OR_RETURN(auto scratch, privacy::CreateAccountant(accountant->name()));
      FEDGE_RETURN_IF_ERROR(
          scratch->Step(1.0, accounting_scale_ * options_.noise_multiplier / 2.0,
                        max_participations));
      FEDGE_ASSIGN_OR_RETURN(epsilon, scratch->Epsilon(options_.delta));
    } else {
      FEDGE_ASSIGN_OR_RETURN(epsilon, accountant->Epsilon(options_.delta));
    }
  }
  accountant_ = std::move(accountant);
  clipper_ = std::move(clipper);
  participations_ = std::move(participations);
  max_participations_ = max_participations;
  rounds_ = static_cast<int64_t>(state.rounds());
  epsilon_ = epsilon;
  return absl::OkStatus();
}

}  // namespace fedge::aggregator
