// Device certificates and keys in tokens, end to end over TLS on loopback:
// enrollment with a CSR, a federation round over mutual TLS, a revoked
// device refused at its next handshake, a forged certificate refused, an
// aggregator whose TLS and model-signing keys live in a SoftHSM2 token, and
// a rotated signing key that devices follow through its chain.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <string>
#include <thread>

#include "deploy_fixture.h"
#include "ops_client.h"
#include "fedge/client/enrollment.h"
#include "fedge/models/certificates.h"
#include "fedge/models/model_trust.h"
#include "fedge/models/pkcs11.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"
#include "fedge/v1/service.grpc.pb.h"
#include "softhsm.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::MakeUpdate;
using ::fedge::testing_util::ScratchDir;
using ::fedge::testing_util::ServerOptions;
using ::fedge::testing_util::StatusIs;
using ::fedge::testing_util::TokenKeyUri;
using ::fedge::testing_util::WaitForTask;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

// A device CA of the test binary: its key and certificate files.
struct CaFiles {
  fs::path cert;
  fs::path key;
};

CaFiles MakeCa(const std::string& name) {
  const fs::path dir = ScratchDir() / name;
  fs::create_directories(dir);
  CaFiles files{dir / "ca.pem", dir / "ca.key"};
  absl::StatusOr<models::TlsPrivateKey> key = models::TlsPrivateKey::GenerateFile(files.key);
  EXPECT_TRUE(key.ok()) << key.status();
  absl::StatusOr<models::DeviceCertificateAuthority> ca =
      models::DeviceCertificateAuthority::CreateSelfSigned(*std::move(key), "fedge device CA", 30);
  EXPECT_TRUE(ca.ok()) << ca.status();
  EXPECT_TRUE(proto::WriteFileAtomic(files.cert, ca->certificate_pem(), 0644).ok());
  return files;
}

const CaFiles& DeviceCa() {
  static const CaFiles files = MakeCa("device-ca");
  return files;
}

class DeviceCertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ScratchDir() / info->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    state_ = dir_ / "state";
  }

  void Enroll(const std::string& id, const std::string& token) {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(state_));
    FEDGE_ASSERT_OK(store->EnrollClient(id, token));
  }

  // The aggregator as the device CA (dev certificates for its own TLS).
  aggregator::AggregatorServerOptions CaServerOptions() {
    aggregator::AggregatorServerOptions options = ServerOptions(state_);
    options.tls.client_ca_file = DeviceCa().cert;
    options.tls.client_ca_key = DeviceCa().key.string();
    options.tls.device_certificate_days = 7;
    return options;
  }

  // A device that enrolls with its token (key_ref: a file or a token URI),
  // then uses its certificate.
  client::GrpcTransportOptions Enrolling(const std::string& id, const std::string& token,
                                         const std::string& key_ref, int port) {
    client::GrpcTransportOptions options = testing_util::TokenDevice(id, token, port);
    options.cert_file = dir_ / (id + ".pem");
    options.key_file = key_ref;
    options.enroll = true;
    options.call_timeout = std::chrono::seconds(10);
    return options;
  }

  // The same device without its token: only the certificate identifies it.
  static client::GrpcTransportOptions CertificateOnly(client::GrpcTransportOptions options) {
    options.token.clear();
    options.enroll = false;
    return options;
  }

  absl::Status JoinOnce(const client::GrpcTransportOptions& options) {
    FEDGE_ASSIGN_OR_RETURN(auto transport, client::GrpcTransport::Create(options));
    return transport->Join().status();
  }

  fs::path dir_;
  fs::path state_;
};

