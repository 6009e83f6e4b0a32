// Parameter layouts for model tests, built from (name, shape) lists with
// consecutive offsets, as a model's flat parameter vector lays them out.
#ifndef FEDGE_TESTS_MODELS_TEST_LAYOUTS_H_
#define FEDGE_TESTS_MODELS_TEST_LAYOUTS_H_

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fedge/models/artifact.h"
#include "fedge/models/model_spec.h"
#include "gtest/gtest.h"

namespace fedge::models::testing_layouts {

inline std::vector<ParameterLayout> LayoutOf(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  std::vector<ParameterLayout> layout;
  int64_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    layout.push_back({name, shape, offset, numel});
    offset += numel;
  }
  return layout;
}

// A small fp32 "mlp" artifact of `version` with normal(0, 1) values seeded
// by `seed`: 2 classes over 5 inputs.
inline v1::ModelArtifact TinyArtifact(uint64_t version, uint32_t seed) {
  const std::vector<ParameterLayout> layout = LayoutOf({{"fc.weight", {2, 5}}, {"fc.bias", {2}}});
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(12);
  for (float& v : values) v = normal(rng);
  ArtifactOptions options;
  options.version = version;
  absl::StatusOr<v1::ModelArtifact> artifact =
      BuildFp32Artifact(ModelSpec{"mlp", {5}, 2}, layout, values, options);
  EXPECT_TRUE(artifact.ok()) << artifact.status();
  return *artifact;
}

}  // namespace fedge::models::testing_layouts

#endif  // FEDGE_TESTS_MODELS_TEST_LAYOUTS_H_
