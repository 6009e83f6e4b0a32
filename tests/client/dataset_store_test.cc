// MakeExampleStore: a fedge::data Dataset as the ExampleStore a device
// trains on (the features are adopted, not copied; bad datasets are refused).
#include "fedge/client/dataset_store.h"

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::client {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

// Three 1x2 images, labels 2, 0, 1 of three classes.
data::Dataset TinyImages() {
  data::Dataset d;
  d.name = "tiny";
  d.example_shape = {1, 2};
  d.num_classes = 3;
  d.pixels = {0, 255, 51, 102, 204, 153};
  d.labels = {2, 0, 1};
  d.mean = 0.5f;
  d.stddev = 0.25f;
  return d;
}

TEST(MakeExampleStoreTest, AdoptsPixelsWithoutCopying) {
  data::Dataset d = TinyImages();
  const uint8_t* pixels = d.pixels.data();
  absl::StatusOr<std::shared_ptr<const ExampleStore>> store = MakeExampleStore(std::move(d));
  ASSERT_THAT(store, IsOk());
  const ExampleStore& s = **store;
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.num_classes(), 3);
  EXPECT_EQ(s.features().sizes(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(s.features().scalar_type(), torch::kUInt8);
  // The store's features are the dataset's buffer itself.
  EXPECT_EQ(s.features().data_ptr<uint8_t>(), pixels);
  EXPECT_EQ(s.labels().scalar_type(), torch::kInt64);
  EXPECT_EQ(s.labels()[0].item<int64_t>(), 2);
  EXPECT_EQ(s.labels()[2].item<int64_t>(), 1);
  // The dataset's normalization: (51/255 - 0.5)/0.25 = -1.2, (102/255 - 0.5)/0.25 = -0.4.
  torch::Tensor x = s.GatherFeatures(torch::tensor({1}, torch::kInt64));
  EXPECT_NEAR(x[0][0][0].item<float>(), -1.2f, 1e-5);
  EXPECT_NEAR(x[0][0][1].item<float>(), -0.4f, 1e-5);
}

TEST(MakeExampleStoreTest, UsesFloatValuesAsIs) {
  data::Dataset d;
  d.name = "vectors";
  d.example_shape = {3};
  d.num_classes = 2;
  d.values = {0.5f, -1.0f, 2.0f, 3.0f, 4.0f, -5.0f};
  d.labels = {1, 0};
  absl::StatusOr<std::shared_ptr<const ExampleStore>> store = MakeExampleStore(std::move(d));
  ASSERT_THAT(store, IsOk());
  EXPECT_EQ((*store)->features().scalar_type(), torch::kFloat32);
  torch::Tensor x = (*store)->GatherFeatures(torch::tensor({1, 0}, torch::kInt64));
  EXPECT_FLOAT_EQ(x[0][2].item<float>(), -5.0f);
  EXPECT_FLOAT_EQ(x[1][0].item<float>(), 0.5f);
}

TEST(MakeExampleStoreTest, RefusesInconsistentDatasets) {
  data::Dataset both = TinyImages();
  both.values.assign(6, 0.0f);
  EXPECT_THAT(MakeExampleStore(std::move(both)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'tiny' must hold exactly one of pixels and values")));

  data::Dataset neither = TinyImages();
  neither.pixels.clear();
  EXPECT_THAT(MakeExampleStore(std::move(neither)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one of")));

  data::Dataset short_buffer = TinyImages();
  short_buffer.pixels.pop_back();
  EXPECT_THAT(MakeExampleStore(std::move(short_buffer)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds 5 feature values for 3 examples of 2 (expected 6)")));

  data::Dataset bad_shape = TinyImages();
  bad_shape.example_shape = {2, 0};
  EXPECT_THAT(MakeExampleStore(std::move(bad_shape)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dimension of 0")));

  // What ExampleStore::Create refuses comes through with its message.
  data::Dataset bad_label = TinyImages();
  bad_label.labels[1] = 3;
  EXPECT_THAT(MakeExampleStore(std::move(bad_label)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[0, 3)")));
}

}  // namespace
}  // namespace fedge::client
