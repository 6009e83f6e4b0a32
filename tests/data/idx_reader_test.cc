#include <sys/stat.h>
#include <zlib.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fedge/data/dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"
#include "temp_dir.h"

namespace fedge::data {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::ScopedTempDir;
using ::fedge::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

using Bytes = std::vector<uint8_t>;

void PutBigEndian32(Bytes& out, uint32_t value) {
  out.push_back(static_cast<uint8_t>(value >> 24));
  out.push_back(static_cast<uint8_t>(value >> 16));
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

// An IDX3 images file: magic 0x00000803, count, rows, cols, pixels.
Bytes ImagesFile(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels) {
  Bytes out;
  PutBigEndian32(out, 0x00000803);
  PutBigEndian32(out, count);
  PutBigEndian32(out, rows);
  PutBigEndian32(out, cols);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

// An IDX1 labels file: magic 0x00000801, count, labels.
Bytes LabelsFile(const Bytes& labels) {
  Bytes out;
  PutBigEndian32(out, 0x00000801);
  PutBigEndian32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void WriteRaw(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// gzip-compresses `bytes` with zlib's own writer.
void WriteGzip(const std::string& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb9");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

Bytes ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// 3 images of 2 x 2 pixels and their labels (3 classes).
const Bytes kPixels = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 255};
const Bytes kLabels = {2, 0, 1};

class IdxReaderTest : public ::testing::Test {
 protected:
  ScopedTempDir dir_;
  std::string images_ = dir_.File("images-idx3-ubyte");
  std::string labels_ = dir_.File("labels-idx1-ubyte");
};

TEST_F(IdxReaderTest, ReadsRawFiles) {
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  WriteRaw(labels_, LabelsFile(kLabels));
  absl::StatusOr<Dataset> dataset = ReadIdxPair(images_, labels_, /*num_classes=*/3);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ(dataset->num_examples(), 3);
  EXPECT_THAT(dataset->example_shape, ElementsAre(1, 2, 2));
  EXPECT_EQ(dataset->example_size(), 4);
  EXPECT_EQ(dataset->num_classes, 3);
  EXPECT_EQ(dataset->pixels, kPixels);
  EXPECT_TRUE(dataset->values.empty());
  EXPECT_THAT(dataset->labels, ElementsAre(2, 0, 1));
}

TEST_F(IdxReaderTest, ReadsNonSquareImages) {
  Bytes pixels(2 * 3 * 5);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(7 * i);
  WriteRaw(images_, ImagesFile(2, 3, 5, pixels));
  WriteRaw(labels_, LabelsFile({1, 0}));
  absl::StatusOr<Dataset> dataset = ReadIdxPair(images_, labels_, 2);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_THAT(dataset->example_shape, ElementsAre(1, 3, 5));
  EXPECT_EQ(dataset->pixels, pixels);
}

TEST_F(IdxReaderTest, DetectsGzipByMagicNotByName) {
  // Gzipped contents under names without ".gz".
  WriteGzip(images_, ImagesFile(3, 2, 2, kPixels));
  WriteGzip(labels_, LabelsFile(kLabels));
  ASSERT_EQ(ReadRaw(images_).at(0), 0x1f);
  absl::StatusOr<Dataset> dataset = ReadIdxPair(images_, labels_, 3);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ(dataset->pixels, kPixels);
  EXPECT_THAT(dataset->labels, ElementsAre(2, 0, 1));
}

TEST_F(IdxReaderTest, ReadsConcatenatedGzipMembers) {
  const Bytes whole = ImagesFile(3, 2, 2, kPixels);
  const Bytes first(whole.begin(), whole.begin() + 9);
  const Bytes second(whole.begin() + 9, whole.end());
  WriteGzip(dir_.File("a.gz"), first);
  WriteGzip(dir_.File("b.gz"), second);
  Bytes joined = ReadRaw(dir_.File("a.gz"));
  const Bytes tail = ReadRaw(dir_.File("b.gz"));
  joined.insert(joined.end(), tail.begin(), tail.end());
  WriteRaw(images_, joined);
  WriteRaw(labels_, LabelsFile(kLabels));
  absl::StatusOr<Dataset> dataset = ReadIdxPair(images_, labels_, 3);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ(dataset->pixels, kPixels);
}

TEST_F(IdxReaderTest, ReadsALargerGzippedFile) {
  // Bigger than zlib's internal window and than the initial output guess.
  const uint32_t count = 500;
  Bytes pixels(count * 28 * 28);
  uint32_t state = 12345;
  for (uint8_t& p : pixels) {
    state = state * 1664525u + 1013904223u;
    p = static_cast<uint8_t>(state >> 24);
  }
  Bytes labels(count);
  for (uint32_t i = 0; i < count; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  WriteGzip(images_, ImagesFile(count, 28, 28, pixels));
  WriteGzip(labels_, LabelsFile(labels));
  absl::StatusOr<Dataset> dataset = ReadIdxPair(images_, labels_, 10);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_EQ(dataset->pixels, pixels);
  EXPECT_EQ(dataset->num_examples(), count);
}

TEST_F(IdxReaderTest, ReadIdxPairComputesNormalizationFromPixels) {
  // Half the pixels 0, half 255: pixel / 255 has mean 0.5 and stddev 0.5.
  WriteRaw(images_, ImagesFile(2, 1, 2, {0, 255, 255, 0}));
  WriteRaw(labels_, LabelsFile({0, 1}));
  absl::StatusOr<Dataset> dataset = ReadIdxPair(images_, labels_, 2);
  ASSERT_THAT(dataset, IsOk());
  EXPECT_FLOAT_EQ(dataset->mean, 0.5f);
  EXPECT_FLOAT_EQ(dataset->stddev, 0.5f);
}

TEST_F(IdxReaderTest, TruncatedImagesFile) {
  Bytes file = ImagesFile(3, 2, 2, kPixels);
  file.resize(file.size() - 2);  // 26 of the 28 bytes the header promises
  WriteRaw(images_, file);
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(
      ReadIdxPair(images_, labels_, 3),
      StatusIs(absl::StatusCode::kDataLoss,
               AllOf(HasSubstr("truncated"), HasSubstr(images_),
                     HasSubstr("3 x 2 x 2 images = 28 bytes"), HasSubstr("file has 26 bytes"))));
}

TEST_F(IdxReaderTest, TruncatedGzippedImagesFile) {
  Bytes file = ImagesFile(3, 2, 2, kPixels);
  file.resize(file.size() - 5);
  WriteGzip(images_, file);
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("truncated"), HasSubstr(images_), HasSubstr("= 28 bytes"),
                             HasSubstr("has 23 bytes (after gunzip)"))));
}

TEST_F(IdxReaderTest, TruncatedHeader) {
  WriteRaw(images_, {0x00, 0x00, 0x08, 0x03, 0x00, 0x00});
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("truncated"), HasSubstr(images_), HasSubstr("header"))));
}

