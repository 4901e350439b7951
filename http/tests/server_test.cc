// The socket side: a real request over loopback, the cap on open connections, and the
// HTTPS certificate reload (new connections get the renewed certificate, open ones go on).
#include "pxs/http/server.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <filesystem>
#include <unistd.h>
#include <thread>

#include "../../tls/tests/test_certs.h"

namespace pxs::http {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string Exchange(tcp::socket& s, const std::string& request) {
  asio::write(s, asio::buffer(request));
  std::string out;
  boost::system::error_code ec;
  char buf[4096];
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

TEST(ServerTest, AnswersOverLoopbackAndClosesConnectionsBeyondTheCap) {
  Options o;
  o.port = 0;
  o.max_connections = 2;
  Server server(o);
  ASSERT_TRUE(server.Start().ok());
  asio::io_context io;
  const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), server.port());
  {
    tcp::socket s(io);
    s.connect(at);
    const std::string reply = Exchange(s, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
    EXPECT_NE(reply.find("Content-Security-Policy"), std::string::npos);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the closed session is gone
  tcp::socket idle1(io), idle2(io), third(io);
  idle1.connect(at);
  idle2.connect(at);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // both accepted
  third.connect(at);
  // The third is closed on accept: the request gets no answer.
  const std::string refused = Exchange(third, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(refused.find("200"), std::string::npos) << refused;
  idle1.close();
  idle2.close();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  tcp::socket again(io);
  again.connect(at);
  EXPECT_EQ(Exchange(again, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
  server.Stop();
}

namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;

// One TLS client connection to the server (certificate not verified: the test reads the
// serial the server presents).
class TlsClient {
 public:
  TlsClient(asio::io_context& io, uint16_t port) : ctx_(ssl::context::tls_client), stream_(io, ctx_) {
    ctx_.set_verify_mode(ssl::verify_none);
    beast::get_lowest_layer(stream_).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    stream_.handshake(ssl::stream_base::client);
  }
  long Serial() {
    X509* cert = SSL_get_peer_certificate(stream_.native_handle());
    const long serial = cert ? ASN1_INTEGER_get(X509_get_serialNumber(cert)) : -1;
    X509_free(cert);
    return serial;
  }
  // GET /healthz on this (kept-alive) connection; the status code, 0 when it failed.
  int Health() {
    beast::http::request<beast::http::empty_body> req(beast::http::verb::get, "/healthz", 11);
    req.set(beast::http::field::host, "x");
    beast::error_code ec;
    beast::http::write(stream_, req, ec);
    if (ec) return 0;
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(stream_, buffer, res, ec);
    return ec ? 0 : res.result_int();
  }

 private:
  ssl::context ctx_;
  beast::ssl_stream<beast::tcp_stream> stream_;
};

TEST(ServerTest, ReloadedCertificateServesNewConnectionsAndOpenOnesGoOn) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("pxs-http-tls-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cert = (dir / "node.pem").string(), key = (dir / "node.key").string();
  const std::string other_cert = (dir / "other.pem").string(), other_key = (dir / "other.key").string();
  testing::TestKeyPair first, renewed, expired;
  testing::MakeCertificate(first, "pxsnode", nullptr, false);
  testing::MakeCertificate(renewed, "pxsnode", nullptr, false);
  testing::MakeCertificate(expired, "pxsnode", nullptr, false, -7200, -3600);
  const long first_serial = ASN1_INTEGER_get(X509_get_serialNumber(first.cert));
  const long renewed_serial = ASN1_INTEGER_get(X509_get_serialNumber(renewed.cert));
  ASSERT_NE(first_serial, renewed_serial);
  testing::WritePem(first, cert, key);

  Options o;
  o.tls_certificate = cert;
  o.tls_private_key = key;
  Server server(o);
  ASSERT_TRUE(server.Start().ok());
  asio::io_context io;
  TlsClient before(io, server.port());
  EXPECT_EQ(before.Serial(), first_serial);
  EXPECT_EQ(before.Health(), 200);

  // Renewal writes the new files over the old ones, then SIGHUP.
  testing::WritePem(renewed, cert, key);
  ASSERT_TRUE(server.ReloadTls(cert, key).ok());
  TlsClient after(io, server.port());
  EXPECT_EQ(after.Serial(), renewed_serial);
  EXPECT_EQ(after.Health(), 200);
  EXPECT_EQ(before.Health(), 200) << "the connection opened before the reload was dropped";

  // A bad renewal is refused and the running certificate stays.
  testing::WritePem(expired, other_cert, other_key);
  const Status refused = server.ReloadTls(other_cert, other_key);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("expired"), std::string::npos) << refused.ToString();
  testing::WritePem(first, other_cert, "");
  const Status mismatched = server.ReloadTls(other_cert, key);  // first's certificate, renewed's key
  EXPECT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.message().find(key), std::string::npos) << mismatched.ToString();
  EXPECT_FALSE(server.ReloadTls((dir / "missing.pem").string(), key).ok());
  TlsClient still(io, server.port());
  EXPECT_EQ(still.Serial(), renewed_serial);
  server.Stop();

  Server plain(Options{});
  ASSERT_TRUE(plain.Start().ok());
  EXPECT_EQ(plain.ReloadTls(cert, key).code(), Status::Code::kUnsupported);
  plain.Stop();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pxs::http
