// The client's offline store: encrypted pending updates, key providers and
// the retry backoff.
#include "fedge/client/offline_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::v1 {
// Short one-line output in failure messages.
void PrintTo(const EncodedUpdate& update, std::ostream* os) { *os << update.ShortDebugString(); }
}  // namespace fedge::v1

namespace fedge::client {
namespace {

namespace fs = std::filesystem;
using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

StoreKey KeyFilledWith(uint8_t byte) {
  StoreKey key;
  key.fill(byte);
  return key;
}

v1::EncodedUpdate MakeUpdate(uint64_t round, const std::string& client_id, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string payload(512, '\0');
  for (char& c : payload) c = static_cast<char>(rng());
  v1::EncodedUpdate update;
  update.set_round(round);
  update.set_model_version(round - 1);
  update.set_client_id(client_id);
  update.set_num_examples(100 + seed);
  update.set_codec("fp32");
  update.set_dimension(128);
  update.set_payload(payload);
  (*update.mutable_metrics())["train_loss"] = 0.25 * seed;
  return update;
}

mode_t ModeOf(const fs::path& path) {
  struct stat info;
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

std::string Read(const fs::path& path) {
  absl::StatusOr<std::string> bytes = proto::ReadFile(path);
  EXPECT_THAT(bytes, IsOk());
  return bytes.ok() ? *bytes : "";
}

class OfflineStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("fedge_offline_store_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    dir_ = root_ / "pending";
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_;
  fs::path dir_;
  StaticKeyProvider keys_{KeyFilledWith(0x5a)};
};

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  return arg.SerializeAsString() == expected.SerializeAsString();
}

TEST_F(OfflineStoreTest, PutAndListRoundTripInRoundOrder) {
  PendingUpdateStore store(dir_, &keys_);
  const v1::EncodedUpdate a = MakeUpdate(5, "device-b", 1);
  const v1::EncodedUpdate b = MakeUpdate(2, "device-a", 2);
  const v1::EncodedUpdate c = MakeUpdate(5, "device-a", 3);
  FEDGE_ASSERT_OK(store.Put(a));
  FEDGE_ASSERT_OK(store.Put(b));
  FEDGE_ASSERT_OK(store.Put(c));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, store.List());
  EXPECT_THAT(listed, ::testing::ElementsAre(EqualsProto(b), EqualsProto(c), EqualsProto(a)));
  // A fresh store object over the same directory sees the same updates.
  PendingUpdateStore reopened(dir_, &keys_);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> again, reopened.List());
  EXPECT_THAT(again, SizeIs(3));
}

TEST_F(OfflineStoreTest, PutReplacesTheSameRoundAndClient) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(4, "device-a", 1)));
  const v1::EncodedUpdate newer = MakeUpdate(4, "device-a", 2);
  FEDGE_ASSERT_OK(store.Put(newer));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, store.List());
  EXPECT_THAT(listed, ::testing::ElementsAre(EqualsProto(newer)));
}

TEST_F(OfflineStoreTest, MissingDirectoryListsNothingAndPutCreatesItPrivate) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, store.List());
  EXPECT_THAT(listed, IsEmpty());
  EXPECT_FALSE(fs::exists(dir_));
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(1, "device-a", 1)));
  EXPECT_EQ(ModeOf(dir_), 0700u);
  EXPECT_EQ(ModeOf(store.PathFor(1, "device-a")), 0600u);
}

TEST_F(OfflineStoreTest, NothingIsWrittenInTheClear) {
  PendingUpdateStore store(dir_, &keys_);
  const v1::EncodedUpdate update = MakeUpdate(9, "device-a", 7);
  FEDGE_ASSERT_OK(store.Put(update));
  const std::string file = Read(store.PathFor(9, "device-a"));
  EXPECT_EQ(file.find(update.SerializeAsString()), std::string::npos);
  // Not even 8 consecutive bytes of the payload, nor the codec or metric names.
  for (size_t i = 0; i + 8 <= update.payload().size(); i += 8) {
    ASSERT_EQ(file.find(update.payload().substr(i, 8)), std::string::npos) << "offset " << i;
  }
  EXPECT_EQ(file.find("train_loss"), std::string::npos);
  EXPECT_EQ(file.find("fp32"), std::string::npos);
  // Two writes of the same update differ (fresh nonce).
  FEDGE_ASSERT_OK(store.Put(update));
  EXPECT_NE(Read(store.PathFor(9, "device-a")), file);
}

