// fedge-privacy: (ε, δ) of DP-FedAvg / DP-SGD training with the RDP
// accountant of the Poisson-subsampled Gaussian mechanism, and the inverse.
//
//   fedge-privacy [--plugin LIB ...] epsilon --sampling-rate Q --noise-multiplier S --steps T
//                 --delta D [--mechanism NAME]
//   fedge-privacy calibrate --sampling-rate Q --steps T --delta D --epsilon E
//
// With --mechanism, ε is that of T releases of the mechanism as it states
// its own cost (Mechanism::accounting(): its accountant and the noise it
// really adds when configured with S), as fedge-sim and fedge-aggregator
// account it; a plug-in's mechanism is known once --plugin loaded it.
//
// The last line of output is the number alone (ε, or the noise multiplier σ),
// printed with 17 significant digits so no rounding understates ε.
// Exit codes: 0 success, 1 the computation failed, 2 bad or missing flags.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <limits>
#include <memory>
#include <system_error>
#include <vector>

#include "fedge/privacy/accountant.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/proto/plugin.h"
#include "fedge/proto/version.h"

namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  fedge-privacy [--plugin LIB ...] epsilon --sampling-rate Q --noise-multiplier S --steps T\n"
    "                --delta D [--mechanism NAME]\n"
    "  fedge-privacy calibrate --sampling-rate Q --steps T --delta D --epsilon E\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "fedge-privacy: %s\n%s", message.c_str(), kUsage);
  return 2;
}

// Prefixes a library validation message ("delta must be ...") with the flag
// that carries the argument it names.
std::string WithFlag(std::string_view message) {
  static const std::map<std::string_view, std::string_view> kFlags = {
      {"sampling_rate", "--sampling-rate"},
      {"noise_multiplier", "--noise-multiplier"},
      {"steps", "--steps"},
      {"delta", "--delta"},
      {"target_epsilon", "--epsilon"}};
  for (const auto& [argument, flag] : kFlags) {
    if (message.substr(0, argument.size()) == argument) {
      return std::string(flag) + ": " + std::string(message);
    }
  }
  return std::string(message);
}

template <typename T>
bool ParseNumber(const std::string& text, T& value) {
  if (text.empty()) return false;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  return result.ec == std::errc() && result.ptr == text.data() + text.size();
}

