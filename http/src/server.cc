// The socket side: Boost.Beast HTTP/1.1 (over TLS when the node has a [tls] certificate)
// on one thread of its own (pxs-http). Requests
// are answered one at a time by Api; the access log line names the route template,
// never the path or query (they can hold patient ids and names).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "pxs/common/thread_name.h"
#include "fhir.h"
#include "pxs/http/server.h"

namespace pxs::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr auto kIdleTimeout = std::chrono::seconds(30);

// One connection; Stream is beast::tcp_stream (plain) or beast::ssl_stream<tcp_stream>.
// A TLS session holds the context it was accepted with, so that a certificate reload
// (SIGHUP) replaces the server's context for new connections while running ones keep
// theirs until they close.
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <typename... Args>
  Session(Api* api, std::atomic<int>* open, std::shared_ptr<asio::ssl::context> tls, Args&&... stream_args)
      : tls_(std::move(tls)), stream_(std::forward<Args>(stream_args)...), api_(api), open_(open) {
    open_->fetch_add(1);
  }
  ~Session() { open_->fetch_sub(1); }

  void Run() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      Read();
    } else {
      beast::get_lowest_layer(stream_).expires_after(kIdleTimeout);
      stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) {
          spdlog::info("http: TLS handshake failed: {}", ec.message());
          return;
        }
        self->Read();
      });
    }
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(api_->options().max_target_bytes + 8192));
    // The larger of the two: Api::Handle applies each to its own paths.
    parser_->body_limit(api_->options().record_observations
                            ? std::max(api_->options().max_body_bytes, api_->options().max_fhir_body_bytes)
                            : api_->options().max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(kIdleTimeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::connection_reset ||
        ec == asio::ssl::error::stream_truncated) {
      return Close();
    }
    const auto started = std::chrono::steady_clock::now();
    Response response;
    bool keep_alive = false;
    unsigned version = 11;
    if (ec == bhttp::error::body_limit || ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      response = Response{413, "application/json", "{\"error\": \"request too large\"}\n", "(too large)"};
      // A FHIR client reads OperationOutcome (the header was read; the target is known).
      if (ec == bhttp::error::body_limit && parser_->get().target().starts_with("/fhir")) {
        response = Response{413, kFhirJsonType,
                            OperationOutcomeJson("error", "too-costly",
                                                 "request body larger than " +
                                                     std::to_string(api_->options().max_fhir_body_bytes) + " bytes"),
                            "/fhir"};
      }
    } else if (ec) {
      response = Response{400, "application/json", "{\"error\": \"malformed HTTP request\"}\n", "(malformed)"};
    } else {
      const auto& req = parser_->get();
      keep_alive = req.keep_alive();
      version = req.version();
      Request r{std::string(req.method_string()), std::string(req.target()),
                std::string(req[bhttp::field::authorization]), req.body()};
      response = api_->Handle(r);
      method_ = r.method;
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    spdlog::info("http {} {} {} {:.1f} ms", method_.empty() ? "-" : method_, response.route, response.status, ms);
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(static_cast<bhttp::status>(response.status),
                                                                     version);
    res->set(bhttp::field::server, "pxsnode");
    res->set(bhttp::field::content_type, response.content_type);
    res->set(bhttp::field::cache_control, "no-store");
    res->set("X-Content-Type-Options", "nosniff");
    // The dashboard loads only its own files (no CDN, no inline script) and is never framed.
    res->set("Content-Security-Policy",
             "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
    if (response.status == 401) res->set(bhttp::field::www_authenticate, "Bearer");
    res->body() = std::move(response.body);
    res->keep_alive(keep_alive);
    res->prepare_payload();
    bhttp::async_write(stream_, *res,
                       [self = this->shared_from_this(), res, keep_alive](beast::error_code wec, size_t) {
                         if (wec || !keep_alive) return self->Close();
                         self->method_.clear();
                         self->Read();
                       });
  }

  void Close() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    } else {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    }
  }

  std::shared_ptr<asio::ssl::context> tls_;  // before stream_: outlives it
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Api* api_;
  std::atomic<int>* open_;  // the server's count of open connections
  std::string method_;
};

