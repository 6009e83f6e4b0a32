// fedge_secagg_round_bench: one secure-aggregation round (SecAgg or SecAgg+,
// fedge/privacy/secagg/protocol.h) with n clients, vectors of d words and a
// share of dropouts, against plain aggregation of the same vectors measured
// in the same run. Prints one markdown table row per (n, d, dropout).
//
// Measured, in one thread (the clients run one after another, as each would
// on its own device):
//  client s      mean over the clients that finished the round of the time
//                spent in their four protocol calls (key generation, Shamir
//                sharing and AES-GCM, mask expansion, unmasking answer);
//                plain: packing the quantized vector into its message.
//  server s      all of the server's work: taking in every message (folding
//                masked vectors), closing the phases, building each client's
//                answer, unmasking; plain: taking in and folding the packed
//                vectors of the same clients.
//  upload B      serialized bytes of a client's four messages; plain: the
//                message carrying its quantized vector in the clear.
// Dropouts: a `dropout` share of the cohort (seeded) stops at a phase
// drawn uniformly from the four, sending nothing from then on. The secure
// sum is checked against the plain sum of the same clients ("exact").
//
// Usage: fedge_secagg_round_bench [--protocol=secagg+] [--n=10,100,1000]
//          [--d=10000,100000,1000000] [--dropout=0,0.1,0.3]
//          [--threshold=0.34] [--neighbours=0] [--seed=1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fedge/privacy/secagg/protocol.h"

namespace {

namespace secagg = fedge::privacy::secagg;
namespace v1 = fedge::v1;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <typename T>
std::vector<T> ParseList(const std::string& text) {
  std::vector<T> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    out.push_back(static_cast<T>(std::strtod(text.substr(begin, end - begin).c_str(), nullptr)));
    begin = end + 1;
  }
  return out;
}

void Pack(const std::vector<uint32_t>& words, std::string& bytes) {
  bytes.resize(words.size() * 4);
  for (size_t i = 0; i < words.size(); ++i) {
    const uint32_t w = words[i];
    bytes[4 * i] = static_cast<char>(w);
    bytes[4 * i + 1] = static_cast<char>(w >> 8);
    bytes[4 * i + 2] = static_cast<char>(w >> 16);
    bytes[4 * i + 3] = static_cast<char>(w >> 24);
  }
}

struct Options {
  std::string protocol = "secagg+";
  double threshold = 0.34;
  int neighbours = 0;
  uint64_t seed = 1;
};

