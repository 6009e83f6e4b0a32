#include "fedge/models/inference.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/models/artifact.h"
#include "fedge/proto/status_macros.h"

namespace fedge::models {
namespace {

using ConvPacked = c10::intrusive_ptr<ConvPackedParamsBase<2>>;
using LinearPacked = c10::intrusive_ptr<LinearPackedParamsBase>;
using ConvPrepackFn = ConvPacked(at::Tensor, c10::optional<at::Tensor>, torch::List<int64_t>,
                                 torch::List<int64_t>, torch::List<int64_t>, int64_t);
using ConvRunFn = at::Tensor(at::Tensor, const ConvPacked&, double, int64_t);
using LinearPrepackFn = LinearPacked(at::Tensor, c10::optional<at::Tensor>);
using LinearRunFn = at::Tensor(at::Tensor, const LinearPacked&, double, int64_t);

// LibTorch's quantized kernels, found once through the dispatcher (the C++
// frontend has no module for them).
struct QuantizedOps {
  c10::TypedOperatorHandle<ConvPrepackFn> conv_prepack;
  c10::TypedOperatorHandle<ConvRunFn> conv;
  c10::TypedOperatorHandle<ConvRunFn> conv_relu;
  c10::TypedOperatorHandle<LinearPrepackFn> linear_prepack;
  c10::TypedOperatorHandle<LinearRunFn> linear;
  c10::TypedOperatorHandle<LinearRunFn> linear_relu;
};

const QuantizedOps& Ops() {
  static const QuantizedOps* ops = [] {
    auto& d = c10::Dispatcher::singleton();
    return new QuantizedOps{
        d.findSchemaOrThrow("quantized::conv2d_prepack", "").typed<ConvPrepackFn>(),
        d.findSchemaOrThrow("quantized::conv2d", "new").typed<ConvRunFn>(),
        d.findSchemaOrThrow("quantized::conv2d_relu", "new").typed<ConvRunFn>(),
        d.findSchemaOrThrow("quantized::linear_prepack", "").typed<LinearPrepackFn>(),
        d.findSchemaOrThrow("quantized::linear", "").typed<LinearRunFn>(),
        d.findSchemaOrThrow("quantized::linear_relu", "").typed<LinearRunFn>()};
  }();
  return *ops;
}

const std::vector<std::pair<std::string, at::QEngine>>& EngineNames() {
  static const auto* names =
      new std::vector<std::pair<std::string, at::QEngine>>{{"qnnpack", at::QEngine::QNNPACK},
                                                           {"onednn", at::QEngine::ONEDNN},
                                                           {"fbgemm", at::QEngine::FBGEMM},
                                                           {"x86", at::QEngine::X86}};
  return *names;
}

absl::StatusOr<at::QEngine> FindEngine(const std::string& name) {
  const auto& supported = at::globalContext().supportedQEngines();
  for (const auto& [engine_name, engine] : EngineNames()) {
    if (engine_name == name &&
        std::find(supported.begin(), supported.end(), engine) != supported.end()) {
      return engine;
    }
  }
  return absl::NotFoundError(absl::StrCat(
      "quantized engine '", name,
      "' is not available in this LibTorch; available: ", absl::StrJoin(QuantizedEngines(), ", ")));
}

void UseEngine(at::QEngine engine) {
  if (at::globalContext().qEngine() != engine) at::globalContext().setQEngine(engine);
}

bool IsWeightStep(const PlanStep& step) {
  return step.op == PlanStep::Op::kConv2d || step.op == PlanStep::Op::kLinear;
}

// fp32 execution of one step; `weight` and `bias` are used by conv/linear.
torch::Tensor ApplyFp32(const PlanStep& step, const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias) {
  torch::Tensor y;
  switch (step.op) {
    case PlanStep::Op::kConv2d:
      y = torch::conv2d(x, weight, bias, {step.stride, step.stride}, {step.padding, step.padding},
                        {1, 1}, step.groups);
      return step.relu ? torch::relu(y) : y;
    case PlanStep::Op::kLinear:
      y = torch::linear(x, weight, bias);
      return step.relu ? torch::relu(y) : y;
    case PlanStep::Op::kMaxPool2d:
      return torch::max_pool2d(x, {step.kernel, step.kernel}, {step.kernel, step.kernel}, {0, 0},
                               {1, 1});
    case PlanStep::Op::kGlobalAvgPool2d:
      return torch::adaptive_avg_pool2d(x, {1, 1});
    case PlanStep::Op::kFlatten:
      return x.reshape({x.size(0), -1});
  }
  return x;
}

// Affine uint8 parameters for values in [lo, hi], widened to contain 0 so
// that 0 is exactly representable (Jacob et al. 2018, section 2.1). The
// range is at least kMinRange wide: the kernels quantize a layer's bias with
// scale input_scale * weight_scale into int32, which a near-empty range (a
// layer that is all zeros on the sample, e.g. after pruning) would overflow.
constexpr double kMinRange = 1e-2;

std::pair<double, int64_t> QuantizationParams(double lo, double hi) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  const double scale = std::max(hi - lo, kMinRange) / 255.0;
  const auto zero_point = static_cast<int64_t>(std::clamp(std::round(-lo / scale), 0.0, 255.0));
  return {scale, zero_point};
}

// Symmetric int8, one scale per output channel (axis 0): max|row| / 127, or
// 1 for an all-zero row.
torch::Tensor QuantizeWeightPerChannel(const torch::Tensor& weight) {
  const torch::Tensor rows = weight.reshape({weight.size(0), -1});
  torch::Tensor scales = rows.abs().amax(1).div(127.0).to(torch::kDouble);
  scales = torch::where(scales > 0, scales, torch::ones_like(scales));
  return at::quantize_per_channel(weight.contiguous(), scales,
                                  torch::zeros({weight.size(0)}, torch::kLong), 0, torch::kQInt8);
}

std::vector<int64_t> AllIndices(int64_t n) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  return all;
}

