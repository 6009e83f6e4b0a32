// EventLog: the fleet-level happenings of an aggregator that an operator
// should see (a round failed, a version was rejected or rolled back, an
// alert fired, a device was revoked), kept in memory for the status API and
// the dashboard, counted by kind for the metrics endpoint, and written to
// the JSON-lines log as they happen.
//
// The log keeps the newest `capacity` events; sequence numbers never repeat,
// so a reader polls with the last sequence it saw and gets only newer ones.
//
// Thread safety: every method may be called concurrently.
#ifndef FEDGE_AGGREGATOR_EVENT_LOG_H_
#define FEDGE_AGGREGATOR_EVENT_LOG_H_

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace fedge::aggregator {

struct FleetEvent {
  uint64_t sequence = 0;                      // 1, 2, ...
  int64_t time_ms = 0;                        // wall clock, ms since the Unix epoch
  std::string level;                          // "info", "warning" or "error"
  std::string kind;                           // e.g. "round_failed", "rollout_rolled_back", "alert"
  std::string message;                        // one human-readable sentence
  std::map<std::string, std::string> fields;  // e.g. {"round": "7"}
};

class EventLog {
 public:
  // REQUIRES: capacity >= 1.
  explicit EventLog(size_t capacity = 2000);

  // Appends an event (stamped now), logs it, and returns its sequence number.
  uint64_t Record(std::string level, std::string kind, std::string message,
                  std::map<std::string, std::string> fields = {});

  // Events with sequence > `after`, oldest first, at most `limit` of them
  // (the newest `limit` when more are kept).
  std::vector<FleetEvent> Since(uint64_t after, size_t limit) const;

  // Events recorded since start, by kind (including those no longer kept).
  std::map<std::string, uint64_t> CountsByKind() const;

  uint64_t last_sequence() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::deque<FleetEvent> events_;
  std::map<std::string, uint64_t> counts_;
  uint64_t next_ = 1;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_EVENT_LOG_H_
