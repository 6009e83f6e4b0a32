// The gRPC aggregator and the device transport over TLS on loopback:
// rounds, identity, bad input, restart, and model verification.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "deploy_fixture.h"
#include "fedge/client/offline_transport.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"
#include "fedge/v1/service.grpc.pb.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDevice;
using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::MakeUpdate;
using ::fedge::testing_util::ScratchDir;
using ::fedge::testing_util::ServerOptions;
using ::fedge::testing_util::StatusIs;
using ::fedge::testing_util::TokenDevice;
using ::fedge::testing_util::WaitForTask;
using ::testing::HasSubstr;

void Enroll(const std::filesystem::path& state, const std::string& id,
            const std::string& token = "") {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state));
  FEDGE_ASSERT_OK(store->EnrollClient(id, token));
}

std::vector<float> Parameters(const aggregator::AggregatorServer& server) {
  auto latest = server.registry().Latest();
  EXPECT_TRUE(latest.ok());
  return (*latest)->parameters;
}

std::vector<float> InitialParameters() {
  v1::ModelArtifact initial = testing_util::SmallModel();
  auto layout = models::LayoutOfArtifact(initial);
  EXPECT_TRUE(layout.ok());
  std::vector<float> values(static_cast<size_t>(models::LayoutSize(*layout)));
  EXPECT_TRUE(models::DecodeArtifact(initial, *layout, values).ok());
  return values;
}

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    state_ = ScratchDir() / info->name();
    std::filesystem::remove_all(state_);
  }
  std::filesystem::path state_;
};

TEST_F(DeployTest, CertificateAndTokenDevicesCompleteRounds) {
  Enroll(state_, "dev-1");
  Enroll(state_, "dev-2", "secret-token-2");
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.rounds = 2;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const size_t d = testing_util::kSmallModelSize;

  auto device = [&](client::GrpcTransportOptions transport_options, float value,
                    uint64_t examples) -> absl::Status {
    FEDGE_ASSIGN_OR_RETURN(auto transport, client::GrpcTransport::Create(transport_options));
    FEDGE_ASSIGN_OR_RETURN(v1::JoinResponse join, transport->Join());
    if (join.model().architecture() != "mlp") return absl::InternalError("wrong model spec");
    for (int round = 0; round < 2; ++round) {
      FEDGE_ASSIGN_OR_RETURN(v1::Task task, WaitForTask(*transport));
      FEDGE_ASSIGN_OR_RETURN(auto artifact, transport->FetchModel(task.model_version()));
      if (artifact->header().encoding() != v1::TENSOR_ENCODING_INT8_PER_CHANNEL) {
        return absl::InternalError("devices should get the int8 artifact by default");
      }
      FEDGE_RETURN_IF_ERROR(transport->SubmitUpdate(MakeUpdate(task, d, value, examples)));
    }
    return absl::OkStatus();
  };
  absl::Status first, second;
  std::thread a([&] { first = device(CertDevice("dev-1", server->port()), 0.01f, 10); });
  std::thread b(
      [&] { second = device(TokenDevice("dev-2", "secret-token-2", server->port()), 0.03f, 30); });
  a.join();
  b.join();
  FEDGE_ASSERT_OK(first);
  FEDGE_ASSERT_OK(second);
  FEDGE_ASSERT_OK(server->Wait());
  EXPECT_EQ(server->closed_rounds(), 2u);
  EXPECT_EQ(server->latest_version(), 2u);

  // FedAvg with example weights: each round adds (10*0.01 + 30*0.03) / 40.
  const std::vector<float> initial = InitialParameters();
  const std::vector<float> final = Parameters(*server);
  ASSERT_EQ(final.size(), initial.size());
  for (size_t i = 0; i < final.size(); i += 997) {
    EXPECT_NEAR(final[i], initial[i] + 2 * 0.025f, 1e-5) << i;
  }
  server.reset();

  // Every version is on disk, signed, and the int8 artifact is >= 3.9x smaller.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state_));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto versions, store->Versions());
  ASSERT_EQ(versions.size(), 3u);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto pinned, models::VerifyingKey::LoadPem(CertDir() / "signing.pub"));
  for (const aggregator::VersionRecord& version : versions) {
    EXPECT_GE(static_cast<double>(version.master_bytes), 3.9 * version.artifact_bytes);
    FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact artifact, store->ReadArtifact(version.version));
    FEDGE_EXPECT_OK(models::VerifySignedArtifact(artifact, pinned));
    FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact master, store->ReadMaster(version.version));
    FEDGE_EXPECT_OK(models::VerifySignedArtifact(master, pinned));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto rounds, store->Rounds());
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_EQ(rounds[1].state, aggregator::RoundState::kClosed);
  EXPECT_EQ(rounds[1].participants, 2);
}

