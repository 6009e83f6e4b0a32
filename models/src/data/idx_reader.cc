// IDX reader (LeCun's MNIST layout): a 4-byte magic 0x00 0x00 <type> <ndims>,
// then ndims big-endian uint32 dimensions, then the row-major data. Only
// unsigned-byte data (type 0x08) is read: images are 0x00000803
// (count x rows x cols), labels 0x00000801 (count).
//
// A file is read whole into one buffer (after inflating it if it starts with
// the gzip magic 1f 8b), validated against its header, and then moved into
// the Dataset without another copy of the pixels.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "fedge/data/dataset.h"
#include "fedge/proto/status_macros.h"

namespace fedge::data {

int64_t Dataset::example_size() const {
  int64_t size = 1;
  for (int64_t dim : example_shape) size *= dim;
  return size;
}

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

// Published per-pixel statistics of the train splits, on pixel / 255.
constexpr float kFashionMnistMean = 0.2860f;
constexpr float kFashionMnistStddev = 0.3530f;
constexpr float kMnistMean = 0.1307f;
constexpr float kMnistStddev = 0.3081f;

std::string StripTrailingSlashes(absl::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return std::string(path);
}

std::string DirName(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

bool IsDefaultFashionMnistDir(absl::string_view dir) {
  return StripTrailingSlashes(dir) == kDefaultFashionMnistDir;
}

// Appended to NOT_FOUND errors for files under kDefaultFashionMnistDir.
std::string InstallHint() {
  return absl::StrCat(
      "; the files in ", kDefaultFashionMnistDir,
      " come from Debian's dataset-fashion-mnist package: install it with `sudo apt-get install "
      "dataset-fashion-mnist` (or `apt-get install dataset-fashion-mnist` as root)");
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The raw bytes of the file at `path`.
absl::StatusOr<std::vector<uint8_t>> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    std::string message = absl::StrCat("cannot open IDX file ", path);
    if (error == ENOENT && IsDefaultFashionMnistDir(DirName(path))) {
      return absl::NotFoundError(absl::StrCat(message, ": ", std::strerror(error), InstallHint()));
    }
    return absl::ErrnoToStatus(error, message);
  }
  std::vector<uint8_t> bytes;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    // One spare byte lets the read that sees end-of-file happen without
    // growing the buffer.
    bytes.resize(static_cast<size_t>(st.st_size) + 1);
  } else {
    bytes.resize(1 << 16);
  }
  size_t used = 0;
  while (true) {
    if (used == bytes.size()) bytes.resize(bytes.size() * 2);
    const ssize_t n = ::read(fd, bytes.data() + used, bytes.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, absl::StrCat("cannot read IDX file ", path));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(used);
  return bytes;
}

bool HasGzipMagic(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

// Inflates a gzip file (one or more concatenated members) held in `compressed`.
absl::StatusOr<std::vector<uint8_t>> Gunzip(const std::vector<uint8_t>& compressed,
                                            const std::string& path) {
  // The gzip trailer's ISIZE (uncompressed size mod 2^32, little-endian) sizes
  // the output buffer in one allocation for the usual single-member file;
  // deflate cannot expand more than ~1032:1, which bounds a bogus value.
  size_t capacity = compressed.size() * 4;
  if (compressed.size() >= 18) {
    const uint8_t* t = compressed.data() + compressed.size() - 4;
    const uint64_t isize =
        uint64_t{t[0]} | uint64_t{t[1]} << 8 | uint64_t{t[2]} << 16 | uint64_t{t[3]} << 24;
    // + 1: room for the final inflate call that reaches the end of stream.
    if (isize > 0 && isize <= uint64_t{1032} * compressed.size()) capacity = isize + 1;
  }
  std::vector<uint8_t> out(std::max<size_t>(capacity, 64));

  z_stream stream{};
  // 16 + MAX_WBITS: expect a gzip wrapper and verify its CRC-32 and length.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
    return absl::ResourceExhaustedError(absl::StrCat("zlib inflateInit2 failed for ", path));
  }
  stream.next_in = const_cast<Bytef*>(compressed.data());
  size_t in_left = compressed.size();
  size_t produced = 0;
  absl::Status status;
  while (true) {
    if (produced == out.size()) out.resize(out.size() * 2);
    // zlib counts in uInt; feed and drain at most 1 GiB per call.
    constexpr size_t kMaxChunk = size_t{1} << 30;
    const uInt in_chunk = static_cast<uInt>(std::min(in_left, kMaxChunk));
    const uInt out_chunk = static_cast<uInt>(std::min(out.size() - produced, kMaxChunk));
    stream.avail_in = in_chunk;
    stream.next_out = out.data() + produced;
    stream.avail_out = out_chunk;
    const int rc = inflate(&stream, Z_NO_FLUSH);
    in_left -= in_chunk - stream.avail_in;
    produced += out_chunk - stream.avail_out;
    if (rc == Z_STREAM_END) {
      if (in_left == 0) break;
      // Another gzip member follows (as `cat a.gz b.gz` produces).
      if (inflateReset(&stream) != Z_OK) {
        status = absl::DataLossError(absl::StrCat("corrupt gzip stream in ", path));
        break;
      }
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && in_left == 0) {
      status = absl::DataLossError(absl::StrFormat(
          "truncated gzip stream in %s: the compressed data (%d bytes) ends before the "
          "end-of-stream marker, after %d uncompressed bytes",
          path, compressed.size(), produced));
      break;
    }
    if (rc == Z_BUF_ERROR) continue;
    if (rc == Z_MEM_ERROR) {
      status = absl::ResourceExhaustedError(absl::StrCat("out of memory inflating ", path));
      break;
    }
    status = absl::DataLossError(
        absl::StrFormat("corrupt gzip stream in %s after %d uncompressed bytes: %s", path, produced,
                        stream.msg != nullptr ? stream.msg : absl::StrCat("zlib error ", rc)));
    break;
  }
  inflateEnd(&stream);
  FEDGE_RETURN_IF_ERROR(status);
  out.resize(produced);
  // Growth (a multi-member file, or an ISIZE that did not fit) can leave up to
  // twice the needed capacity, which the dataset would otherwise keep.
  if (out.capacity() - produced > produced / 8) out.shrink_to_fit();
  return out;
}

// The contents of `path`, inflated if the file is gzip (by magic, not name).
absl::StatusOr<std::vector<uint8_t>> ReadMaybeGzipped(const std::string& path, bool* gzipped) {
  FEDGE_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadWholeFile(path));
  *gzipped = HasGzipMagic(bytes);
  if (!*gzipped) return bytes;
  return Gunzip(bytes, path);
}