torch::Tensor IndexTensor(const std::vector<int64_t>& indices) {
  return torch::tensor(indices, torch::kLong);
}

// Builds the named parameter map and layout of `network`.
std::map<std::string, torch::Tensor> NamedParameters(Network& network) {
  std::map<std::string, torch::Tensor> named;
  for (const auto& item : network.named_parameters()) named.emplace(item.key(), item.value());
  return named;
}

absl::Status CheckPlan(const std::vector<PlanStep>& plan,
                       const std::map<std::string, torch::Tensor>& named,
                       const std::string& architecture) {
  if (plan.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        "model '", architecture, "' declares no inference plan; int8 inference needs one"));
  }
  for (const PlanStep& step : plan) {
    if (!IsWeightStep(step)) continue;
    const auto w = named.find(step.name + ".weight");
    const auto b = named.find(step.name + ".bias");
    if (w == named.end() || b == named.end()) {
      return absl::InvalidArgumentError(absl::StrCat("inference plan of '", architecture,
                                                     "' names layer '", step.name,
                                                     "', which has no weight and bias"));
    }
    const int64_t rank = step.op == PlanStep::Op::kConv2d ? 4 : 2;
    if (w->second.dim() != rank || b->second.dim() != 1 || b->second.size(0) != w->second.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat("inference plan of '", architecture,
                                                     "': layer '", step.name,
                                                     "' has the wrong parameter shapes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> QuantizedEngines() {
  std::vector<std::string> names;
  const auto& supported = at::globalContext().supportedQEngines();
  for (const auto& [name, engine] : EngineNames()) {
    if (std::find(supported.begin(), supported.end(), engine) != supported.end()) {
      names.push_back(name);
    }
  }
  return names;
}

absl::StatusOr<std::vector<v1::ActivationRange>> CalibrateActivations(Network& network,
                                                                      const torch::Tensor& sample,
                                                                      int64_t batch_size) {
  if (!sample.defined() || sample.dim() < 1 || sample.size(0) == 0) {
    return absl::InvalidArgumentError("calibration needs a non-empty sample");
  }
  if (batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration batch size must be >= 1, got ", batch_size));
  }
  const std::vector<PlanStep> plan = network.InferencePlan();
  const std::map<std::string, torch::Tensor> named = NamedParameters(network);
  FEDGE_RETURN_IF_ERROR(CheckPlan(plan, named, "network"));
  try {
    torch::NoGradGuard no_grad;
    network.eval();
    std::vector<std::pair<std::string, std::pair<float, float>>> ranges = {
        {"input", {INFINITY, -INFINITY}}};
    for (const PlanStep& step : plan) {
      if (IsWeightStep(step)) ranges.push_back({step.name, {INFINITY, -INFINITY}});
    }
    const auto widen = [](std::pair<float, float>& range, const torch::Tensor& t) {
      range.first = std::min(range.first, t.min().item<float>());
      range.second = std::max(range.second, t.max().item<float>());
    };
    for (int64_t begin = 0; begin < sample.size(0); begin += batch_size) {
      torch::Tensor x =
          sample.narrow(0, begin, std::min(batch_size, sample.size(0) - begin)).to(torch::kFloat);
      widen(ranges[0].second, x);
      size_t next = 1;
      for (const PlanStep& step : plan) {
        if (IsWeightStep(step)) {
          x = ApplyFp32(step, x, named.at(step.name + ".weight"), named.at(step.name + ".bias"));
          widen(ranges[next++].second, x);
        } else {
          x = ApplyFp32(step, x, {}, {});
        }
      }
    }
    std::vector<v1::ActivationRange> out;
    for (const auto& [name, range] : ranges) {
      v1::ActivationRange r;
      r.set_name(name);
      r.set_min(range.first);
      r.set_max(range.second);
      out.push_back(std::move(r));
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("calibration failed: ", e.what()));
  }
}

struct InferenceModel::Layer {
  PlanStep step;
  torch::Tensor weight;  // fp32, after dropping dead channels
  torch::Tensor bias;
  ConvPacked conv;  // int8
  LinearPacked linear;
  double scale = 1.0;  // int8: the output's quantization
  int64_t zero_point = 0;
};

InferenceModel::InferenceModel() = default;
InferenceModel::~InferenceModel() = default;

absl::StatusOr<std::unique_ptr<InferenceModel>> InferenceModel::Create(
    const v1::ModelArtifact& artifact, const InferenceOptions& options) {
  FEDGE_ASSIGN_OR_RETURN(ModelSpec spec, FromProto(artifact.header().model()));
  FEDGE_ASSIGN_OR_RETURN(NetworkPtr network, CreateModel(spec, 0));
  at::QEngine engine = at::QEngine::NoQEngine;
  if (options.int8) {
    FEDGE_ASSIGN_OR_RETURN(engine, FindEngine(options.engine));
  }

  // The network's own parameter order is the artifact's layout.
  std::vector<ParameterLayout> layout;
  std::map<std::string, torch::Tensor> named;
  int64_t offset = 0;
  for (const auto& item : network->named_parameters()) {
    ParameterLayout p;
    p.name = item.key();
    p.shape = item.value().sizes().vec();
    p.numel = item.value().numel();
    p.offset = offset;
    offset += p.numel;
    layout.push_back(std::move(p));
  }
  std::vector<float> values(static_cast<size_t>(offset));
  FEDGE_RETURN_IF_ERROR(DecodeArtifact(artifact, layout, values));
  torch::Tensor flat = torch::from_blob(values.data(), {offset}, torch::kFloat).clone();
  for (const ParameterLayout& p : layout) {
    named.emplace(p.name, flat.narrow(0, p.offset, p.numel).view(p.shape));
  }
  const std::vector<PlanStep> plan = network->InferencePlan();
  FEDGE_RETURN_IF_ERROR(CheckPlan(plan, named, spec.architecture));

  std::map<std::string, std::pair<float, float>> ranges;
  for (const v1::ActivationRange& r : artifact.header().activation_ranges()) {
    if (!std::isfinite(r.min()) || !std::isfinite(r.max()) || r.min() > r.max()) {
      return absl::InvalidArgumentError(absl::StrCat("activation range '", r.name(), "' [", r.min(),
                                                     ", ", r.max(), "] is not valid"));
    }
    ranges[r.name()] = {r.min(), r.max()};
  }
  if (options.int8) {
    std::vector<std::string> missing;
    if (!ranges.contains("input")) missing.push_back("input");
    for (const PlanStep& step : plan) {
      if (IsWeightStep(step) && !ranges.contains(step.name)) missing.push_back(step.name);
    }
    if (!missing.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("int8 inference needs calibrated activation ranges; model version ",
                       artifact.header().version(), " has none for ", absl::StrJoin(missing, ", "),
                       " (calibrate with CalibrateActivations)"));
    }
  }

  auto model = std::unique_ptr<InferenceModel>(new InferenceModel());
  model->spec_ = spec;
  model->options_ = options;
  model->engine_ = engine;
  try {
    torch::NoGradGuard no_grad;
    // Shapes along the plan, for the features per channel a linear layer
    // reads after a flatten.
    std::vector<int64_t> input_shape = {1};
    input_shape.insert(input_shape.end(), spec.input_shape.begin(), spec.input_shape.end());
    std::vector<int64_t> per_channel(plan.size(), 1);  // features per incoming channel
    {
      torch::Tensor x = torch::zeros(input_shape);
      int64_t spatial = 1;
      for (size_t i = 0; i < plan.size(); ++i) {
        const PlanStep& step = plan[i];
        if (step.op == PlanStep::Op::kFlatten) spatial = x.dim() > 2 ? x[0][0].numel() : 1;
        if (step.op == PlanStep::Op::kLinear) per_channel[i] = spatial;
        if (IsWeightStep(step)) {
          x = ApplyFp32(step, x, named.at(step.name + ".weight"), named.at(step.name + ".bias"));
          spatial = 1;
        } else {
          x = ApplyFp32(step, x, {}, {});
        }
      }
    }

    // Dead channels: alive going forward, kept going backward (see the
    // header). Indices are of the weight steps in plan order.
    std::vector<size_t> steps;
    for (size_t i = 0; i < plan.size(); ++i) {
      if (IsWeightStep(plan[i])) steps.push_back(i);
    }
    const size_t n = steps.size();
    const auto is_depthwise = [&](size_t k) {
      const PlanStep& s = plan[steps[k]];
      return s.op == PlanStep::Op::kConv2d && s.groups > 1 &&
             named.at(s.name + ".weight").size(1) == 1 &&
             s.groups == named.at(s.name + ".weight").size(0);
    };
    const auto is_dense = [&](size_t k) { return plan[steps[k]].groups == 1; };
    bool compact = options.drop_dead_channels && is_dense(0);
    for (size_t k = 0; k < n; ++k) compact = compact && (is_dense(k) || is_depthwise(k));
    // keep[k]: output channels of weight step k that are kept; keep_in[k]:
    // its input channels (all for the first).
    std::vector<std::vector<int64_t>> keep(n), keep_in(n);
    std::vector<std::vector<bool>> alive(n);
    for (size_t k = 0; k < n; ++k) {
      const PlanStep& s = plan[steps[k]];
      const torch::Tensor& w = named.at(s.name + ".weight");
      const torch::Tensor& b = named.at(s.name + ".bias");
      const int64_t out = w.size(0);
      alive[k].assign(static_cast<size_t>(out), true);
      if (!compact || k + 1 == n) continue;
      torch::Tensor nonzero_row;
      if (k == 0) {
        nonzero_row = w.reshape({out, -1}).abs().sum(1) > 0;
      } else if (is_depthwise(k)) {
        std::vector<uint8_t> in_alive(alive[k - 1].begin(), alive[k - 1].end());
        nonzero_row = (w.reshape({out, -1}).abs().sum(1) > 0)
                          .logical_and(torch::tensor(in_alive, torch::kBool));
      } else {
        std::vector<int64_t> columns;
        const int64_t group = per_channel[steps[k]];
        for (size_t c = 0; c < alive[k - 1].size(); ++c) {
          if (!alive[k - 1][c]) continue;
          for (int64_t j = 0; j < group; ++j)
            columns.push_back(static_cast<int64_t>(c) * group + j);
        }
        torch::Tensor reading =
            w.reshape({out, static_cast<int64_t>(alive[k - 1].size()) * group, -1});
        nonzero_row = reading.index_select(1, IndexTensor(columns)).abs().sum({1, 2}) > 0;
      }
      const torch::Tensor is_alive = nonzero_row.logical_or(b != 0);
      for (int64_t c = 0; c < out; ++c) alive[k][static_cast<size_t>(c)] = is_alive[c].item<bool>();
    }
    for (size_t k = n; k-- > 0;) {
      const int64_t out = named.at(plan[steps[k]].name + ".weight").size(0);
      if (k + 1 == n || !compact) {
        keep[k] = AllIndices(out);
      } else if (is_depthwise(k + 1)) {
        keep[k] = keep[k + 1];
      } else {
        for (int64_t c = 0; c < out; ++c) {
          if (alive[k][static_cast<size_t>(c)]) keep[k].push_back(c);
        }
        if (keep[k].empty()) keep[k].push_back(0);  // a dead layer still needs a shape
      }
    }
    for (size_t k = 0; k < n; ++k) {
      const torch::Tensor& w = named.at(plan[steps[k]].name + ".weight");
      keep_in[k] = k == 0 ? AllIndices(w.size(1) * (is_depthwise(k) ? w.size(0) : 1)) : keep[k - 1];
    }

    size_t k = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      Layer layer;
      layer.step = plan[i];
      if (IsWeightStep(plan[i])) {
        torch::Tensor w = named.at(plan[i].name + ".weight");
        torch::Tensor b = named.at(plan[i].name + ".bias");
        const torch::Tensor rows = IndexTensor(keep[k]);
        model->dropped_channels_ += w.size(0) - static_cast<int64_t>(keep[k].size());
        w = w.index_select(0, rows);
        b = b.index_select(0, rows);
        if (is_depthwise(k)) {
          layer.step.groups = static_cast<int64_t>(keep[k].size());
        } else if (k > 0) {
          const int64_t group = plan[i].op == PlanStep::Op::kLinear ? per_channel[i] : 1;
          std::vector<int64_t> columns;
          for (int64_t c : keep_in[k]) {
            for (int64_t j = 0; j < group; ++j) columns.push_back(c * group + j);
          }
          w = w.index_select(1, IndexTensor(columns));
        }
        layer.weight = w.contiguous();
        layer.bias = b.contiguous();
        model->num_parameters_ += layer.weight.numel() + layer.bias.numel();
        if (options.int8) {
          UseEngine(engine);
          const torch::Tensor qw = QuantizeWeightPerChannel(layer.weight);
          std::tie(layer.scale, layer.zero_point) =
              QuantizationParams(ranges[plan[i].name].first, ranges[plan[i].name].second);
          if (plan[i].op == PlanStep::Op::kConv2d) {
            layer.conv = Ops().conv_prepack.call(
                qw, layer.bias, torch::List<int64_t>({plan[i].stride, plan[i].stride}),
                torch::List<int64_t>({plan[i].padding, plan[i].padding}),
                torch::List<int64_t>({1, 1}), layer.step.groups);
          } else {
            layer.linear = Ops().linear_prepack.call(qw, layer.bias);
          }
        }
        ++k;
      }
      model->layers_.push_back(std::move(layer));
    }
    if (options.int8) {
      std::tie(model->input_scale_, model->input_zero_point_) =
          QuantizationParams(ranges["input"].first, ranges["input"].second);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building the ", options.int8 ? "int8" : "fp32",
                                            " engine for '", spec.architecture,
                                            "' failed: ", e.what()));
  }
  return model;
}

