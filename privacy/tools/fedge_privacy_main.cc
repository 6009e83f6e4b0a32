// fedge-privacy: (ε, δ) of DP-FedAvg / DP-SGD training with the RDP
// accountant of the Poisson-subsampled Gaussian mechanism, and the inverse.
//
//   fedge-privacy epsilon --sampling-rate Q --noise-multiplier S --steps T --delta D
//   fedge-privacy calibrate --sampling-rate Q --steps T --delta D --epsilon E
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
#include <system_error>

#include "fedge/privacy/accountant.h"
#include "fedge/proto/version.h"

namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  fedge-privacy epsilon --sampling-rate Q --noise-multiplier S --steps T --delta D\n"
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

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("fedge-privacy %s\n", FEDGE_VERSION_STRING);
    return 0;
  }
  if (argc < 2) return UsageError("missing subcommand (epsilon or calibrate)");
  const std::string command = argv[1];
  std::set<std::string> allowed;
  if (command == "epsilon") {
    allowed = {"--sampling-rate", "--noise-multiplier", "--steps", "--delta"};
  } else if (command == "calibrate") {
    allowed = {"--sampling-rate", "--steps", "--delta", "--epsilon"};
  } else if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  } else {
    return UsageError("unknown subcommand '" + command + "' (want epsilon or calibrate)");
  }

  std::map<std::string, std::string> flags;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (const std::size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    if (!allowed.count(arg)) return UsageError("unknown flag '" + arg + "' for " + command);
    if (!has_value) {
      if (i + 1 >= argc) return UsageError("flag " + arg + " needs a value");
      value = argv[++i];
    }
    flags[arg] = value;
  }
  for (const std::string& flag : allowed) {
    if (!flags.count(flag)) return UsageError("missing flag " + flag);
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
        fedge::privacy::ComputeEpsilon(sampling_rate, sigma, steps, delta);
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
