// fedge-ctl: the operator CLI of a running aggregator. It talks HTTPS to the
// aggregator's ops endpoint (docs/operations.md), verifying the server
// certificate against --ca, and authenticates with the operator token.
//
//   fedge-ctl [--server HOST:PORT] [--ca FILE | --insecure] [--token-file FILE]
//             [--json] COMMAND [ARGS]
//
// Exit codes: 0 done; 1 the aggregator refused (its message is printed);
// 2 a usage error; 3 no answer (cannot connect, TLS or certificate failure,
// timeout).
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/proto/version.h"
#include "nlohmann/json.hpp"

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

constexpr int kRefused = 1;
constexpr int kUsage = 2;
constexpr int kNoAnswer = 3;

constexpr char kUsageText[] = R"(fedge-ctl: operate a running fedge aggregator (its ops endpoint).

Usage: fedge-ctl [global flags] COMMAND [ARGS] [flags]

Global flags:
  --server HOST:PORT   the ops endpoint (ops.listen); default $FEDGE_OPS_SERVER or 127.0.0.1:9443
  --ca FILE            CA that signed the aggregator's certificate (HTTPS; verified, with the host name)
  --insecure           plain HTTP, for an aggregator run with --insecure (loopback tests only)
  --token-file FILE    the operator token (ops.token_file); default: $FEDGE_OPS_TOKEN
  --json               print the aggregator's JSON answer as it is
  --timeout-s N        give up after N seconds (default 10)

Commands:
  status                               overview: versions, accuracy, devices, privacy, alerts
  round                                the round in progress (or why none is open)
  rounds   [--limit N]                 finished rounds, newest first
  devices  [--offset N] [--limit N] [--filter TEXT] [--status active|idle|gone|revoked] [--drift yes|no]
  versions [--limit N]                 model versions: lineage, status, metrics, sizes, signature
  events   [--after SEQ] [--limit N] [--kind KIND]   fleet events (KIND may end in *)
  revoke   DEVICE [--reason TEXT]      refuse DEVICE from now on; drop it from the open round
  pause    [--reason TEXT]             open no new round (the open one finishes)
  resume   [--reason TEXT]
  promote  VERSION [--reason TEXT]     make a held (canary/rejected/rolled_back) version live
  rollback VERSION [--reason TEXT]     publish VERSION's model again as the newest live version
                                       (refused while a round is open: pause, wait, roll back)

Exit codes: 0 done, 1 refused by the aggregator, 2 usage error, 3 no answer.
)";

struct Options {
  std::string server;
  std::string ca;
  bool insecure = false;
  std::string token_file;
  bool json = false;
  int timeout_s = 10;
};

struct Reply {
  int status = 0;
  std::string body;
};

std::string Encode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// One request; throws std::runtime_error when there is no answer.
Reply Request(const Options& options, const std::string& token, http::verb method,
              const std::string& target, const std::string& body) {
  const size_t colon = options.server.rfind(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument("--server must be HOST:PORT, not '" + options.server + "'");
  }
  const std::string host = options.server.substr(0, colon);
  const std::string port = options.server.substr(colon + 1);
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto deadline = std::chrono::seconds(options.timeout_s);

  http::request<http::string_body> request(method, target, 11);
  request.set(http::field::host, host);
  request.set(http::field::user_agent, "fedge-ctl");
  request.set(http::field::authorization, "Bearer " + token);
  if (method == http::verb::post) {
    request.set(http::field::content_type, "application/json");
    request.body() = body;
  }
  request.prepare_payload();
  http::response<http::string_body> response;
  beast::flat_buffer buffer;
  const auto endpoints = resolver.resolve(host, port);
  if (options.insecure) {
    beast::tcp_stream stream(io);
    stream.expires_after(deadline);
    stream.connect(endpoints);
    http::write(stream, request);
    http::read(stream, buffer, response);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  } else {
    ssl::context context(ssl::context::tls_client);
    context.set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                        ssl::context::no_tlsv1_1);
    context.load_verify_file(options.ca);
    context.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, context);
    stream.set_verify_callback(ssl::host_name_verification(host));
    if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) {
      throw std::runtime_error("cannot set the TLS server name");
    }
    beast::get_lowest_layer(stream).expires_after(deadline);
    beast::get_lowest_layer(stream).connect(endpoints);
    stream.handshake(ssl::stream_base::client);
    http::write(stream, request);
    http::read(stream, buffer, response);
    beast::error_code ignored;
    stream.shutdown(ignored);
  }
  return Reply{static_cast<int>(response.result_int()), response.body()};
}

std::string Time(int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%SZ", &tm);
  return text;
}