absl::StatusOr<torch::Tensor> InferenceModel::Forward(const torch::Tensor& input) {
  std::vector<int64_t> expected = {input.dim() > 0 ? input.size(0) : 0};
  expected.insert(expected.end(), spec_.input_shape.begin(), spec_.input_shape.end());
  if (input.sizes().vec() != expected || input.size(0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("input has shape [", absl::StrJoin(input.sizes().vec(), ", "),
                     "]; the model takes [B, ", absl::StrJoin(spec_.input_shape, ", "), "]"));
  }
  try {
    torch::NoGradGuard no_grad;
    if (!options_.int8) {
      torch::Tensor x = input.to(torch::kFloat);
      for (const Layer& layer : layers_) x = ApplyFp32(layer.step, x, layer.weight, layer.bias);
      return x;
    }
    UseEngine(engine_);
    torch::Tensor x = at::quantize_per_tensor(input.to(torch::kFloat).contiguous(), input_scale_,
                                              input_zero_point_, torch::kQUInt8);
    for (const Layer& layer : layers_) {
      const PlanStep& step = layer.step;
      switch (step.op) {
        case PlanStep::Op::kConv2d:
          x = (step.relu ? Ops().conv_relu : Ops().conv)
                  .call(x, layer.conv, layer.scale, layer.zero_point);
          break;
        case PlanStep::Op::kLinear:
          x = (step.relu ? Ops().linear_relu : Ops().linear)
                  .call(x, layer.linear, layer.scale, layer.zero_point);
          break;
        default:
          x = ApplyFp32(step, x, {}, {});
      }
    }
    return x.dequantize();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("inference failed: ", e.what()));
  }
}

}  // namespace fedge::models
