// The ops endpoint (docs/operations.md): the operator token on every /api/
// route and /metrics, the JSON of each status endpoint, device paging and
// filters, the admin actions online (with their events), bad requests, TLS
// with the development CA, and fedge-ctl end to end.
#include <sys/wait.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"
#include "deploy_fixture.h"
#include "fedge/proto/atomic_file.h"
#include "nlohmann/json.hpp"
#include "ops_client.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDevice;
using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::HttpReply;
using ::fedge::testing_util::MakeUpdate;
using ::fedge::testing_util::ScratchDir;
using ::fedge::testing_util::ServerOptions;
using ::fedge::testing_util::TokenDevice;
using ::fedge::testing_util::WaitForTask;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kToken[] = "test-operator-token-0123456789abcdef";

std::filesystem::path FreshState(const std::string& name, int devices) {
  const std::filesystem::path state = ScratchDir() / name;
  std::filesystem::remove_all(state);
  absl::StatusOr<std::unique_ptr<aggregator::StateStore>> store =
      aggregator::StateStore::Open(state);
  EXPECT_TRUE(store.ok()) << store.status();
  for (int i = 1; i <= devices; ++i) {
    EXPECT_TRUE((*store)->EnrollClient("dev-" + std::to_string(i), "").ok());
  }
  return state;
}

aggregator::AggregatorServerOptions OpsOptions(const std::filesystem::path& state) {
  aggregator::AggregatorServerOptions options = ServerOptions(state);
  options.ops.listen = "127.0.0.1:0";
  options.ops.token = kToken;
  options.ops.threads = 2;
  return options;
}

HttpReply Get(const aggregator::AggregatorServer& server, const std::string& target,
              const std::string& token = kToken) {
  return testing_util::OpsRequest(server.ops_port(), "GET", target, token, CertDir() / "ca.pem");
}
HttpReply Post(const aggregator::AggregatorServer& server, const std::string& target,
               const std::string& body = "", const std::string& token = kToken) {
  return testing_util::OpsRequest(server.ops_port(), "POST", target, token, CertDir() / "ca.pem",
                                  body);
}
json Json(const HttpReply& reply) {
  EXPECT_EQ(reply.status, 200) << reply.body << reply.error;
  return json::parse(reply.body, nullptr, false);
}

// Runs one round: dev-1 and dev-2 poll, train (fake updates) and report.
// The devices stay available, so the next round would open at once: with
// `pause`, rounds are paused (through the admin API) while this one runs.
void RunRound(aggregator::AggregatorServer& server, double accuracy, bool pause = true) {
  auto one = client::GrpcTransport::Create(CertDevice("dev-1", server.port()));
  auto two = client::GrpcTransport::Create(CertDevice("dev-2", server.port()));
  ASSERT_TRUE(one.ok() && two.ok());
  const uint64_t closed = server.closed_rounds();
  v1::Task task_two;
  std::thread poll_two([&] { task_two = *WaitForTask(**two); });
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::Task task_one, WaitForTask(**one));
  poll_two.join();
  if (pause) {
    ASSERT_EQ(testing_util::OpsRequest(server.ops_port(), "POST", "/api/rounds/pause", kToken,
                                       CertDir() / "ca.pem")
                  .status,
              200);
  }
  for (auto* device : {one->get(), two->get()}) {
    v1::MetricsReport report;
    report.set_client_id(device->options().client_id);
    report.set_round(task_one.round());
    report.set_model_version(task_one.model_version());
    (*report.mutable_metrics())["train_accuracy"] = accuracy;
    (*report.mutable_metrics())["train_loss"] = 1.0 - accuracy;
    FEDGE_ASSERT_OK(device->ReportMetrics(report));
  }
  FEDGE_ASSERT_OK(one->get()->FetchModel(task_one.model_version()).status());
  FEDGE_ASSERT_OK((*one)->SubmitUpdate(MakeUpdate(task_one, testing_util::kSmallModelSize, 0.01f)));
  FEDGE_ASSERT_OK((*two)->SubmitUpdate(MakeUpdate(task_two, testing_util::kSmallModelSize, 0.01f)));
  for (int i = 0; i < 500 && server.closed_rounds() == closed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server.closed_rounds(), closed + 1);
}

