// scripts/make-dev-certs.sh: runs it into a directory under the build tree and
// checks its output with the openssl command line and with fedge's own key
// loader (SigningKey::LoadPem).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

int Shell(const std::string& command) { return std::system(command.c_str()); }

std::string Quote(const fs::path& path) { return absl::StrCat("'", path.string(), "'"); }

mode_t ModeOf(const fs::path& path) {
  struct stat info;
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

std::map<std::string, std::string> Contents(const fs::path& dir) {
  std::map<std::string, std::string> contents;
  for (const auto& entry : fs::directory_iterator(dir)) {
    absl::StatusOr<std::string> bytes = proto::ReadFile(entry.path());
    EXPECT_THAT(bytes, testing_util::IsOk());
    contents[entry.path().filename().string()] = bytes.ok() ? *bytes : "";
  }
  return contents;
}

class MakeDevCertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Shell("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl not on PATH";
    out_ = fs::path(FEDGE_TEST_TMP_DIR) /
           (std::string("dev-certs-") + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(out_);
  }
  void TearDown() override {
    if (!out_.empty()) fs::remove_all(out_);
  }
  int Make(const std::string& arguments) {
    return Shell(std::string(FEDGE_MAKE_DEV_CERTS) + " " + arguments + " >" +
                 Quote(out_.string() + ".log") + " 2>&1");
  }
  int Verify(const std::string& purpose, const std::string& cert) {
    return Shell("openssl verify -purpose " + purpose + " -CAfile " + Quote(out_ / "ca.pem") + " " +
                 Quote(out_ / cert) + " >/dev/null 2>&1");
  }

  fs::path out_;
};

TEST_F(MakeDevCertsTest, MakesAVerifyingCaServerClientsAndSigningKey) {
  ASSERT_EQ(Make(Quote(out_) + " device-1 device-2"), 0);
  EXPECT_EQ(ModeOf(out_), 0700u);
  for (const char* key :
       {"ca.key", "server.key", "client-device-1.key", "client-device-2.key", "signing.key"}) {
    EXPECT_EQ(ModeOf(out_ / key), 0600u) << key;
  }
  for (const char* pub : {"ca.pem", "server.pem", "client-device-1.pem", "signing.pub"}) {
    EXPECT_EQ(ModeOf(out_ / pub), 0644u) << pub;
  }
  EXPECT_EQ(Verify("sslserver", "server.pem"), 0);
  EXPECT_EQ(Verify("sslclient", "client-device-1.pem"), 0);
  EXPECT_EQ(Verify("sslclient", "client-device-2.pem"), 0);
  // The server certificate is not a client certificate, and the other way round.
  EXPECT_NE(Verify("sslclient", "server.pem"), 0);
  EXPECT_NE(Verify("sslserver", "client-device-1.pem"), 0);

  // SAN and CN.
  EXPECT_EQ(Shell("openssl x509 -in " + Quote(out_ / "server.pem") +
                  " -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1'"),
            0);
  EXPECT_EQ(Shell("openssl x509 -in " + Quote(out_ / "client-device-2.pem") +
                  " -noout -subject | grep -q 'CN = device-2'"),
            0);

  // The signing key loads with fedge's loader and matches signing.pub.
  FEDGE_ASSERT_OK_AND_ASSIGN(models::SigningKey key,
                             models::SigningKey::LoadPem(out_ / "signing.key"));
  FEDGE_ASSERT_OK_AND_ASSIGN(models::VerifyingKey pub,
                             models::VerifyingKey::LoadPem(out_ / "signing.pub"));
  EXPECT_EQ(key.key_id(), pub.key_id());
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string signature, key.Sign("model"));
  FEDGE_EXPECT_OK(pub.Verify("model", signature));
}

TEST_F(MakeDevCertsTest, RerunKeepsEverythingAndAddsNewClients) {
  ASSERT_EQ(Make(Quote(out_) + " device-1"), 0);
  const std::map<std::string, std::string> first = Contents(out_);
  ASSERT_EQ(Make(Quote(out_) + " device-1 device-3"), 0);
  std::map<std::string, std::string> second = Contents(out_);
  EXPECT_EQ(second.size(), first.size() + 2);
  for (const auto& [name, bytes] : first) EXPECT_EQ(second[name], bytes) << name;
  EXPECT_EQ(Verify("sslclient", "client-device-3.pem"), 0);
  absl::StatusOr<std::string> log = proto::ReadFile(out_.string() + ".log");
  ASSERT_THAT(log, testing_util::IsOk());
  EXPECT_THAT(*log, HasSubstr("kept  " + (out_ / "ca.key").string()));
  EXPECT_THAT(*log, HasSubstr("made  " + (out_ / "client-device-3.pem").string()));
}

TEST_F(MakeDevCertsTest, ForceRemakesEverything) {
  ASSERT_EQ(Make(Quote(out_) + " device-1"), 0);
  const std::map<std::string, std::string> first = Contents(out_);
  ASSERT_EQ(Make("--force " + Quote(out_) + " device-1"), 0);
  std::map<std::string, std::string> second = Contents(out_);
  ASSERT_EQ(second.size(), first.size());
  for (const auto& [name, bytes] : first) EXPECT_NE(second[name], bytes) << name;
  EXPECT_EQ(Verify("sslserver", "server.pem"), 0);
  EXPECT_EQ(Verify("sslclient", "client-device-1.pem"), 0);
}

TEST_F(MakeDevCertsTest, ANewCaReissuesTheCertificates) {
  ASSERT_EQ(Make(Quote(out_) + " device-1"), 0);
  fs::remove(out_ / "ca.key");
  fs::remove(out_ / "ca.pem");
  ASSERT_EQ(Make(Quote(out_) + " device-1"), 0);
  EXPECT_EQ(Verify("sslserver", "server.pem"), 0);
  EXPECT_EQ(Verify("sslclient", "client-device-1.pem"), 0);
}

TEST_F(MakeDevCertsTest, RefusesBadArguments) {
  EXPECT_NE(Make(""), 0);
  EXPECT_NE(Make(Quote(out_) + " '../evil'"), 0);
  EXPECT_NE(Make(Quote(out_) + " 'a b'"), 0);
  EXPECT_NE(Make("--days x " + Quote(out_)), 0);
  EXPECT_FALSE(fs::exists(out_ / "ca.key"));
}

}  // namespace
}  // namespace fedge