// A TLS 1.2+ server context with OpenSSL's default (Debian: security level 2) ciphers
// from the PEM certificate chain and key; fails naming the file when one cannot be
// used, when the key is not the certificate's, or when the certificate has expired or
// is not valid yet (clients would refuse every handshake).
StatusOr<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const std::string& certificate,
                                                              const std::string& private_key) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                   asio::ssl::context::single_dh_use);
  beast::error_code ec;
  ctx->use_certificate_chain_file(certificate, ec);
  if (ec) return Status::InvalidArgument("http: TLS certificate " + certificate + ": " + ec.message());
  ctx->use_private_key_file(private_key, asio::ssl::context::pem, ec);
  if (ec) return Status::InvalidArgument("http: TLS private key " + private_key + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return Status::InvalidArgument("http: TLS private key " + private_key + " does not belong to the certificate " +
                                   certificate);
  }
  X509* cert = SSL_CTX_get0_certificate(ctx->native_handle());
  if (cert == nullptr) return Status::InvalidArgument("http: TLS certificate " + certificate + ": no certificate");
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    return Status::InvalidArgument("http: TLS certificate " + certificate + " has expired");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
    return Status::InvalidArgument("http: TLS certificate " + certificate + " is not valid yet");
  }
  return ctx;
}

}  // namespace

struct Server::Impl {
  explicit Impl(Options o) : api(std::move(o)), acceptor(io) {}
  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec && open.load() >= api.options().max_connections) {
        // A flood of idle connections must not pile up: close at once (clients retry).
        beast::error_code ignored;
        socket.close(ignored);
      } else if (!ec && https) {
        std::shared_ptr<asio::ssl::context> ctx = CurrentTls();
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(&api, &open, ctx, std::move(socket), *ctx)
            ->Run();
      } else if (!ec) {
        std::make_shared<Session<beast::tcp_stream>>(&api, &open, nullptr, std::move(socket))->Run();
      }
      Accept();
    });
  }
  std::shared_ptr<asio::ssl::context> CurrentTls() {
    std::lock_guard<std::mutex> lock(tls_mutex);
    return tls;
  }
  Api api;
  bool https = false;  // fixed at Start(): a reload replaces the context, never turns TLS on or off
  std::mutex tls_mutex;  // tls: replaced by ReloadTls (signal thread), read on accept (server thread)
  std::shared_ptr<asio::ssl::context> tls;
  std::atomic<int> open{0};
  asio::io_context io;
  tcp::acceptor acceptor;
  std::thread thread;
  uint16_t port = 0;
};

Server::Server(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Server::~Server() { Stop(); }

Status Server::Start() {
  const Options& o = impl_->api.options();
  beast::error_code ec;
  if (!o.tls_certificate.empty()) {
    PXS_ASSIGN_OR_RETURN(impl_->tls, MakeTlsContext(o.tls_certificate, o.tls_private_key));
    impl_->https = true;
  }
  const auto address = asio::ip::make_address(o.bind, ec);
  if (ec) return Status::InvalidArgument("[http] bind: not an IP address: " + o.bind);
  tcp::endpoint endpoint(address, o.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IoError("http: cannot listen on " + o.bind + ":" + std::to_string(o.port) + ": " + ec.message());
  impl_->port = acc.local_endpoint().port();
  impl_->Accept();
  impl_->thread = std::thread([this] {
    NameThisThread("pxs-http");
    impl_->io.run();
  });
  return Status::Ok();
}

void Server::Stop() {
  if (!impl_->thread.joinable()) return;
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t Server::port() const { return impl_->port; }
void Server::SetTokens(std::vector<Token> tokens) { impl_->api.SetTokens(std::move(tokens)); }

Status Server::ReloadTls(const std::string& certificate, const std::string& private_key) {
  if (!impl_->https) return Status::Unsupported("http: serving plain HTTP; turning HTTPS on needs a restart");
  PXS_ASSIGN_OR_RETURN(std::shared_ptr<asio::ssl::context> ctx, MakeTlsContext(certificate, private_key));
  std::lock_guard<std::mutex> lock(impl_->tls_mutex);
  impl_->tls = std::move(ctx);
  return Status::Ok();
}

}  // namespace pxs::http
