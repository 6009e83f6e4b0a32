#include "fedge/client/drift_detector.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::client {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kChange = 2000;  // change point of every stream below
constexpr int64_t kLength = 3000;

// 0/1 errors: rate 0.1 before the change point, `after` from it on.
std::vector<float> ErrorStream(uint64_t seed, double after) {
  std::mt19937_64 rng(seed);
  std::vector<float> values(kLength);
  for (int64_t t = 0; t < kLength; ++t) {
    std::bernoulli_distribution error(t < kChange ? 0.1 : after);
    values[t] = error(rng) ? 1.0f : 0.0f;
  }
  return values;
}

// Top-class probabilities: N(0.9, 0.05) before, N(after, after_sd) from the
// change.
std::vector<float> ConfidenceStream(uint64_t seed, double after, double after_sd) {
  std::mt19937_64 rng(seed);
  std::vector<float> values(kLength);
  for (int64_t t = 0; t < kLength; ++t) {
    std::normal_distribution<double> c(t < kChange ? 0.9 : after, t < kChange ? 0.05 : after_sd);
    values[t] = static_cast<float>(std::clamp(c(rng), 0.0, 1.0));
  }
  return values;
}

constexpr int kFeatures = 10;

// Rows of kFeatures standard normals; from the change point on, features
// 0..2 are shifted by `shift`.
std::vector<float> FeatureRows(uint64_t seed, int64_t rows, int64_t change, double shift) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<float> values(rows * kFeatures);
  for (int64_t t = 0; t < rows; ++t) {
    for (int f = 0; f < kFeatures; ++f) {
      values[t * kFeatures + f] =
          static_cast<float>(normal(rng) + (t >= change && f < 3 ? shift : 0.0));
    }
  }
  return values;
}

DriftDetectorOptions Options() {
  DriftDetectorOptions options;
  options.features = kFeatures;
  return options;
}

std::unique_ptr<DriftDetector> Make(const std::string& name,
                                    const DriftDetectorOptions& options = Options()) {
  auto detector = CreateDriftDetector(name, options);
  EXPECT_TRUE(detector.ok()) << detector.status();
  return detector.ok() ? std::move(*detector) : nullptr;
}

// Observation indices at which `detector` signals drift.
std::vector<int64_t> Alarms(DriftDetector& detector, const std::vector<float>& values) {
  const size_t d = detector.observation_size();
  std::vector<int64_t> alarms;
  for (size_t t = 0; t * d < values.size(); ++t) {
    auto decision = detector.Add(std::span<const float>(values).subspan(t * d, d));
    EXPECT_TRUE(decision.ok()) << decision.status();
    if (decision.ok() && decision->drift()) alarms.push_back(static_cast<int64_t>(t));
  }
  return alarms;
}

std::vector<float> Reference(uint64_t seed, const std::string& name) {
  if (name == "confidence") {
    std::vector<float> c = ConfidenceStream(seed, 0.9, 0.05);
    c.resize(500);
    return c;
  }
  return FeatureRows(seed, 500, 500, 0.0);
}

// One case per detector: the stream, the stationary stream of the same length
// and the delay (in observations after the change point) it must meet.
struct StreamCase {
  std::string detector;
  int64_t max_delay;
};

class DetectorStreamTest : public ::testing::TestWithParam<StreamCase> {
 protected:
  std::vector<float> Drifting() const {
    const std::string& name = GetParam().detector;
    if (name == "confidence") return ConfidenceStream(11, 0.7, 0.1);
    if (name == "ks" || name == "psi") return FeatureRows(12, kLength, kChange, 1.0);
    return ErrorStream(13, 0.5);
  }
  std::vector<float> Stationary() const {
    const std::string& name = GetParam().detector;
    if (name == "confidence") return ConfidenceStream(21, 0.9, 0.05);
    if (name == "ks" || name == "psi") return FeatureRows(22, kLength, kLength, 0.0);
    std::vector<float> v = ErrorStream(23, 0.1);
    return v;
  }
  std::unique_ptr<DriftDetector> Prepared() const {
    std::unique_ptr<DriftDetector> detector = Make(GetParam().detector);
    if (detector != nullptr && detector->uses_reference()) {
      EXPECT_TRUE(detector->SetReference(Reference(31, GetParam().detector)).ok());
    }
    return detector;
  }
};

TEST_P(DetectorStreamTest, DetectsTheChangeWithinTheStatedDelay) {
  std::unique_ptr<DriftDetector> detector = Prepared();
  ASSERT_NE(detector, nullptr);
  const std::vector<int64_t> alarms = Alarms(*detector, Drifting());
  ASSERT_FALSE(alarms.empty()) << GetParam().detector << " never fired";
  EXPECT_GE(alarms.front(), kChange) << "alarm before the change point";
  EXPECT_LE(alarms.front() - kChange, GetParam().max_delay);
}

TEST_P(DetectorStreamTest, NoAlarmOnAStationaryStreamOfTheSameLength) {
  std::unique_ptr<DriftDetector> detector = Prepared();
  ASSERT_NE(detector, nullptr);
  EXPECT_THAT(Alarms(*detector, Stationary()), ElementsAre());
}