// A raw stub, for calls the transport would never make.
std::unique_ptr<v1::Federation::Stub> RawStub(int port, bool with_certificate) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *proto::ReadFile(CertDir() / "ca.pem");
  if (with_certificate) {
    ssl.pem_cert_chain = *proto::ReadFile(CertDir() / "client-dev-1.pem");
    ssl.pem_private_key = *proto::ReadFile(CertDir() / "client-dev-1.key");
  }
  return v1::Federation::NewStub(
      grpc::CreateChannel("localhost:" + std::to_string(port), grpc::SslCredentials(ssl)));
}

TEST_F(DeployTest, RefusesUnknownRevokedAndForgedDevices) {
  Enroll(state_, "dev-1");
  Enroll(state_, "dev-2", "right-token");
  Enroll(state_, "dev-4");
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state_));
    FEDGE_ASSERT_OK(store->RevokeClient("dev-4"));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server,
                             aggregator::AggregatorServer::Start(ServerOptions(state_)));
  const int port = server->port();
  auto join = [](client::GrpcTransportOptions options) -> absl::Status {
    FEDGE_ASSIGN_OR_RETURN(auto transport, client::GrpcTransport::Create(options));
    return transport->Join().status();
  };
  FEDGE_EXPECT_OK(join(CertDevice("dev-1", port)));
  FEDGE_EXPECT_OK(join(TokenDevice("dev-2", "right-token", port)));
  // A certificate from the right CA, but the device was never enrolled.
  EXPECT_THAT(join(CertDevice("dev-3", port)),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not enrolled")));
  EXPECT_THAT(join(TokenDevice("dev-2", "wrong-token", port)),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("wrong enrollment token")));
  EXPECT_THAT(join(TokenDevice("dev-5", "any", port)),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not enrolled")));
  // A revoked certificate device is refused at the TLS handshake
  // (device_certificate_test.cc has the details), before any call.
  EXPECT_THAT(join(CertDevice("dev-4", port)), StatusIs(absl::StatusCode::kUnavailable));
  // dev-1's certificate, claiming to be dev-2.
  client::GrpcTransportOptions impostor = CertDevice("dev-1", port);
  impostor.client_id = "dev-2";
  EXPECT_THAT(join(impostor),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("claims to be")));
  // A certificate from another CA: the TLS handshake fails.
  client::GrpcTransportOptions rogue = CertDevice("dev-1", port);
  rogue.cert_file = ScratchDir() / "rogue" / "client-dev-1.pem";
  rogue.key_file = ScratchDir() / "rogue" / "client-dev-1.key";
  rogue.call_timeout = std::chrono::seconds(5);
  EXPECT_THAT(join(rogue), StatusIs(absl::StatusCode::kUnavailable));
  // TLS but neither certificate nor token.
  v1::JoinRequest request;
  request.set_client_id("dev-1");
  v1::JoinResponse response;
  grpc::ClientContext context;
  grpc::Status status = RawStub(port, false)->Join(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  // Downloads of versions that do not exist, or past the end of one.
  auto download = [&](uint64_t version, uint64_t offset) {
    v1::DownloadModelRequest request;
    request.set_version(version);
    request.set_offset(offset);
    grpc::ClientContext ctx;
    auto reader = RawStub(port, true)->DownloadModel(&ctx, request);
    v1::ModelChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish().error_code();
  };
  EXPECT_EQ(download(42, 0), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(download(0, 1ull << 40), grpc::StatusCode::OUT_OF_RANGE);
  // Drift reports are kept in the state directory; an empty one is refused.
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto device,
                               client::GrpcTransport::Create(CertDevice("dev-1", port)));
    v1::DriftReport drift;
    drift.set_client_id("dev-1");
    drift.set_model_version(0);
    EXPECT_THAT(device->ReportDrift(drift), StatusIs(absl::StatusCode::kInvalidArgument));
    drift.add_events()->set_detector("page-hinkley");
    FEDGE_EXPECT_OK(device->ReportDrift(drift));
  }
  // A device that pins another signing key refuses the aggregator.
  client::GrpcTransportOptions other_key = CertDevice("dev-1", port);
  other_key.pinned_key_file = ScratchDir() / "rogue" / "signing.pub";
  EXPECT_THAT(join(other_key), StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("pins")));
  server.reset();
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state_));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto drift, store->DriftReports());
  ASSERT_EQ(drift.size(), 1u);
  EXPECT_EQ(drift[0].client_id(), "dev-1");
  EXPECT_EQ(drift[0].events(0).detector(), "page-hinkley");
}