TEST_F(DeviceCertificateTest, EnrollmentWithACsrThenAMutualTlsRound) {
  ASSERT_TRUE(testing_util::SoftHsmReady());
  Enroll("dev-1", "token-one");
  Enroll("dev-2", "token-two");
  aggregator::AggregatorServerOptions options = CaServerOptions();
  options.policy.rounds = 1;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const int port = server->port();
  // dev-1 keeps its key in a file, dev-2 in its own token.
  const std::string token_key = TokenKeyUri(testing_util::kDeviceToken, "dev-2-tls");
  client::GrpcTransportOptions one =
      Enrolling("dev-1", "token-one", (dir_ / "dev-1.key").string(), port);
  client::GrpcTransportOptions two = Enrolling("dev-2", "token-two", token_key, port);
  FEDGE_ASSERT_OK(client::EnsureEnrolled(one));
  FEDGE_ASSERT_OK(client::EnsureEnrolled(two));
  for (const auto* device : {&one, &two}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(std::string pem, proto::ReadFile(device->cert_file));
    FEDGE_ASSERT_OK_AND_ASSIGN(std::string cn, models::CertificateCommonName(pem));
    EXPECT_EQ(cn, device->client_id);
  }
  // dev-2's private key is on the token and cannot be read from it.
  FEDGE_ASSERT_OK_AND_ASSIGN(models::TlsPrivateKey key, models::TlsPrivateKey::Load(token_key));
  EXPECT_TRUE(key.in_token());
  EXPECT_THAT(key.grpc_private_key(), HasSubstr("engine:fedge-pkcs11:"));

  // A round over mutual TLS, with no token on the wire.
  const size_t d = testing_util::kSmallModelSize;
  auto device = [&](const client::GrpcTransportOptions& transport_options,
                    float value) -> absl::Status {
    FEDGE_ASSIGN_OR_RETURN(auto transport,
                           client::GrpcTransport::Create(CertificateOnly(transport_options)));
    FEDGE_RETURN_IF_ERROR(transport->Join().status());
    FEDGE_ASSIGN_OR_RETURN(v1::Task task, WaitForTask(*transport));
    FEDGE_RETURN_IF_ERROR(transport->FetchModel(task.model_version()).status());
    return transport->SubmitUpdate(MakeUpdate(task, d, value));
  };
  absl::Status first, second;
  std::thread a([&] { first = device(one, 0.02f); });
  std::thread b([&] { second = device(two, 0.04f); });
  a.join();
  b.join();
  FEDGE_ASSERT_OK(first);
  FEDGE_ASSERT_OK(second);
  FEDGE_ASSERT_OK(server->Wait());
  EXPECT_EQ(server->latest_version(), 1u);
  // The device with the token key downloads and verifies the new version.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto transport, client::GrpcTransport::Create(CertificateOnly(two)));
  FEDGE_ASSERT_OK(transport->Join().status());
  FEDGE_ASSERT_OK_AND_ASSIGN(auto model, transport->FetchModel(1));
  EXPECT_EQ(model->header().version(), 1u);
}

TEST_F(DeviceCertificateTest, ARevokedDeviceIsRefusedAtItsNextHandshake) {
  Enroll("dev-1", "token-one");
  Enroll("dev-2", "token-two");
  aggregator::AggregatorServerOptions options = CaServerOptions();
  options.ops.listen = "127.0.0.1:0";
  options.ops.token = "operator-token-for-the-revocation-test";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  const int port = server->port();
  client::GrpcTransportOptions one =
      Enrolling("dev-1", "token-one", (dir_ / "dev-1.key").string(), port);
  client::GrpcTransportOptions two =
      Enrolling("dev-2", "token-two", (dir_ / "dev-2.key").string(), port);
  FEDGE_ASSERT_OK(client::EnsureEnrolled(one));
  FEDGE_ASSERT_OK(client::EnsureEnrolled(two));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto connected, client::GrpcTransport::Create(CertificateOnly(one)));
  FEDGE_ASSERT_OK(connected->Join().status());
  FEDGE_ASSERT_OK(JoinOnce(CertificateOnly(one)));

  // The operator revokes it through the ops API (what fedge-ctl revoke and
  // the dashboard call).
  testing_util::HttpReply reply =
      testing_util::OpsRequest(server->ops_port(), "POST", "/api/devices/dev-1/revoke",
                               options.ops.token, CertDir() / "ca.pem", R"({"reason":"lost"})");
  ASSERT_EQ(reply.status, 200) << reply.error << reply.body;
  // A new connection: the TLS handshake itself fails (UNAVAILABLE), before
  // any call could be answered.
  EXPECT_THAT(JoinOnce(CertificateOnly(one)), StatusIs(absl::StatusCode::kUnavailable));
  // On the connection it already had, every call is refused.
  EXPECT_THAT(connected->Join().status(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("revoked")));
  // Its token cannot buy it a new certificate.
  EXPECT_THAT(client::EnrollDevice(one),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("revoked")));
  // The other device still connects.
  FEDGE_EXPECT_OK(JoinOnce(CertificateOnly(two)));
  // The refusal survives a restart (revocations are stored).
  server.reset();
  FEDGE_ASSERT_OK_AND_ASSIGN(server, aggregator::AggregatorServer::Start(options));
  one.target = two.target = "localhost:" + std::to_string(server->port());
  EXPECT_THAT(JoinOnce(CertificateOnly(one)), StatusIs(absl::StatusCode::kUnavailable));
  FEDGE_EXPECT_OK(JoinOnce(CertificateOnly(two)));
}

