// The aggregator's Prometheus endpoint (GET /metrics on the ops endpoint):
// the operator token, valid exposition format, counters that move when a
// round runs, 404/405 for anything else.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "deploy_fixture.h"
#include "ops_client.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDevice;
using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::HttpReply;
using ::fedge::testing_util::MakeUpdate;
using ::fedge::testing_util::ScratchDir;
using ::fedge::testing_util::ServerOptions;
using ::fedge::testing_util::WaitForTask;

constexpr char kToken[] = "metrics-test-token-0123456789";

// One HTTPS request with the operator token, verified with the dev CA.
HttpReply Https(int port, const std::string& method, const std::string& path,
                const std::string& token = kToken) {
  return testing_util::OpsRequest(port, method, path, token, CertDir() / "ca.pem");
}

// One plain HTTP/1.1 request on loopback; returns the whole response.
[[maybe_unused]] std::string Http(int port, const std::string& method, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return "";
  }
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, n);
  ::close(fd);
  return response;
}

// Parses a text-format body: checks every line and returns sample -> value.
std::map<std::string, double> ParseExposition(const std::string& body) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+)");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?))");
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::string helped;
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      helped = m[1];
    } else if (std::regex_match(line, m, kType)) {
      EXPECT_EQ(m[1], helped) << "TYPE without HELP: " << line;
      types[m[1]] = m[2];
      if (m[2] == "counter") {
        EXPECT_TRUE(std::string(m[1]).ends_with("_total")) << line;
      }
    } else if (std::regex_match(line, m, kSample)) {
      EXPECT_TRUE(types.contains(m[1])) << "sample before its TYPE: " << line;
      samples[std::string(m[1]) + std::string(m[2])] = std::stod(m[4]);
    } else {
      ADD_FAILURE() << "not exposition format: '" << line << "'";
    }
  }
  return samples;
}

[[maybe_unused]] std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

TEST(MetricsTest, PrometheusCountersMoveWhenARoundRuns) {
  const std::filesystem::path state = ScratchDir() / "metrics";
  std::filesystem::remove_all(state);
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state));
    FEDGE_ASSERT_OK(store->EnrollClient("dev-1", ""));
    FEDGE_ASSERT_OK(store->EnrollClient("dev-2", ""));
  }
  aggregator::AggregatorServerOptions options = ServerOptions(state);
  options.ops.listen = "127.0.0.1:0";
  options.ops.token = kToken;
  options.policy.rounds = 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  ASSERT_NE(server->metrics_port(), 0);

  // The token is needed unless ops.metrics_public is set.
  EXPECT_EQ(Https(server->metrics_port(), "GET", "/metrics", "").status, 401);
  EXPECT_EQ(Https(server->metrics_port(), "GET", "/metrics", "wrong-token-0123456789").status, 401);
  const HttpReply first = Https(server->metrics_port(), "GET", "/metrics");
  ASSERT_EQ(first.status, 200) << first.body << first.error;
  EXPECT_NE(first.headers.at("Content-Type").find("text/plain; version=0.0.4"), std::string::npos);
  std::map<std::string, double> before = ParseExposition(first.body);
  EXPECT_EQ(before["fedge_rounds_total{outcome=\"closed\"}"], 0);
  EXPECT_EQ(before["fedge_updates_total{verdict=\"accepted\"}"], 0);

  FEDGE_ASSERT_OK_AND_ASSIGN(auto one,
                             client::GrpcTransport::Create(CertDevice("dev-1", server->port())));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto two,
                             client::GrpcTransport::Create(CertDevice("dev-2", server->port())));
  FEDGE_ASSERT_OK(one->Join().status());
  v1::Task task_two;
  std::thread poll_two([&] { task_two = *WaitForTask(*two); });
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::Task task_one, WaitForTask(*one));
  poll_two.join();
  const size_t d = testing_util::kSmallModelSize;
  EXPECT_FALSE(one->SubmitUpdate(MakeUpdate(task_one, d - 1, 0.1f)).ok());  // refused
  FEDGE_ASSERT_OK(one->SubmitUpdate(MakeUpdate(task_one, d, 0.1f)));
  FEDGE_ASSERT_OK(two->SubmitUpdate(MakeUpdate(task_two, d, 0.1f)));
  FEDGE_ASSERT_OK(server->Wait());

  std::map<std::string, double> after =
      ParseExposition(Https(server->metrics_port(), "GET", "/metrics").body);
  EXPECT_EQ(after["fedge_rounds_total{outcome=\"opened\"}"], 1);
  EXPECT_EQ(after["fedge_rounds_total{outcome=\"closed\"}"], 1);
  EXPECT_EQ(after["fedge_rounds_total{outcome=\"failed\"}"], 0);
  EXPECT_EQ(after["fedge_updates_total{verdict=\"accepted\"}"], 2);
  EXPECT_EQ(after["fedge_updates_total{verdict=\"refused\"}"], 1);
  EXPECT_EQ(after["fedge_clients_selected_total"], 2);
  EXPECT_EQ(after["fedge_clients_joined_total"], 1);
  EXPECT_EQ(after["fedge_model_version"], 1);
  EXPECT_EQ(after["fedge_round_open"], 0);
  EXPECT_GT(after["fedge_update_received_bytes_total"], 2.0 * 4 * d);
  EXPECT_GT(after["fedge_round_close_seconds"], 0.0);
  EXPECT_EQ(after["fedge_clients_reported_total"], 2);
  EXPECT_EQ(after["fedge_clients_dropped_total"], 0);
  EXPECT_EQ(after["fedge_events_total{kind=\"round_closed\"}"], 1);
  EXPECT_EQ(after["fedge_devices{status=\"active\"}"], 2);
  EXPECT_EQ(after["fedge_live_model_version"], 1);

  EXPECT_EQ(Https(server->metrics_port(), "GET", "/other").status, 404);
  // A client that connects and says nothing does not block the endpoint.
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server->metrics_port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(silent, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(Https(server->metrics_port(), "GET", "/metrics").status, 200);
  ::close(silent);
  EXPECT_EQ(Https(server->metrics_port(), "POST", "/metrics").status, 405);
}

TEST(MetricsTest, ABadAddressIsRefusedByName) {
  const std::filesystem::path state = ScratchDir() / "metrics-bad";
  std::filesystem::remove_all(state);
  aggregator::AggregatorServerOptions options = ServerOptions(state);
  options.ops.listen = "localhost-without-port";
  options.ops.token = kToken;
  EXPECT_THAT(aggregator::AggregatorServer::Start(options).status(),
              testing_util::StatusIs(absl::StatusCode::kInvalidArgument,
                                     ::testing::HasSubstr("localhost-without-port")));
}

}  // namespace
}  // namespace fedge