int RunCell(const Options& options, int n, int64_t d, double dropout) {
  std::vector<std::string> cohort;
  for (int i = 0; i < n; ++i) cohort.push_back("client-" + std::to_string(i));
  secagg::SecAggOptions so;
  so.protocol = *secagg::ParseProtocol(options.protocol);
  so.threshold = options.threshold;
  so.neighbours = options.neighbours;
  absl::StatusOr<v1::SecAggConfig> config =
      secagg::MakeSecAggConfig(so, cohort, static_cast<uint64_t>(d), options.seed);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  const uint64_t round = 1;
  auto server = *secagg::SecAggServer::Create(*config, round);
  std::vector<std::unique_ptr<secagg::SecAggClient>> clients;
  for (const std::string& id : cohort) {
    clients.push_back(*secagg::SecAggClient::Create(*config, round, id));
  }
  std::mt19937_64 rng(options.seed * 7919 + static_cast<uint64_t>(n) * 31 +
                      static_cast<uint64_t>(d) + static_cast<uint64_t>(dropout * 1000));
  std::vector<int> drop_at(static_cast<size_t>(n), 5);
  {
    std::vector<int> order(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), rng);
    const int drops = static_cast<int>(dropout * n + 0.5);
    for (int j = 0; j < drops; ++j) {
      drop_at[static_cast<size_t>(order[static_cast<size_t>(j)])] = 1 + static_cast<int>(rng() % 4);
    }
  }
  std::vector<double> client_seconds(static_cast<size_t>(n), 0.0);
  std::vector<uint64_t> client_bytes(static_cast<size_t>(n), 0);
  std::vector<bool> finished(static_cast<size_t>(n), false);
  double server_seconds = 0.0;
  double plain_client_seconds = 0.0, plain_server_seconds = 0.0;
  uint64_t plain_bytes = 0;
  int plain_clients = 0;
  std::vector<uint32_t> plain_sum(static_cast<size_t>(d), 0);
  std::vector<uint32_t> input(static_cast<size_t>(d));
  std::string packed;
  absl::Status status;
  for (int p = 1; p <= 4 && status.ok(); ++p) {
    for (int i = 0; i < n; ++i) {
      if (drop_at[static_cast<size_t>(i)] <= p) continue;
      const std::string& id = cohort[static_cast<size_t>(i)];
      Clock::time_point start = Clock::now();
      absl::StatusOr<v1::SecAggServerMessage> answer;
      if (p > 1) {
        answer = server->MessageFor(id, static_cast<v1::SecAggPhase>(p - 1));
        server_seconds += Since(start);
        if (!answer.ok()) continue;  // dropped by the server
      }
      secagg::SecAggClient& c = *clients[static_cast<size_t>(i)];
      absl::StatusOr<v1::SecAggClientMessage> message;
      if (p == 3) {
        for (uint32_t& w : input) w = static_cast<uint32_t>(rng());
        // The plain baseline: the same vector packed and folded in the clear.
        start = Clock::now();
        v1::SecAggClientMessage clear;
        clear.set_round(round);
        clear.set_client_id(id);
        clear.set_phase(v1::SECAGG_PHASE_MASKED_INPUT);
        Pack(input, *clear.mutable_masked_input()->mutable_masked_vector());
        plain_client_seconds += Since(start);
        plain_bytes += clear.ByteSizeLong();
        ++plain_clients;
        start = Clock::now();
        const auto* bytes =
            reinterpret_cast<const uint8_t*>(clear.masked_input().masked_vector().data());
        for (size_t k = 0; k < plain_sum.size(); ++k) {
          uint32_t w;
          std::memcpy(&w, bytes + 4 * k, 4);
          plain_sum[k] += w;
        }
        plain_server_seconds += Since(start);
      }
      start = Clock::now();
      if (p == 1) message = c.AdvertiseKeys();
      if (p == 2) message = c.ShareKeys(*answer);
      if (p == 3) message = c.MaskedInput(*answer, input);
      if (p == 4) message = c.Unmask(*answer);
      client_seconds[static_cast<size_t>(i)] += Since(start);
      if (!message.ok()) {
        std::fprintf(stderr, "client %d phase %d: %s\n", i, p, message.status().ToString().c_str());
        return 1;
      }
      client_bytes[static_cast<size_t>(i)] += message->ByteSizeLong();
      if (p == 4) finished[static_cast<size_t>(i)] = true;
      start = Clock::now();
      (void)server->Receive(*message);
      server_seconds += Since(start);
    }
    Clock::time_point start = Clock::now();
    status = server->ClosePhase();
    server_seconds += Since(start);
  }
  std::string exact = "aborted";
  if (status.ok()) {
    absl::StatusOr<std::vector<uint32_t>> sum = server->TakeSum();
    exact = sum.ok() && *sum == plain_sum ? "yes" : "NO";
  } else {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
  }
  double client_mean = 0.0;
  uint64_t bytes_mean = 0;
  int done = 0;
  for (int i = 0; i < n; ++i) {
    if (!finished[static_cast<size_t>(i)]) continue;
    client_mean += client_seconds[static_cast<size_t>(i)];
    bytes_mean += client_bytes[static_cast<size_t>(i)];
    ++done;
  }
  if (done > 0) {
    client_mean /= done;
    bytes_mean /= static_cast<uint64_t>(done);
  }
  const double plain_client = plain_clients > 0 ? plain_client_seconds / plain_clients : 0.0;
  const double plain_upload =
      plain_clients > 0 ? static_cast<double>(plain_bytes) / plain_clients : 0.0;
  std::printf(
      "| %s | %d | %lld | %.0f%% | %u/%u | %.4f | %.5f | %.3f | %.4f | %llu | %.0f | %.3f | %s |\n",
      options.protocol.c_str(), n, static_cast<long long>(d), dropout * 100, config->threshold(),
      config->neighbours(), client_mean, plain_client, server_seconds, plain_server_seconds,
      static_cast<unsigned long long>(bytes_mean), plain_upload,
      plain_upload > 0 ? static_cast<double>(bytes_mean) / plain_upload : 0.0, exact.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::vector<int> ns = {10, 100, 1000};
  std::vector<int64_t> ds = {10000, 100000, 1000000};
  std::vector<double> dropouts = {0.0, 0.1, 0.3};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* key) -> const char* {
      const size_t len = std::strlen(key);
      return arg.compare(0, len, key) == 0 ? arg.c_str() + len : nullptr;
    };
    if (const char* v = value("--protocol=")) {
      options.protocol = v;
    } else if (const char* v = value("--n=")) {
      ns = ParseList<int>(v);
    } else if (const char* v = value("--d=")) {
      ds = ParseList<int64_t>(v);
    } else if (const char* v = value("--dropout=")) {
      dropouts = ParseList<double>(v);
    } else if (const char* v = value("--threshold=")) {
      options.threshold = std::strtod(v, nullptr);
    } else if (const char* v = value("--neighbours=")) {
      options.neighbours = std::atoi(v);
    } else if (const char* v = value("--seed=")) {
      options.seed = std::strtoull(v, nullptr, 10);
    } else {
      std::fprintf(stderr, "unknown argument '%s'\n", arg.c_str());
      return 2;
    }
  }
  std::printf(
      "| protocol | n | d | dropout | t/k | client s | plain client s | server s | plain server "
      "s | upload B/client | plain upload B | upload ratio | exact |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int n : ns) {
    for (int64_t d : ds) {
      for (double dropout : dropouts) {
        if (RunCell(options, n, d, dropout) != 0) return 1;
      }
    }
  }
  return 0;
}