TEST_F(DeviceCertificateTest, AForgedCertificateIsRefused) {
  Enroll("dev-1", "token-one");
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(CaServerOptions()));
  const int port = server->port();
  client::GrpcTransportOptions genuine =
      Enrolling("dev-1", "token-one", (dir_ / "dev-1.key").string(), port);
  FEDGE_ASSERT_OK(client::EnsureEnrolled(genuine));
  FEDGE_ASSERT_OK(JoinOnce(CertificateOnly(genuine)));
  // A CA with the same name but its own key certifies an impostor's key as dev-1.
  static const CaFiles forger = MakeCa("forged-ca");
  FEDGE_ASSERT_OK_AND_ASSIGN(auto ca,
                             models::DeviceCertificateAuthority::Load(forger.cert, forger.key.string()));
  FEDGE_ASSERT_OK_AND_ASSIGN(models::TlsPrivateKey key,
                             models::TlsPrivateKey::GenerateFile(dir_ / "impostor.key"));
  models::CertificateProfile profile;
  profile.common_name = "dev-1";
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string csr, models::MakeCertificateRequest(key, "dev-1"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string forged, ca.Issue(csr, profile));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "impostor.pem", forged, 0644));
  client::GrpcTransportOptions impostor = CertificateOnly(genuine);
  impostor.cert_file = dir_ / "impostor.pem";
  impostor.key_file = dir_ / "impostor.key";
  EXPECT_THAT(JoinOnce(impostor), StatusIs(absl::StatusCode::kUnavailable));
  // The genuine certificate with the impostor's key does not even load.
  impostor.cert_file = genuine.cert_file;
  EXPECT_THAT(JoinOnce(impostor),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not the certificate's")));
}

TEST_F(DeviceCertificateTest, EnrollmentRefusesWhatItCannotCertify) {
  Enroll("dev-1", "token-one");
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(CaServerOptions()));
  const int port = server->port();
  client::GrpcTransportOptions wrong =
      Enrolling("dev-1", "not-the-token", (dir_ / "dev-1.key").string(), port);
  EXPECT_THAT(client::EnrollDevice(wrong),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("wrong enrollment token")));
  EXPECT_FALSE(fs::exists(wrong.cert_file));
  // A request for another device's name, sent over a raw stub.
  FEDGE_ASSERT_OK_AND_ASSIGN(models::TlsPrivateKey key,
                             models::TlsPrivateKey::Load((dir_ / "dev-1.key").string()));
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *proto::ReadFile(CertDir() / "ca.pem");
  auto stub = v1::Federation::NewStub(
      grpc::CreateChannel("localhost:" + std::to_string(port), grpc::SslCredentials(ssl)));
  auto enroll = [&](const std::string& csr) {
    grpc::ClientContext context;
    context.AddMetadata("x-fedge-client-id", "dev-1");
    context.AddMetadata("x-fedge-token", "token-one");
    v1::EnrollRequest request;
    request.set_client_id("dev-1");
    request.set_csr_pem(csr);
    v1::EnrollResponse response;
    return stub->Enroll(&context, request, &response);
  };
  grpc::Status status = enroll(*models::MakeCertificateRequest(key, "dev-9"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("names 'dev-9'"));
  status = enroll("-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = enroll(std::string(17 << 10, 'x'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("16 KiB"));
  // The right request still works afterwards.
  client::GrpcTransportOptions right =
      Enrolling("dev-1", "token-one", (dir_ / "dev-1.key").string(), port);
  FEDGE_ASSERT_OK_AND_ASSIGN(client::Enrollment enrolled, client::EnrollDevice(right));
  EXPECT_FALSE(enrolled.key_generated);  // the key made by the refused attempt
  // An aggregator that is no device CA says so.
  server.reset();
  aggregator::AggregatorServerOptions no_ca = CaServerOptions();
  no_ca.tls.client_ca_key.clear();
  FEDGE_ASSERT_OK_AND_ASSIGN(server, aggregator::AggregatorServer::Start(no_ca));
  right.target = "localhost:" + std::to_string(server->port());
  EXPECT_THAT(client::EnrollDevice(right),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("client_ca_key")));
}