TEST(OpsTest, EveryApiRouteAndMetricsNeedTheToken) {
  const std::filesystem::path state = FreshState("ops-auth", 2);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(OpsOptions(state)));
  ASSERT_NE(server->ops_port(), 0);
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"GET", "/metrics"},
      {"GET", "/api/overview"},
      {"GET", "/api/round"},
      {"GET", "/api/rounds"},
      {"GET", "/api/devices"},
      {"GET", "/api/versions"},
      {"GET", "/api/events"},
      {"POST", "/api/devices/dev-1/revoke"},
      {"POST", "/api/rounds/pause"},
      {"POST", "/api/rounds/resume"},
      {"POST", "/api/versions/0/promote"},
      {"POST", "/api/versions/0/rollback"}};
  for (const auto& [method, path] : routes) {
    for (const std::string token :
         {"", "wrong-token-0123456789", "test-operator-token-0123456789abcdeX"}) {
      HttpReply reply =
          testing_util::OpsRequest(server->ops_port(), method, path, token, CertDir() / "ca.pem");
      EXPECT_EQ(reply.status, 401)
          << method << " " << path << " token '" << token << "' " << reply.error;
      EXPECT_THAT(reply.body, HasSubstr("operator token"));
      EXPECT_EQ(reply.headers["WWW-Authenticate"], "Bearer realm=\"fedge\"");
    }
  }
  // Nothing changed: dev-1 is not revoked, rounds are not paused.
  json devices = Json(Get(*server, "/api/devices?status=revoked"));
  EXPECT_EQ(devices["total"], 0);
  EXPECT_EQ(Json(Get(*server, "/api/round"))["paused"], false);
  // The dashboard's files are public (they hold no data), the data is not.
  HttpReply page = Get(*server, "/", "");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.body, HasSubstr("fedge"));
  EXPECT_THAT(page.headers["Content-Type"], HasSubstr("text/html"));
  EXPECT_THAT(page.headers["Content-Security-Policy"], HasSubstr("default-src 'self'"));
  EXPECT_EQ(Get(*server, "/app.js", "").status, 200);
  EXPECT_EQ(Get(*server, "/style.css", "").status, 200);
}

TEST(OpsTest, PlainHttpIsRefusedWhenTheAggregatorUsesTls) {
  const std::filesystem::path state = FreshState("ops-tls", 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(OpsOptions(state)));
  HttpReply plain =
      testing_util::OpsRequest(server->ops_port(), "GET", "/api/overview", kToken, "");
  EXPECT_EQ(plain.status, 0) << "a plain-HTTP request got an answer: " << plain.body;
  // A certificate from another CA does not verify.
  HttpReply rogue = testing_util::OpsRequest(server->ops_port(), "GET", "/api/overview", kToken,
                                             ScratchDir() / "rogue" / "ca.pem");
  EXPECT_EQ(rogue.status, 0);
  EXPECT_EQ(Get(*server, "/api/overview").status, 200);
}

TEST(OpsTest, MetricsCanBePublicAndTheTokenFileIsCreatedPrivate) {
  const std::filesystem::path state = FreshState("ops-public", 1);
  aggregator::AggregatorServerOptions options = OpsOptions(state);
  options.ops.token.clear();  // default file: <state>/ops.token
  options.ops.metrics_public = true;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const std::filesystem::path file = state / "ops.token";
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(server->ops_token().size(), 64u);
  EXPECT_EQ(Get(*server, "/metrics", "").status, 200);
  EXPECT_EQ(Get(*server, "/api/overview", "").status, 401);
  EXPECT_EQ(Get(*server, "/api/overview", server->ops_token()).status, 200);
}

