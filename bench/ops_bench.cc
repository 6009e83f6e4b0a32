// fedge_ops_bench: the status API of an aggregator with 10,000 registered
// devices (docs/operations.md, docs/benchmarks.md).
//
// Set-up: a state directory on /dev/shm with N enrolled token devices; an
// in-process AggregatorServer over TLS (development certificates) with its
// ops endpoint; every device is made "seen" with one Heartbeat, a tenth of
// them report drift; the state directory holds 21 signed model versions
// (each with accuracy and loss). No round opens (min_clients > N), so the
// figures are the status API's alone.
//
// Measure: for each endpoint, sequential requests on one keep-alive HTTPS
// connection (latency p50/p99), then `threads` connections in parallel for
// a fixed time (requests/s). As in every fedge benchmark, the figures are
// relative to a baseline measured in the same run: GET /style.css (a static
// file through the same server, TLS and routing).
//
//   fedge_ops_bench [devices=10000] [requests=400] [threads=4] [seconds=3]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/models/artifact.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/v1/service.grpc.pb.h"

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "ops-bench-operator-token-0123456789";
constexpr char kDeviceToken[] = "bench-device-token-0123456789";

// One keep-alive HTTPS connection to the ops endpoint.
class Connection {
 public:
  Connection(int port, const std::filesystem::path& ca)
      : context_(ssl::context::tls_client), stream_(io_, context_) {
    context_.load_verify_file(ca.string());
    context_.set_verify_mode(ssl::verify_peer);
    stream_.set_verify_callback(ssl::host_name_verification("localhost"));
    SSL_set_tlsext_host_name(stream_.native_handle(), "localhost");
    beast::get_lowest_layer(stream_).connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    beast::get_lowest_layer(stream_).socket().set_option(asio::ip::tcp::no_delay(true));
    stream_.handshake(ssl::stream_base::client);
  }
  // The response body; throws on an error status.
  size_t Get(const std::string& target) {
    http::request<http::empty_body> request(http::verb::get, target, 11);
    request.set(http::field::host, "localhost");
    request.set(http::field::authorization, std::string("Bearer ") + kToken);
    request.keep_alive(true);
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
    http::write(stream_, request);
    http::response<http::string_body> response;
    http::read(stream_, buffer_, response);
    if (response.result_int() != 200) {
      throw std::runtime_error(
          absl::StrFormat("%s: HTTP %d %s", target, response.result_int(), response.body()));
    }
    return response.body().size();
  }

 private:
  asio::io_context io_;
  ssl::context context_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  const int devices = argc > 1 ? std::atoi(argv[1]) : 10'000;
  const int requests = argc > 2 ? std::atoi(argv[2]) : 400;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 4;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 3.0;
  const std::filesystem::path root =
      std::filesystem::exists("/dev/shm") ? "/dev/shm/fedge-ops-bench" : "/tmp/fedge-ops-bench";
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  const std::filesystem::path certs = root / "certs";
  if (std::system(
          absl::StrFormat("bash %s %s > /dev/null 2>&1", FEDGE_MAKE_DEV_CERTS, certs.string())
              .c_str()) != 0) {
    std::cerr << "making certificates failed\n";
    return 1;
  }
  fedge::models::ModelSpec spec;
  spec.architecture = "mlp";
  spec.input_shape = {784};
  spec.num_classes = 10;
  std::vector<fedge::models::ParameterLayout> layout = {{"fc.weight", {10, 784}, 0, 7840},
                                                        {"fc.bias", {10}, 7840, 10}};
  std::vector<float> values(7850, 0.01f);
  auto key = fedge::models::SigningKey::LoadPem(certs / "signing.key");
  if (!key.ok()) return std::cerr << key.status() << "\n", 1;
  const auto setup_start = Clock::now();
  {
    auto store = fedge::aggregator::StateStore::Open(root / "state");
    if (!store.ok()) return std::cerr << store.status() << "\n", 1;
    for (uint64_t v = 0; v <= 20; ++v) {
      fedge::models::ArtifactOptions artifact_options;
      artifact_options.version = v;
      artifact_options.parent_version = v == 0 ? 0 : v - 1;
      auto artifact = fedge::models::BuildFp32Artifact(spec, layout, values, artifact_options);
      if (!artifact.ok()) return std::cerr << artifact.status() << "\n", 1;
      if (absl::Status s = fedge::models::SignArtifact(*artifact, *key); !s.ok()) {
        return std::cerr << s << "\n", 1;
      }
      fedge::aggregator::VersionRecord record;
      record.version = v;
      record.parent = artifact_options.parent_version;
      record.round = v;
      record.master_bytes = record.artifact_bytes = artifact->ByteSizeLong();
      record.metrics = {{"clients_train_accuracy", 0.5 + 0.02 * v},
                        {"clients_train_loss", 1.0 - 0.03 * v}};
      if (absl::Status s = (*store)->AddVersion(record, *artifact, *artifact); !s.ok()) {
        return std::cerr << s << "\n", 1;
      }
    }
    for (int i = 0; i < devices; ++i) {
      absl::Status s = (*store)->EnrollClient(absl::StrFormat("dev-%05d", i), kDeviceToken);
      if (!s.ok()) return std::cerr << s << "\n", 1;
    }
  }
  const double enroll_s = std::chrono::duration<double>(Clock::now() - setup_start).count();