TEST_F(IdxReaderTest, EmptyFile) {
  WriteRaw(images_, {});
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(
      ReadIdxPair(images_, labels_, 3),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("truncated"), HasSubstr(images_))));
}

TEST_F(IdxReaderTest, TruncatedLabelsFile) {
  Bytes file = LabelsFile(kLabels);
  file.pop_back();  // 10 of 11 bytes
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  WriteRaw(labels_, file);
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("truncated"), HasSubstr(labels_),
                             HasSubstr("3 labels = 11 bytes"), HasSubstr("has 10 bytes"))));
}

TEST_F(IdxReaderTest, TrailingBytes) {
  Bytes file = ImagesFile(3, 2, 2, kPixels);
  file.push_back(0);
  WriteRaw(images_, file);
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(images_), HasSubstr("1 unexpected trailing byte"))));
}

TEST_F(IdxReaderTest, BadMagic) {
  Bytes file = ImagesFile(3, 2, 2, kPixels);
  file[0] = 0x12;
  file[1] = 0x34;
  WriteRaw(images_, file);
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(
      ReadIdxPair(images_, labels_, 3),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("bad magic"), HasSubstr("0x12340803"),
                                                  HasSubstr(images_), HasSubstr("0x00000803"))));
}

TEST_F(IdxReaderTest, FilesSwapped) {
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  WriteRaw(labels_, LabelsFile(kLabels));
  // The labels file where images are expected: magic 0x00000801.
  EXPECT_THAT(ReadIdxPair(labels_, images_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("bad magic 0x00000801"), HasSubstr(labels_))));
}

TEST_F(IdxReaderTest, CountMismatch) {
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  WriteRaw(labels_, LabelsFile({0, 1}));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("count mismatch"), HasSubstr(images_), HasSubstr(labels_),
                             HasSubstr("3 images"), HasSubstr("2 labels"))));
}