uint32_t BigEndian32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

struct IdxContents {
  std::vector<uint32_t> dims;
  // The whole (decompressed) file; the data starts at data_offset.
  std::vector<uint8_t> bytes;
  size_t data_offset = 0;
};

// Reads `path` and checks its magic against `expected_magic` and its size
// against the header.
absl::StatusOr<IdxContents> ReadIdxFile(const std::string& path, uint32_t expected_magic,
                                        absl::string_view what) {
  bool gzipped = false;
  FEDGE_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadMaybeGzipped(path, &gzipped));
  const char* const after = gzipped ? " (after gunzip)" : "";
  const int num_dims = static_cast<int>(expected_magic & 0xff);
  const size_t header_size = 4 + 4 * static_cast<size_t>(num_dims);
  if (bytes.size() < 4) {
    return absl::DataLossError(
        absl::StrFormat("truncated IDX file %s: %d bytes%s, too short for the 4-byte magic", path,
                        bytes.size(), after));
  }
  const uint32_t magic = BigEndian32(bytes.data());
  if (magic != expected_magic) {
    return absl::DataLossError(absl::StrFormat(
        "bad magic 0x%08x in IDX file %s: expected 0x%08x (%s: unsigned bytes, %d dimension%s)",
        magic, path, expected_magic, what, num_dims, num_dims == 1 ? "" : "s"));
  }
  if (bytes.size() < header_size) {
    return absl::DataLossError(
        absl::StrFormat("truncated IDX file %s: %d bytes%s, but its header alone needs %d bytes",
                        path, bytes.size(), after, header_size));
  }
  IdxContents contents;
  // Each dimension is < 2^32, and at most 3 are multiplied, so a product in
  // unsigned __int128 cannot overflow.
  unsigned __int128 expected = header_size;
  unsigned __int128 payload = 1;
  for (int i = 0; i < num_dims; ++i) {
    const uint32_t dim = BigEndian32(bytes.data() + 4 + 4 * i);
    if (i > 0 && dim == 0) {
      return absl::DataLossError(
          absl::StrFormat("IDX file %s: dimension %d is 0 in the header", path, i));
    }
    contents.dims.push_back(dim);
    payload *= dim;
  }
  expected += payload;
  if (expected != bytes.size()) {
    const std::string dims = absl::StrJoin(contents.dims, " x ");
    if (expected > bytes.size()) {
      return absl::DataLossError(absl::StrFormat(
          "truncated IDX file %s: header says %s %s = %d bytes with the header, but the file "
          "has %d bytes%s",
          path, dims, what, static_cast<uint64_t>(expected), bytes.size(), after));
    }
    return absl::DataLossError(absl::StrFormat(
        "IDX file %s has %d bytes%s, but its header (%s %s) accounts for %d: %d unexpected "
        "trailing bytes",
        path, bytes.size(), after, dims, what, static_cast<uint64_t>(expected),
        bytes.size() - static_cast<uint64_t>(expected)));
  }
  contents.bytes = std::move(bytes);
  contents.data_offset = header_size;
  return contents;
}

