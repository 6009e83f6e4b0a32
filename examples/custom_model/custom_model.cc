// Adding a model architecture to fedge: one class, one registration line,
// then select it by name like any built-in.
//
//   build/release/examples/custom_model/fedge_custom_model_example [rounds]
//
// Runs FedAvg with a multinomial logistic regression ("logreg") on
// Synthetic(0.5, 0.5), 30 devices, 10 per round.
#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "fedge/models/model_zoo.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/simulation.h"

namespace {

// Multinomial logistic regression: one linear layer on the flattened input.
class LogisticRegression final : public fedge::models::Network {
 public:
  LogisticRegression(int64_t inputs, int64_t classes)
      : linear_(register_module("linear", torch::nn::Linear(inputs, classes))) {}

  torch::Tensor forward(torch::Tensor x) override { return linear_->forward(x.flatten(1)); }

 private:
  torch::nn::Linear linear_;
};

// The one registration line.
[[maybe_unused]] const bool kRegistered = fedge::models::RegisterArchitecture(
    "logreg", [](const fedge::models::ModelSpec& spec)
                  -> absl::StatusOr<fedge::models::NetworkPtr> {
      int64_t inputs = 1;
      for (int64_t d : spec.input_shape) inputs *= d;
      return std::make_shared<LogisticRegression>(inputs, spec.num_classes);
    });

}  // namespace

int main(int argc, char** argv) {
  using fedge::simulations::SetConfigValue;
  fedge::simulations::SimulationConfig config = fedge::simulations::DefaultConfig();
  // The same keys as fedge-sim's --set; "logreg" is now a valid architecture.
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"run.name", "logreg-synthetic"},
           {"data.dataset", "synthetic"},
           {"data.synthetic.alpha", "0.5"},
           {"data.synthetic.beta", "0.5"},
           {"data.synthetic.devices", "30"},
           {"partition.method", "natural"},
           {"partition.num_clients", "30"},
           {"model.architecture", "logreg"},
           {"train.batch_size", "10"},
           {"train.learning_rate", "0.05"},
           {"round.rounds", argc > 1 ? argv[1] : "20"},
           {"run.progress", "off"}}) {
    if (absl::Status s = SetConfigValue(config, key, value); !s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  auto data = fedge::simulations::LoadData(config);
  if (!data.ok()) return 1;
  auto result = fedge::simulations::RunSimulation(config, std::move(*data));
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  std::printf("logreg on Synthetic(0.5,0.5): accuracy %.3f after %d rounds (%lld parameters)\n",
              result->summary.final_accuracy, result->summary.rounds,
              static_cast<long long>(result->summary.num_parameters));
  // Exit status says whether it learned: chance is 1/10.
  return result->summary.final_accuracy > 0.3 ? 0 : 3;
}
