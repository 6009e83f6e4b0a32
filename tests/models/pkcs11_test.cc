// Keys in a PKCS#11 token (SoftHSM2, made by the test in its temp dir):
// URIs, model signing with a token key that verifies on a device, keys that
// cannot be extracted, TLS keys through the OpenSSL engine.
// The test drives OpenSSL's (deprecated) ENGINE API as gRPC does.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "fedge/models/pkcs11.h"

#include <openssl/engine.h>
#include <p11-kit/pkcs11.h>

#include <fstream>
#include <string>
#include <vector>

#include "fedge/models/artifact.h"
#include "fedge/models/certificates.h"
#include "fedge/models/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "softhsm.h"
#include "status_matchers.h"
#include "temp_dir.h"
#include "test_layouts.h"

namespace fedge::models {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing_util::IsOk;
using testing_util::kSoftHsmModule;
using testing_util::StatusIs;
using testing_util::TokenKeyUri;


// A fresh key on the aggregator's tokens, as fedge-aggregator keygen makes it.
std::string NewTokenKey(const std::string& object, TokenKeyType type) {
  EXPECT_TRUE(testing_util::SoftHsmReady());
  const std::string uri = TokenKeyUri(
      type == TokenKeyType::kEd25519 ? testing_util::kSigningToken : testing_util::kTlsToken,
      object);
  absl::StatusOr<Pkcs11Uri> parsed = Pkcs11Uri::Parse(uri);
  EXPECT_THAT(parsed, IsOk());
  absl::StatusOr<std::shared_ptr<Pkcs11Session>> session = Pkcs11Session::Open(*parsed);
  EXPECT_THAT(session, IsOk());
  EXPECT_THAT((*session)->GenerateKeyPair(*parsed, type), IsOk());
  return uri;
}

TEST(Pkcs11UriTest, ParsesPathAndQueryAttributes) {
  FEDGE_ASSERT_OK_AND_ASSIGN(
      Pkcs11Uri uri,
      Pkcs11Uri::Parse("pkcs11:token=my%20hsm;object=sign;id=%01%02?module-path=/lib/m.so&"
                       "pin-value=12%2534"));
  EXPECT_EQ(uri.token, "my hsm");
  EXPECT_EQ(uri.object, "sign");
  EXPECT_EQ(uri.id, std::string("\x01\x02"));
  EXPECT_EQ(uri.module_path, "/lib/m.so");
  EXPECT_EQ(uri.pin, "12%34");
  // Without module and PIN, and escaped again.
  EXPECT_EQ(uri.KeyUri(), "pkcs11:token=my%20hsm;object=sign;id=%01%02");
}

TEST(Pkcs11UriTest, ReadsThePinFromPinSource) {
  testing_util::ScopedTempDir dir;
  std::ofstream(dir.File("pin")) << "987654\n";
  FEDGE_ASSERT_OK_AND_ASSIGN(
      Pkcs11Uri uri,
      Pkcs11Uri::Parse("pkcs11:object=k?module-path=/m.so&pin-source=" + dir.File("pin")));
  EXPECT_EQ(uri.pin, "987654");
}

TEST(Pkcs11UriTest, RefusesWhatItCannotUse) {
  const struct {
    std::string uri;
    std::string error;
  } cases[] = {
      {"file:/etc/key.pem", "not a PKCS#11 URI"},
      {"pkcs11:object=k", "module-path"},
      {"pkcs11:token=t?module-path=/m.so", "object= or id="},
      {"pkcs11:object=k;slot=3?module-path=/m.so", "unknown path attribute 'slot'"},
      {"pkcs11:object=k?module-path=/m.so&pin=1", "unknown query attribute 'pin'"},
      {"pkcs11:object=k;object=j?module-path=/m.so", "'object' given twice"},
      {"pkcs11:object=k%2?module-path=/m.so", "bad % escape"},
      {"pkcs11:object=k%zz?module-path=/m.so", "bad % escape"},
      {"pkcs11:object?module-path=/m.so", "not name=value"},
      {"pkcs11:object=k?module-path=/m.so&pin-value=1&pin-source=/p", "exclusive"},
      {"pkcs11:object=k?module-path=/m.so&pin-source=/nonexistent/pin", "pin-source"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(Pkcs11Uri::Parse(c.uri),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)))
        << c.uri;
  }
  EXPECT_THAT(CheckKeyRef("keys/signing.key"), IsOk());
  EXPECT_THAT(CheckKeyRef("pkcs11:object=k"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Pkcs11SessionTest, NamesWhatIsMissing) {
  ASSERT_TRUE(testing_util::SoftHsmReady());
  FEDGE_ASSERT_OK_AND_ASSIGN(Pkcs11Uri no_token,
                             Pkcs11Uri::Parse(TokenKeyUri("no-such-token", "k")));
  EXPECT_THAT(Pkcs11Session::Open(no_token),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("fedge-signing")));
  FEDGE_ASSERT_OK_AND_ASSIGN(Pkcs11Uri bad_pin, Pkcs11Uri::Parse(
                                                    "pkcs11:token=fedge-signing;object=k?"
                                                    "module-path=" +
                                                    std::string(kSoftHsmModule) +
                                                    "&pin-value=0000"));
  EXPECT_THAT(Pkcs11Session::Open(bad_pin),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("wrong PIN")));
  FEDGE_ASSERT_OK_AND_ASSIGN(Pkcs11Uri bad_module,
                             Pkcs11Uri::Parse("pkcs11:object=k?module-path=/nonexistent/p11.so"));
  EXPECT_THAT(Pkcs11Session::Open(bad_module),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("/nonexistent/p11.so")));
  EXPECT_THAT(SigningKey::FromPkcs11(TokenKeyUri(testing_util::kSigningToken, "never-generated")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("never-generated")));
}