TEST_F(DeployTest, BadUpdatesAreRefusedAndChangeNothing) {
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) Enroll(state_, id);
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.rounds = 1;
  options.max_update_bytes = 2 << 20;
  options.chunk_bytes = 256 << 10;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const int port = server->port();
  auto device = [port](const std::string& id) {
    client::GrpcTransportOptions options = CertDevice(id, port);
    options.chunk_bytes = 128 << 10;  // within the aggregator's limit
    return client::GrpcTransport::Create(options);
  };
  FEDGE_ASSERT_OK_AND_ASSIGN(auto one, device("dev-1"));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto two, device("dev-2"));
  v1::Task task_one, task_two;
  std::thread poll_two([&] { task_two = *WaitForTask(*two); });
  FEDGE_ASSERT_OK_AND_ASSIGN(task_one, WaitForTask(*one));
  poll_two.join();
  ASSERT_EQ(task_one.round(), task_two.round());
  const size_t d = testing_util::kSmallModelSize;

  v1::EncodedUpdate wrong_round = MakeUpdate(task_one, d, 0.1f);
  wrong_round.set_round(task_one.round() + 1);
  EXPECT_THAT(one->SubmitUpdate(wrong_round),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("the open round is")));
  v1::EncodedUpdate wrong_version = MakeUpdate(task_one, d, 0.1f);
  wrong_version.set_model_version(task_one.model_version() + 7);
  EXPECT_THAT(one->SubmitUpdate(wrong_version),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("version")));
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, d - 1, 0.1f)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, d, std::nanf(""))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite")));
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, d, INFINITY)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite")));
  // dev-1 sends an update in dev-2's name.
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_two, d, 0.1f)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("as 'dev-2'")));
  // dev-3 is enrolled but not in the cohort.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto three, device("dev-3"));
  v1::Task foreign = task_one;
  foreign.set_client_id("dev-3");
  EXPECT_THAT(three->SubmitUpdate(MakeUpdate(foreign, d, 0.1f)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not in the cohort")));
  // Larger than max_update_bytes, refused from its header.
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, 600'000, 0.1f)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("accepts 1 to")));
  // A chunk larger than the aggregator's message limit.
  client::GrpcTransportOptions big_chunks = CertDevice("dev-1", port);
  big_chunks.chunk_bytes = 1 << 20;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto big, client::GrpcTransport::Create(big_chunks));
  EXPECT_THAT(big->SubmitUpdate(MakeUpdate(task_one, 90'000, 0.1f)),
              StatusIs(absl::StatusCode::kResourceExhausted));
  // Bytes that are not an EncodedUpdate, and a stream without a header.
  {
    auto stub = RawStub(port, true);
    grpc::ClientContext context;
    v1::SubmitUpdateResponse response;
    auto writer = stub->SubmitUpdate(&context, &response);
    v1::UpdateChunk chunk;
    chunk.mutable_header()->set_client_id("dev-1");
    chunk.mutable_header()->set_round(task_one.round());
    chunk.mutable_header()->set_model_version(task_one.model_version());
    chunk.mutable_header()->set_total_bytes(6);
    chunk.set_data("\xff\xff\xff\xff\xff\xff", 6);
    writer->Write(chunk);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("not an EncodedUpdate"));
  }
  {
    auto stub = RawStub(port, true);
    grpc::ClientContext context;
    v1::SubmitUpdateResponse response;
    auto writer = stub->SubmitUpdate(&context, &response);
    v1::UpdateChunk chunk;
    chunk.set_data("abc");
    writer->Write(chunk);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("header"));
  }

  // None of that counted: the round closes with exactly the two good updates.
  FEDGE_ASSERT_OK(one->SubmitUpdate(MakeUpdate(task_one, d, 0.02f, 10)));
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, d, 0.02f, 10)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  FEDGE_ASSERT_OK(two->SubmitUpdate(MakeUpdate(task_two, d, 0.04f, 10)));
  FEDGE_ASSERT_OK(server->Wait());
  const std::vector<float> initial = InitialParameters();
  const std::vector<float> final = Parameters(*server);
  for (size_t i = 0; i < final.size(); i += 1009) {
    EXPECT_NEAR(final[i], initial[i] + 0.03f, 1e-6) << i;
  }
  // After the round: an update for it is stale.
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, d, 0.02f, 10)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Runs one round of four devices; `interrupt_after` > 0 restarts the
// aggregator after that many accepted updates. Returns the new version's
// parameters.
std::vector<float> RunRound(const std::filesystem::path& state, int interrupt_after,
                            const std::vector<std::vector<float>>& deltas) {
  const std::vector<std::string> ids = {"dev-1", "dev-2", "dev-3", "dev-4"};
  for (const std::string& id : ids) Enroll(state, id);
  aggregator::AggregatorServerOptions options = ServerOptions(state);
  options.policy.goal = 4;
  options.policy.min_clients = 4;
  options.policy.rounds = 1;
  options.checkpoint_every = 2;
  auto server = aggregator::AggregatorServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  std::vector<std::unique_ptr<client::GrpcTransport>> devices;
  std::vector<v1::Task> tasks(ids.size());
  std::vector<std::thread> polls;
  for (size_t i = 0; i < ids.size(); ++i) {
    devices.push_back(*client::GrpcTransport::Create(CertDevice(ids[i], (*server)->port())));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    polls.emplace_back([&, i] { tasks[i] = *WaitForTask(*devices[i]); });
  }
  for (std::thread& t : polls) t.join();
  auto update = [&](size_t i) {
    v1::EncodedUpdate u = MakeUpdate(tasks[i], deltas[i].size(), 0.0f, 5 + i);
    auto codec = models::CreateUpdateCodec("fp32");
    EXPECT_TRUE((*codec)->Encode(deltas[i], &u).ok());
    return u;
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    if (static_cast<int>(i) == interrupt_after) {
      (*server).reset();  // state on disk is all that survives
      server = aggregator::AggregatorServer::Start(options);
      EXPECT_TRUE(server.ok()) << server.status();
      devices.clear();
      for (const std::string& id : ids) {
        devices.push_back(*client::GrpcTransport::Create(CertDevice(id, (*server)->port())));
      }
      // An update accepted before the restart is not counted twice.
      EXPECT_THAT(devices[1]->SubmitUpdate(update(1)), StatusIs(absl::StatusCode::kAlreadyExists));
    }
    EXPECT_TRUE(devices[i]->SubmitUpdate(update(i)).ok());
  }
  EXPECT_TRUE((*server)->Wait().ok());
  return Parameters(**server);
}

