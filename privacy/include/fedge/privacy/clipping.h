// Norm clipping of updates, on plain spans (no LibTorch, no I/O).
//
// Clipping bounds each client's contribution: after ClipL2(v, C),
// ||v||_2 <= C, so replacing one client's update changes a sum of clipped
// updates by at most 2C in L2 norm (C when a client is added or removed).
// That bound is the sensitivity the DP mechanisms are calibrated to.
#ifndef FEDGE_PRIVACY_CLIPPING_H_
#define FEDGE_PRIVACY_CLIPPING_H_

#include <span>

namespace fedge::privacy {

// Euclidean norm, accumulated in double.
double L2Norm(std::span<const float> values);

// Scales `values` in place so that their L2 norm is at most `max_norm`
// (unchanged when already within). Returns the factor applied, in (0, 1].
// REQUIRES: max_norm > 0 (aborts otherwise: a programmer error).
double ClipL2(std::span<float> values, double max_norm);

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_CLIPPING_H_