TEST(TokenSigningKeyTest, ATokenSignatureVerifiesOnTheDevice) {
  const std::string uri = NewTokenKey("model-signing", TokenKeyType::kEd25519);
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey key, SigningKey::Load(uri));
  EXPECT_TRUE(key.in_token());
  EXPECT_THAT(key.ToPem(), StatusIs(absl::StatusCode::kFailedPrecondition));
  v1::ModelArtifact artifact = testing_layouts::TinyArtifact(4, 29);
  FEDGE_ASSERT_OK(SignArtifact(artifact, key));
  // The device knows only the public key's PEM, as fedge-aggregator keygen
  // --public-out writes it.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string pem, key.public_key().ToPem());
  FEDGE_ASSERT_OK_AND_ASSIGN(VerifyingKey pinned, VerifyingKey::FromPem(pem));
  FEDGE_EXPECT_OK(VerifySignedArtifact(artifact, pinned));
  // Ed25519 is deterministic (RFC 8032): the token signs what OpenSSL would.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string again, key.Sign(ArtifactSigningMessage(artifact.header())));
  EXPECT_EQ(again, artifact.signature());
  v1::ModelArtifact altered = artifact;
  altered.mutable_header()->set_version(5);
  EXPECT_THAT(VerifySignedArtifact(altered, pinned),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
  // Generating the same label again would make the key ambiguous.
  FEDGE_ASSERT_OK_AND_ASSIGN(Pkcs11Uri parsed, Pkcs11Uri::Parse(uri));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto session, Pkcs11Session::Open(parsed));
  EXPECT_THAT(session->GenerateKeyPair(parsed, TokenKeyType::kEd25519),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST(TokenSigningKeyTest, AnEcKeyIsNotASigningKey) {
  const std::string uri = NewTokenKey("not-ed25519", TokenKeyType::kEcP256);
  EXPECT_THAT(SigningKey::FromPkcs11(uri),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an Ed25519 key")));
}

TEST(TokenKeyTest, PrivateKeysCannotBeExtracted) {
  for (TokenKeyType type : {TokenKeyType::kEd25519, TokenKeyType::kEcP256}) {
    const std::string object = type == TokenKeyType::kEd25519 ? "sealed-ed" : "sealed-ec";
    const std::string uri = NewTokenKey(object, type);
    FEDGE_ASSERT_OK_AND_ASSIGN(Pkcs11Uri parsed, Pkcs11Uri::Parse(uri));
    FEDGE_ASSERT_OK_AND_ASSIGN(auto session, Pkcs11Session::Open(parsed));
    FEDGE_ASSERT_OK_AND_ASSIGN(uint64_t key, session->FindKey(parsed, /*private_key=*/true));
    FEDGE_ASSERT_OK_AND_ASSIGN(std::string extractable, session->Attribute(key, CKA_EXTRACTABLE));
    FEDGE_ASSERT_OK_AND_ASSIGN(std::string sensitive, session->Attribute(key, CKA_SENSITIVE));
    FEDGE_ASSERT_OK_AND_ASSIGN(std::string never, session->Attribute(key, CKA_NEVER_EXTRACTABLE));
    EXPECT_EQ(extractable, std::string(1, CK_FALSE)) << object;
    EXPECT_EQ(sensitive, std::string(1, CK_TRUE)) << object;
    EXPECT_EQ(never, std::string(1, CK_TRUE)) << object;
    // The token refuses to reveal the private value.
    EXPECT_THAT(session->Attribute(key, CKA_VALUE),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("SENSITIVE")))
        << object;
    // The public half is readable (the control: the refusal above is about
    // the private value, not any attribute).
    FEDGE_ASSERT_OK_AND_ASSIGN(uint64_t pub, session->FindKey(parsed, /*private_key=*/false));
    EXPECT_THAT(session->Attribute(pub, CKA_EC_POINT), IsOk()) << object;
  }
}

TEST(TokenTlsKeyTest, CertifiesThroughTheEngine) {
  ASSERT_TRUE(testing_util::SoftHsmReady());
  testing_util::ScopedTempDir dir;
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey ca_key, TlsPrivateKey::GenerateFile(dir.File("ca.key")));
  FEDGE_ASSERT_OK_AND_ASSIGN(
      DeviceCertificateAuthority ca,
      DeviceCertificateAuthority::CreateSelfSigned(std::move(ca_key), "test CA", 30));
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey key,
                             TlsPrivateKey::GenerateInToken(TokenKeyUri(testing_util::kTlsToken, "tls-server")));
  EXPECT_TRUE(key.in_token());
  EXPECT_THAT(key.grpc_private_key(), StartsWith("engine:fedge-pkcs11:pkcs11:token=fedge-tls;object=tls-server"));
  EXPECT_THAT(key.grpc_private_key(), ::testing::Not(HasSubstr("pin")));
  // The CSR is signed on the token; the CA verifies it.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string csr, MakeCertificateRequest(key, "localhost"));
  CertificateProfile profile;
  profile.common_name = "localhost";
  profile.dns_names = {"localhost"};
  profile.ip_addresses = {"127.0.0.1"};
  profile.server = true;
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string cert, ca.Issue(csr, profile));
  FEDGE_EXPECT_OK(key.CheckCertificate(cert));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string cn, CertificateCommonName(cert));
  EXPECT_EQ(cn, "localhost");
  // Another key does not fit that certificate.
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey other, TlsPrivateKey::GenerateFile(dir.File("o.key")));
  EXPECT_THAT(other.CheckCertificate(cert), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(TlsPrivateKey::GenerateInToken(TokenKeyUri(testing_util::kTlsToken, "tls-server")),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

// gRPC loads "engine:<id>:<key>" keys by making the engine the default for
// everything (ENGINE_set_default(ENGINE_METHOD_ALL)); done here as gRPC does
// it, OpenSSL's own software keys must keep working afterwards.
TEST(TokenTlsKeyTest, GrpcLoadingATokenKeyLeavesSoftwareKeysWorking) {
  ASSERT_TRUE(testing_util::SoftHsmReady());
  FEDGE_ASSERT_OK_AND_ASSIGN(
      TlsPrivateKey key, TlsPrivateKey::GenerateInToken(TokenKeyUri(testing_util::kTlsToken, "as-grpc")));
  const std::string& grpc_key = key.grpc_private_key();
  const size_t engine_end = grpc_key.find(':', 7);
  ASSERT_NE(engine_end, std::string::npos);
  const std::string engine_id = grpc_key.substr(7, engine_end - 7);
  ENGINE* engine = ENGINE_by_id(engine_id.c_str());
  ASSERT_NE(engine, nullptr) << engine_id;
  ASSERT_EQ(ENGINE_set_default(engine, ENGINE_METHOD_ALL), 1);
  ASSERT_EQ(ENGINE_init(engine), 1);
  EVP_PKEY* loaded = ENGINE_load_private_key(engine, grpc_key.c_str() + engine_end + 1, nullptr, nullptr);
  ASSERT_NE(loaded, nullptr);
  EVP_PKEY_free(loaded);
  ENGINE_finish(engine);
  ENGINE_free(engine);
  // Software keys: generation, a CSR and a CA signature.
  testing_util::ScopedTempDir dir;
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey file_key, TlsPrivateKey::GenerateFile(dir.File("k.pem")));
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey ca_key, TlsPrivateKey::GenerateFile(dir.File("ca.pem")));
  FEDGE_ASSERT_OK_AND_ASSIGN(DeviceCertificateAuthority ca,
                             DeviceCertificateAuthority::CreateSelfSigned(std::move(ca_key), "CA", 1));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string csr, MakeCertificateRequest(file_key, "dev-1"));
  CertificateProfile profile;
  profile.common_name = "dev-1";
  FEDGE_EXPECT_OK(ca.Issue(csr, profile).status());
}

}  // namespace
}  // namespace fedge::models