TEST_F(DeviceCertificateTest, TlsAndModelSigningFromTheToken) {
  ASSERT_TRUE(testing_util::SoftHsmReady());
  Enroll("dev-1", "token-one");
  // The aggregator's keys, made on its tokens; its TLS certificate from the CA.
  const std::string signing_uri = TokenKeyUri(testing_util::kSigningToken, "aggregator-signing");
  FEDGE_ASSERT_OK_AND_ASSIGN(models::Pkcs11Uri parsed, models::Pkcs11Uri::Parse(signing_uri));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto session, models::Pkcs11Session::Open(parsed));
  FEDGE_ASSERT_OK(session->GenerateKeyPair(parsed, models::TokenKeyType::kEd25519));
  FEDGE_ASSERT_OK_AND_ASSIGN(models::SigningKey signing, models::SigningKey::Load(signing_uri));
  FEDGE_ASSERT_OK(signing.public_key().SavePem(dir_ / "signing.pub"));
  const std::string tls_uri = TokenKeyUri(testing_util::kTlsToken, "aggregator-tls");
  FEDGE_ASSERT_OK_AND_ASSIGN(models::TlsPrivateKey tls_key,
                             models::TlsPrivateKey::GenerateInToken(tls_uri));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto ca, models::DeviceCertificateAuthority::Load(
                                          DeviceCa().cert, DeviceCa().key.string()));
  models::CertificateProfile profile;
  profile.common_name = "localhost";
  profile.dns_names = {"localhost"};
  profile.ip_addresses = {"127.0.0.1"};
  profile.server = true;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string cert,
                             ca.Issue(*models::MakeCertificateRequest(tls_key, "localhost"), profile));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "server.pem", cert, 0644));

  aggregator::AggregatorServerOptions options = CaServerOptions();
  options.signing_key_file = signing_uri;
  options.tls.key_file = tls_uri;
  options.tls.cert_file = dir_ / "server.pem";
  options.ops.listen = "127.0.0.1:0";  // HTTPS with the same token key
  options.ops.token = "operator-token-for-the-token-key-test";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  testing_util::HttpReply status = testing_util::OpsRequest(
      server->ops_port(), "GET", "/api/overview", options.ops.token, DeviceCa().cert);
  EXPECT_EQ(status.status, 200) << status.error << status.body;
  client::GrpcTransportOptions device =
      testing_util::TokenDevice("dev-1", "token-one", server->port());
  device.ca_file = DeviceCa().cert;  // the CA of the token key's certificate
  device.pinned_key_file = dir_ / "signing.pub";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto transport, client::GrpcTransport::Create(device));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::JoinResponse join, transport->Join());
  EXPECT_EQ(join.signing_key_id(), signing.key_id());
  // Version 0, signed on the token at start, verifies on the device.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto model, transport->FetchModel(0));
  EXPECT_EQ(model->signing_key_id(), signing.key_id());
  // A device that trusts the dev CA, not this one, refuses the handshake.
  device.ca_file = CertDir() / "ca.pem";
  EXPECT_THAT(JoinOnce(device), StatusIs(absl::StatusCode::kUnavailable));
  // A key that does not fit the certificate stops the start with a clear error.
  server.reset();
  options.tls.cert_file = CertDir() / "server.pem";
  EXPECT_THAT(aggregator::AggregatorServer::Start(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("tls.key")));
}

TEST_F(DeviceCertificateTest, DevicesFollowARotatedSigningKeyThroughItsChain) {
  Enroll("dev-1", "token-one");
  // The federation started with the dev signing key, which devices pin;
  // it now signs with a new key endorsed by the old one.
  FEDGE_ASSERT_OK_AND_ASSIGN(models::SigningKey old_key,
                             models::SigningKey::LoadPem(CertDir() / "signing.key"));
  FEDGE_ASSERT_OK_AND_ASSIGN(models::SigningKey new_key, models::SigningKey::Generate());
  FEDGE_ASSERT_OK(new_key.SavePem(dir_ / "signing-2.key"));
  const fs::path chain = dir_ / "chain.pb";
  FEDGE_ASSERT_OK(models::AppendToKeyChain(chain, old_key, new_key.public_key(), 1));
  aggregator::AggregatorServerOptions options = CaServerOptions();
  options.signing_key_file = (dir_ / "signing-2.key").string();
  options.signing_key_chain = chain;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto server, aggregator::AggregatorServer::Start(options));
  client::GrpcTransportOptions device =
      testing_util::TokenDevice("dev-1", "token-one", server->port());
  FEDGE_ASSERT_OK_AND_ASSIGN(auto transport, client::GrpcTransport::Create(device));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::JoinResponse join, transport->Join());
  EXPECT_EQ(join.signing_key_id(), new_key.key_id());
  ASSERT_EQ(join.key_chain_size(), 1);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto model, transport->FetchModel(0));
  EXPECT_EQ(model->signing_key_id(), new_key.key_id());
  // A device pinning an unrelated key refuses the chain.
  FEDGE_ASSERT_OK_AND_ASSIGN(models::SigningKey unrelated, models::SigningKey::Generate());
  FEDGE_ASSERT_OK(unrelated.public_key().SavePem(dir_ / "unrelated.pub"));
  device.pinned_key_file = dir_ / "unrelated.pub";
  EXPECT_THAT(JoinOnce(device), StatusIs(absl::StatusCode::kUnauthenticated,
                                         HasSubstr("does not chain to the pinned key")));
  // The aggregator refuses to start with a chain that does not end at its key.
  server.reset();
  options.signing_key_file = (CertDir() / "signing.key").string();
  EXPECT_THAT(aggregator::AggregatorServer::Start(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("endorse-key")));
}

}  // namespace
}  // namespace fedge
