// OpsHttpServer: the aggregator's operations endpoint (Boost.Beast), on its
// own port, loopback unless configured otherwise. It serves a fixed table of
// routes (OpsRoute): the Prometheus /metrics text, the JSON status and admin
// API under /api/, and the dashboard's static files.
//
//   GET  /metrics                     Prometheus text format (token unless metrics_public)
//   GET  /api/...                     JSON status API              (token)
//   POST /api/...                     JSON admin API               (token)
//   GET  /, /app.js, /style.css       the dashboard (public: it holds no data)
//
// Security:
//  * TLS (TLS 1.2+) with the aggregator's own certificate and key whenever
//    the aggregator serves devices over TLS; plain HTTP only with --insecure.
//  * Routes marked OpsAccess::kToken need "Authorization: Bearer <token>";
//    the token is compared in constant time (CRYPTO_memcmp). A missing or
//    wrong token gets 401 with a JSON error and `WWW-Authenticate: Bearer`.
//
// Errors are JSON: {"error": "..."} with 400 (bad parameter, named), 401,
// 404 (unknown route or object), 405 (known route, other method; `Allow`
// lists the methods), 409 (refused in the current state), 500.
//
// Concurrency: `threads` threads run the connections (asynchronous reads and
// writes, so idle or slow clients hold no thread); handlers run on them and
// may block briefly (SQLite reads). HTTP/1.1 keep-alive is honoured. Every
// read and write has a deadline (`io_timeout`), so a client that connects
// and sends nothing is dropped. At most `max_connections` are open at once;
// further ones are closed at accept.
//
// Thread safety: the routes are fixed at Start; handlers must be safe to
// call concurrently.
#ifndef FEDGE_AGGREGATOR_OPS_SERVER_H_
#define FEDGE_AGGREGATOR_OPS_SERVER_H_

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge::aggregator {

struct OpsServerOptions {
  // host:port; port 0 picks a free port (see OpsHttpServer::port()).
  std::string listen = "127.0.0.1:0";
  // Certificate chain and private key (PEM; the key may be a PKCS#11 URI
  // instead, fedge/models/pkcs11.h). Both empty: plain HTTP.
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  // The operator token. REQUIRES: at least 16 characters.
  std::string token;
  // Default: 2.
  int threads = 2;
  std::chrono::milliseconds io_timeout{5'000};
  int max_connections = 256;
};

struct OpsRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-decoded
  // The {} segments of the route's pattern, in order (percent-decoded).
  std::vector<std::string> params;
  // Query parameters (percent-decoded; the last of repeated names wins).
  std::map<std::string, std::string> query;
  std::string body;
};

struct OpsResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;  // extra headers

  // {"error": message} with `status`.
  static OpsResponse Error(int status, const std::string& message);
};

enum class OpsAccess { kPublic, kToken };

struct OpsRoute {
  std::string method;
  // Literal segments and {} for one path parameter, e.g.
  // "/api/devices/{}/revoke".
  std::string pattern;
  OpsAccess access = OpsAccess::kToken;
  std::function<OpsResponse(const OpsRequest&)> handler;
};

class OpsHttpServer {
 public:
  // Listens and serves `routes`. INVALID_ARGUMENT for a listen address that
  // is not host:port, a short token or a bad option; UNAVAILABLE when the
  // address cannot be bound; the TLS files' errors name the file.
  static absl::StatusOr<std::unique_ptr<OpsHttpServer>> Start(OpsServerOptions options,
                                                              std::vector<OpsRoute> routes);
  ~OpsHttpServer();  // stops and joins; open connections are closed

  int port() const;
  bool tls() const;

  class Impl;

 private:
  explicit OpsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The operator token in `path`, or a new one written there (32 bytes from
// RAND_bytes, hex, file mode 0600) when the file does not exist. Surrounding
// whitespace is ignored. INVALID_ARGUMENT for a token shorter than 16
// characters; the file's read/write errors name it.
absl::StatusOr<std::string> LoadOrCreateOpsToken(const std::filesystem::path& path);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_OPS_SERVER_H_
