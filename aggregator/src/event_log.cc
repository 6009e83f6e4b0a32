#include "fedge/aggregator/event_log.h"

#include <algorithm>
#include <chrono>

#include "fedge/proto/log.h"

namespace fedge::aggregator {

EventLog::EventLog(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

uint64_t EventLog::Record(std::string level, std::string kind, std::string message,
                          std::map<std::string, std::string> fields) {
  LogEvent(level, kind, LogFields(fields.begin(), fields.end()), message);
  FleetEvent event{.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count(),
                   .level = std::move(level),
                   .kind = std::move(kind),
                   .message = std::move(message),
                   .fields = std::move(fields)};
  std::lock_guard<std::mutex> lock(mu_);
  event.sequence = next_++;
  ++counts_[event.kind];
  events_.push_back(std::move(event));
  if (events_.size() > capacity_) events_.pop_front();
  return events_.back().sequence;
}

std::vector<FleetEvent> EventLog::Since(uint64_t after, size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  // Sequence numbers are consecutive, so the first newer event is found by
  // arithmetic rather than a scan.
  const uint64_t first_kept = events_.empty() ? next_ : events_.front().sequence;
  size_t begin = after < first_kept ? 0 : static_cast<size_t>(after - first_kept + 1);
  begin = std::min(begin, events_.size());
  if (events_.size() - begin > limit) begin = events_.size() - limit;
  return std::vector<FleetEvent>(events_.begin() + static_cast<std::ptrdiff_t>(begin),
                                 events_.end());
}

std::map<std::string, uint64_t> EventLog::CountsByKind() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

uint64_t EventLog::last_sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_ - 1;
}

}  // namespace fedge::aggregator