std::string Num(const json& v, int digits = 4) {
  if (v.is_null()) return "-";
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number()) return absl::StrFormat("%.*f", digits, v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void PrintRound(const json& r) {
  if (!r["open"].get<bool>()) {
    std::cout << absl::StrFormat(
        "no round open (%s); next round %s; %s devices available, %s "
        "needed; %s rounds closed%s\n",
        r["phase"].get<std::string>(), Num(r["next_round"]), Num(r["devices_available"]),
        Num(r["min_clients"]), Num(r["closed_rounds"]),
        r["paused"].get<bool>() ? "; rounds are PAUSED" : "");
    return;
  }
  const json& x = r["round"];
  std::cout << absl::StrFormat(
      "round %s on version %s: %s, %s of %s updates (goal %s), deadline %s%s\n", Num(x["round"]),
      Num(x["model_version"]), r["phase"].get<std::string>(), Num(x["reported"]),
      Num(x["selected"]), Num(r["goal"]), Time(r["deadline_at_ms"].get<int64_t>()),
      r["paused"].get<bool>() ? " (paused: no round after this one)" : "");
}

void Print(const std::string& command, const json& j) {
  if (command == "status") {
    const json& d = j["devices"];
    std::cout << absl::StrFormat("latest version   %s (live: %s)\n", Num(j["latest_version"]),
                                 Num(j["live_version"]));
    std::cout << absl::StrFormat("accuracy         %s (%s), loss %s\n", Num(j["accuracy"]),
                                 j["accuracy_source"].get<std::string>().empty()
                                     ? "no figures yet"
                                     : j["accuracy_source"].get<std::string>(),
                                 Num(j["loss"]));
    std::cout << absl::StrFormat(
        "devices          %s: %s active, %s idle, %s gone, %s revoked, %s with "
        "drift\n",
        Num(d["total"]), Num(d["active"]), Num(d["idle"]), Num(d["gone"]), Num(d["revoked"]),
        Num(d["with_drift"]));
    std::cout << absl::StrFormat("privacy          epsilon %s %s\n", Num(j["epsilon"]["spent"], 2),
                                 j["epsilon"]["budget"].is_null()
                                     ? std::string("(no budget)")
                                     : absl::StrCat("of ", Num(j["epsilon"]["budget"], 2)));
    std::cout << absl::StrFormat("rounds           %s closed, %s failed\n",
                                 Num(j["rounds"]["closed"]), Num(j["rounds"]["failed"]));
    std::cout << absl::StrFormat("alerts           %s (events up to #%s)\n", Num(j["alerts"]),
                                 Num(j["last_event"]));
    std::cout << "round            ";
    PrintRound(j["round"]);
  } else if (command == "round") {
    PrintRound(j);
  } else if (command == "rounds") {
    std::cout << absl::StrFormat("%-6s %-8s %-7s %-8s %-8s %-7s %-12s %-12s %-9s %s\n", "round",
                                 "version", "outcome", "selected", "reported", "dropped",
                                 "bytes_up", "bytes_down", "secs", "new_version/reason");
    for (const json& r : j["rounds"]) {
      std::cout << absl::StrFormat(
          "%-6s %-8s %-7s %-8s %-8s %-7s %-12s %-12s %-9.1f %s\n", Num(r["round"]),
          Num(r["model_version"]), r["outcome"].get<std::string>(), Num(r["selected"]),
          Num(r["reported"]), Num(r["dropped"]), Num(r["bytes_up"]), Num(r["bytes_down"]),
          r["duration_ms"].get<double>() / 1000.0,
          r["outcome"] == "closed" ? Num(r["new_version"]) : r["reason"].get<std::string>());
    }
  } else if (command == "devices") {
    std::cout << absl::StrFormat("%-24s %-8s %-20s %-7s %-9s %-9s %-8s %s\n", "device", "status",
                                 "last_seen", "version", "accepted", "refused", "failed",
                                 "last_drift");
    for (const json& d : j["devices"]) {
      std::cout << absl::StrFormat(
          "%-24s %-8s %-20s %-7s %-9s %-9s %-8s %s\n", d["id"].get<std::string>(),
          d["status"].get<std::string>(), Time(d["last_seen_ms"].get<int64_t>()),
          Num(d["model_version"]), Num(d["updates_accepted"]),
          Num(d["failures"]["updates_refused"]), Num(d["failures"]["tasks_failed"]),
          d["last_drift"].is_null()
              ? "-"
              : absl::StrCat(d["last_drift"]["detector"].get<std::string>(), "/",
                             d["last_drift"]["stream"].get<std::string>(), " ",
                             Time(d["last_drift"]["time_ms"].get<int64_t>())));
    }
    const size_t shown = j["devices"].size();
    const size_t offset = j["offset"].get<size_t>();
    std::cout << absl::StrFormat("%d-%d of %s devices\n", shown == 0 ? 0 : offset + 1,
                                 offset + shown, Num(j["total"]));
  } else if (command == "versions") {
    std::cout << absl::StrFormat("%-8s %-7s %-6s %-12s %-10s %-11s %-9s %-10s %s\n", "version",
                                 "parent", "round", "status", "accuracy", "int8_bytes", "signature",
                                 "served", "note/reason");
    for (const json& v : j["versions"]) {
      const json& m = v["metrics"];
      const json accuracy = m.contains("validation_accuracy")      ? m["validation_accuracy"]
                            : m.contains("clients_train_accuracy") ? m["clients_train_accuracy"]
                                                                   : json(nullptr);
      std::string note = v["note"].get<std::string>();
      if (!v["status_reason"].get<std::string>().empty()) {
        note += (note.empty() ? "" : "; ") + v["status_reason"].get<std::string>();
      }
      const std::string signature = v["signature"].get<std::string>();
      std::cout << absl::StrFormat(
          "%-8s %-7s %-6s %-12s %-10s %-11s %-9s %-10s %s\n", Num(v["version"]), Num(v["parent"]),
          Num(v["round"]), v["status"].get<std::string>(), Num(accuracy), Num(v["artifact_bytes"]),
          signature == "verified" ? "ok" : "BAD", v["served"].get<bool>() ? "yes" : "no", note);
      if (signature != "verified") std::cout << "         signature: " << signature << "\n";
    }
  } else if (command == "events") {
    for (const json& e : j["events"]) {
      std::cout << absl::StrFormat("#%-6s %s %-7s %-22s %s\n", Num(e["sequence"]),
                                   Time(e["time_ms"].get<int64_t>()), e["level"].get<std::string>(),
                                   e["kind"].get<std::string>(), e["message"].get<std::string>());
    }
  } else if (command == "revoke") {
    std::cout << "revoked " << j["device"].get<std::string>() << "\n";
  } else if (command == "pause" || command == "resume") {
    std::cout << (j["paused"].get<bool>() ? "rounds paused (an open round finishes)\n"
                                          : "rounds resumed\n");
  } else if (command == "promote") {
    std::cout << "version " << Num(j["version"]) << " is live\n";
  } else if (command == "rollback") {
    std::cout << "published version " << Num(j["version"]) << " = the model of version "
              << Num(j["rolled_back_to"]) << "\n";
  }
}

int Usage(const std::string& message) {
  std::cerr << "fedge-ctl: error: " << message << " (fedge-ctl --help)\n";
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("fedge-ctl %s\n", FEDGE_VERSION_STRING);
    return 0;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  Options options;
  if (const char* server = std::getenv("FEDGE_OPS_SERVER"); server != nullptr) {
    options.server = server;
  } else {
    options.server = "127.0.0.1:9443";
  }
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  // command flags
  static const std::map<std::string, std::vector<std::string>> kCommandFlags = {
      {"status", {}},
      {"round", {}},
      {"rounds", {"--limit"}},
      {"devices", {"--offset", "--limit", "--filter", "--status", "--drift"}},
      {"versions", {"--limit"}},
      {"events", {"--after", "--limit", "--kind"}},
      {"revoke", {"--reason"}},
      {"pause", {"--reason"}},
      {"resume", {"--reason"}},
      {"promote", {"--reason"}},
      {"rollback", {"--reason"}},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "help") {
      std::cout << kUsageText;
      return 0;
    }
    if (arg == "--insecure") {
      options.insecure = true;
      continue;
    }
    if (arg == "--json") {
      options.json = true;
      continue;
    }
    if (arg.rfind("--", 0) == 0) {
      if (i + 1 >= args.size()) return Usage(arg + " needs a value");
      const std::string value = args[++i];
      if (arg == "--server") {
        options.server = value;
      } else if (arg == "--ca") {
        options.ca = value;
      } else if (arg == "--token-file") {
        options.token_file = value;
      } else if (arg == "--timeout-s") {
        if (!absl::SimpleAtoi(value, &options.timeout_s) || options.timeout_s < 1) {
          return Usage("--timeout-s needs an integer >= 1");
        }
      } else {
        flags[arg] = value;
      }
      continue;
    }
    if (command.empty()) {
      command = arg;
    } else {
      positional.push_back(arg);
    }
  }
  if (command.empty()) return Usage("no command given");
  auto known = kCommandFlags.find(command);
  if (known == kCommandFlags.end()) return Usage("unknown command '" + command + "'");
  for (const auto& [flag, value] : flags) {
    if (std::find(known->second.begin(), known->second.end(), flag) == known->second.end()) {
      return Usage("unknown flag " + flag + " for " + command);
    }
  }
  const bool takes_argument = command == "revoke" || command == "promote" || command == "rollback";
  if (positional.size() != (takes_argument ? 1u : 0u)) {
    return Usage(takes_argument ? command + " takes one " +
                                      (command == "revoke" ? "device id" : "version number")
                                : command + " takes no argument");
  }
  if (command == "promote" || command == "rollback") {
    uint64_t version;
    if (!absl::SimpleAtoi(positional[0], &version)) {
      return Usage("'" + positional[0] + "' is not a version number");
    }
  }
  for (const char* numeric : {"--limit", "--offset", "--after"}) {
    uint64_t v;
    if (auto it = flags.find(numeric); it != flags.end() && !absl::SimpleAtoi(it->second, &v)) {
      return Usage(std::string(numeric) + " needs a non-negative integer");
    }
  }
  if (auto it = flags.find("--status");
      it != flags.end() && it->second != "active" && it->second != "idle" &&
      it->second != "gone" && it->second != "revoked") {
    return Usage("--status needs active, idle, gone or revoked");
  }
  if (auto it = flags.find("--drift");
      it != flags.end() && it->second != "yes" && it->second != "no") {
    return Usage("--drift needs yes or no");
  }
  if (!options.insecure && options.ca.empty()) {
    return Usage("--ca FILE is required to verify the aggregator's certificate (or --insecure)");
  }

  std::string token;
  if (!options.token_file.empty()) {
    std::ifstream in(options.token_file);
    if (!in) return Usage("cannot read the token file " + options.token_file);
    std::getline(in, token);
  } else if (const char* env = std::getenv("FEDGE_OPS_TOKEN"); env != nullptr) {
    token = env;
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) return Usage("no operator token: --token-file FILE or FEDGE_OPS_TOKEN");

  http::verb method = http::verb::get;
  std::string target;
  json body = json::object();
  if (auto it = flags.find("--reason"); it != flags.end()) body["reason"] = it->second;
  auto query = [&](std::initializer_list<std::pair<const char*, const char*>> names) {
    std::string q;
    for (const auto& [flag, param] : names) {
      if (auto it = flags.find(flag); it != flags.end()) {
        absl::StrAppend(&q, q.empty() ? "?" : "&", param, "=", Encode(it->second));
      }
    }
    return q;
  };
  if (command == "status") {
    target = "/api/overview";
  } else if (command == "round") {
    target = "/api/round";
  } else if (command == "rounds") {
    target = "/api/rounds" + query({{"--limit", "limit"}});
  } else if (command == "devices") {
    target = "/api/devices" + query({{"--offset", "offset"},
                                     {"--limit", "limit"},
                                     {"--filter", "q"},
                                     {"--status", "status"},
                                     {"--drift", "drift"}});
  } else if (command == "versions") {
    target = "/api/versions" + query({{"--limit", "limit"}});
  } else if (command == "events") {
    target =
        "/api/events" + query({{"--after", "after"}, {"--limit", "limit"}, {"--kind", "kind"}});
  } else {
    method = http::verb::post;
    if (command == "revoke") target = "/api/devices/" + Encode(positional[0]) + "/revoke";
    if (command == "pause") target = "/api/rounds/pause";
    if (command == "resume") target = "/api/rounds/resume";
    if (command == "promote") target = "/api/versions/" + positional[0] + "/promote";
    if (command == "rollback") target = "/api/versions/" + positional[0] + "/rollback";
  }

  Reply reply;
  try {
    reply = Request(options, token, method, target, body.dump());
  } catch (const std::invalid_argument& e) {
    return Usage(e.what());
  } catch (const std::exception& e) {
    std::cerr << "fedge-ctl: error: no answer from " << options.server << ": " << e.what() << "\n";
    return kNoAnswer;
  }
  json answer = json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (reply.status != 200) {
    const std::string message = !answer.is_discarded() && answer.contains("error")
                                    ? answer["error"].get<std::string>()
                                    : reply.body;
    std::cerr << "fedge-ctl: the aggregator refused (HTTP " << reply.status << "): " << message
              << "\n";
    return kRefused;
  }
  if (answer.is_discarded()) {
    std::cerr << "fedge-ctl: error: the answer is not JSON\n";
    return kNoAnswer;
  }
  if (options.json) {
    std::cout << answer.dump(2) << "\n";
    return 0;
  }
  try {
    Print(command, answer);
  } catch (const json::exception& e) {
    std::cerr << "fedge-ctl: error: unexpected answer (" << e.what() << "); try --json\n";
    return kNoAnswer;
  }
  return 0;
}
