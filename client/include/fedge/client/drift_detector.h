// Drift detectors: cheap online tests that tell a device its data no longer
// looks like the data its model was trained on.
//
// Two families share one interface:
//
//  * stream detectors watch one number per prediction and learn their
//    baseline from the stream itself:
//      page-hinkley  Page-Hinkley test for a rise in the mean (Page 1954,
//                    "Continuous inspection schemes"), on errors or losses;
//      adwin         ADWIN2 adaptive window (Bifet & Gavalda 2007, "Learning
//                    from time-changing data with adaptive windowing"), on
//                    values in [0, value_range];
//      ddm           Drift Detection Method (Gama et al. 2004, "Learning with
//                    drift detection"), on 0/1 errors;
//      confidence    one-sided CUSUM (Page 1954) on the drop of the model's
//                    top-class probability against a reference mean and
//                    standard deviation (label-free).
//  * window detectors compare a window of feature vectors (input summaries
//    or embeddings, `features` values each) with a reference window (the
//    data the model was trained on), feature by feature, on bins cut at the
//    reference's quantiles:
//      ks            two-sample Kolmogorov-Smirnov per feature, p-values from
//                    the asymptotic Kolmogorov distribution, corrected for
//                    the `features` tests (Bonferroni, or Benjamini-Hochberg's
//                    false discovery rate); label-free;
//      psi           population stability index (mean over features, less
//                    its expected value under no change); label-free.
//    Windows tumble: the test runs when `window` observations have arrived,
//    then the window empties.
//
// Memory: stream detectors O(1) (adwin O(log n) buckets for a window of n),
// window detectors O(features * bins), whatever the stream's length. No
// LibTorch, no I/O.
//
// After signalling drift a detector starts afresh (stream detectors forget
// the stream; adwin drops the older part of its window; window detectors
// keep their reference and start a new window).
//
// Detectors are created by name:
//
//   FEDGE_ASSIGN_OR_RETURN(auto detector, CreateDriftDetector("adwin", options));
//
// Thread safety: a detector is not thread-safe; one device stream owns it.
#ifndef FEDGE_CLIENT_DRIFT_DETECTOR_H_
#define FEDGE_CLIENT_DRIFT_DETECTOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/proto/registry.h"

namespace fedge::client {

struct PageHinkleyOptions {
  // Magnitude of change tolerated (subtracted from every deviation).
  // Default: 0.005. REQUIRES: >= 0.
  double delta = 0.005;
  // Alarm threshold lambda on the cumulative deviation. Default: 50.
  // REQUIRES: > 0.
  double threshold = 50.0;
  // Observations before an alarm is possible. Default: 30. REQUIRES: >= 1.
  int64_t min_observations = 30;
};

struct AdwinOptions {
  // Confidence delta of the cut test. Default: 0.002. REQUIRES: 0 < value < 1.
  double delta = 0.002;
  // Buckets kept per size in the exponential histogram (M in the paper).
  // Default: 5. REQUIRES: >= 2.
  int max_buckets = 5;
  // The cut test runs every `clock` observations (amortizes its O(log n)
  // cost). Default: 32. REQUIRES: >= 1.
  int clock = 32;
  // Observations before an alarm is possible. Default: 30. REQUIRES: >= 1.
  int64_t min_observations = 30;
  // Values are expected in [0, value_range] (1 for 0/1 errors).
  // Default: 1. REQUIRES: > 0.
  double value_range = 1.0;
  // Signal drift only when the recent mean is the higher one (a rising error
  // or loss); either way the window is cut. Default: true.
  bool increase_only = true;
};

struct DdmOptions {
  // Observations before the test runs. Default: 100 (the paper's 30 lets an
  // early, lucky run of correct predictions set a minimum that ordinary noise
  // later exceeds). REQUIRES: >= 1.
  int64_t min_observations = 100;
  // Warning and drift levels, in standard deviations above the minimum.
  // Defaults: 2 and 3 (the paper's). REQUIRES: 0 < warning <= drift.
  double warning_level = 2.0;
  double drift_level = 3.0;
};

struct ConfidenceOptions {
  // CUSUM slack k and threshold h, in reference standard deviations.
  // Defaults: 0.5 and 10. REQUIRES: slack >= 0, threshold > 0.
  double slack = 0.5;
  double threshold = 10.0;
  // Without a reference, the first `warmup` observations give the mean and
  // standard deviation. Default: 100. REQUIRES: >= 2.
  int64_t warmup = 100;
  // Floor on the reference standard deviation. Default: 0.01. REQUIRES: > 0.
  double min_stddev = 0.01;
};

struct KsOptions {
  // Significance level after correction. Default: 0.001. REQUIRES: 0 < value < 1.
  double alpha = 0.001;
  // "bonferroni" (family-wise error <= alpha; Holm's step-down would raise
  // the same alarms, as any rejection needs the smallest p-value <= alpha /
  // features) or "benjamini-hochberg" (false discovery rate <= alpha).
  // Default: "bonferroni".
  std::string correction = "bonferroni";
  // Bins per feature (cut at reference quantiles). Default: 32. REQUIRES: >= 2.
  int bins = 32;
  // Observations per tested window. Default: 64. REQUIRES: >= 8.
  int64_t window = 64;
};

struct PsiOptions {
  // Alarm when the mean PSI over features exceeds this (0.25 is the usual
  // "significant shift" level). Default: 0.25. REQUIRES: > 0.
  double threshold = 0.25;
  // Subtract each feature's expected PSI under no change, (bins - 1) *
  // (1/n_reference + 1/n_window) (PSI is then approximately that scale times a
  // chi-square with bins - 1 degrees of freedom; Yurdakul 2018, "Statistical
  // properties of population stability index"), so small windows and
  // references do not alarm on sampling noise alone. Default: true.
  bool bias_correction = true;
  // Bins per feature. Default: 10. REQUIRES: >= 2.
  int bins = 10;
  // Observations per tested window. Default: 64. REQUIRES: >= 8.
  int64_t window = 64;
  // Pseudo-count added to every bin of both windows before proportions are
  // taken (additive smoothing), so an empty bin in a small window does not
  // dominate the index. Default: 0.5. REQUIRES: > 0.
  double pseudo_count = 0.5;
};

// Options for every built-in detector; each reads its own part.
struct DriftDetectorOptions {
  // Values per observation for the window detectors (ks, psi).
  // Default: 0 (unset). REQUIRES: >= 1 for ks and psi.
  int features = 0;
  PageHinkleyOptions page_hinkley;
  AdwinOptions adwin;
  DdmOptions ddm;
  ConfidenceOptions confidence;
  KsOptions ks;
  PsiOptions psi;
};

enum class DriftLevel { kNone = 0, kWarning = 1, kDrift = 2 };

// A detector's verdict after one observation.
struct DriftDecision {
  DriftLevel level = DriftLevel::kNone;
  // The test statistic and the threshold it is compared with (for ks: the
  // adjusted p-value, alarming at <= threshold; the others alarm at >).
  // Both are 0 when no test ran.
  double statistic = 0.0;
  double threshold = 0.0;
  bool drift() const { return level == DriftLevel::kDrift; }
};

class DriftDetector {
 public:
  virtual ~DriftDetector() = default;