TEST(OpsTest, StatusEndpointsDescribeARound) {
  const std::filesystem::path state = FreshState("ops-status", 2);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(OpsOptions(state)));
  json round = Json(Get(*server, "/api/round"));
  EXPECT_EQ(round["open"], false);
  EXPECT_EQ(round["phase"], "waiting");
  RunRound(*server, 0.75);

  json overview = Json(Get(*server, "/api/overview"));
  EXPECT_EQ(overview["latest_version"], 1);
  EXPECT_EQ(overview["live_version"], 1);
  EXPECT_NEAR(overview["accuracy"].get<double>(), 0.75, 1e-9);
  EXPECT_EQ(overview["accuracy_source"], "clients_train_accuracy");
  EXPECT_NEAR(overview["loss"].get<double>(), 0.25, 1e-9);
  EXPECT_EQ(overview["epsilon"]["spent"], 0.0);
  EXPECT_TRUE(overview["epsilon"]["budget"].is_null());
  EXPECT_EQ(overview["devices"]["total"], 2);
  EXPECT_EQ(overview["devices"]["active"], 2);
  EXPECT_EQ(overview["rounds"]["closed"], 1);
  EXPECT_EQ(overview["alerts"], 0);

  json rounds = Json(Get(*server, "/api/rounds"));
  ASSERT_EQ(rounds["rounds"].size(), 1u);
  const json& r = rounds["rounds"][0];
  EXPECT_EQ(r["round"], 1);
  EXPECT_EQ(r["outcome"], "closed");
  EXPECT_EQ(r["selected"], 2);
  EXPECT_EQ(r["reported"], 2);
  EXPECT_EQ(r["dropped"], 0);
  EXPECT_EQ(r["new_version"], 1);
  EXPECT_GT(r["bytes_up"].get<uint64_t>(), 2u * 4 * testing_util::kSmallModelSize);
  EXPECT_GT(r["bytes_down"].get<uint64_t>(), 0u);  // dev-1 downloaded version 0
  EXPECT_GE(r["duration_ms"].get<int64_t>(), 0);

  json devices = Json(Get(*server, "/api/devices"));
  ASSERT_EQ(devices["devices"].size(), 2u);
  const json& d = devices["devices"][0];
  EXPECT_EQ(d["id"], "dev-1");
  EXPECT_EQ(d["status"], "active");
  EXPECT_EQ(d["auth"], "certificate");
  EXPECT_EQ(d["model_version"], 0);
  EXPECT_EQ(d["updates_accepted"], 1);
  EXPECT_EQ(d["rounds_selected"], 1);
  EXPECT_EQ(d["failures"]["updates_refused"], 0);
  EXPECT_EQ(d["failures"]["tasks_failed"], 0);
  EXPECT_TRUE(d["last_drift"].is_null());
  EXPECT_NEAR(d["last_metrics"]["train_accuracy"].get<double>(), 0.75, 1e-9);
  EXPECT_GT(d["last_seen_ms"].get<int64_t>(), 0);

  json versions = Json(Get(*server, "/api/versions"));
  ASSERT_EQ(versions["versions"].size(), 2u);
  const json& v = versions["versions"][0];  // newest first
  EXPECT_EQ(v["version"], 1);
  EXPECT_EQ(v["parent"], 0);
  EXPECT_EQ(v["round"], 1);
  EXPECT_EQ(v["status"], "live");
  EXPECT_EQ(v["signature"], "verified");
  EXPECT_EQ(v["served"], true);
  EXPECT_GT(v["artifact_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(v["fp32_bytes"].get<uint64_t>(), v["artifact_bytes"].get<uint64_t>());
  EXPECT_EQ(v["metrics"]["participants"], 2);
  EXPECT_EQ(versions["versions"][1]["status"], "superseded");  // v0: one version is live

  json events = Json(Get(*server, "/api/events"));
  std::vector<std::string> kinds;
  for (const json& e : events["events"]) kinds.push_back(e["kind"]);
  EXPECT_THAT(kinds, ::testing::ElementsAre("round_opened", "rounds_paused", "round_closed"));
  EXPECT_EQ(events["last_sequence"], 3);
  EXPECT_EQ(Json(Get(*server, "/api/events?after=1"))["events"].size(), 2u);
  EXPECT_EQ(Json(Get(*server, "/api/events?after=1&limit=1"))["events"][0]["kind"], "round_closed");
  EXPECT_EQ(Json(Get(*server, "/api/events?kind=round_*"))["events"].size(), 2u);
  EXPECT_EQ(Json(Get(*server, "/api/events?kind=rollout_*"))["events"].size(), 0u);
}

TEST(OpsTest, MetricsCountersMoveWhenRoundsRun) {
  const std::filesystem::path state = FreshState("ops-metrics", 2);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(OpsOptions(state)));
  RunRound(*server, 0.5);
  const std::string text = Get(*server, "/metrics").body;
  EXPECT_THAT(text, HasSubstr("fedge_rounds_total{outcome=\"closed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("fedge_clients_reported_total 2\n"));
  EXPECT_THAT(text, HasSubstr("fedge_clients_dropped_total 0\n"));
  EXPECT_THAT(text, HasSubstr("fedge_devices{status=\"active\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fedge_devices_by_model_version{model_version=\"0\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fedge_events_total{kind=\"round_closed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("fedge_model_accuracy{source=\"clients_train_accuracy\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("fedge_privacy_epsilon_spent 0\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("fedge_model_served_bytes_total 0\n")));
}

TEST(OpsTest, DevicesArePagedAndFiltered) {
  const std::filesystem::path state = ScratchDir() / "ops-devices";
  std::filesystem::remove_all(state);
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state));
    for (int i = 0; i < 30; ++i) {
      FEDGE_ASSERT_OK(
          store->EnrollClient(absl::StrFormat("phone-%02d", i), "token-of-phone-12345"));
    }
    FEDGE_ASSERT_OK(store->EnrollClient("sensor-1", "token-of-sensor-12345"));
    FEDGE_ASSERT_OK(store->RevokeClient("phone-29"));
  }
  aggregator::AggregatorServerOptions options = OpsOptions(state);
  options.policy.min_clients = 100;  // no round opens
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  // Five phones heartbeat: two report drift and two fetch the model (work:
  // active), the fifth only heartbeats (connected, asking for nothing: idle).
  // The 25 others were not heard from since the aggregator started (gone).
  for (int i = 0; i < 5; ++i) {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto device, client::GrpcTransport::Create(TokenDevice(
                                                absl::StrFormat("phone-%02d", i),
                                                "token-of-phone-12345", server->port())));
    FEDGE_ASSERT_OK(device->Heartbeat().status());
    if (i == 2 || i == 3) FEDGE_ASSERT_OK(device->FetchModel(0).status());
    if (i < 2) {
      v1::DriftReport report;
      report.set_client_id(absl::StrFormat("phone-%02d", i));
      report.set_model_version(0);
      v1::DriftEvent* event = report.add_events();
      event->set_detector("page-hinkley");
      event->set_stream("loss");
      event->set_time(1'700'000'000'000 + i);
      FEDGE_ASSERT_OK(device->ReportDrift(report));
    }
  }
  json all = Json(Get(*server, "/api/devices?limit=10"));
  EXPECT_EQ(all["total"], 31);
  ASSERT_EQ(all["devices"].size(), 10u);
  EXPECT_EQ(all["devices"][0]["id"], "phone-00");
  json page3 = Json(Get(*server, "/api/devices?limit=10&offset=20"));
  ASSERT_EQ(page3["devices"].size(), 10u);
  EXPECT_EQ(page3["devices"][0]["id"], "phone-20");
  EXPECT_EQ(page3["offset"], 20);
  EXPECT_EQ(Json(Get(*server, "/api/devices?limit=10&offset=30"))["devices"].size(), 1u);
  EXPECT_EQ(Json(Get(*server, "/api/devices?offset=31"))["devices"].size(), 0u);
  EXPECT_EQ(Json(Get(*server, "/api/devices?q=sensor"))["total"], 1);
  EXPECT_EQ(Json(Get(*server, "/api/devices?q=phone-1"))["total"], 10);
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=active"))["total"], 4);
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=revoked"))["total"], 1);
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=idle"))["total"], 1);
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=idle"))["devices"][0]["id"], "phone-04");
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=gone"))["total"], 25);
  json drift = Json(Get(*server, "/api/devices?drift=yes"));
  ASSERT_EQ(drift["total"], 2);
  EXPECT_EQ(drift["devices"][1]["last_drift"]["detector"], "page-hinkley");
  EXPECT_EQ(drift["devices"][1]["drift_reports"], 1);
  EXPECT_EQ(Json(Get(*server, "/api/devices?drift=no&status=active"))["total"], 2);
  EXPECT_EQ(Json(Get(*server, "/api/overview"))["devices"]["with_drift"], 2);
}