TEST_P(DetectorStreamTest, SaveRestoreGivesIdenticalDecisions) {
  const std::vector<float> values = Drifting();
  const size_t d = Make(GetParam().detector)->observation_size();
  for (int64_t split : {int64_t{1}, kChange - 37, kChange + 5}) {
    std::unique_ptr<DriftDetector> original = Prepared();
    for (int64_t t = 0; t < split; ++t) {
      ASSERT_TRUE(original->Add(std::span<const float>(values).subspan(t * d, d)).ok());
    }
    std::unique_ptr<DriftDetector> restored = Make(GetParam().detector);
    ASSERT_TRUE(restored->RestoreState(original->SaveState()).ok());
    EXPECT_EQ(restored->SaveState(), original->SaveState());
    EXPECT_EQ(restored->observations(), original->observations());
    for (int64_t t = split; t * static_cast<int64_t>(d) < static_cast<int64_t>(values.size());
         ++t) {
      auto obs = std::span<const float>(values).subspan(t * d, d);
      auto a = original->Add(obs);
      auto b = restored->Add(obs);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->level, b->level) << "observation " << t;
      ASSERT_EQ(a->statistic, b->statistic) << "observation " << t;
      ASSERT_EQ(a->threshold, b->threshold) << "observation " << t;
    }
  }
}