  virtual std::string_view name() const = 0;
  // Values in one observation: 1 for stream detectors, `features` for ks/psi.
  virtual size_t observation_size() const = 0;
  // True when the detector compares against a reference (ks, psi; and
  // confidence, which otherwise learns one during a warm-up).
  virtual bool uses_reference() const = 0;

  // True when Add may be called: always for detectors that learn from the
  // stream, once a reference is set for ks and psi.
  virtual bool ready() const = 0;

  // Sets the reference: `rows` holds whole observations (a multiple of
  // observation_size() values, at least two observations, all finite).
  // Starts a fresh window. INVALID_ARGUMENT otherwise (nothing changes);
  // FAILED_PRECONDITION for a detector that uses no reference.
  virtual absl::Status SetReference(std::span<const float> rows) = 0;

  // Adds one observation (observation_size() finite values).
  // INVALID_ARGUMENT (nothing changes) for a wrong size or non-finite value;
  // FAILED_PRECONDITION for a window detector without a reference.
  virtual absl::StatusOr<DriftDecision> Add(std::span<const float> observation) = 0;
  absl::StatusOr<DriftDecision> Add(float value) { return Add(std::span<const float>(&value, 1)); }

  // Forgets the stream since the reference (keeps the reference).
  virtual void Reset() = 0;
  // Observations since the last reset (or alarm).
  virtual int64_t observations() const = 0;

  // The detector's statistics as a serialized v1::DriftDetectorState.
  virtual std::string SaveState() const = 0;
  // Restores a SaveState() blob of the same detector with the same shape
  // options. INVALID_ARGUMENT naming what is wrong (not a state, another
  // detector, another shape, wrong sizes, non-finite values); the detector is
  // unchanged on error.
  virtual absl::Status RestoreState(std::string_view blob) = 0;
};

using DriftDetectorFactory =
    std::function<absl::StatusOr<std::unique_ptr<DriftDetector>>(const DriftDetectorOptions&)>;

// The detector registry. Add a detector with one line at the end of its file:
//   [[maybe_unused]] const bool kRegistered = DriftDetectors().Add("name", &Create);
Registry<DriftDetectorFactory>& DriftDetectors();

// Creates detector `name`, validating the options it reads
// (INVALID_ARGUMENT names the field). NOT_FOUND lists the known names.
absl::StatusOr<std::unique_ptr<DriftDetector>> CreateDriftDetector(
    std::string_view name, const DriftDetectorOptions& options = {});

// Sorted names of the registered detectors.
std::vector<std::string> RegisteredDriftDetectors();

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DRIFT_DETECTOR_H_
