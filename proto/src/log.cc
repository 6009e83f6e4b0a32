#include "fedge/proto/log.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace fedge {
namespace {

void AppendJsonString(std::string& out, std::string_view text) {
  out.push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out += escaped;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

// JSON numbers: an optional minus, digits, optional fraction and exponent.
bool IsJsonNumber(std::string_view text) {
  if (text.empty()) return false;
  const std::string copy(text);
  char* end = nullptr;
  std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size()) return false;
  const char first = copy[0] == '-' ? (copy.size() > 1 ? copy[1] : 'x') : copy[0];
  if (first < '0' || first > '9') return false;  // no "inf", "nan", "+1", ".5"
  return copy.find_first_of("xXnN") == std::string::npos;
}

}  // namespace

std::string FormatLogEvent(int64_t ts_ms, std::string_view level, std::string_view event,
                           const LogFields& fields, std::string_view message) {
  std::string line = "{\"ts_ms\":" + std::to_string(ts_ms) + ",\"level\":";
  AppendJsonString(line, level);
  line += ",\"event\":";
  AppendJsonString(line, event);
  for (const auto& [key, value] : fields) {
    line.push_back(',');
    AppendJsonString(line, key);
    line.push_back(':');
    if (IsJsonNumber(value)) {
      line += value;
    } else {
      AppendJsonString(line, value);
    }
  }
  if (!message.empty()) {
    line += ",\"message\":";
    AppendJsonString(line, message);
  }
  line.push_back('}');
  return line;
}

void LogEvent(std::string_view level, std::string_view event, const LogFields& fields,
              std::string_view message) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::string line = FormatLogEvent(now, level, event, fields, message);
  line.push_back('\n');
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace fedge
