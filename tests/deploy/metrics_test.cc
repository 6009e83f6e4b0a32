// The aggregator's Prometheus endpoint: valid exposition format, counters
// that move when a round runs, 404/405 for anything else.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "deploy_fixture.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDevice;
using ::fedge::testing_util::MakeUpdate;
using ::fedge::testing_util::ScratchDir;
using ::fedge::testing_util::ServerOptions;
using ::fedge::testing_util::WaitForTask;

// One HTTP/1.1 request on loopback; returns the whole response.
std::string Http(int port, const std::string& method, const std::string& path) {
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

std::string Body(const std::string& response) {
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
  options.metrics_listen = "127.0.0.1:0";
  options.policy.rounds = 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  ASSERT_NE(server->metrics_port(), 0);

  const std::string first = Http(server->metrics_port(), "GET", "/metrics");
  ASSERT_NE(first.find("200 OK"), std::string::npos) << first;
  EXPECT_NE(first.find("text/plain; version=0.0.4"), std::string::npos);
  std::map<std::string, double> before = ParseExposition(Body(first));
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
      ParseExposition(Body(Http(server->metrics_port(), "GET", "/metrics")));
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

  EXPECT_NE(Http(server->metrics_port(), "GET", "/other").find("404"), std::string::npos);
  // A client that connects and says nothing does not block the endpoint.
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server->metrics_port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(silent, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_NE(Http(server->metrics_port(), "GET", "/metrics").find("200 OK"), std::string::npos);
  ::close(silent);
  EXPECT_NE(Http(server->metrics_port(), "POST", "/metrics").find("405"), std::string::npos);
}

TEST(MetricsTest, ABadAddressIsRefusedByName) {
  const std::filesystem::path state = ScratchDir() / "metrics-bad";
  std::filesystem::remove_all(state);
  aggregator::AggregatorServerOptions options = ServerOptions(state);
  options.metrics_listen = "localhost-without-port";
  EXPECT_THAT(aggregator::AggregatorServer::Start(options).status(),
              testing_util::StatusIs(absl::StatusCode::kInvalidArgument,
                                     ::testing::HasSubstr("localhost-without-port")));
}

}  // namespace
}  // namespace fedge