// Reads the pair without computing normalization statistics.
absl::StatusOr<Dataset> ReadIdxPairUnnormalized(const std::string& images_path,
                                                const std::string& labels_path,
                                                int64_t num_classes) {
  if (num_classes < 1 || num_classes > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_classes = %d for %s: must be in [1, 2^31)", num_classes, labels_path));
  }
  FEDGE_ASSIGN_OR_RETURN(IdxContents images, ReadIdxFile(images_path, kImagesMagic, "images"));
  FEDGE_ASSIGN_OR_RETURN(IdxContents labels, ReadIdxFile(labels_path, kLabelsMagic, "labels"));
  const uint32_t num_images = images.dims[0];
  const uint32_t num_labels = labels.dims[0];
  if (num_images != num_labels) {
    return absl::DataLossError(
        absl::StrFormat("count mismatch: %s holds %d images but %s holds %d labels", images_path,
                        num_images, labels_path, num_labels));
  }
  if (num_images > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
    return absl::DataLossError(absl::StrFormat(
        "%s holds %d examples; at most 2^31 - 1 are supported", images_path, num_images));
  }

  Dataset dataset;
  dataset.num_classes = num_classes;
  dataset.example_shape = {1, images.dims[1], images.dims[2]};

  dataset.labels.resize(num_labels);
  const uint8_t* raw_labels = labels.bytes.data() + labels.data_offset;
  for (uint32_t i = 0; i < num_labels; ++i) {
    if (raw_labels[i] >= num_classes) {
      return absl::DataLossError(
          absl::StrFormat("label out of range in %s: example %d has label %d, expected < %d "
                          "(num_classes)",
                          labels_path, i, raw_labels[i], num_classes));
    }
    dataset.labels[i] = raw_labels[i];
  }

  // Reuses the file buffer: one memmove instead of a second 47 MB allocation.
  dataset.pixels = std::move(images.bytes);
  dataset.pixels.erase(dataset.pixels.begin(),
                       dataset.pixels.begin() + static_cast<ptrdiff_t>(images.data_offset));
  return dataset;
}

// Mean and standard deviation of pixel / 255 over all pixels. A constant
// image set gets stddev 1 so that normalizing never divides by zero.
void ComputePixelStatistics(const std::vector<uint8_t>& pixels, float* mean, float* stddev) {
  if (pixels.empty()) {
    *mean = 0.0f;
    *stddev = 1.0f;
    return;
  }
  std::array<uint64_t, 256> histogram{};
  for (uint8_t p : pixels) ++histogram[p];
  double sum = 0.0;
  double sum_squares = 0.0;
  for (int v = 0; v < 256; ++v) {
    const double x = v / 255.0;
    sum += static_cast<double>(histogram[v]) * x;
    sum_squares += static_cast<double>(histogram[v]) * x * x;
  }
  const double n = static_cast<double>(pixels.size());
  const double m = sum / n;
  const double variance = std::max(0.0, sum_squares / n - m * m);
  *mean = static_cast<float>(m);
  *stddev = variance > 0.0 ? static_cast<float>(std::sqrt(variance)) : 1.0f;
}

// `dir`/`name` if it is a file, else `dir`/`name`.gz, else NOT_FOUND.
absl::StatusOr<std::string> FindIdxFile(const std::string& dir, const std::string& name) {
  const std::string raw = absl::StrCat(dir, "/", name);
  if (IsRegularFile(raw)) return raw;
  const std::string gz = absl::StrCat(raw, ".gz");
  if (IsRegularFile(gz)) return gz;
  struct stat st;
  std::string message;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    message =
        absl::StrCat("dataset directory ", dir, " does not exist (looking for ", name, "[.gz])");
  } else {
    message = absl::StrCat("IDX file not found: neither ", raw, " nor ", gz, " exists");
  }
  if (IsDefaultFashionMnistDir(dir)) absl::StrAppend(&message, InstallHint());
  return absl::NotFoundError(message);
}

}  // namespace

