// Parameter layouts for model tests, built from (name, shape) lists with
// consecutive offsets, as a model's flat parameter vector lays them out.
#ifndef FEDGE_TESTS_MODELS_TEST_LAYOUTS_H_
#define FEDGE_TESTS_MODELS_TEST_LAYOUTS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fedge/models/model_spec.h"

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

}  // namespace fedge::models::testing_layouts

#endif  // FEDGE_TESTS_MODELS_TEST_LAYOUTS_H_
