#include "fedge/proto/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::proto {
namespace {

namespace fs = std::filesystem;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("fedge_atomic_file_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add);
    fs::remove_all(dir_);
  }
  mode_t ModeOf(const fs::path& path) {
    struct stat info;
    EXPECT_EQ(::stat(path.c_str(), &info), 0);
    return info.st_mode & 07777;
  }
  // Number of entries in dir_ (a leftover temporary file shows up here).
  int EntryCount() { return static_cast<int>(std::distance(fs::directory_iterator(dir_), {})); }

  fs::path dir_;
};

TEST_F(AtomicFileTest, WritesAndReadsBack) {
  const fs::path path = dir_ / "state.bin";
  std::string bytes("binary\0data\xff", 12);
  FEDGE_ASSERT_OK(WriteFileAtomic(path, bytes));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string read, ReadFile(path));
  EXPECT_EQ(read, bytes);
  EXPECT_EQ(EntryCount(), 1);
}

TEST_F(AtomicFileTest, WritesEmptyAndLargeFiles) {
  FEDGE_ASSERT_OK(WriteFileAtomic(dir_ / "empty", ""));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string empty, ReadFile(dir_ / "empty"));
  EXPECT_EQ(empty, "");
  std::string large(3 << 20, 'x');
  for (size_t i = 0; i < large.size(); i += 4099) large[i] = static_cast<char>(i);
  FEDGE_ASSERT_OK(WriteFileAtomic(dir_ / "large", large));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string read, ReadFile(dir_ / "large"));
  EXPECT_EQ(read, large);
}

TEST_F(AtomicFileTest, ReplacesOldContent) {
  const fs::path path = dir_ / "state.bin";
  FEDGE_ASSERT_OK(WriteFileAtomic(path, "a much longer old content"));
  FEDGE_ASSERT_OK(WriteFileAtomic(path, "new"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string read, ReadFile(path));
  EXPECT_EQ(read, "new");
  EXPECT_EQ(EntryCount(), 1);
}

TEST_F(AtomicFileTest, AppliesModeRegardlessOfUmask) {
  const mode_t old_umask = ::umask(077);
  EXPECT_THAT(WriteFileAtomic(dir_ / "public", "p", 0644), fedge::testing_util::IsOk());
  ::umask(0);
  EXPECT_THAT(WriteFileAtomic(dir_ / "secret", "s", 0600), fedge::testing_util::IsOk());
  ::umask(old_umask);
  EXPECT_EQ(ModeOf(dir_ / "public"), 0644u);
  EXPECT_EQ(ModeOf(dir_ / "secret"), 0600u);
  // Rewriting changes the mode of the new file too.
  FEDGE_ASSERT_OK(WriteFileAtomic(dir_ / "public", "p2", 0600));
  EXPECT_EQ(ModeOf(dir_ / "public"), 0600u);
}

TEST_F(AtomicFileTest, MissingDirectoryIsNotFoundAndNamesThePath) {
  const fs::path path = dir_ / "no-such-dir" / "state.bin";
  EXPECT_THAT(WriteFileAtomic(path, "x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path.string())));
  EXPECT_FALSE(fs::exists(dir_ / "no-such-dir"));
}

TEST_F(AtomicFileTest, FailedRenameLeavesOldContentAndNoTemporaryFile) {
  // A non-empty directory cannot be replaced by rename: the write fails after
  // the temporary file was written and synced.
  const fs::path path = dir_ / "target";
  fs::create_directories(path / "child");
  FEDGE_ASSERT_OK(WriteFileAtomic(path / "child" / "old", "old"));
  EXPECT_THAT(WriteFileAtomic(path, "new"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("rename")));
  EXPECT_TRUE(fs::is_directory(path));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string old, ReadFile(path / "child" / "old"));
  EXPECT_EQ(old, "old");
  EXPECT_EQ(EntryCount(), 1);
}

TEST_F(AtomicFileTest, UnwritableDirectoryLeavesOldContent) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const fs::path path = dir_ / "state.bin";
  FEDGE_ASSERT_OK(WriteFileAtomic(path, "old"));
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_THAT(WriteFileAtomic(path, "new"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(path.string())));
  fs::permissions(dir_, fs::perms::owner_all);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string read, ReadFile(path));
  EXPECT_EQ(read, "old");
  EXPECT_EQ(EntryCount(), 1);
}

TEST_F(AtomicFileTest, PathWithoutFileNameIsInvalid) {
  EXPECT_THAT(WriteFileAtomic(dir_ / "", "x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AtomicFileTest, ReadingAMissingFileIsNotFoundAndNamesThePath) {
  const fs::path path = dir_ / "missing.bin";
  EXPECT_THAT(ReadFile(path), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path.string())));
}

TEST_F(AtomicFileTest, ReadingADirectoryIsRefused) {
  EXPECT_THAT(ReadFile(dir_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
}

}  // namespace
}  // namespace fedge::proto