  fedge::aggregator::AggregatorServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.state_dir = root / "state";
  options.signing_key_file = certs / "signing.key";
  options.tls.cert_file = certs / "server.pem";
  options.tls.key_file = certs / "server.key";
  options.policy.goal = 2;
  options.policy.min_clients = devices + 1;  // no round opens
  options.ops.listen = "127.0.0.1:0";
  options.ops.token = kToken;
  auto server = fedge::aggregator::AggregatorServer::Start(options);
  if (!server.ok()) return std::cerr << server.status() << "\n", 1;

  // Every device is seen once; every tenth reports drift.
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *fedge::proto::ReadFile(certs / "ca.pem");
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel(absl::StrFormat("127.0.0.1:%d", (*server)->port()),
                                           grpc::SslCredentials(tls), args);
  auto stub = fedge::v1::Federation::NewStub(channel);
  const auto seen_start = Clock::now();
  for (int i = 0; i < devices; ++i) {
    const std::string id = absl::StrFormat("dev-%05d", i);
    grpc::ClientContext context;
    context.AddMetadata("x-fedge-client-id", id);
    context.AddMetadata("x-fedge-token", kDeviceToken);
    fedge::v1::HeartbeatRequest request;
    request.set_client_id(id);
    fedge::v1::HeartbeatResponse response;
    grpc::Status status = stub->Heartbeat(&context, request, &response);
    if (!status.ok()) return std::cerr << id << ": " << status.error_message() << "\n", 1;
    if (i % 10 == 0) {
      grpc::ClientContext drift_context;
      drift_context.AddMetadata("x-fedge-client-id", id);
      drift_context.AddMetadata("x-fedge-token", kDeviceToken);
      fedge::v1::DriftReport report;
      report.set_client_id(id);
      auto* event = report.add_events();
      event->set_detector("page-hinkley");
      event->set_stream("loss");
      event->set_time(1'700'000'000'000 + i);
      fedge::v1::Ack ack;
      status = stub->ReportDrift(&drift_context, report, &ack);
      if (!status.ok()) return std::cerr << id << ": " << status.error_message() << "\n", 1;
    }
  }
  const double seen_s = std::chrono::duration<double>(Clock::now() - seen_start).count();
  std::printf(
      "set-up: %d devices enrolled in %.1f s, seen (heartbeat; 10%% drift) in %.1f s; "
      "21 versions\n",
      devices, enroll_s, seen_s);

  const int port = (*server)->ops_port();
  const std::filesystem::path ca = certs / "ca.pem";
  struct Endpoint {
    const char* name;
    std::string target;
  };
  const std::vector<Endpoint> endpoints = {
      {"static file (baseline)", "/style.css"},
      {"devices, first page", "/api/devices?offset=0&limit=50"},
      {"devices, last page", absl::StrFormat("/api/devices?offset=%d&limit=50", devices - 50)},
      {"devices, id filter", "/api/devices?q=dev-012&limit=50"},
      {"devices, status+drift", "/api/devices?status=active&drift=yes&limit=50"},
      {"overview", "/api/overview"},
      {"versions (21)", "/api/versions"},
      {"events", "/api/events?limit=100"},
      {"round", "/api/round"},
      {"metrics", "/metrics"},
  };
  std::printf("\n%-24s %10s %10s %10s %12s %10s\n", "endpoint", "p50 ms", "p99 ms", "x base",
              absl::StrFormat("req/s (x%d)", threads).c_str(), "bytes");
  double baseline_p50 = 0;
  for (const Endpoint& e : endpoints) {
    Connection connection(port, ca);
    size_t bytes = 0;
    for (int i = 0; i < 20; ++i) bytes = connection.Get(e.target);  // warm-up
    std::vector<double> ms;
    for (int i = 0; i < requests; ++i) {
      const auto start = Clock::now();
      connection.Get(e.target);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
    const double p50 = Percentile(ms, 0.5);
    if (baseline_p50 == 0) baseline_p50 = p50;
    std::atomic<uint64_t> done{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        Connection c(port, ca);
        while (!stop.load()) {
          c.Get(e.target);
          done += 1;
        }
      });
    }
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (std::thread& w : workers) w.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("%-24s %10.3f %10.3f %10.1f %12.0f %10zu\n", e.name, p50, Percentile(ms, 0.99),
                p50 / baseline_p50, done.load() / elapsed, bytes);
  }
  (*server)->Shutdown();
  std::filesystem::remove_all(root);
  return 0;
}
