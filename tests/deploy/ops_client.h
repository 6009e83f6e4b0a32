// A small HTTPS client for the ops endpoint tests: one request per
// connection, verifying the server certificate (and host name) against the
// development CA.
#ifndef FEDGE_TESTS_DEPLOY_OPS_CLIENT_H_
#define FEDGE_TESTS_DEPLOY_OPS_CLIENT_H_

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>

namespace fedge::testing_util {

struct HttpReply {
  int status = 0;  // 0: no answer (see error)
  std::string body;
  std::map<std::string, std::string> headers;
  std::string error;
};

// `token` empty: no Authorization header. `ca` empty: plain HTTP.
inline HttpReply OpsRequest(int port, const std::string& method, const std::string& target,
                            const std::string& token, const std::filesystem::path& ca,
                            const std::string& body = "") {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  namespace ssl = asio::ssl;
  HttpReply reply;
  try {
    asio::io_context io;
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"),
                                     static_cast<unsigned short>(port));
    http::request<http::string_body> request(http::string_to_verb(method), target, 11);
    request.set(http::field::host, "localhost");
    if (!token.empty()) request.set(http::field::authorization, "Bearer " + token);
    request.body() = body;
    request.prepare_payload();
    http::response<http::string_body> response;
    beast::flat_buffer buffer;
    if (ca.empty()) {
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::seconds(10));
      stream.connect(endpoint);
      http::write(stream, request);
      http::read(stream, buffer, response);
    } else {
      ssl::context context(ssl::context::tls_client);
      context.load_verify_file(ca.string());
      context.set_verify_mode(ssl::verify_peer);
      beast::ssl_stream<beast::tcp_stream> stream(io, context);
      stream.set_verify_callback(ssl::host_name_verification("localhost"));
      SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
      beast::get_lowest_layer(stream).connect(endpoint);
      stream.handshake(ssl::stream_base::client);
      http::write(stream, request);
      http::read(stream, buffer, response);
    }
    reply.status = static_cast<int>(response.result_int());
    reply.body = response.body();
    for (const auto& field : response) {
      reply.headers[std::string(field.name_string())] = std::string(field.value());
    }
  } catch (const std::exception& e) {
    reply.error = e.what();
  }
  return reply;
}

}  // namespace fedge::testing_util

#endif  // FEDGE_TESTS_DEPLOY_OPS_CLIENT_H_
