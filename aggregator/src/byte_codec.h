// Little-endian binary encoding for the aggregator's serialized states
// (accumulators, server optimizers).
//
// Every state starts with the same 8-byte header: the magic "FGAG", a format
// version (uint16) and a tag (uint16) naming which kind of state follows. The
// bytes are little-endian on every host, so a state written on one machine
// can be restored on another of the same fedge version.
//
// ByteReader never reads past its input: each read checks the remaining length
// first and fails with INVALID_ARGUMENT naming the field and the state kind.
#ifndef FEDGE_AGGREGATOR_SRC_BYTE_CODEC_H_
#define FEDGE_AGGREGATOR_SRC_BYTE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedge::aggregator {

// Which kind of state a serialized blob holds. Values are part of the format:
// never renumber, only append.
enum class StateTag : std::uint16_t {
  kWeightedMeanAccumulator = 1,
  kStoredUpdatesAccumulator = 2,
  kPlainServerStep = 16,
  kMomentumServerStep = 17,
  kAdaptiveServerStep = 18,
};

inline constexpr std::uint16_t kStateFormatVersion = 1;

// Appends values to a growing byte string. Not thread-safe.
class ByteWriter {
 public:
  // Writes the common header for a state of kind `tag`.
  explicit ByteWriter(StateTag tag);

  void PutU8(std::uint8_t value);
  void PutU16(std::uint16_t value);
  void PutU32(std::uint32_t value);
  void PutU64(std::uint64_t value);
  void PutF64(double value);
  void PutFloats(std::span<const float> values);
  void PutDoubles(std::span<const double> values);

  std::string Finish() && { return std::move(bytes_); }

 private:
  std::string bytes_;
};

// Reads values back in the order they were written. Not thread-safe; the
// viewed bytes must outlive the reader.
class ByteReader {
 public:
  // `what` names the state in error messages, e.g. "weighted-mean accumulator".
  ByteReader(std::string_view bytes, absl::string_view what);

  // Checks the magic, the version and that the tag is `expected`.
  absl::Status ReadHeader(StateTag expected);

  absl::StatusOr<std::uint8_t> U8(absl::string_view field);
  absl::StatusOr<std::uint16_t> U16(absl::string_view field);
  absl::StatusOr<std::uint32_t> U32(absl::string_view field);
  absl::StatusOr<std::uint64_t> U64(absl::string_view field);
  absl::StatusOr<double> F64(absl::string_view field);
  // Reads `count` values. Fails before allocating when fewer bytes remain.
  absl::StatusOr<std::vector<float>> Floats(absl::string_view field, std::uint64_t count);
  absl::StatusOr<std::vector<double>> Doubles(absl::string_view field, std::uint64_t count);

  // INVALID_ARGUMENT if any bytes are left unread.
  absl::Status ExpectEnd() const;

  // An INVALID_ARGUMENT error prefixed with the state's name.
  absl::Status Invalid(absl::string_view message) const;

 private:
  absl::Status Need(absl::string_view field, std::uint64_t bytes) const;
  std::uint64_t TakeLittleEndian(std::size_t bytes);

  std::string_view bytes_;
  std::size_t position_ = 0;
  std::string what_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_BYTE_CODEC_H_
