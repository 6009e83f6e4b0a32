#include "fedge/data/drift_scenario.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace fedge::data {


namespace {

constexpr double kPi = 3.14159265358979323846;

uint64_t Mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Applies `fn(example_values, example_index)` to each example of a buffer.
template <typename T, typename Fn>
void ForEachExample(std::vector<T>& buffer, int64_t example_size, Fn fn) {
  const int64_t n = static_cast<int64_t>(buffer.size()) / example_size;
  for (int64_t i = 0; i < n; ++i)
    fn(std::span<T>(buffer).subspan(i * example_size, example_size), i);
}

// Rotates each [H, W] plane of an example about its centre, bilinear, with
// `fill` outside.
template <typename T>
void RotateImage(std::span<T> example, int64_t channels, int64_t height, int64_t width,
                 double degrees, double fill, double lo, double hi) {
  const double c = std::cos(degrees * kPi / 180.0), s = std::sin(degrees * kPi / 180.0);
  const double cy = (height - 1) / 2.0, cx = (width - 1) / 2.0;
  std::vector<double> plane(height * width);
  for (int64_t ch = 0; ch < channels; ++ch) {
    std::span<T> p = example.subspan(ch * height * width, height * width);
    for (int64_t i = 0; i < height * width; ++i) plane[i] = static_cast<double>(p[i]);
    auto at = [&](int64_t y, int64_t x) {
      return (y < 0 || y >= height || x < 0 || x >= width) ? fill : plane[y * width + x];
    };
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        // Source of output pixel (y, x): the inverse rotation.
        const double dx = x - cx, dy = y - cy;
        const double sx = c * dx + s * dy + cx, sy = -s * dx + c * dy + cy;
        const int64_t x0 = static_cast<int64_t>(std::floor(sx)),
                      y0 = static_cast<int64_t>(std::floor(sy));
        const double fx = sx - x0, fy = sy - y0;
        const double v = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) +
                         fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
        if constexpr (std::is_integral_v<T>) {
          p[y * width + x] = static_cast<T>(
              std::clamp(std::lround(v), static_cast<long>(lo), static_cast<long>(hi)));
        } else {
          p[y * width + x] = static_cast<T>(v);
        }
      }
    }
  }
}