std::vector<std::string> EventsOf(const aggregator::AggregatorServer& server, const std::string& kind) {
  std::vector<std::string> clients;
  const json events = Json(Get(server, "/api/events?kind=" + kind));
  for (const json& e : events["events"]) {
    clients.push_back(e["fields"]["client"]);
  }
  return clients;
}

// Liveness: a device that says it leaves is gone at once, one that stops
// heartbeating is gone after devices.gone_after_s, and the open round stops
// waiting for either (it closes on the one update left). Joins, leaves and
// silences are fleet events, once each.
TEST(OpsTest, DevicesThatLeaveOrFallSilentAreGoneAndNoRoundWaitsForThem) {
  using std::chrono_literals::operator""ms;
  const std::filesystem::path state = FreshState("ops-liveness", 3);
  aggregator::AggregatorServerOptions options = OpsOptions(state);
  options.policy.goal = 3;
  options.policy.min_clients = 3;
  options.liveness.heartbeat_interval = 100ms;
  options.liveness.gone_after = 1000ms;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  EXPECT_EQ(Json(Get(*server, "/api/overview"))["devices"]["gone"], 3);  // none heard yet
  std::vector<std::unique_ptr<client::GrpcTransport>> devices;
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto device,
                               client::GrpcTransport::Create(CertDevice(id, server->port())));
    FEDGE_ASSERT_OK_AND_ASSIGN(v1::JoinResponse join, device->Join(id));
    EXPECT_EQ(join.heartbeat_interval_ms(), 100u);
    devices.push_back(std::move(device));
  }
  EXPECT_THAT(EventsOf(*server, "client_joined"),
              ::testing::ElementsAre("dev-1", "dev-2", "dev-3"));
  std::vector<v1::Task> tasks(3);
  {
    std::vector<std::thread> polls;
    for (size_t i = 0; i < 3; ++i) {
      polls.emplace_back([&, i] { tasks[i] = *WaitForTask(*devices[i]); });
    }
    for (std::thread& t : polls) t.join();
  }
  json overview = Json(Get(*server, "/api/overview"));
  EXPECT_EQ(overview["devices"]["active"], 3);
  EXPECT_EQ(overview["devices"]["gone"], 0);
  ASSERT_EQ(Json(Get(*server, "/api/round"))["round"]["selected"], 3);

  // dev-1 leaves: gone at once, and the round's cohort shrinks.
  FEDGE_ASSERT_OK(devices[0]->Leave("dev-1", "stopped by the test"));
  json gone = Json(Get(*server, "/api/devices?status=gone"));
  ASSERT_EQ(gone["total"], 1);
  EXPECT_EQ(gone["devices"][0]["id"], "dev-1");
  EXPECT_EQ(gone["devices"][0]["left"]["reason"], "stopped by the test");
  EXPECT_THAT(EventsOf(*server, "client_left"), ::testing::ElementsAre("dev-1"));
  // dev-3 heartbeats once, then falls silent; dev-2 submits. The round
  // closes once dev-3 is found gone, on dev-2's update alone.
  FEDGE_ASSERT_OK(devices[2]->Heartbeat().status());
  FEDGE_ASSERT_OK(
      devices[1]->SubmitUpdate(MakeUpdate(tasks[1], testing_util::kSmallModelSize, 0.01f)));
  for (int i = 0; i < 300 && server->closed_rounds() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(server->closed_rounds(), 1u);
  EXPECT_EQ(Json(Get(*server, "/api/rounds"))["rounds"][0]["reported"], 1);
  EXPECT_THAT(EventsOf(*server, "client_gone"), ::testing::ElementsAre("dev-3"));
  json events = Json(Get(*server, "/api/events?kind=client_gone"));
  EXPECT_THAT(events["events"][0]["message"].get<std::string>(),
              HasSubstr("dropped from round 1"));
  const std::string metrics = Get(*server, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("fedge_devices{status=\"gone\"} 2\n"));
  EXPECT_THAT(metrics, HasSubstr("fedge_devices{status=\"active\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("fedge_clients_connected 1\n"));
  EXPECT_THAT(metrics, HasSubstr("fedge_clients_joined_total 3\n"));
  // A device that calls again is back; one that never heartbeats (dev-2)
  // is not judged by silence.
  FEDGE_ASSERT_OK(devices[0]->Join("dev-1").status());
  EXPECT_EQ(Json(Get(*server, "/api/devices?q=dev-1"))["devices"][0]["status"], "active");
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(Json(Get(*server, "/api/devices?q=dev-2"))["devices"][0]["status"], "active");
  EXPECT_THAT(EventsOf(*server, "client_gone"), ::testing::ElementsAre("dev-3"));
  // Bad leave messages are refused and change nothing.
  EXPECT_EQ(devices[1]->Leave("dev-1", "as another device").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(devices[1]->Leave("dev-2", std::string(300, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Json(Get(*server, "/api/devices?q=dev-2"))["devices"][0]["status"], "active");
}

TEST(OpsTest, BadRequestsNameWhatIsWrong) {
  const std::filesystem::path state = FreshState("ops-bad", 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(OpsOptions(state)));
  HttpReply missing = Get(*server, "/api/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("/api/nothing"));
  HttpReply method = Post(*server, "/api/overview");
  EXPECT_EQ(method.status, 405);
  EXPECT_EQ(method.headers["Allow"], "GET");
  EXPECT_EQ(Get(*server, "/api/rounds/pause").status, 405);
  for (const auto& [target, parameter] : std::vector<std::pair<std::string, std::string>>{
           {"/api/devices?limit=abc", "'limit'"},
           {"/api/devices?limit=0", "'limit'"},
           {"/api/devices?limit=5000", "'limit'"},
           {"/api/devices?offset=-1", "'offset'"},
           {"/api/devices?status=sleeping", "'status'"},
           {"/api/devices?drift=maybe", "'drift'"},
           {"/api/devices?colour=red", "'colour'"},
           {"/api/events?after=x", "'after'"},
           {"/api/rounds?limit=-3", "'limit'"},
           {"/api/overview?verbose=1", "'verbose'"}}) {
    HttpReply reply = Get(*server, target);
    EXPECT_EQ(reply.status, 400) << target;
    EXPECT_THAT(reply.body, HasSubstr(parameter)) << target;
  }
  HttpReply body = Post(*server, "/api/rounds/pause", "not json");
  EXPECT_EQ(body.status, 400);
  EXPECT_THAT(body.body, HasSubstr("JSON object"));
  EXPECT_EQ(Post(*server, "/api/rounds/pause", "{\"reason\": 7}").status, 400);
  HttpReply version = Post(*server, "/api/versions/seven/rollback");
  EXPECT_EQ(version.status, 400);
  EXPECT_THAT(version.body, HasSubstr("not a version number"));
  HttpReply unknown = Post(*server, "/api/versions/99/promote");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("unknown model version 99"));
  HttpReply live = Post(*server, "/api/versions/0/promote");
  EXPECT_EQ(live.status, 409);
  EXPECT_THAT(live.body, HasSubstr("live already"));
  EXPECT_EQ(Post(*server, "/api/devices/nobody/revoke").status, 404);
  EXPECT_EQ(Post(*server, "/api/rounds/resume").status, 409);         // not paused
  EXPECT_EQ(Json(Get(*server, "/api/events"))["events"].size(), 0u);  // nothing happened
}

TEST(OpsTest, RevokePauseResumeAndRollBackOnline) {
  const std::filesystem::path state = FreshState("ops-admin", 3);
  aggregator::AggregatorServerOptions options = OpsOptions(state);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  RunRound(*server, 0.6);  // version 1, and rounds are paused

  // Paused: devices poll, no round opens.
  HttpReply again = Post(*server, "/api/rounds/pause", R"({"reason": "maintenance"})");
  EXPECT_EQ(again.status, 409);
  EXPECT_THAT(again.body, HasSubstr("paused already"));
  auto one = client::GrpcTransport::Create(CertDevice("dev-1", server->port()));
  auto two = client::GrpcTransport::Create(CertDevice("dev-2", server->port()));
  ASSERT_TRUE(one.ok() && two.ok());
  std::thread poll_two([&] { (void)(*two)->PollTask("dev-2"); });
  EXPECT_EQ((*one)->PollTask("dev-1").status().code(), absl::StatusCode::kNotFound);  // no task
  poll_two.join();
  json round = Json(Get(*server, "/api/round"));
  EXPECT_EQ(round["open"], false);
  EXPECT_EQ(round["paused"], true);
  EXPECT_EQ(round["phase"], "paused");

  // Roll back to version 0 while paused and no round is open.
  json rolled = Json(Post(*server, "/api/versions/0/rollback", R"({"reason": "v1 regressed"})"));
  EXPECT_EQ(rolled["version"], 2);
  EXPECT_EQ(server->latest_version(), 2u);
  json versions = Json(Get(*server, "/api/versions"));
  EXPECT_EQ(versions["versions"][0]["version"], 2);
  EXPECT_EQ(versions["versions"][0]["parent"], 0);
  EXPECT_EQ(versions["versions"][0]["note"], "rollback to 0");
  EXPECT_EQ(versions["versions"][0]["status_reason"], "v1 regressed");
  EXPECT_EQ(versions["versions"][0]["signature"], "verified");
  EXPECT_EQ(versions["versions"][0]["served"], true);
  EXPECT_EQ(Post(*server, "/api/versions/2/rollback").status, 409);  // newest already

  // Revoke dev-3 online: refused from now on.
  auto three = client::GrpcTransport::Create(CertDevice("dev-3", server->port()));
  ASSERT_TRUE(three.ok());
  FEDGE_ASSERT_OK((*three)->Heartbeat().status());
  EXPECT_EQ(Json(Post(*server, "/api/devices/dev-3/revoke"))["status"], "revoked");
  EXPECT_EQ((*three)->Heartbeat().status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Post(*server, "/api/devices/dev-3/revoke").status, 409);
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=revoked"))["devices"][0]["id"], "dev-3");

  // Resume: the next round opens on the rolled-back version.
  EXPECT_EQ(Json(Post(*server, "/api/rounds/resume"))["paused"], false);
  v1::Task task_two;
  std::thread poll([&] { task_two = *WaitForTask(**two); });
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::Task task_one, WaitForTask(**one));
  poll.join();
  EXPECT_EQ(task_one.model_version(), 2u);
  HttpReply refused = Post(*server, "/api/versions/1/rollback");
  EXPECT_EQ(refused.status, 409);  // a round is open
  EXPECT_THAT(refused.body, HasSubstr("is open"));

  std::vector<std::string> kinds;
  const json events = Json(Get(*server, "/api/events"));
  for (const json& e : events["events"]) kinds.push_back(e["kind"]);
  EXPECT_THAT(kinds, ::testing::ElementsAre("round_opened", "rounds_paused", "round_closed",
                                            "version_rolled_back", "device_revoked",
                                            "rounds_resumed", "round_opened"));
  // Pausing is durable: a restart keeps it.
  EXPECT_EQ(Json(Post(*server, "/api/rounds/pause"))["paused"], true);
  server.reset();
  FEDGE_ASSERT_OK_AND_ASSIGN(server, aggregator::AggregatorServer::Start(options));
  EXPECT_EQ(Json(Get(*server, "/api/round"))["paused"], true);
  EXPECT_EQ(Json(Get(*server, "/api/devices?status=revoked"))["total"], 1);
}

TEST(OpsTest, PromoteMakesAHeldVersionLive) {
  const std::filesystem::path state = FreshState("ops-promote", 2);
  aggregator::AggregatorServerOptions options = OpsOptions(state);
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
    RunRound(*server, 0.6);
  }
  {  // What the gated rollout does to a version that fails validation.
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state));
    FEDGE_ASSERT_OK(store->SetVersionStatus(1, "rejected", "validation accuracy fell"));
  }
  // A refused newest version is followed by the live one published again
  // (as the rollout does; the restart completes it): version 2 = version 0.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  EXPECT_EQ(Json(Get(*server, "/api/overview"))["live_version"], 2);
  EXPECT_EQ(Json(Get(*server, "/api/versions"))["versions"][1]["status"], "rejected");
  FEDGE_ASSERT_OK(server->Promote(1, "checked by hand"));
  EXPECT_EQ(Json(Get(*server, "/api/overview"))["live_version"], 1);
  json v1 = Json(Get(*server, "/api/versions"))["versions"][1];
  EXPECT_EQ(v1["status"], "live");
  // Exactly one version is live: version 2, which was, is superseded.
  EXPECT_EQ(Json(Get(*server, "/api/versions"))["versions"][0]["status"], "superseded");
  EXPECT_EQ(v1["status_reason"], "checked by hand");
  EXPECT_EQ(v1["served"], true);
  json events = Json(Get(*server, "/api/events?kind=version_promoted"));
  ASSERT_EQ(events["events"].size(), 1u);
  EXPECT_EQ(events["events"][0]["fields"]["from"], "rejected");
  EXPECT_EQ(Post(*server, "/api/versions/1/promote").status, 409);
}

// Runs fedge-ctl; returns its exit code and output (stdout + stderr).
int Ctl(const std::string& args, std::string* output) {
  const std::string command = std::string(FEDGE_CTL_BIN) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  output->clear();
  char buffer[4096];
  while (pipe != nullptr && std::fgets(buffer, sizeof(buffer), pipe) != nullptr) *output += buffer;
  const int status = pipe == nullptr ? -1 : ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(OpsTest, FedgeCtlEndToEnd) {
  const std::filesystem::path state = FreshState("ops-ctl", 2);
  aggregator::AggregatorServerOptions options = OpsOptions(state);
  options.ops.token.clear();  // read from an existing token file
  options.ops.token_file = state / "operator.token";
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(options.ops.token_file, std::string(kToken) + "\n", 0600));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  EXPECT_EQ(server->ops_token(), kToken);
  RunRound(*server, 0.7);
  const std::string base = absl::StrCat("--server localhost:", server->ops_port(), " --ca ",
                                        (CertDir() / "ca.pem").string(), " --token-file ",
                                        options.ops.token_file.string(), " ");
  std::string out;
  EXPECT_EQ(Ctl(base + "status", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("latest version   1 (live: 1)"));
  EXPECT_THAT(out, HasSubstr("2: 2 active"));
  EXPECT_EQ(Ctl(base + "devices --limit 1", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("dev-1"));
  EXPECT_THAT(out, HasSubstr("1-1 of 2 devices"));
  EXPECT_EQ(Ctl(base + "devices --filter dev-2 --json", &out), 0) << out;
  EXPECT_EQ(json::parse(out)["devices"][0]["id"], "dev-2");
  EXPECT_EQ(Ctl(base + "versions", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("0.7000"));
  EXPECT_EQ(Ctl(base + "rounds", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("closed"));
  EXPECT_EQ(Ctl(base + "pause", &out), 1) << out;  // RunRound paused rounds
  EXPECT_THAT(out, HasSubstr("paused already"));
  EXPECT_EQ(Ctl(base + "round", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("PAUSED"));
  EXPECT_EQ(Ctl(base + "rollback 0", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("published version 2 = the model of version 0"));
  EXPECT_EQ(Ctl(base + "revoke dev-2", &out), 0) << out;
  EXPECT_EQ(Ctl(base + "resume --reason done", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rounds resumed"));
  EXPECT_EQ(Ctl(base + "pause --reason upgrade", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rounds paused"));
  EXPECT_EQ(Ctl(base + "events --kind version_*", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("version_rolled_back"));
  // Refusals exit 1 with the aggregator's message.
  EXPECT_EQ(Ctl(base + "revoke dev-9", &out), 1);
  EXPECT_THAT(out, HasSubstr("unknown device 'dev-9'"));
  EXPECT_EQ(Ctl(base + "promote 42", &out), 1);
  EXPECT_THAT(out, HasSubstr("unknown model version 42"));
  // Usage errors exit 2 and name the problem.
  EXPECT_EQ(Ctl(base + "devices --colour red", &out), 2);
  EXPECT_THAT(out, HasSubstr("--colour"));
  EXPECT_EQ(Ctl(base + "rollback latest", &out), 2);
  EXPECT_EQ(Ctl(base + "frobnicate", &out), 2);
  EXPECT_THAT(out, HasSubstr("unknown command 'frobnicate'"));
  EXPECT_EQ(Ctl(absl::StrCat("--server localhost:", server->ops_port(), " --ca ",
                             (CertDir() / "ca.pem").string(), " status"),
                &out),
            2);  // no token
  // A wrong token is refused (1); a certificate from another CA gets no
  // answer (3).
  EXPECT_EQ(Ctl(absl::StrCat("--server localhost:", server->ops_port(), " --ca ",
                             (CertDir() / "ca.pem").string(), " --token-file ",
                             (CertDir() / "ca.pem").string(), " status"),
                &out),
            1);
  EXPECT_EQ(Ctl(absl::StrCat("--server localhost:", server->ops_port(), " --ca ",
                             (ScratchDir() / "rogue" / "ca.pem").string(), " --token-file ",
                             options.ops.token_file.string(), " status"),
                &out),
            3);
}

}  // namespace
}  // namespace fedge
