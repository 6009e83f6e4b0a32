// Structured logs: one JSON object per line on stderr, e.g.
//
//   {"ts_ms":1764032400123,"level":"info","event":"round_closed","round":3,...}
//
// Field values are strings; those that read as numbers are written as JSON
// numbers. Lines from concurrent threads never interleave.
#ifndef FEDGE_PROTO_LOG_H_
#define FEDGE_PROTO_LOG_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fedge {

using LogFields = std::vector<std::pair<std::string, std::string>>;

// `level`: "info", "warning" or "error". `message`, when not empty, is
// written as the "message" field.
void LogEvent(std::string_view level, std::string_view event, const LogFields& fields,
              std::string_view message = {});

// The JSON line LogEvent writes (without the trailing newline), for tests.
std::string FormatLogEvent(int64_t ts_ms, std::string_view level, std::string_view event,
                           const LogFields& fields, std::string_view message);

}  // namespace fedge

#endif  // FEDGE_PROTO_LOG_H_