// ε of `steps` releases of mechanism `name` configured with noise multiplier
// `sigma`, as the mechanism states its cost. FAILED_PRECONDITION when it
// states no bound an accountant can compose.
absl::StatusOr<double> MechanismEpsilon(const std::string& name, double sampling_rate,
                                        double sigma, int64_t steps, double delta) {
  fedge::privacy::MechanismOptions options;
  options.noise_multiplier = sigma;
  options.delta = delta;
  absl::StatusOr<std::unique_ptr<fedge::privacy::Mechanism>> mechanism =
      fedge::privacy::CreateMechanism(name, options);
  if (!mechanism.ok()) {
    return absl::InvalidArgumentError("--mechanism: " + std::string(mechanism.status().message()));
  }
  absl::StatusOr<fedge::privacy::MechanismAccounting> stated = (*mechanism)->accounting();
  if (!stated.ok()) {
    return absl::FailedPreconditionError("mechanism '" + name +
                                         "' states no bound an accountant can compose: " +
                                         std::string(stated.status().message()));
  }
  if (stated->accountant.empty()) return std::numeric_limits<double>::infinity();
  absl::StatusOr<std::unique_ptr<fedge::privacy::Accountant>> accountant =
      fedge::privacy::CreateAccountant(stated->accountant);
  if (!accountant.ok()) return accountant.status();
  if (absl::Status s = (*accountant)->Step(sampling_rate, stated->noise_multiplier, steps);
      !s.ok()) {
    return s;
  }
  return (*accountant)->Epsilon(delta);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("fedge-privacy %s\n", FEDGE_VERSION_STRING);
    return 0;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (absl::Status s = fedge::config::LoadPluginFlags(args); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  if (args.empty()) return UsageError("missing subcommand (epsilon or calibrate)");
  const std::string command = args[0];
  std::set<std::string> allowed;
  const std::set<std::string> optional = {"--mechanism"};
  if (command == "epsilon") {
    allowed = {"--sampling-rate", "--noise-multiplier", "--steps", "--delta", "--mechanism"};
  } else if (command == "calibrate") {
    allowed = {"--sampling-rate", "--steps", "--delta", "--epsilon"};
  } else if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  } else {
    return UsageError("unknown subcommand '" + command + "' (want epsilon or calibrate)");
  }

  std::map<std::string, std::string> flags;
  const int argn = static_cast<int>(args.size());
  for (int i = 1; i < argn; ++i) {
    std::string arg = args[static_cast<size_t>(i)];
    std::string value;
    bool has_value = false;
    if (const std::size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    if (!allowed.count(arg)) return UsageError("unknown flag '" + arg + "' for " + command);
    if (!has_value) {
      if (i + 1 >= argn) return UsageError("flag " + arg + " needs a value");
      value = args[static_cast<size_t>(++i)];
    }
    flags[arg] = value;
  }
  for (const std::string& flag : allowed) {
    if (!flags.count(flag) && !optional.count(flag)) return UsageError("missing flag " + flag);
  }

  double sampling_rate = 0.0, delta = 0.0;
  int64_t steps = 0;
  if (!ParseNumber(flags["--sampling-rate"], sampling_rate)) {
    return UsageError("--sampling-rate must be a number, got '" + flags["--sampling-rate"] + "'");
  }
  if (!ParseNumber(flags["--steps"], steps)) {
    return UsageError("--steps must be an integer, got '" + flags["--steps"] + "'");
  }
  if (!ParseNumber(flags["--delta"], delta)) {
    return UsageError("--delta must be a number, got '" + flags["--delta"] + "'");
  }

  if (command == "epsilon") {
    double sigma = 0.0;
    if (!ParseNumber(flags["--noise-multiplier"], sigma)) {
      return UsageError("--noise-multiplier must be a number, got '" + flags["--noise-multiplier"] +
                        "'");
    }
    const absl::StatusOr<double> epsilon =
        flags.count("--mechanism")
            ? MechanismEpsilon(flags["--mechanism"], sampling_rate, sigma, steps, delta)
            : fedge::privacy::ComputeEpsilon(sampling_rate, sigma, steps, delta);
    if (absl::IsFailedPrecondition(epsilon.status())) {
      std::fprintf(stderr, "fedge-privacy: %s\n", std::string(epsilon.status().message()).c_str());
      return 1;
    }
    if (!epsilon.ok()) return UsageError(WithFlag(std::string(epsilon.status().message())));
    std::printf("epsilon at delta=%g after %lld steps (q=%g, sigma=%g):\n%.17g\n", delta,
                static_cast<long long>(steps), sampling_rate, sigma, *epsilon);
    return 0;
  }

  double target = 0.0;
  if (!ParseNumber(flags["--epsilon"], target)) {
    return UsageError("--epsilon must be a number, got '" + flags["--epsilon"] + "'");
  }
  const absl::StatusOr<double> sigma =
      fedge::privacy::CalibrateNoiseMultiplier(sampling_rate, steps, delta, target);
  if (!sigma.ok()) {
    if (sigma.status().code() == absl::StatusCode::kInvalidArgument) {
      return UsageError(WithFlag(std::string(sigma.status().message())));
    }
    std::fprintf(stderr, "fedge-privacy: %s\n", std::string(sigma.status().message()).c_str());
    return 1;
  }
  std::printf("smallest noise multiplier for epsilon<=%g at delta=%g, %lld steps, q=%g:\n%.17g\n",
              target, delta, static_cast<long long>(steps), sampling_rate, *sigma);
  return 0;
}