TEST_F(DeployTest, RestartInTheMiddleOfARoundLosesNothingAndCountsNothingTwice) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<std::vector<float>> deltas(4, std::vector<float>(testing_util::kSmallModelSize));
  for (auto& delta : deltas) {
    for (float& v : delta) v = normal(rng);
  }
  const std::vector<float> uninterrupted = RunRound(state_ / "a", /*interrupt_after=*/-1, deltas);
  // After 3 updates: one checkpoint (at 2) plus one journaled update.
  const std::vector<float> restarted = RunRound(state_ / "b", /*interrupt_after=*/3, deltas);
  ASSERT_EQ(uninterrupted.size(), restarted.size());
  EXPECT_EQ(uninterrupted, restarted);  // bit for bit
  // And the round did move the model.
  EXPECT_NE(uninterrupted, InitialParameters());
}

TEST_F(DeployTest, OfflineDeviceBuffersItsUpdateEncryptedAndDeliversItLater) {
  Enroll(state_, "dev-1");
  Enroll(state_, "dev-2");
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.rounds = 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const int port = server->port();
  FEDGE_ASSERT_OK_AND_ASSIGN(auto one, client::GrpcTransport::Create(CertDevice("dev-1", port)));
  client::GrpcTransportOptions two_options = CertDevice("dev-2", port);
  two_options.call_timeout = std::chrono::seconds(3);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto two, client::GrpcTransport::Create(two_options));
  client::StaticKeyProvider key(client::StoreKey{7, 7, 7});
  client::PendingUpdateStore store(state_ / "dev-2-pending", &key);
  client::OfflineTransport offline(two.get(), &store);

  v1::Task task_one, task_two;
  std::thread poll_two([&] { task_two = *WaitForTask(*two); });
  FEDGE_ASSERT_OK_AND_ASSIGN(task_one, WaitForTask(*one));
  poll_two.join();
  const size_t d = testing_util::kSmallModelSize;
  FEDGE_ASSERT_OK(one->SubmitUpdate(MakeUpdate(task_one, d, 0.02f, 10)));

  // The aggregator goes away; dev-2 finishes its work and buffers the update.
  server.reset();
  const v1::EncodedUpdate late = MakeUpdate(task_two, d, 0.04f, 10);
  FEDGE_ASSERT_OK(offline.SubmitUpdate(late));
  EXPECT_EQ(offline.buffered(), 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto pending, store.List());
  ASSERT_EQ(pending.size(), 1u);
  // Encrypted at rest: the payload's bytes are nowhere in the file.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string file,
                             proto::ReadFile(store.PathFor(task_two.round(), "dev-2")));
  EXPECT_EQ(file.find(late.payload().substr(0, 64)), std::string::npos);
  FEDGE_ASSERT_OK_AND_ASSIGN(client::FlushReport still_down, offline.Flush());
  EXPECT_EQ(still_down.kept, 1);
  EXPECT_EQ(still_down.delivered, 0);

  // The aggregator comes back on the same address with its state; the round
  // is still open, and the buffered update lands.
  options.listen_address = "127.0.0.1:" + std::to_string(port);
  FEDGE_ASSERT_OK_AND_ASSIGN(server, aggregator::AggregatorServer::Start(options));
  client::FlushReport flushed;
  for (int attempt = 0; attempt < 50 && flushed.delivered == 0; ++attempt) {
    FEDGE_ASSERT_OK_AND_ASSIGN(flushed, offline.Flush());
    if (flushed.delivered == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(flushed.delivered, 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(pending, store.List());
  EXPECT_TRUE(pending.empty());
  FEDGE_ASSERT_OK(server->Wait());
  const std::vector<float> initial = InitialParameters();
  const std::vector<float> final = Parameters(*server);
  for (size_t i = 0; i < final.size(); i += 1013) {
    EXPECT_NEAR(final[i], initial[i] + 0.03f, 1e-6) << i;
  }

  // An update buffered for a round that has closed since is discarded.
  FEDGE_ASSERT_OK(store.Put(late));
  FEDGE_ASSERT_OK_AND_ASSIGN(client::FlushReport stale, offline.Flush());
  EXPECT_EQ(stale.discarded, 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(pending, store.List());
  EXPECT_TRUE(pending.empty());
}

TEST_F(DeployTest, SecureAggregationRefusesImpostorsAndUpdatesInTheClear) {
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) Enroll(state_, id);
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.goal = 3;
  options.policy.min_clients = 3;
  options.secure_aggregation.emplace();
  options.secure_aggregation->protocol.protocol = v1::SecAggConfig::PROTOCOL_SECAGG;
  options.secure_aggregation->protocol.threshold = 2;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const int port = server->port();
  FEDGE_ASSERT_OK_AND_ASSIGN(auto one, client::GrpcTransport::Create(CertDevice("dev-1", port)));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto two, client::GrpcTransport::Create(CertDevice("dev-2", port)));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto three, client::GrpcTransport::Create(CertDevice("dev-3", port)));
  v1::Task task_one, task_two, task_three;
  std::thread poll_two([&] { task_two = *WaitForTask(*two); });
  std::thread poll_three([&] { task_three = *WaitForTask(*three); });
  FEDGE_ASSERT_OK_AND_ASSIGN(task_one, WaitForTask(*one));
  poll_two.join();
  poll_three.join();
  ASSERT_TRUE(task_one.has_secagg());
  EXPECT_EQ(task_one.secagg().protocol(), v1::SecAggConfig::PROTOCOL_SECAGG);
  // No update in the clear.
  EXPECT_THAT(one->SubmitUpdate(MakeUpdate(task_one, testing_util::kSmallModelSize, 0.1f)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("secure aggregation")));
  // dev-1 speaking for dev-2.
  v1::SecAggClientMessage forged;
  forged.set_round(task_one.round());
  forged.set_client_id("dev-2");
  EXPECT_THAT(one->SecAggSend(forged),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("as 'dev-2'")));
  // A poll for a phase that has not closed waits, then says so.
  EXPECT_THAT(one->SecAggPoll("dev-1", task_one.round(), v1::SECAGG_PHASE_ADVERTISE_KEYS),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(one->SecAggPoll("dev-2", task_one.round(), v1::SECAGG_PHASE_ADVERTISE_KEYS),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(DeployTest, OverSelectedRoundsCloseAtTheGoalAndRefuseStragglers) {
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) Enroll(state_, id);
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.goal = 2;
  options.policy.min_clients = 3;
  options.policy.over_selection = 0.5;  // 3 selected for a goal of 2
  options.policy.rounds = 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  std::vector<std::unique_ptr<client::GrpcTransport>> devices;
  for (const char* id : {"dev-1", "dev-2", "dev-3"}) {
    devices.push_back(*client::GrpcTransport::Create(CertDevice(id, server->port())));
  }
  std::vector<v1::Task> tasks(3);
  std::vector<std::thread> polls;
  for (size_t i = 0; i < 3; ++i)
    polls.emplace_back([&, i] { tasks[i] = *WaitForTask(*devices[i]); });
  for (std::thread& t : polls) t.join();
  const size_t d = testing_util::kSmallModelSize;
  FEDGE_ASSERT_OK(devices[0]->SubmitUpdate(MakeUpdate(tasks[0], d, 0.01f)));
  FEDGE_ASSERT_OK(devices[1]->SubmitUpdate(MakeUpdate(tasks[1], d, 0.03f)));
  FEDGE_ASSERT_OK(server->Wait());  // closed at the goal, not at the deadline
  EXPECT_THAT(devices[2]->SubmitUpdate(MakeUpdate(tasks[2], d, 0.05f)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  const std::vector<float> initial = InitialParameters();
  const std::vector<float> final = Parameters(*server);
  EXPECT_NEAR(final[5], initial[5] + 0.02f, 1e-6);  // the straggler is not in it
}

// Differential privacy behind the gRPC service: the coordinator applies it
// exactly as in simulations (tasks carry the privacy section, the sum is
// clipped and noised, the round is accounted), and the operator sees ε.
TEST_F(DeployTest, CentralPrivacyIsAppliedAndAccountedBehindTheService) {
  for (const char* id : {"dev-1", "dev-2"}) Enroll(state_, id);
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.goal = 2;
  options.policy.min_clients = 2;
  options.policy.rounds = 1;
  aggregator::PrivateAggregationOptions dp;
  dp.mode = privacy::PrivacyMode::kCentral;
  dp.noise_multiplier = 1.0;
  dp.clipper_options.clip_norm = 0.1;
  dp.sampling_rate = 1.0;
  dp.expected_cohort = 2.0;
  dp.seeded_random = true;
  dp.seed = 5;
  options.privacy = dp;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto one,
                             client::GrpcTransport::Create(CertDevice("dev-1", server->port())));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto two,
                             client::GrpcTransport::Create(CertDevice("dev-2", server->port())));
  v1::Task task_two;
  std::thread poll_two([&] { task_two = *WaitForTask(*two); });
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::Task task_one, WaitForTask(*one));
  poll_two.join();
  EXPECT_TRUE(task_one.has_privacy());
  EXPECT_TRUE(task_two.has_privacy());
  const size_t d = testing_util::kSmallModelSize;
  FEDGE_ASSERT_OK(one->SubmitUpdate(MakeUpdate(task_one, d, 0.5f)));
  FEDGE_ASSERT_OK(two->SubmitUpdate(MakeUpdate(task_two, d, 0.5f)));
  FEDGE_ASSERT_OK(server->Wait());
  EXPECT_EQ(server->latest_version(), 1u);
  EXPECT_GT(server->fleet().Overview().epsilon_spent, 0.0);
  // Each update was clipped to norm 0.1 before the mean (noise aside), so
  // the model moved by far less than the unclipped 0.5 per coordinate.
  const std::vector<float> initial = InitialParameters();
  const std::vector<float> final = Parameters(*server);
  double moved = 0.0;
  for (size_t k = 0; k < d; ++k) moved += std::abs(final[k] - initial[k]);
  EXPECT_LT(moved / static_cast<double>(d), 0.25);
}