template <typename T>
absl::Status Transform(std::vector<T>& buffer, const std::vector<int64_t>& shape,
                       const DriftScenarioOptions& o, uint64_t seed) {
  constexpr bool kPixels = std::is_integral_v<T>;
  const double range = kPixels ? 255.0 : 1.0;
  const double lo = 0.0, hi = kPixels ? 255.0 : 0.0;
  int64_t size = 1;
  for (int64_t d : shape) size *= d;
  const bool image = shape.size() == 3;
  auto store = [&](double v) -> T {
    if constexpr (kPixels) return static_cast<T>(std::clamp(std::lround(v), 0L, 255L));
    return static_cast<T>(v);
  };
  if (o.type == "rotation") {
    if (image) {
      ForEachExample(buffer, size, [&](std::span<T> e, int64_t) {
        RotateImage(e, shape[0], shape[1], shape[2], o.rotation_degrees, 0.0, lo, hi);
      });
    } else {
      const double c = std::cos(o.rotation_degrees * kPi / 180.0);
      const double s = std::sin(o.rotation_degrees * kPi / 180.0);
      ForEachExample(buffer, size, [&](std::span<T> e, int64_t) {
        for (int64_t j = 0; j + 1 < size; j += 2) {
          const double a = e[j], b = e[j + 1];
          e[j] = store(c * a - s * b);
          e[j + 1] = store(s * a + c * b);
        }
      });
    }
  } else if (o.type == "noise") {
    std::mt19937_64 rng(Mix(seed ^ 0x6E6F697365ULL));
    std::normal_distribution<double> noise(0.0, o.noise_std * range);
    for (T& v : buffer) v = store(static_cast<double>(v) + noise(rng));
  } else if (o.type == "brightness-contrast") {
    const double mid = kPixels ? 127.5 : 0.0;
    for (T& v : buffer) {
      v = store(o.contrast * (static_cast<double>(v) - mid) + mid + o.brightness * range);
    }
  } else if (o.type == "occlusion") {
    std::mt19937_64 rng(Mix(seed ^ 0x6F63636CULL));
    if (image) {
      const int64_t h = shape[1], w = shape[2], k = o.occlusion_size;
      if (k > h || k > w) {
        return absl::InvalidArgumentError(
            absl::StrCat("drift.occlusion_size ", k, " exceeds the ", h, "x", w, " images"));
      }
      ForEachExample(buffer, size, [&](std::span<T> e, int64_t) {
        const int64_t y0 = std::uniform_int_distribution<int64_t>(0, h - k)(rng);
        const int64_t x0 = std::uniform_int_distribution<int64_t>(0, w - k)(rng);
        for (int64_t ch = 0; ch < shape[0]; ++ch) {
          for (int64_t y = y0; y < y0 + k; ++y) {
            for (int64_t x = x0; x < x0 + k; ++x) e[ch * h * w + y * w + x] = T{0};
          }
        }
      });
    } else {
      const int64_t k = o.occlusion_size;
      if (k > size) {
        return absl::InvalidArgumentError(absl::StrCat("drift.occlusion_size ", k, " exceeds the ",
                                                       size, " features per example"));
      }
      ForEachExample(buffer, size, [&](std::span<T> e, int64_t) {
        const int64_t x0 = std::uniform_int_distribution<int64_t>(0, size - k)(rng);
        for (int64_t x = x0; x < x0 + k; ++x) e[x] = T{0};
      });
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> DriftTypes() {
  return {"brightness-contrast", "label-shift", "label-swap", "noise", "none",
          "occlusion",           "rotation"};
}
std::vector<std::string> DriftModes() { return {"gradual", "sudden"}; }

absl::StatusOr<Dataset> MakeDriftedCopy(const Dataset& data, const DriftScenarioOptions& options,
                                        uint64_t seed) {
  Dataset copy = data;
  if (options.type == "label-swap") {
    for (int c : {options.swap_a, options.swap_b}) {
      if (c < 0 || c >= data.num_classes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "drift.swap_a/swap_b: class ", c, " is not one of the dataset's ", data.num_classes));
      }
    }
    if (options.swap_a == options.swap_b) {
      return absl::InvalidArgumentError("drift.swap_a and drift.swap_b must differ");
    }
    for (int32_t& label : copy.labels) {
      if (label == options.swap_a) {
        label = options.swap_b;
      } else if (label == options.swap_b) {
        label = options.swap_a;
      }
    }
    return copy;
  }
  absl::Status status = copy.pixels.empty()
                            ? Transform(copy.values, copy.example_shape, options, seed)
                            : Transform(copy.pixels, copy.example_shape, options, seed);
  if (!status.ok()) return status;
  return copy;
}

std::vector<bool> ChooseDriftedClients(size_t num_clients, double fraction, uint64_t seed) {
  const size_t count =
      std::clamp<size_t>(static_cast<size_t>(std::llround(fraction * num_clients)), 1, num_clients);
  std::vector<size_t> order(num_clients);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(Mix(seed ^ 0x6472696674ULL));
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> drifted(num_clients, false);
  for (size_t i = 0; i < count; ++i) drifted[order[i]] = true;
  return drifted;
}

double DriftedShare(const DriftScenarioOptions& options, int round) {
  if (options.type == "none" || round < options.round) return 0.0;
  if (options.mode == "sudden") return 1.0;
  return std::min(1.0, static_cast<double>(round - options.round + 1) / options.gradual_rounds);
}

bool ExampleDrifted(int32_t index, double share, uint64_t seed) {
  if (share >= 1.0) return true;
  const double u = static_cast<double>(Mix(seed ^ Mix(static_cast<uint64_t>(index))) >> 11) *
                   (1.0 / 9007199254740992.0);
  return u < share;
}

std::vector<int32_t> LabelShiftIndices(std::span<const int32_t> labels, int64_t num_classes,
                                       size_t count, double alpha, uint64_t seed) {
  std::mt19937_64 rng(Mix(seed ^ 0x6C6162656CULL));
  std::vector<std::vector<int32_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<int32_t>(i));
  std::vector<double> shares(num_classes);
  std::gamma_distribution<double> gamma(alpha, 1.0);
  for (int64_t c = 0; c < num_classes; ++c) shares[c] = by_class[c].empty() ? 0.0 : gamma(rng);
  if (std::accumulate(shares.begin(), shares.end(), 0.0) <= 0.0) {
    for (int64_t c = 0; c < num_classes; ++c) shares[c] = by_class[c].empty() ? 0.0 : 1.0;
  }
  std::discrete_distribution<int64_t> pick_class(shares.begin(), shares.end());
  std::vector<int32_t> out(count);
  for (int32_t& index : out) {
    const auto& pool = by_class[pick_class(rng)];
    index = pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
  }
  return out;
}

}  // namespace fedge::data
