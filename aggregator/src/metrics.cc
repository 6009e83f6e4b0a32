#include "fedge/aggregator/metrics.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fedge::aggregator {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

void Metric(std::string& out, const char* name, const char* type, const char* help,
            const std::string& samples) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", samples);
}

}  // namespace

void AggregatorMetrics::CountAlert(const std::string& rule) {
  size_t i = 0;
  while (i + 1 < std::size(kAlertRules) && rule != kAlertRules[i]) ++i;
  alerts[i] += 1;
}

std::string AggregatorMetrics::RenderPrometheus() const {
  std::string out;
  Metric(out, "fedge_rollouts_total", "counter",
         "Gated-rollout decisions on new versions: promoted (went live), rejected by "
         "validation, rolled back after their canary.",
         absl::StrCat("fedge_rollouts_total{outcome=\"promoted\"} ", rollouts_promoted.load(), "\n",
                      "fedge_rollouts_total{outcome=\"rejected_validation\"} ",
                      rollouts_rejected.load(), "\n",
                      "fedge_rollouts_total{outcome=\"rolled_back_canary\"} ",
                      rollouts_rolled_back.load(), "\n"));
  std::string alert_samples;
  for (size_t i = 0; i < std::size(kAlertRules); ++i) {
    absl::StrAppend(&alert_samples, "fedge_alerts_total{rule=\"", kAlertRules[i], "\"} ",
                    alerts[i].load(), "\n");
  }
  Metric(out, "fedge_alerts_total", "counter", "Operator alerts raised, by rule.", alert_samples);
  Metric(out, "fedge_live_model_version", "gauge", "The model version every device is served.",
         absl::StrCat("fedge_live_model_version ", live_version.load(), "\n"));
  // Only once the live version was evaluated (no validation set: absent).
  if (const double accuracy = live_validation_accuracy.load(); !std::isnan(accuracy)) {
    Metric(out, "fedge_live_model_validation_accuracy", "gauge",
           "Validation-set accuracy of the live version.",
           absl::StrCat("fedge_live_model_validation_accuracy ", accuracy, "\n"));
  }
  Metric(out, "fedge_rounds_total", "counter", "Rounds by outcome (opened, closed, failed).",
         absl::StrCat("fedge_rounds_total{outcome=\"opened\"} ", rounds_opened.load(), "\n",
                      "fedge_rounds_total{outcome=\"closed\"} ", rounds_closed.load(), "\n",
                      "fedge_rounds_total{outcome=\"failed\"} ", rounds_failed.load(), "\n"));
  Metric(out, "fedge_updates_total", "counter", "Device updates by verdict.",
         absl::StrCat("fedge_updates_total{verdict=\"accepted\"} ", updates_accepted.load(), "\n",
                      "fedge_updates_total{verdict=\"refused\"} ", updates_refused.load(), "\n"));
  // The metrics with one unlabelled sample.
  struct Single {
    const char* name;
    const char* type;
    const char* help;
    uint64_t value;
  };
  for (const Single& m : {
           Single{"fedge_clients_joined_total", "counter", "Join calls of authenticated devices.",
                  clients_joined.load()},
           Single{"fedge_clients_selected_total", "counter", "Devices selected into cohorts.",
                  clients_selected.load()},
           Single{"fedge_clients_available", "gauge", "Devices polling when the last round opened.",
                  clients_available.load()},
           Single{"fedge_update_received_bytes_total", "counter",
                  "Serialized bytes of accepted updates (secure-aggregation messages included).",
                  update_bytes_received.load()},
           Single{"fedge_model_downloads_total", "counter", "Model downloads started.",
                  model_downloads.load()},
           Single{"fedge_drift_reports_total", "counter", "Drift reports recorded.",
                  drift_reports.load()},
           Single{"fedge_secagg_messages_total", "counter",
                  "Secure-aggregation protocol messages accepted.", secagg_messages.load()},
           Single{"fedge_model_version", "gauge", "Newest published model version.",
                  model_version.load()},
           Single{"fedge_round_open", "gauge", "1 while a round is open.",
                  static_cast<uint64_t>(round_open.load())},
       }) {
    Metric(out, m.name, m.type, m.help, absl::StrCat(m.name, " ", m.value, "\n"));
  }
  Metric(out, "fedge_round_close_seconds", "gauge",
         "Time the last round took to aggregate, publish and store its version.",
         absl::StrFormat("fedge_round_close_seconds %.6f\n", last_close_seconds.load()));
  return out;
}

class MetricsHttpServer::Impl {
 public:
  Impl(const AggregatorMetrics* metrics) : metrics_(metrics), acceptor_(io_) {}

  absl::Status Listen(const std::string& address) {
    const size_t colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
        port < 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics address '", address, "' is not host:port"));
    }
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(address.substr(0, colon), ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics address '", address, "': ", ec.message()));
    }
    const tcp::endpoint endpoint(ip, static_cast<unsigned short>(port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", address, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return absl::OkStatus();
  }

  ~Impl() {
    asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      Serve(std::move(socket));
      Accept();
    });
  }

  // One request per connection. Reads and writes give up after two
  // seconds, so a client that connects and sends nothing cannot hold the
  // endpoint.
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(tcp::socket socket, const AggregatorMetrics* metrics)
        : stream_(std::move(socket)), metrics_(metrics) {}
    void Start() {
      stream_.expires_after(std::chrono::seconds(2));
      http::async_read(stream_, buffer_, request_,
                       [self = shared_from_this()](boost::system::error_code ec, size_t) {
                         if (!ec) self->Respond();
                       });
    }

   private:
    void Respond() {
      response_.version(request_.version());
      response_.keep_alive(false);
      if (request_.method() != http::verb::get) {
        response_.result(http::status::method_not_allowed);
        response_.body() = "only GET\n";
      } else if (request_.target() != "/metrics") {
        response_.result(http::status::not_found);
        response_.body() = "not found; try /metrics\n";
      } else {
        response_.result(http::status::ok);
        response_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        response_.body() = metrics_->RenderPrometheus();
      }
      response_.prepare_payload();
      stream_.expires_after(std::chrono::seconds(2));
      http::async_write(stream_, response_,
                        [self = shared_from_this()](boost::system::error_code, size_t) {
                          boost::system::error_code ignored;
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                        });
    }

    beast::tcp_stream stream_;
    const AggregatorMetrics* metrics_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> request_;
    http::response<http::string_body> response_;
  };

  void Serve(tcp::socket socket) {
    std::make_shared<Session>(std::move(socket), metrics_)->Start();
  }

  const AggregatorMetrics* metrics_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  int port_ = 0;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const AggregatorMetrics* metrics) {
  auto impl = std::make_unique<Impl>(metrics);
  if (absl::Status s = impl->Listen(address); !s.ok()) return s;
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsHttpServer::~MetricsHttpServer() = default;
int MetricsHttpServer::port() const { return impl_->port(); }

}  // namespace fedge::aggregator