TEST_F(DeployTest, DeadlinesCloseWithWhatArrivedOrFailTheRound) {
  for (const char* id : {"dev-1", "dev-2"}) Enroll(state_, id);
  aggregator::AggregatorServerOptions options = ServerOptions(state_);
  options.policy.goal = 2;
  options.policy.min_updates = 1;
  options.policy.rounds = 1;
  options.policy.deadline = std::chrono::milliseconds(1500);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto one,
                             client::GrpcTransport::Create(CertDevice("dev-1", server->port())));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto two,
                             client::GrpcTransport::Create(CertDevice("dev-2", server->port())));
  v1::Task task_one;
  std::thread poll_two([&] { ASSERT_TRUE(WaitForTask(*two).ok()); });
  FEDGE_ASSERT_OK_AND_ASSIGN(task_one, WaitForTask(*one));
  poll_two.join();
  FEDGE_ASSERT_OK(one->SubmitUpdate(MakeUpdate(task_one, testing_util::kSmallModelSize, 0.04f)));
  FEDGE_ASSERT_OK(server->Wait());  // dev-2 never answers: the deadline closes the round
  EXPECT_EQ(server->latest_version(), 1u);
  EXPECT_NEAR(Parameters(*server)[7], InitialParameters()[7] + 0.04f, 1e-6);
  server.reset();

  // The same with min_updates 2: the round fails and publishes nothing.
  const std::filesystem::path failing = state_ / "failing";
  for (const char* id : {"dev-1", "dev-2"}) Enroll(failing, id);
  options = ServerOptions(failing);
  options.policy.goal = 2;
  options.policy.min_updates = 2;
  options.policy.deadline = std::chrono::milliseconds(1500);
  std::atomic<int> failed{0};
  options.on_round_closed = [&](const aggregator::RoundOutcome& outcome) {
    if (outcome.new_version == 0) ++failed;
  };
  FEDGE_ASSERT_OK_AND_ASSIGN(server, aggregator::AggregatorServer::Start(options));
  FEDGE_ASSERT_OK_AND_ASSIGN(one,
                             client::GrpcTransport::Create(CertDevice("dev-1", server->port())));
  FEDGE_ASSERT_OK_AND_ASSIGN(two,
                             client::GrpcTransport::Create(CertDevice("dev-2", server->port())));
  std::thread poll_again([&] { ASSERT_TRUE(WaitForTask(*two).ok()); });
  FEDGE_ASSERT_OK_AND_ASSIGN(task_one, WaitForTask(*one));
  poll_again.join();
  FEDGE_ASSERT_OK(one->SubmitUpdate(MakeUpdate(task_one, testing_util::kSmallModelSize, 0.04f)));
  for (int i = 0; i < 100 && failed.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(failed.load(), 1);
  EXPECT_EQ(server->latest_version(), 0u);
  server.reset();
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(failing));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto rounds, store->Rounds());
  ASSERT_GE(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, aggregator::RoundState::kFailed);
  EXPECT_THAT(rounds[0].reason, HasSubstr("fewer than the 2 required"));
}

