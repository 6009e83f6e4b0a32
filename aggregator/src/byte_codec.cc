#include "byte_codec.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {
namespace {

constexpr char kMagic[4] = {'F', 'G', 'A', 'G'};

template <typename T>
void AppendArray(std::string& bytes, std::span<const T> values) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  const std::size_t start = bytes.size();
  bytes.resize(start + values.size_bytes());
  if constexpr (std::endian::native == std::endian::little) {
    if (!values.empty()) std::memcpy(bytes.data() + start, values.data(), values.size_bytes());
  } else {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    char* out = bytes.data() + start;
    for (const T value : values) {
      const Bits bits = std::bit_cast<Bits>(value);
      for (std::size_t b = 0; b < sizeof(T); ++b) *out++ = static_cast<char>(bits >> (8 * b));
    }
  }
}

template <typename T>
std::vector<T> ParseArray(const char* data, std::uint64_t count) {
  std::vector<T> values(count);
  if constexpr (std::endian::native == std::endian::little) {
    if (count > 0) std::memcpy(values.data(), data, count * sizeof(T));
  } else {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    for (std::uint64_t i = 0; i < count; ++i) {
      Bits bits = 0;
      for (std::size_t b = 0; b < sizeof(T); ++b) {
        bits |= static_cast<Bits>(static_cast<unsigned char>(data[i * sizeof(T) + b])) << (8 * b);
      }
      values[i] = std::bit_cast<T>(bits);
    }
  }
  return values;
}

}  // namespace

ByteWriter::ByteWriter(StateTag tag) {
  bytes_.append(kMagic, sizeof(kMagic));
  PutU16(kStateFormatVersion);
  PutU16(static_cast<std::uint16_t>(tag));
}

void ByteWriter::PutU8(std::uint8_t value) { bytes_.push_back(static_cast<char>(value)); }

void ByteWriter::PutU16(std::uint16_t value) {
  for (int b = 0; b < 2; ++b) bytes_.push_back(static_cast<char>(value >> (8 * b)));
}

void ByteWriter::PutU32(std::uint32_t value) {
  for (int b = 0; b < 4; ++b) bytes_.push_back(static_cast<char>(value >> (8 * b)));
}

void ByteWriter::PutU64(std::uint64_t value) {
  for (int b = 0; b < 8; ++b) bytes_.push_back(static_cast<char>(value >> (8 * b)));
}

void ByteWriter::PutF64(double value) { PutU64(std::bit_cast<std::uint64_t>(value)); }

void ByteWriter::PutFloats(std::span<const float> values) { AppendArray(bytes_, values); }

void ByteWriter::PutDoubles(std::span<const double> values) { AppendArray(bytes_, values); }

ByteReader::ByteReader(std::string_view bytes, absl::string_view what)
    : bytes_(bytes), what_(what) {}

absl::Status ByteReader::Invalid(absl::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat("invalid ", what_, " state: ", message));
}

absl::Status ByteReader::Need(absl::string_view field, std::uint64_t bytes) const {
  const std::uint64_t left = bytes_.size() - position_;
  if (bytes > left) {
    return Invalid(
        absl::StrCat("truncated at '", field, "' (needs ", bytes, " bytes, ", left, " left)"));
  }
  return absl::OkStatus();
}

std::uint64_t ByteReader::TakeLittleEndian(std::size_t bytes) {
  std::uint64_t value = 0;
  for (std::size_t b = 0; b < bytes; ++b) {
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes_[position_ + b]))
             << (8 * b);
  }
  position_ += bytes;
  return value;
}

absl::Status ByteReader::ReadHeader(StateTag expected) {
  if (bytes_.size() - position_ < sizeof(kMagic) ||
      std::memcmp(bytes_.data() + position_, kMagic, sizeof(kMagic)) != 0) {
    return Invalid("missing the \"FGAG\" magic; not a fedge aggregator state");
  }
  position_ += sizeof(kMagic);
  FEDGE_ASSIGN_OR_RETURN(const std::uint16_t version, U16("version"));
  if (version != kStateFormatVersion) {
    return Invalid(absl::StrCat("format version ", version, " is not supported (expected ",
                                kStateFormatVersion, ")"));
  }
  FEDGE_ASSIGN_OR_RETURN(const std::uint16_t tag, U16("tag"));
  if (tag != static_cast<std::uint16_t>(expected)) {
    return Invalid(absl::StrCat("holds state kind ", tag, ", expected kind ",
                                static_cast<std::uint16_t>(expected)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::uint8_t> ByteReader::U8(absl::string_view field) {
  FEDGE_RETURN_IF_ERROR(Need(field, 1));
  return static_cast<std::uint8_t>(TakeLittleEndian(1));
}

absl::StatusOr<std::uint16_t> ByteReader::U16(absl::string_view field) {
  FEDGE_RETURN_IF_ERROR(Need(field, 2));
  return static_cast<std::uint16_t>(TakeLittleEndian(2));
}

absl::StatusOr<std::uint32_t> ByteReader::U32(absl::string_view field) {
  FEDGE_RETURN_IF_ERROR(Need(field, 4));
  return static_cast<std::uint32_t>(TakeLittleEndian(4));
}

absl::StatusOr<std::uint64_t> ByteReader::U64(absl::string_view field) {
  FEDGE_RETURN_IF_ERROR(Need(field, 8));
  return TakeLittleEndian(8);
}

absl::StatusOr<double> ByteReader::F64(absl::string_view field) {
  FEDGE_RETURN_IF_ERROR(Need(field, 8));
  return std::bit_cast<double>(TakeLittleEndian(8));
}

absl::StatusOr<std::vector<float>> ByteReader::Floats(absl::string_view field,
                                                      std::uint64_t count) {
  // Divide rather than multiply so a huge count cannot overflow the check.
  const std::uint64_t left = bytes_.size() - position_;
  if (count > left / sizeof(float)) {
    return Invalid(absl::StrCat("truncated at '", field, "' (needs ", count, " floats, ", left,
                                " bytes left)"));
  }
  std::vector<float> values = ParseArray<float>(bytes_.data() + position_, count);
  position_ += count * sizeof(float);
  return values;
}

absl::StatusOr<std::vector<double>> ByteReader::Doubles(absl::string_view field,
                                                        std::uint64_t count) {
  const std::uint64_t left = bytes_.size() - position_;
  if (count > left / sizeof(double)) {
    return Invalid(absl::StrCat("truncated at '", field, "' (needs ", count, " doubles, ", left,
                                " bytes left)"));
  }
  std::vector<double> values = ParseArray<double>(bytes_.data() + position_, count);
  position_ += count * sizeof(double);
  return values;
}

absl::Status ByteReader::ExpectEnd() const {
  if (position_ != bytes_.size()) {
    return Invalid(absl::StrCat(bytes_.size() - position_, " unexpected trailing bytes"));
  }
  return absl::OkStatus();
}

}  // namespace fedge::aggregator