TEST_F(IdxReaderTest, LabelOutOfRange) {
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  WriteRaw(labels_, LabelsFile({0, 1, 5}));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("label out of range"), HasSubstr(labels_),
                             HasSubstr("example 2 has label 5"))));
}

TEST_F(IdxReaderTest, InvalidNumClasses) {
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_classes")));
}

TEST_F(IdxReaderTest, CorruptGzipStream) {
  WriteGzip(images_, ImagesFile(3, 2, 2, kPixels));
  Bytes gz = ReadRaw(images_);
  ASSERT_GT(gz.size(), 20u);
  // Damage the deflate data between the 10-byte header and the 8-byte trailer.
  for (size_t i = 10; i < gz.size() - 8; ++i) gz[i] ^= 0x5a;
  WriteRaw(images_, gz);
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(
      ReadIdxPair(images_, labels_, 3),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("corrupt gzip"), HasSubstr(images_))));
}

TEST_F(IdxReaderTest, CorruptGzipChecksum) {
  WriteGzip(images_, ImagesFile(3, 2, 2, kPixels));
  Bytes gz = ReadRaw(images_);
  gz[gz.size() - 8] ^= 0xff;  // first byte of the CRC-32 in the trailer
  WriteRaw(images_, gz);
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(
      ReadIdxPair(images_, labels_, 3),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("corrupt gzip"), HasSubstr(images_))));
}

TEST_F(IdxReaderTest, TruncatedGzipStream) {
  WriteGzip(labels_, LabelsFile(kLabels));
  Bytes gz = ReadRaw(labels_);
  gz.resize(gz.size() - 6);  // lose most of the trailer
  WriteRaw(labels_, gz);
  WriteRaw(images_, ImagesFile(3, 2, 2, kPixels));
  EXPECT_THAT(ReadIdxPair(images_, labels_, 3),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("truncated gzip"), HasSubstr(labels_))));
}

TEST_F(IdxReaderTest, MissingFile) {
  WriteRaw(labels_, LabelsFile(kLabels));
  EXPECT_THAT(
      ReadIdxPair(images_, labels_, 3),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(images_), Not(HasSubstr("apt-get")))));
}

TEST(IdxReaderDefaultDirTest, MissingFileInDefaultDirSuggestsApt) {
  // Whether or not the package is installed, this file is not part of it.
  const std::string images = std::string(kDefaultFashionMnistDir) + "/no-such-images-idx3-ubyte";
  const std::string labels = std::string(kDefaultFashionMnistDir) + "/no-such-labels-idx1-ubyte";
  EXPECT_THAT(
      ReadIdxPair(images, labels),
      StatusIs(absl::StatusCode::kNotFound,
               AllOf(HasSubstr(images), HasSubstr("sudo apt-get install dataset-fashion-mnist"))));
}

// The four standard files, some raw and some gzipped, with 4 train and 2 test
// examples of 1 x 2 pixels.
void WriteStandardFiles(const ScopedTempDir& dir) {
  WriteRaw(dir.File("train-images-idx3-ubyte"),
           ImagesFile(4, 1, 2, {0, 255, 0, 255, 255, 0, 255, 0}));
  WriteGzip(dir.File("train-labels-idx1-ubyte.gz"), LabelsFile({0, 1, 2, 3}));
  WriteGzip(dir.File("t10k-images-idx3-ubyte.gz"), ImagesFile(2, 1, 2, {51, 51, 51, 51}));
  WriteRaw(dir.File("t10k-labels-idx1-ubyte"), LabelsFile({3, 1}));
}

TEST(ReadIdxDatasetTest, ReadsRawAndGzippedStandardNames) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  absl::StatusOr<TrainTest> data = ReadIdxDataset(dir.path(), "tiny");
  ASSERT_THAT(data, IsOk());
  EXPECT_EQ(data->train.name, "tiny");
  EXPECT_EQ(data->test.name, "tiny");
  EXPECT_EQ(data->train.num_examples(), 4);
  EXPECT_EQ(data->test.num_examples(), 2);
  EXPECT_THAT(data->train.labels, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(data->test.labels, ElementsAre(3, 1));
  EXPECT_THAT(data->test.pixels, ElementsAre(51, 51, 51, 51));
  EXPECT_THAT(data->train.example_shape, ElementsAre(1, 1, 2));
  // An unknown dataset: classes = 1 + largest label; normalization from the
  // train pixels (half 0, half 255), applied to both splits.
  EXPECT_EQ(data->train.num_classes, 4);
  EXPECT_EQ(data->test.num_classes, 4);
  EXPECT_FLOAT_EQ(data->train.mean, 0.5f);
  EXPECT_FLOAT_EQ(data->train.stddev, 0.5f);
  EXPECT_FLOAT_EQ(data->test.mean, 0.5f);
  EXPECT_FLOAT_EQ(data->test.stddev, 0.5f);
  EXPECT_TRUE(data->natural_partition.empty());
}