absl::StatusOr<Dataset> ReadIdxPair(const std::string& images_path, const std::string& labels_path,
                                    int64_t num_classes) {
  FEDGE_ASSIGN_OR_RETURN(Dataset dataset,
                         ReadIdxPairUnnormalized(images_path, labels_path, num_classes));
  ComputePixelStatistics(dataset.pixels, &dataset.mean, &dataset.stddev);
  return dataset;
}

absl::StatusOr<TrainTest> ReadIdxDataset(const std::string& dir, const std::string& name) {
  const std::string root = StripTrailingSlashes(dir);
  FEDGE_ASSIGN_OR_RETURN(const std::string train_images,
                         FindIdxFile(root, "train-images-idx3-ubyte"));
  FEDGE_ASSIGN_OR_RETURN(const std::string train_labels,
                         FindIdxFile(root, "train-labels-idx1-ubyte"));
  FEDGE_ASSIGN_OR_RETURN(const std::string test_images,
                         FindIdxFile(root, "t10k-images-idx3-ubyte"));
  FEDGE_ASSIGN_OR_RETURN(const std::string test_labels,
                         FindIdxFile(root, "t10k-labels-idx1-ubyte"));

  // MNIST and Fashion-MNIST have 10 classes, and a label >= 10 there means a
  // damaged file; other IDX datasets (EMNIST splits: 26 to 62 classes) get
  // 1 + the largest label seen in either split.
  const std::string key = absl::AsciiStrToLower(name);
  const bool known = key == "fashion-mnist" || key == "mnist";
  const int64_t max_classes = known ? 10 : 256;
  TrainTest result;
  FEDGE_ASSIGN_OR_RETURN(result.train,
                         ReadIdxPairUnnormalized(train_images, train_labels, max_classes));
  FEDGE_ASSIGN_OR_RETURN(result.test,
                         ReadIdxPairUnnormalized(test_images, test_labels, max_classes));
  if (result.train.example_shape != result.test.example_shape) {
    return absl::DataLossError(
        absl::StrFormat("image shape mismatch in %s: train images are %s, test images are %s", root,
                        absl::StrJoin(result.train.example_shape, "x"),
                        absl::StrJoin(result.test.example_shape, "x")));
  }

  int64_t num_classes = 10;
  if (!known) {
    int32_t max_label = 0;
    for (const Dataset* split : {&result.train, &result.test}) {
      for (int32_t label : split->labels) max_label = std::max(max_label, label);
    }
    num_classes = int64_t{max_label} + 1;
  }
  float mean;
  float stddev;
  if (key == "fashion-mnist") {
    mean = kFashionMnistMean;
    stddev = kFashionMnistStddev;
  } else if (key == "mnist") {
    mean = kMnistMean;
    stddev = kMnistStddev;
  } else {
    ComputePixelStatistics(result.train.pixels, &mean, &stddev);
  }
  for (Dataset* split : {&result.train, &result.test}) {
    split->name = name;
    split->num_classes = num_classes;
    split->mean = mean;
    split->stddev = stddev;
  }
  return result;
}

absl::StatusOr<std::vector<int32_t>> ReadIdxTrainLabels(const std::string& dir,
                                                        int64_t num_classes) {
  const std::string root = StripTrailingSlashes(dir);
  FEDGE_ASSIGN_OR_RETURN(const std::string path, FindIdxFile(root, "train-labels-idx1-ubyte"));
  FEDGE_ASSIGN_OR_RETURN(IdxContents labels, ReadIdxFile(path, kLabelsMagic, "labels"));
  std::vector<int32_t> out(labels.dims[0]);
  const uint8_t* raw = labels.bytes.data() + labels.data_offset;
  for (size_t i = 0; i < out.size(); ++i) {
    if (raw[i] >= num_classes) {
      return absl::DataLossError(absl::StrFormat(
          "label out of range in %s: example %d has label %d, expected < %d (num_classes)", path, i,
          raw[i], num_classes));
    }
    out[i] = raw[i];
  }
  return out;
}

