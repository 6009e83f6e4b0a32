// The device CA: certificate requests and the certificates it issues, and
// each way it refuses a request.
#include "fedge/models/certificates.h"

#include <sys/stat.h>

#include <string>

#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"
#include "temp_dir.h"

namespace fedge::models {
namespace {

using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::StatusIs;

class DeviceCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey key, TlsPrivateKey::GenerateFile(dir_.File("ca.key")));
    FEDGE_ASSERT_OK_AND_ASSIGN(DeviceCertificateAuthority ca,
                               DeviceCertificateAuthority::CreateSelfSigned(std::move(key),
                                                                            "fedge device CA", 30));
    FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_.File("ca.pem"), ca.certificate_pem(), 0644));
    ca_.emplace(std::move(ca));
  }

  std::string Csr(const std::string& file, const std::string& cn) {
    absl::StatusOr<TlsPrivateKey> key = TlsPrivateKey::GenerateFile(dir_.File(file));
    EXPECT_THAT(key, IsOk());
    absl::StatusOr<std::string> csr = MakeCertificateRequest(*key, cn);
    EXPECT_THAT(csr, IsOk());
    return *csr;
  }

  testing_util::ScopedTempDir dir_;
  std::optional<DeviceCertificateAuthority> ca_;
};

TEST_F(DeviceCaTest, IssuesACertificateForTheDevicesOwnKey) {
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey key, TlsPrivateKey::GenerateFile(dir_.File("d.key")));
  struct stat st;
  ASSERT_EQ(::stat(dir_.File("d.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string csr, MakeCertificateRequest(key, "dev-7"));
  CertificateProfile profile;
  profile.common_name = "dev-7";
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string cert, ca_->Issue(csr, profile));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string cn, CertificateCommonName(cert));
  EXPECT_EQ(cn, "dev-7");
  FEDGE_EXPECT_OK(key.CheckCertificate(cert));
  // Reloading the CA from its files gives the same authority.
  FEDGE_ASSERT_OK_AND_ASSIGN(DeviceCertificateAuthority loaded,
                             DeviceCertificateAuthority::Load(dir_.File("ca.pem"),
                                                              dir_.File("ca.key")));
  EXPECT_EQ(loaded.certificate_pem(), ca_->certificate_pem());
  EXPECT_THAT(loaded.Issue(csr, profile), IsOk());
  // Two certificates for one request differ (random serials).
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string second, ca_->Issue(csr, profile));
  EXPECT_NE(second, cert);
}

TEST_F(DeviceCaTest, RefusesBadRequests) {
  CertificateProfile profile;
  profile.common_name = "dev-1";
  EXPECT_THAT(ca_->Issue("not a csr", profile),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PKCS#10")));
  EXPECT_THAT(ca_->Issue(Csr("a.key", "dev-2"), profile),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names 'dev-2'")));
  // A request whose signature was made by another key than the one it holds.
  std::string csr = Csr("b.key", "dev-1");
  const size_t body = csr.find('\n') + 1;
  const size_t flip = body + 40;  // inside the base64 of the request info
  csr[flip] = csr[flip] == 'A' ? 'B' : 'A';
  EXPECT_THAT(ca_->Issue(csr, profile), StatusIs(absl::StatusCode::kInvalidArgument));
  profile.days = 0;
  EXPECT_THAT(ca_->Issue(Csr("c.key", "dev-1"), profile),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 to 3650")));
  profile.days = 30;
  profile.common_name = "";
  EXPECT_THAT(ca_->Issue(Csr("d.key", "dev-1"), profile),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("common name")));
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey key, TlsPrivateKey::Load(dir_.File("d.key")));
  EXPECT_THAT(MakeCertificateRequest(key, std::string(65, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 to 64 bytes")));
}

TEST_F(DeviceCaTest, LoadRefusesAMismatchedKeyOrALeafCertificate) {
  FEDGE_ASSERT_OK_AND_ASSIGN(TlsPrivateKey other, TlsPrivateKey::GenerateFile(dir_.File("x.key")));
  EXPECT_THAT(DeviceCertificateAuthority::Load(dir_.File("ca.pem"), dir_.File("x.key")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not the key")));
  CertificateProfile profile;
  profile.common_name = "dev-3";
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string leaf,
                             ca_->Issue(*MakeCertificateRequest(other, "dev-3"), profile));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_.File("leaf.pem"), leaf, 0644));
  EXPECT_THAT(DeviceCertificateAuthority::Load(dir_.File("leaf.pem"), dir_.File("x.key")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a CA")));
  EXPECT_THAT(DeviceCertificateAuthority::Load(dir_.File("missing.pem"), dir_.File("x.key")),
              StatusIs(absl::StatusCode::kNotFound));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_.File("junk.pem"), "junk", 0644));
  EXPECT_THAT(DeviceCertificateAuthority::Load(dir_.File("ca.pem"), dir_.File("junk.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device CA key")));
  EXPECT_THAT(TlsPrivateKey::GenerateFile(dir_.File("x.key")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(CertificateCommonName("junk"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace fedge::models