// A fake aggregator that serves tasks and whatever artifact the test puts in.
class FakeAggregator final : public v1::Federation::Service {
 public:
  grpc::Status PollTask(grpc::ServerContext*, const v1::PollTaskRequest* request,
                        v1::PollTaskResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    response->mutable_task()->set_round(1);
    response->mutable_task()->set_model_version(artifact.header().version());
    response->mutable_task()->set_client_id(request->client_id());
    return grpc::Status::OK;
  }
  grpc::Status DownloadModel(grpc::ServerContext*, const v1::DownloadModelRequest* request,
                             grpc::ServerWriter<v1::ModelChunk>* writer) override {
    std::lock_guard<std::mutex> lock(mu);
    offsets.push_back(request->offset());
    const std::string bytes = artifact.SerializeAsString();
    v1::ModelChunk chunk;
    chunk.set_version(request->version());
    chunk.set_offset(request->offset());
    chunk.set_total_bytes(bytes.size());
    if (break_next && request->offset() == 0) {
      // Half of it, then the connection "breaks".
      break_next = false;
      chunk.set_data(bytes.substr(0, bytes.size() / 2));
      writer->Write(chunk);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset");
    }
    chunk.set_data(bytes.substr(request->offset()));
    writer->Write(chunk);
    return grpc::Status::OK;
  }
  std::mutex mu;
  v1::ModelArtifact artifact;
  bool break_next = false;
  std::vector<uint64_t> offsets;
};