TEST_P(DetectorStreamTest, RefusesBadStateBlobsAndStaysUnchanged) {
  std::unique_ptr<DriftDetector> detector = Prepared();
  const std::vector<float> values = Drifting();
  const size_t d = detector->observation_size();
  for (int64_t t = 0; t < 100; ++t) {
    ASSERT_TRUE(detector->Add(std::span<const float>(values).subspan(t * d, d)).ok());
  }
  const std::string before = detector->SaveState();
  EXPECT_THAT(detector->RestoreState("\xff\xff not a proto"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a serialized")));
  const std::string other = GetParam().detector == "ddm" ? "page-hinkley" : "ddm";
  EXPECT_THAT(detector->RestoreState(Make(other)->SaveState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("belongs to detector")));
  // A truncated blob: the last byte cut off.
  EXPECT_FALSE(detector->RestoreState(before.substr(0, before.size() - 1)).ok());
  EXPECT_EQ(detector->SaveState(), before);
}

TEST_P(DetectorStreamTest, RefusesBadObservations) {
  std::unique_ptr<DriftDetector> detector = Prepared();
  const std::string before = detector->SaveState();
  std::vector<float> wrong_size(detector->observation_size() + 1, 0.0f);
  EXPECT_THAT(detector->Add(wrong_size),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("values")));
  std::vector<float> nan(detector->observation_size(), 0.0f);
  nan.back() = std::nanf("");
  EXPECT_THAT(detector->Add(nan),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite")));
  EXPECT_EQ(detector->SaveState(), before);
}

INSTANTIATE_TEST_SUITE_P(Detectors, DetectorStreamTest,
                         ::testing::Values(StreamCase{"page-hinkley", 200},
                                           StreamCase{"adwin", 100}, StreamCase{"ddm", 250},
                                           StreamCase{"confidence", 20},
                                           // Window detectors test every 64 observations.
                                           StreamCase{"ks", 128}, StreamCase{"psi", 128}),
                         [](const auto& info) {
                           std::string name = info.param.detector;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(DriftDetectorRegistryTest, EveryBuiltInIsRegistered) {
  EXPECT_THAT(RegisteredDriftDetectors(),
              ElementsAre("adwin", "confidence", "ddm", "ks", "page-hinkley", "psi"));
}

TEST(DriftDetectorRegistryTest, UnknownNameListsTheKnownOnes) {
  EXPECT_THAT(CreateDriftDetector("cusum", Options()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("known: adwin, confidence")));
}

TEST(DriftDetectorOptionsTest, EachBadFieldIsNamed) {
  struct BadCase {
    std::string detector;
    std::function<void(DriftDetectorOptions&)> spoil;
    std::string field;
  };
  const std::vector<BadCase> cases = {
      {"page-hinkley", [](auto& o) { o.page_hinkley.delta = -1; }, "page_hinkley.delta"},
      {"page-hinkley", [](auto& o) { o.page_hinkley.threshold = 0; }, "page_hinkley.threshold"},
      {"page-hinkley", [](auto& o) { o.page_hinkley.min_observations = 0; },
       "page_hinkley.min_observations"},
      {"adwin", [](auto& o) { o.adwin.delta = 1; }, "adwin.delta"},
      {"adwin", [](auto& o) { o.adwin.max_buckets = 1; }, "adwin.max_buckets"},
      {"adwin", [](auto& o) { o.adwin.clock = 0; }, "adwin.clock"},
      {"adwin", [](auto& o) { o.adwin.min_observations = 0; }, "adwin.min_observations"},
      {"adwin", [](auto& o) { o.adwin.value_range = 0; }, "adwin.value_range"},
      {"ddm", [](auto& o) { o.ddm.min_observations = 0; }, "ddm.min_observations"},
      {"ddm", [](auto& o) { o.ddm.warning_level = 0; }, "ddm.warning_level"},
      {"ddm", [](auto& o) { o.ddm.drift_level = 1; }, "ddm.drift_level"},
      {"confidence", [](auto& o) { o.confidence.slack = -1; }, "confidence.slack"},
      {"confidence", [](auto& o) { o.confidence.threshold = 0; }, "confidence.threshold"},
      {"confidence", [](auto& o) { o.confidence.warmup = 1; }, "confidence.warmup"},
      {"confidence", [](auto& o) { o.confidence.min_stddev = 0; }, "confidence.min_stddev"},
      {"ks", [](auto& o) { o.features = 0; }, "features"},
      {"ks", [](auto& o) { o.ks.alpha = 0; }, "ks.alpha"},
      {"ks", [](auto& o) { o.ks.correction = "holm"; }, "ks.correction"},
      {"ks", [](auto& o) { o.ks.bins = 1; }, "ks.bins"},
      {"ks", [](auto& o) { o.ks.window = 7; }, "ks.window"},
      {"psi", [](auto& o) { o.features = -2; }, "features"},
      {"psi", [](auto& o) { o.psi.threshold = 0; }, "psi.threshold"},
      {"psi", [](auto& o) { o.psi.bins = 1; }, "psi.bins"},
      {"psi", [](auto& o) { o.psi.window = 0; }, "psi.window"},
      {"psi", [](auto& o) { o.psi.pseudo_count = 0; }, "psi.pseudo_count"},
  };
  for (const BadCase& c : cases) {
    DriftDetectorOptions options = Options();
    c.spoil(options);
    EXPECT_THAT(CreateDriftDetector(c.detector, options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.detector << " " << c.field;
  }
}

TEST(DriftDetectorTest, StreamDetectorsRefuseAReference) {
  for (const char* name : {"page-hinkley", "adwin", "ddm"}) {
    EXPECT_THAT(Make(name)->SetReference(std::vector<float>{0, 1, 0}),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("baseline")));
  }
}

TEST(DriftDetectorTest, DdmTakesOnlyZeroOneErrors) {
  EXPECT_THAT(Make("ddm")->Add(0.5f),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0/1 errors")));
}

TEST(DriftDetectorTest, WindowDetectorsNeedAReference) {
  for (const char* name : {"ks", "psi"}) {
    std::unique_ptr<DriftDetector> detector = Make(name);
    EXPECT_THAT(detector->Add(std::vector<float>(kFeatures, 0.0f)),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("reference")));
    EXPECT_THAT(detector->SetReference(std::vector<float>(kFeatures + 1, 0.0f)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 2 rows")));
    std::vector<float> rows = FeatureRows(3, 20, 20, 0.0);
    rows[17] = INFINITY;
    EXPECT_THAT(detector->SetReference(rows),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not finite")));
  }
}

TEST(DriftDetectorTest, WindowStateOfOtherOptionsIsRefused) {
  std::unique_ptr<DriftDetector> ks = Make("ks");
  ASSERT_TRUE(ks->SetReference(FeatureRows(3, 100, 100, 0.0)).ok());
  DriftDetectorOptions coarse = Options();
  coarse.ks.bins = 8;
  EXPECT_THAT(Make("ks", coarse)->RestoreState(ks->SaveState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("different options")));
}

TEST(DriftDetectorTest, BenjaminiHochbergIsNoStricterThanBonferroni) {
  DriftDetectorOptions bh = Options();
  bh.ks.correction = "benjamini-hochberg";
  std::unique_ptr<DriftDetector> a = Make("ks"), b = Make("ks", bh);
  const std::vector<float> reference = FeatureRows(4, 400, 400, 0.0);
  ASSERT_TRUE(a->SetReference(reference).ok());
  ASSERT_TRUE(b->SetReference(reference).ok());
  const std::vector<float> rows = FeatureRows(5, 64 * 20, 0, 0.4);
  for (int64_t t = 0; t < 64 * 20; ++t) {
    auto row = std::span<const float>(rows).subspan(t * kFeatures, kFeatures);
    auto da = a->Add(row), db = b->Add(row);
    ASSERT_TRUE(da.ok() && db.ok());
    EXPECT_LE(db->statistic, da->statistic);
  }
}

// ADWIN keeps O(log n) buckets: its saved state stays small on a long stream.
TEST(DriftDetectorTest, AdwinMemoryIsLogarithmic) {
  std::unique_ptr<DriftDetector> adwin = Make("adwin");
  std::mt19937_64 rng(6);
  std::bernoulli_distribution error(0.2);
  size_t state_at_1k = 0;
  for (int t = 1; t <= 100'000; ++t) {
    ASSERT_TRUE(adwin->Add(error(rng) ? 1.0f : 0.0f).ok());
    if (t == 1000) state_at_1k = adwin->SaveState().size();
  }
  EXPECT_EQ(adwin->observations(), 100'000);  // a stationary stream is never cut
  EXPECT_LT(adwin->SaveState().size(), 2 * state_at_1k);
}

}  // namespace
}  // namespace fedge::client