TEST(ReadIdxDatasetTest, KnownNormalizationConstants) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  absl::StatusOr<TrainTest> fashion = ReadIdxDataset(dir.path() + "/", "fashion-mnist");
  ASSERT_THAT(fashion, IsOk());
  EXPECT_FLOAT_EQ(fashion->train.mean, 0.2860f);
  EXPECT_FLOAT_EQ(fashion->train.stddev, 0.3530f);
  EXPECT_FLOAT_EQ(fashion->test.mean, 0.2860f);
  EXPECT_EQ(fashion->train.num_classes, 10);
  absl::StatusOr<TrainTest> mnist = ReadIdxDataset(dir.path(), "mnist");
  ASSERT_THAT(mnist, IsOk());
  EXPECT_FLOAT_EQ(mnist->train.mean, 0.1307f);
  EXPECT_FLOAT_EQ(mnist->train.stddev, 0.3081f);
}

TEST(ReadIdxDatasetTest, KnownDatasetRejectsLabelsAboveNine) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  WriteRaw(dir.File("t10k-labels-idx1-ubyte"), LabelsFile({3, 10}));
  EXPECT_THAT(
      ReadIdxDataset(dir.path(), "mnist"),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("label out of range"),
                                                  HasSubstr(dir.File("t10k-labels-idx1-ubyte")))));
}

TEST(ReadIdxDatasetTest, ShapeMismatchBetweenSplits) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  std::remove(dir.File("t10k-images-idx3-ubyte.gz").c_str());
  WriteRaw(dir.File("t10k-images-idx3-ubyte"), ImagesFile(2, 2, 1, {1, 2, 3, 4}));
  EXPECT_THAT(ReadIdxDataset(dir.path(), "tiny"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shape mismatch")));
}

TEST(ReadIdxDatasetTest, MissingFileNamesBothCandidates) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  std::remove(dir.File("t10k-images-idx3-ubyte.gz").c_str());
  EXPECT_THAT(
      ReadIdxDataset(dir.path(), "tiny"),
      StatusIs(absl::StatusCode::kNotFound,
               AllOf(HasSubstr(dir.File("t10k-images-idx3-ubyte")),
                     HasSubstr(dir.File("t10k-images-idx3-ubyte.gz")), Not(HasSubstr("apt-get")))));
}

TEST(ReadIdxDatasetTest, MissingDirectory) {
  ScopedTempDir dir;
  const std::string missing = dir.File("nowhere");
  EXPECT_THAT(ReadIdxDataset(missing, "fashion-mnist"),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(missing), HasSubstr("does not exist"))));
}

TEST(FashionMnistTest, ReadsTheInstalledDataset) {
  struct stat st;
  if (::stat(kDefaultFashionMnistDir, &st) != 0) {
    GTEST_SKIP() << kDefaultFashionMnistDir
                 << " does not exist; install Debian's dataset-fashion-mnist to run this test";
  }
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<TrainTest> data = ReadIdxDataset(kDefaultFashionMnistDir, "fashion-mnist");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_THAT(data, IsOk());
  std::cout << "[          ] read Fashion-MNIST (train + test) in " << seconds << " s\n";

  EXPECT_EQ(data->train.num_examples(), 60000);
  EXPECT_EQ(data->test.num_examples(), 10000);
  for (const Dataset* split : {&data->train, &data->test}) {
    EXPECT_THAT(split->example_shape, ElementsAre(1, 28, 28));
    EXPECT_EQ(split->num_classes, 10);
    EXPECT_EQ(split->pixels.size(), static_cast<size_t>(split->num_examples()) * 28 * 28);
    EXPECT_EQ(split->name, "fashion-mnist");
  }
  // Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
  std::array<int, 10> train_counts{};
  std::array<int, 10> test_counts{};
  for (int32_t label : data->train.labels) ++train_counts.at(label);
  for (int32_t label : data->test.labels) ++test_counts.at(label);
  std::array<int, 10> expected_train;
  std::array<int, 10> expected_test;
  expected_train.fill(6000);
  expected_test.fill(1000);
  EXPECT_THAT(train_counts, ElementsAreArray(expected_train));
  EXPECT_THAT(test_counts, ElementsAreArray(expected_test));

  // The built-in constants match the pixels actually read.
  double sum = 0.0;
  double sum_squares = 0.0;
  for (uint8_t p : data->train.pixels) {
    sum += p / 255.0;
    sum_squares += (p / 255.0) * (p / 255.0);
  }
  const double n = static_cast<double>(data->train.pixels.size());
  const double mean = sum / n;
  EXPECT_NEAR(mean, data->train.mean, 5e-4);
  EXPECT_NEAR(std::sqrt(sum_squares / n - mean * mean), data->train.stddev, 5e-4);
}

