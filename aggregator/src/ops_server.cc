#include "fedge/aggregator/ops_server.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/models/certificates.h"
#include "fedge/models/pkcs11.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "nlohmann/json.hpp"

namespace fedge::aggregator {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kMaxBodyBytes = 64 << 10;

std::string PercentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%' && i + 2 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// The non-empty pieces of `text` between `separator`s. (Debian's Abseil has
// its own string_view, so absl::StrSplit does not take std::string_view.)
std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string_view> Segments(std::string_view path) { return Split(path, '/'); }

std::string_view Strip(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

OpsResponse OpsResponse::Error(int status, const std::string& message) {
  OpsResponse response;
  response.status = status;
  response.body = nlohmann::json{{"error", std::string(message)}}.dump();
  return response;
}

class OpsHttpServer::Impl {
 public:
  Impl(OpsServerOptions options, std::vector<OpsRoute> routes)
      : options_(std::move(options)),
        routes_(std::move(routes)),
        ssl_(ssl::context::tls_server),
        acceptor_(io_) {}

  ~Impl() {
    asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    io_.stop();
    for (std::thread& t : threads_) t.join();
  }

  absl::Status Listen() {
    const std::string& address = options_.listen;
    if (options_.token.size() < 16) {
      return absl::InvalidArgumentError("the operator token must have at least 16 characters");
    }
    if (options_.threads < 1 || options_.max_connections < 1 || options_.io_timeout.count() <= 0) {
      return absl::InvalidArgumentError(
          "ops server: threads and max_connections must be >= 1 and io_timeout > 0");
    }
    const size_t colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
        port < 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops address '", address, "' is not host:port"));
    }
    std::string host = address.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (host == "localhost") host = "127.0.0.1";
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(host, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops address '", address, "': ", ec.message()));
    }
    if (options_.cert_file.empty() != options_.key_file.empty()) {
      return absl::InvalidArgumentError("ops server: TLS needs both a certificate and a key");
    }
    tls_ = !options_.cert_file.empty();
    if (tls_) {
      ssl_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use);
      ssl_.use_certificate_chain_file(options_.cert_file.string(), ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ops server: certificate ", options_.cert_file.string(), ": ", ec.message()));
      }
      if (models::IsPkcs11Uri(options_.key_file.string())) {
        // The aggregator's TLS key on a PKCS#11 token (docs/security.md).
        absl::StatusOr<models::TlsPrivateKey> key =
            models::TlsPrivateKey::Load(options_.key_file.string());
        if (!key.ok()) {
          return absl::Status(key.status().code(),
                              absl::StrCat("ops server: key: ", key.status().message()));
        }
        if (SSL_CTX_use_PrivateKey(ssl_.native_handle(), key->evp_pkey()) != 1) {
          return absl::InvalidArgumentError("ops server: the token key does not fit the certificate");
        }
      } else {
        ssl_.use_private_key_file(options_.key_file.string(), ssl::context::pem, ec);
      }
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("ops server: key ", options_.key_file.string(), ": ", ec.message()));
      }
    }
    const tcp::endpoint endpoint(ip, static_cast<unsigned short>(port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve the ops endpoint on ", address, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { io_.run(); });
    return absl::OkStatus();
  }

  int port() const { return port_; }
  bool tls() const { return tls_; }

  // Routes the request (token, method, pattern) and runs its handler.
  OpsResponse Handle(const http::request<http::string_body>& request) const {
    OpsRequest ops;
    ops.method = std::string(request.method_string());
    const std::string_view target(request.target().data(), request.target().size());
    const size_t q = target.find('?');
    ops.path = PercentDecode(target.substr(0, q), false);
    if (q != std::string_view::npos) {
      for (std::string_view pair : Split(target.substr(q + 1), '&')) {
        const size_t eq = pair.find('=');
        ops.query[PercentDecode(pair.substr(0, eq), true)] =
            eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
      }
    }
    ops.body = request.body();
    const std::vector<std::string_view> path = Segments(ops.path);
    std::vector<std::string> allowed;
    for (const OpsRoute& route : routes_) {
      const std::vector<std::string_view> pattern = Segments(route.pattern);
      if (pattern.size() != path.size()) continue;
      std::vector<std::string> params;
      bool match = true;
      for (size_t i = 0; i < pattern.size() && match; ++i) {
        if (pattern[i] == "{}") {
          params.emplace_back(path[i]);
        } else {
          match = pattern[i] == path[i];
        }
      }
      if (!match) continue;
      if (route.method != ops.method) {
        allowed.push_back(route.method);
        continue;
      }
      if (route.access == OpsAccess::kToken && !Authorized(request)) {
        OpsResponse denied = OpsResponse::Error(
            401, "this endpoint needs the operator token: Authorization: Bearer <token>");
        denied.headers["WWW-Authenticate"] = "Bearer realm=\"fedge\"";
        return denied;
      }
      ops.params = std::move(params);
      try {
        return route.handler(ops);
      } catch (const std::exception& e) {  // a handler bug must not kill the server
        LogEvent("error", "ops_handler_failed", {{"path", ops.path}}, e.what());
        return OpsResponse::Error(500, absl::StrCat("internal error: ", e.what()));
      }
    }
    if (!allowed.empty()) {
      OpsResponse response =
          OpsResponse::Error(405, absl::StrCat(ops.method, " is not allowed on ", ops.path,
                                               "; use ", absl::StrJoin(allowed, ", ")));
      response.headers["Allow"] = absl::StrJoin(allowed, ", ");
      return response;
    }
    return OpsResponse::Error(404, absl::StrCat("no such endpoint: ", ops.path));
  }

  const OpsServerOptions& options() const { return options_; }
  std::atomic<int>& open_connections() { return open_; }

 private:
  bool Authorized(const http::request<http::string_body>& request) const {
    auto it = request.find(http::field::authorization);
    if (it == request.end()) return false;
    const std::string_view value(it->value().data(), it->value().size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.size() <= kBearer.size()) return false;
    for (size_t i = 0; i < kBearer.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(value[i])) !=
          std::tolower(static_cast<unsigned char>(kBearer[i]))) {
        return false;
      }
    }
    const std::string_view presented = Strip(value.substr(kBearer.size()));
    const std::string& token = options_.token;
    return presented.size() == token.size() &&
           CRYPTO_memcmp(presented.data(), token.data(), token.size()) == 0;
  }

  void Accept();

  const OpsServerOptions options_;
  const std::vector<OpsRoute> routes_;
  asio::io_context io_;
  ssl::context ssl_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::atomic<int> open_{0};
  int port_ = 0;
  bool tls_ = false;
};