TEST_F(OfflineStoreTest, AnyFlippedByteIsDataLossAndTheFileIsKept) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-a", 1)));
  const fs::path path = store.PathFor(3, "device-a");
  const std::string original = Read(path);
  // The format tag, the round, the client id, the nonce, the ciphertext, the tag.
  for (size_t offset :
       {size_t{2}, size_t{24}, size_t{44}, size_t{55}, size_t{100}, original.size() - 1}) {
    std::string tampered = original;
    tampered[offset] = static_cast<char>(tampered[offset] ^ 0x01);
    FEDGE_ASSERT_OK(proto::WriteFileAtomic(path, tampered, 0600));
    EXPECT_THAT(store.List(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path.string())))
        << "offset " << offset;
    EXPECT_EQ(Read(path), tampered) << "offset " << offset;
  }
}

TEST_F(OfflineStoreTest, TruncatedFileIsDataLoss) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-a", 1)));
  const fs::path path = store.PathFor(3, "device-a");
  const std::string original = Read(path);
  for (size_t size : {size_t{0}, size_t{10}, size_t{40}, original.size() - 1}) {
    FEDGE_ASSERT_OK(proto::WriteFileAtomic(path, original.substr(0, size), 0600));
    EXPECT_THAT(store.List(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path.string())))
        << "size " << size;
  }
}

TEST_F(OfflineStoreTest, FileMovedToAnotherRoundIsDataLoss) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-a", 1)));
  fs::rename(store.PathFor(3, "device-a"), store.PathFor(4, "device-a"));
  EXPECT_THAT(store.List(), StatusIs(absl::StatusCode::kDataLoss,
                                     HasSubstr("does not match its header or file name")));
  EXPECT_TRUE(fs::exists(store.PathFor(4, "device-a")));
}

TEST_F(OfflineStoreTest, AnotherKeyIsDataLossAndTheFileIsKept) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-a", 1)));
  StaticKeyProvider other_keys(KeyFilledWith(0x5b));
  PendingUpdateStore other(dir_, &other_keys);
  EXPECT_THAT(other.List(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("failed authentication")));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, store.List());
  EXPECT_THAT(listed, SizeIs(1));
}

TEST_F(OfflineStoreTest, RemoveDeletesOneRoundAndIsIdempotent) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-a", 1)));
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-b", 2)));
  const v1::EncodedUpdate kept = MakeUpdate(30, "device-a", 3);
  FEDGE_ASSERT_OK(store.Put(kept));
  FEDGE_ASSERT_OK(store.Remove(3));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, store.List());
  EXPECT_THAT(listed, ::testing::ElementsAre(EqualsProto(kept)));
  FEDGE_EXPECT_OK(store.Remove(3));
  FEDGE_EXPECT_OK(store.Remove(999));
  PendingUpdateStore empty(root_ / "never-created", &keys_);
  FEDGE_EXPECT_OK(empty.Remove(1));
}

TEST_F(OfflineStoreTest, OtherFilesInTheDirectoryAreIgnored) {
  PendingUpdateStore store(dir_, &keys_);
  FEDGE_ASSERT_OK(store.Put(MakeUpdate(3, "device-a", 1)));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "notes.txt", "hello"));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / ".pending-3-00.upd.tmp-abcdef", "partial"));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "pending-x.upd", "not ours"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, store.List());
  EXPECT_THAT(listed, SizeIs(1));
}