// What a device reads: its examples only, streamed, equal to the same
// examples of ReadIdxDataset's train split, in the order asked for.
TEST(ReadIdxTrainExamplesTest, KeepsTheAskedExamplesInOrderAndNothingElse) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  FEDGE_ASSERT_OK_AND_ASSIGN(TrainTest all, ReadIdxDataset(dir.path(), "fashion-mnist"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> labels, ReadIdxTrainLabels(dir.path()));
  EXPECT_EQ(labels, all.train.labels);
  const std::vector<int32_t> shard = {3, 0, 2, 2};
  FEDGE_ASSERT_OK_AND_ASSIGN(Dataset mine,
                             ReadIdxTrainExamples(dir.path(), "fashion-mnist", shard));
  ASSERT_EQ(mine.num_examples(), 4);
  const int64_t size = all.train.example_size();
  for (size_t k = 0; k < shard.size(); ++k) {
    EXPECT_EQ(mine.labels[k], all.train.labels[shard[k]]) << k;
    EXPECT_TRUE(std::equal(mine.pixels.begin() + k * size, mine.pixels.begin() + (k + 1) * size,
                           all.train.pixels.begin() + shard[k] * size))
        << k;
  }
  EXPECT_EQ(mine.example_shape, all.train.example_shape);
  EXPECT_EQ(mine.num_classes, 10);
  EXPECT_FLOAT_EQ(mine.mean, all.train.mean);
  EXPECT_FLOAT_EQ(mine.stddev, all.train.stddev);
  EXPECT_EQ(mine.name, "fashion-mnist");
  // The same from a gzipped images file.
  std::filesystem::remove(dir.File("train-images-idx3-ubyte"));
  WriteGzip(dir.File("train-images-idx3-ubyte.gz"),
            ImagesFile(4, 1, 2, {0, 255, 0, 255, 255, 0, 255, 0}));
  FEDGE_ASSERT_OK_AND_ASSIGN(Dataset zipped,
                             ReadIdxTrainExamples(dir.path(), "fashion-mnist", shard));
  EXPECT_EQ(zipped.pixels, mine.pixels);
  EXPECT_EQ(zipped.labels, mine.labels);
}

TEST(ReadIdxTrainExamplesTest, BadFilesAndIndicesNameWhatIsWrong) {
  ScopedTempDir dir;
  WriteStandardFiles(dir);
  EXPECT_THAT(ReadIdxTrainExamples(dir.path(), "fashion-mnist", std::vector<int32_t>{4}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(ReadIdxTrainExamples(dir.path(), "emnist", std::vector<int32_t>{0}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("emnist")));
  // Truncated images (a plain file) and trailing bytes: DATA_LOSS, naming it.
  const std::string images = dir.File("train-images-idx3-ubyte");
  WriteRaw(images, ImagesFile(4, 1, 2, {0, 255, 0, 255, 0, 255}));  // 3 of 4 images
  EXPECT_THAT(ReadIdxTrainExamples(dir.path(), "fashion-mnist", std::vector<int32_t>{0}).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  WriteRaw(images, ImagesFile(4, 1, 2, {0, 255, 0, 255, 0, 255, 0, 255, 7}));
  EXPECT_THAT(ReadIdxTrainExamples(dir.path(), "fashion-mnist", std::vector<int32_t>{0}).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("bytes after")));
  WriteRaw(images, ImagesFile(3, 1, 2, {0, 255, 0, 255, 0, 255}));
  EXPECT_THAT(ReadIdxTrainExamples(dir.path(), "fashion-mnist", std::vector<int32_t>{0}).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("count mismatch")));
}

}  // namespace
}  // namespace fedge::data