TEST(TamperedModelTest, DownloadsResumeAndATamperedModelIsRefused) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto key, models::SigningKey::LoadPem(CertDir() / "signing.key"));
  FakeAggregator fake;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&fake);
  auto server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  client::GrpcTransportOptions options = CertDevice("dev-1", port);
  options.insecure = true;
  options.target = "127.0.0.1:" + std::to_string(port);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto device, client::GrpcTransport::Create(options));

  auto serve = [&](v1::ModelArtifact artifact) {
    std::lock_guard<std::mutex> lock(fake.mu);
    fake.artifact = std::move(artifact);
  };
  v1::ModelArtifact good = testing_util::SmallModel();
  good.mutable_header()->set_version(1);
  FEDGE_ASSERT_OK(models::SignArtifact(good, key));
  serve(good);
  {
    std::lock_guard<std::mutex> lock(fake.mu);
    fake.break_next = true;
  }
  FEDGE_ASSERT_OK(device->PollTask("dev-1").status());
  // The first download breaks halfway; the second resumes where it stopped.
  FEDGE_ASSERT_OK(device->FetchModel(1).status());
  ASSERT_NE(device->current_model(), nullptr);
  {
    std::lock_guard<std::mutex> lock(fake.mu);
    ASSERT_EQ(fake.offsets.size(), 2u);
    EXPECT_EQ(fake.offsets[0], 0u);
    EXPECT_EQ(fake.offsets[1], good.ByteSizeLong() / 2);
  }

  // Version 2 with one tensor byte flipped after signing.
  v1::ModelArtifact flipped = good;
  flipped.mutable_header()->set_version(2);
  FEDGE_ASSERT_OK(models::SignArtifact(flipped, key));
  (*flipped.mutable_tensors(0)->mutable_data())[100] ^= 0x01;
  serve(flipped);
  EXPECT_THAT(device->FetchModel(2), StatusIs(absl::StatusCode::kDataLoss));
  // Version 2 re-hashed by the attacker: the signature no longer matches.
  v1::ModelArtifact rehashed = flipped;
  rehashed.mutable_header()->set_tensors_sha256(models::ComputeTensorsSha256(rehashed));
  serve(rehashed);
  EXPECT_THAT(device->FetchModel(2), StatusIs(absl::StatusCode::kUnauthenticated));
  // Version 2 signed by another key.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto other, models::SigningKey::Generate());
  v1::ModelArtifact foreign = rehashed;
  FEDGE_ASSERT_OK(models::SignArtifact(foreign, other));
  serve(foreign);
  EXPECT_THAT(device->FetchModel(2), StatusIs(absl::StatusCode::kUnauthenticated));
  // Unsigned.
  v1::ModelArtifact unsigned_model = rehashed;
  unsigned_model.clear_signature();
  unsigned_model.clear_signing_key_id();
  serve(unsigned_model);
  EXPECT_THAT(device->FetchModel(2), StatusIs(absl::StatusCode::kUnauthenticated));

  // The device still holds version 1.
  ASSERT_NE(device->current_model(), nullptr);
  EXPECT_EQ(device->current_model()->header().version(), 1u);
  server->Shutdown();
}

}  // namespace
}  // namespace fedge