namespace {

// One connection: an optional TLS handshake, then requests until the client
// closes, asks to close, or stays silent past the deadline.
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <typename... Args>
  Session(OpsHttpServer::Impl* server, Args&&... args)
      : server_(server), stream_(std::forward<Args>(args)...) {
    server_->open_connections() += 1;
  }
  ~Session() { server_->open_connections() -= 1; }

  void Start() {
    if constexpr (kTls) {
      Deadline();
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (!ec) self->Read();
                              });
    } else {
      Read();
    }
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  void Deadline() { beast::get_lowest_layer(stream_).expires_after(server_->options().io_timeout); }

  void Read() {
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    Deadline();
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec == http::error::body_limit) {
                         self->Respond(OpsResponse::Error(413, "request body too large"), 11,
                                       false);
                       } else if (ec) {
                         self->Close();
                       } else {
                         self->OnRequest();
                       }
                     });
  }

  void OnRequest() {
    http::request<http::string_body> request = parser_->release();
    Respond(server_->Handle(request), request.version(), request.keep_alive());
  }

  void Respond(OpsResponse ops, unsigned version, bool keep_alive) {
    response_ = {};
    response_.version(version);
    response_.result(static_cast<http::status>(ops.status));
    response_.set(http::field::server, "fedge-aggregator");
    response_.set(http::field::content_type, ops.content_type);
    response_.set(http::field::cache_control, "no-store");
    response_.set("X-Content-Type-Options", "nosniff");
    response_.set("Referrer-Policy", "no-referrer");
    for (const auto& [name, value] : ops.headers) response_.set(name, value);
    response_.body() = std::move(ops.body);
    response_.keep_alive(keep_alive);
    response_.prepare_payload();
    Deadline();
    http::async_write(stream_, response_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (ec || !self->response_.keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    if constexpr (kTls) {
      Deadline();
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    } else {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  OpsHttpServer::Impl* server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
};

}  // namespace

void OpsHttpServer::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      // Without TCP_NODELAY a response larger than one TLS record (16 KiB)
      // waited ~40 ms for the client's delayed ACK (bench/ops_bench.cc).
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (open_.load() >= options_.max_connections) {
        socket.close(ignored);
      } else if (tls_) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(this, std::move(socket),
                                                                        ssl_)
            ->Start();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket))->Start();
      }
    }
    Accept();
  });
}

absl::StatusOr<std::unique_ptr<OpsHttpServer>> OpsHttpServer::Start(OpsServerOptions options,
                                                                    std::vector<OpsRoute> routes) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(routes));
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  return std::unique_ptr<OpsHttpServer>(new OpsHttpServer(std::move(impl)));
}

OpsHttpServer::OpsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OpsHttpServer::~OpsHttpServer() = default;
int OpsHttpServer::port() const { return impl_->port(); }
bool OpsHttpServer::tls() const { return impl_->tls(); }

absl::StatusOr<std::string> LoadOrCreateOpsToken(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
      return absl::InternalError("RAND_bytes failed to make an operator token");
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string token;
    for (unsigned char b : bytes) {
      token.push_back(kHex[b >> 4]);
      token.push_back(kHex[b & 15]);
    }
    if (absl::Status s = proto::WriteFileAtomic(path, token + "\n", 0600); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("operator token file: ", s.message()));
    }
    LogEvent("info", "ops_token_created", {{"file", path.string()}});
    return token;
  }
  absl::StatusOr<std::string> text = proto::ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("operator token file: ", text.status().message()));
  }
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("operator token file ", path.string(), " holds fewer than 16 characters"));
  }
  return token;
}

}  // namespace fedge::aggregator