absl::StatusOr<Dataset> ReadIdxTrainExamples(const std::string& dir, const std::string& name,
                                             std::span<const int32_t> indices) {
  const std::string root = StripTrailingSlashes(dir);
  const std::string key = absl::AsciiStrToLower(name);
  if (key != "fashion-mnist" && key != "mnist") {
    return absl::InvalidArgumentError(absl::StrCat(
        "ReadIdxTrainExamples reads mnist and fashion-mnist (fixed normalization), not '", name,
        "'"));
  }
  FEDGE_ASSIGN_OR_RETURN(std::vector<int32_t> labels, ReadIdxTrainLabels(root, 10));
  FEDGE_ASSIGN_OR_RETURN(const std::string path, FindIdxFile(root, "train-images-idx3-ubyte"));
  // gzread reads gzipped and plain files alike, and checks the gzip trailer
  // (CRC-32 and length) when it reaches the end.
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open IDX file ", path));
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{file};
  auto read = [&](uint8_t* into, size_t n) -> absl::Status {
    size_t done = 0;
    while (done < n) {
      const int got = gzread(file, into + done, static_cast<unsigned>(std::min<size_t>(n - done, 1 << 30)));
      if (got < 0) {
        int code = 0;
        return absl::DataLossError(
            absl::StrCat("corrupt IDX file ", path, ": ", gzerror(file, &code)));
      }
      if (got == 0) {
        return absl::DataLossError(absl::StrFormat(
            "truncated IDX file %s: it ends %d bytes short of what its header promises", path,
            n - done));
      }
      done += static_cast<size_t>(got);
    }
    return absl::OkStatus();
  };
  uint8_t header[16];
  FEDGE_RETURN_IF_ERROR(read(header, sizeof(header)));
  if (BigEndian32(header) != kImagesMagic) {
    return absl::DataLossError(absl::StrFormat("bad magic 0x%08x in IDX file %s: expected 0x%08x",
                                               BigEndian32(header), path, kImagesMagic));
  }
  const uint32_t count = BigEndian32(header + 4);
  const uint32_t rows = BigEndian32(header + 8);
  const uint32_t cols = BigEndian32(header + 12);
  if (count != labels.size()) {
    return absl::DataLossError(absl::StrFormat(
        "count mismatch: %s holds %d images but the labels file holds %d labels", path, count,
        labels.size()));
  }
  if (rows == 0 || cols == 0 || uint64_t{rows} * cols > (uint64_t{1} << 24)) {
    return absl::DataLossError(
        absl::StrFormat("IDX file %s: images of %d x %d pixels are not supported", path, rows, cols));
  }
  // Where each wanted example goes (an index may be wanted more than once).
  std::vector<std::pair<int32_t, size_t>> wanted;
  wanted.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    if (indices[k] < 0 || static_cast<uint32_t>(indices[k]) >= count) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "example index %d is outside %s's %d examples", indices[k], path, count));
    }
    wanted.emplace_back(indices[k], k);
  }
  std::sort(wanted.begin(), wanted.end());
  const size_t example = size_t{rows} * cols;
  Dataset out;
  out.name = name;
  out.example_shape = {1, rows, cols};
  out.num_classes = 10;
  out.mean = key == "mnist" ? kMnistMean : kFashionMnistMean;
  out.stddev = key == "mnist" ? kMnistStddev : kFashionMnistStddev;
  out.pixels.resize(indices.size() * example);
  out.labels.resize(indices.size());
  std::vector<uint8_t> buffer(example);
  size_t next = 0;
  // Every example is read (so a damaged file is noticed whatever the shard),
  // but only the wanted ones are kept: the rest never sits in memory.
  for (uint32_t i = 0; i < count; ++i) {
    FEDGE_RETURN_IF_ERROR(read(buffer.data(), example));
    for (; next < wanted.size() && wanted[next].first == static_cast<int32_t>(i); ++next) {
      std::copy(buffer.begin(), buffer.end(),
                out.pixels.begin() + static_cast<ptrdiff_t>(wanted[next].second * example));
      out.labels[wanted[next].second] = labels[i];
    }
  }
  uint8_t extra = 0;
  const int trailing = gzread(file, &extra, 1);
  if (trailing != 0) {
    int code = 0;
    return absl::DataLossError(trailing < 0
                                   ? absl::StrCat("corrupt IDX file ", path, ": ", gzerror(file, &code))
                                   : absl::StrCat("IDX file ", path,
                                                  " has bytes after the images its header counts"));
  }
  return out;
}

}  // namespace fedge::data