TEST_F(OfflineStoreTest, BadClientIdsAreRefused) {
  PendingUpdateStore store(dir_, &keys_);
  EXPECT_THAT(store.Put(MakeUpdate(3, "", 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty client_id")));
  EXPECT_THAT(store.Put(MakeUpdate(3, std::string(101, 'x'), 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 100")));
  FEDGE_EXPECT_OK(store.Put(MakeUpdate(3, std::string(100, 'x'), 1)));
  // Any bytes are fine: the file name hex-encodes them.
  FEDGE_EXPECT_OK(store.Put(MakeUpdate(3, "../../etc/passwd", 1)));
  EXPECT_TRUE(fs::exists(store.PathFor(3, "../../etc/passwd")));
  EXPECT_EQ(store.PathFor(3, "../../etc/passwd").parent_path(), dir_);
}

class FailingKeyProvider final : public KeyProvider {
 public:
  absl::StatusOr<StoreKey> GetKey() override {
    return absl::UnavailableError("keystore locked until first unlock");
  }
};

TEST_F(OfflineStoreTest, KeyProviderErrorsPassThroughAndNothingIsWritten) {
  FailingKeyProvider failing;
  PendingUpdateStore store(dir_, &failing);
  EXPECT_THAT(store.Put(MakeUpdate(3, "device-a", 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("keystore locked")));
  EXPECT_FALSE(fs::exists(store.PathFor(3, "device-a")));
}

// --- FileKeyProvider -------------------------------------------------------

TEST_F(OfflineStoreTest, FileKeyProviderCreatesAPrivateKeyAndReusesIt) {
  const fs::path key_path = root_ / "store.key";
  FileKeyProvider first(key_path);
  FEDGE_ASSERT_OK_AND_ASSIGN(StoreKey key, first.GetKey());
  EXPECT_EQ(ModeOf(key_path), 0600u);
  EXPECT_EQ(fs::file_size(key_path), kStoreKeySize);
  EXPECT_NE(key, StoreKey{});
  FEDGE_ASSERT_OK_AND_ASSIGN(StoreKey cached, first.GetKey());
  EXPECT_EQ(cached, key);

  FileKeyProvider second(key_path);
  FEDGE_ASSERT_OK_AND_ASSIGN(StoreKey reread, second.GetKey());
  EXPECT_EQ(reread, key);
  // What one instance encrypted, another decrypts.
  PendingUpdateStore writer(dir_, &first);
  PendingUpdateStore reader(dir_, &second);
  FEDGE_ASSERT_OK(writer.Put(MakeUpdate(3, "device-a", 1)));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::EncodedUpdate> listed, reader.List());
  EXPECT_THAT(listed, SizeIs(1));
  // No leftover temporary file beside the key.
  EXPECT_EQ(std::distance(fs::directory_iterator(root_), {}), 2);  // store.key, pending/
}

TEST_F(OfflineStoreTest, FileKeyProviderRefusesGroupOrWorldAccess) {
  const fs::path key_path = root_ / "store.key";
  const std::string bytes(kStoreKeySize, 'k');
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    FEDGE_ASSERT_OK(proto::WriteFileAtomic(key_path, bytes, mode));
    FileKeyProvider provider(key_path);
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", mode);
    EXPECT_THAT(provider.GetKey(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         ::testing::AllOf(HasSubstr(key_path.string()), HasSubstr("has mode"),
                                          HasSubstr(octal))));
    EXPECT_EQ(ModeOf(key_path), mode);
    EXPECT_EQ(Read(key_path), bytes);
  }
}

TEST_F(OfflineStoreTest, FileKeyProviderRefusesAWrongSize) {
  const fs::path key_path = root_ / "store.key";
  for (size_t size : {size_t{0}, size_t{31}, size_t{33}}) {
    const std::string bytes(size, 'k');
    FEDGE_ASSERT_OK(proto::WriteFileAtomic(key_path, bytes, 0600));
    FileKeyProvider provider(key_path);
    EXPECT_THAT(provider.GetKey(),
                StatusIs(absl::StatusCode::kDataLoss,
                         ::testing::AllOf(HasSubstr(key_path.string()),
                                          HasSubstr("holds " + std::to_string(size) + " bytes"))));
    EXPECT_EQ(Read(key_path), bytes);
  }
}

TEST_F(OfflineStoreTest, FileKeyProviderRefusesSymlinksAndDirectories) {
  const fs::path target = root_ / "real.key";
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(target, std::string(kStoreKeySize, 'k'), 0600));
  fs::create_symlink(target, root_ / "link.key");
  FileKeyProvider link(root_ / "link.key");
  EXPECT_THAT(link.GetKey(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("symbolic link")));
  fs::create_directories(root_ / "dir.key");
  FileKeyProvider dir(root_ / "dir.key");
  EXPECT_THAT(dir.GetKey(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
}

TEST_F(OfflineStoreTest, FileKeyProviderInAMissingDirectoryNamesThePath) {
  const fs::path key_path = root_ / "missing" / "store.key";
  FileKeyProvider provider(key_path);
  EXPECT_THAT(provider.GetKey(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(key_path.string())));
}

// --- Backoff ---------------------------------------------------------------

using std::chrono::milliseconds;

TEST(BackoffTest, InvalidOptionsNameTheField) {
  BackoffOptions options;
  options.base = milliseconds(0);
  EXPECT_THAT(Backoff::Create(options, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base")));
  options = BackoffOptions();
  options.cap = milliseconds(100);
  EXPECT_THAT(Backoff::Create(options, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cap")));
  options = BackoffOptions();
  options.multiplier = 0.5;
  EXPECT_THAT(Backoff::Create(options, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiplier")));
  options.multiplier = std::numeric_limits<double>::infinity();
  EXPECT_THAT(Backoff::Create(options, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiplier")));
}

TEST(BackoffTest, DelaysStayWithinTheGrowingCeilingAndTheCap) {
  BackoffOptions options;
  options.base = milliseconds(100);
  options.cap = milliseconds(5000);
  FEDGE_ASSERT_OK_AND_ASSIGN(Backoff backoff, Backoff::Create(options, 42));
  const std::vector<int64_t> ceilings = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
  for (int64_t ceiling : ceilings) {
    EXPECT_EQ(backoff.Ceiling().count(), ceiling);
    const milliseconds delay = backoff.Next();
    EXPECT_GE(delay.count(), 0);
    EXPECT_LE(delay.count(), ceiling);
  }
  for (int i = 0; i < 2000; ++i) {
    const milliseconds delay = backoff.Next();
    ASSERT_GE(delay.count(), 0);
    ASSERT_LE(delay.count(), 5000);
  }
  EXPECT_EQ(backoff.Ceiling().count(), 5000);
  backoff.Reset();
  EXPECT_EQ(backoff.attempt(), 0);
  EXPECT_EQ(backoff.Ceiling().count(), 100);
  EXPECT_LE(backoff.Next().count(), 100);
}

// Across 4000 seeded devices, the n-th delay is uniform on [0, ceiling_n]:
// its mean is ceiling_n / 2 (standard error ~0.0046 ceiling_n) and it covers
// the whole range, so devices that failed together spread out.
TEST(BackoffTest, FullJitterMeansGrowGeometricallyUntilTheCap) {
  BackoffOptions options;
  options.base = milliseconds(1000);
  options.cap = milliseconds(20000);
  options.multiplier = 2.0;
  constexpr int kDevices = 4000;
  constexpr int kAttempts = 7;  // ceilings 1, 2, 4, 8, 16, 20, 20 s
  std::vector<double> sum(kAttempts, 0.0);
  std::vector<int64_t> low(kAttempts, INT64_MAX), high(kAttempts, 0);
  for (int device = 0; device < kDevices; ++device) {
    FEDGE_ASSERT_OK_AND_ASSIGN(Backoff backoff, Backoff::Create(options, 1000 + device));
    for (int n = 0; n < kAttempts; ++n) {
      const int64_t delay = backoff.Next().count();
      sum[n] += static_cast<double>(delay);
      low[n] = std::min(low[n], delay);
      high[n] = std::max(high[n], delay);
    }
  }
  const std::vector<double> ceilings = {1000, 2000, 4000, 8000, 16000, 20000, 20000};
  for (int n = 0; n < kAttempts; ++n) {
    const double mean = sum[n] / kDevices;
    EXPECT_NEAR(mean, ceilings[n] / 2, 0.03 * ceilings[n]) << "attempt " << n;
    EXPECT_LT(low[n], 0.01 * ceilings[n]) << "attempt " << n;
    EXPECT_GT(high[n], 0.99 * ceilings[n]) << "attempt " << n;
    if (n > 0 && n < 5) {
      EXPECT_GT(mean, 1.8 * sum[n - 1] / kDevices) << "attempt " << n;
    }
  }
}

TEST(BackoffTest, SameSeedSameDelaysOtherSeedOtherDelays) {
  FEDGE_ASSERT_OK_AND_ASSIGN(Backoff a, Backoff::Create({}, 7));
  FEDGE_ASSERT_OK_AND_ASSIGN(Backoff b, Backoff::Create({}, 7));
  FEDGE_ASSERT_OK_AND_ASSIGN(Backoff c, Backoff::Create({}, 8));
  std::vector<int64_t> da, db, dc;
  for (int i = 0; i < 10; ++i) {
    da.push_back(a.Next().count());
    db.push_back(b.Next().count());
    dc.push_back(c.Next().count());
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(BackoffTest, MultiplierOneKeepsTheCeilingAtBase) {
  BackoffOptions options;
  options.base = milliseconds(250);
  options.multiplier = 1.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(Backoff backoff, Backoff::Create(options, 3));
  for (int i = 0; i < 100; ++i) EXPECT_LE(backoff.Next().count(), 250);
  EXPECT_EQ(backoff.Ceiling().count(), 250);
}

}  // namespace
}  // namespace fedge::client
