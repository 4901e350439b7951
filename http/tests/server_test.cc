// The socket side: a real request over loopback, and the cap on open connections.
#include "pxs/http/server.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <thread>

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

}  // namespace
}  // namespace pxs::http
