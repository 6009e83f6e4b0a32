#include "fedge/privacy/clipping.h"

#include <cmath>
#include <cstdlib>

namespace fedge::privacy {

double L2Norm(std::span<const float> values) {
  double sum = 0.0;
  for (float v : values) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

double ClipL2(std::span<float> values, double max_norm) {
  if (!(max_norm > 0.0)) std::abort();
  const double norm = L2Norm(values);
  if (norm <= max_norm) return 1.0;
  const double factor = max_norm / norm;
  for (float& v : values) v = static_cast<float>(v * factor);
  return factor;
}

}  // namespace fedge::privacy
