#include "step_log.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fedge::privacy::internal {
namespace {

std::string ShortestDouble(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

template <typename T>
bool ParseExact(std::string_view text, T& value) {
  if (text.empty()) return false;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  return result.ec == std::errc() && result.ptr == text.data() + text.size();
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

absl::Status ValidateStep(double sampling_rate, double noise_multiplier, int64_t count) {
  if (!(sampling_rate > 0.0 && sampling_rate <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling_rate must be in (0, 1], got ", sampling_rate));
  }
  if (!(noise_multiplier > 0.0) || !std::isfinite(noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise_multiplier must be finite and > 0, got ", noise_multiplier));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("count must be >= 0, got ", count));
  }
  return absl::OkStatus();
}

absl::Status StepLog::Add(double sampling_rate, double noise_multiplier, int64_t count) {
  if (absl::Status status = ValidateStep(sampling_rate, noise_multiplier, count); !status.ok()) {
    return status;
  }
  if (count > std::numeric_limits<int64_t>::max() - steps_) {
    return absl::InvalidArgumentError("count overflows the total number of steps");
  }
  if (!entries_.empty() && entries_.back().sampling_rate == sampling_rate &&
      entries_.back().noise_multiplier == noise_multiplier) {
    entries_.back().count += count;
  } else {
    entries_.push_back({sampling_rate, noise_multiplier, count});
  }
  steps_ += count;
  return absl::OkStatus();
}

absl::Status StepLog::Repeat(int64_t count) {
  if (entries_.empty()) {
    return absl::FailedPreconditionError("Step(count) needs a previous Step(q, sigma)");
  }
  return Add(entries_.back().sampling_rate, entries_.back().noise_multiplier, count);
}

std::string StepLog::Serialize() const {
  std::string out = absl::StrCat(header_, "\n");
  for (const StepEntry& entry : entries_) {
    absl::StrAppend(&out, ShortestDouble(entry.sampling_rate), " ",
                    ShortestDouble(entry.noise_multiplier), " ", entry.count, "\n");
  }
  return out;
}

absl::Status StepLog::Restore(std::string_view serialized) {
  std::vector<std::string_view> lines = Split(serialized, '\n');
  if (lines.empty() || lines.front() != header_) {
    return absl::InvalidArgumentError(
        absl::StrCat("accountant state must start with '", header_, "'"));
  }
  std::vector<StepEntry> entries;
  int64_t steps = 0;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    std::vector<std::string_view> fields = Split(lines[i], ' ');
    StepEntry entry;
    if (fields.size() != 3 || !ParseExact(fields[0], entry.sampling_rate) ||
        !ParseExact(fields[1], entry.noise_multiplier) || !ParseExact(fields[2], entry.count)) {
      return absl::InvalidArgumentError(absl::StrCat("malformed accountant state line ", i + 1,
                                                     ": '", std::string(lines[i]), "'"));
    }
    if (absl::Status status =
            ValidateStep(entry.sampling_rate, entry.noise_multiplier, entry.count);
        !status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("accountant state line ", i + 1, ": ", status.message()));
    }
    if (entry.count > std::numeric_limits<int64_t>::max() - steps) {
      return absl::InvalidArgumentError("accountant state: step count overflows");
    }
    steps += entry.count;
    entries.push_back(entry);
  }
  entries_ = std::move(entries);
  steps_ = steps;
  return absl::OkStatus();
}

}  // namespace fedge::privacy::internal
