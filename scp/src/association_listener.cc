#include "association_listener.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <map>
#include <set>
#include <thread>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "pxs/common/thread_name.h"

namespace pxs {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// DICOM PS3.8 9.3: a PDU starts with its type (0x01 = A-ASSOCIATE-RQ), a reserved byte
// and a 4-byte big-endian length. TLS (RFC 8446 5.1): a record starts with its content
// type (0x16 = handshake), a 2-byte version and a 2-byte length.
constexpr size_t kPduHeader = 6;
constexpr size_t kTlsRecordHeader = 5;
constexpr uint32_t kMaxAssociateRq = 1u << 20;  // DCMTK's own limit (dcmAssociatePDUSizeLimit)
constexpr auto kPollInterval = std::chrono::milliseconds(5);

}  // namespace

class AssociationListener::Impl {
 public:
  Impl(const ListenerOptions& options, Handoff handoff) : options_(options), handoff_(std::move(handoff)) {}

  Status Open() {
    for (const ListenEndpoint& ep : options_.endpoints) {
      auto acceptor = std::make_unique<tcp::acceptor>(io_);
      boost::system::error_code ec;
      std::string where = ep.inherited_fd >= 0 ? "inherited socket " + std::to_string(ep.inherited_fd)
                                                : ep.address + ":" + std::to_string(ep.port);
      if (ep.inherited_fd >= 0) {
        sockaddr_storage local{};
        socklen_t len = sizeof(local);
        if (::getsockname(ep.inherited_fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
          return Status::InvalidArgument(where + " is not a socket");
        }
        acceptor->assign(local.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), ep.inherited_fd, ec);
      } else {
        asio::ip::address address = asio::ip::make_address(ep.address, ec);
        if (ec) return Status::InvalidArgument("cannot listen on '" + ep.address + "': not an IP address");
        tcp::endpoint endpoint(address, ep.port);
        acceptor->open(endpoint.protocol(), ec);
        if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) acceptor->bind(endpoint, ec);
        if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
      }
      if (ec) return Status::Unavailable("cannot listen on " + where + ": " + ec.message());
      ports_.push_back(acceptor->local_endpoint().port());
      acceptors_.push_back(std::move(acceptor));
    }
    for (size_t i = 0; i < acceptors_.size(); ++i) Accept(i);
    thread_ = std::thread([this] {
      NameThisThread("pxs-listen");
      io_.run();
    });
    return Status::Ok();
  }

  void Stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      boost::system::error_code ec;
      for (auto& a : acceptors_) a->close(ec);
      for (const std::weak_ptr<Waiting>& w : waiting_) {
        if (auto conn = w.lock()) conn->Close();
      }
      io_.stop();
    });
    thread_.join();
  }

  std::vector<uint16_t> ports_;

 private:
  // A connection waiting for its first PDU.
  struct Waiting : std::enable_shared_from_this<Waiting> {
    Waiting(asio::io_context& io, tcp::socket s, size_t ep, std::string p)
        : socket(std::move(s)), deadline(io), poll(io), endpoint(ep), peer(std::move(p)) {}
    void Close() {
      boost::system::error_code ec;
      deadline.cancel();
      poll.cancel();
      socket.close(ec);
    }
    tcp::socket socket;
    asio::steady_timer deadline;
    asio::steady_timer poll;
    size_t endpoint;
    std::string peer;
    bool finished = false;
    uint64_t admitted = 0;  // admission order
  };

  void Accept(size_t index) {
    acceptors_[index]->async_accept([this, index](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptors_[index]->is_open()) return;
      if (!ec) Admit(index, std::move(socket));
      Accept(index);
    });
  }

  void Admit(size_t index, tcp::socket socket) {
    boost::system::error_code ec;
    std::string peer = socket.remote_endpoint(ec).address().to_string(ec);
    // Full: make room by closing the connection that has waited longest, from this peer
    // if it is over its share, else from anyone. A real caller sends its request within
    // milliseconds, so the ones evicted are those that send nothing; a newcomer is never
    // turned away by connections that only sit there.
    if (per_peer_[peer] >= options_.max_waiting_per_peer) {
      Evict(peer);
    } else if (total_waiting_ >= options_.max_waiting) {
      Evict("");
    }
    // DCMTK 3.6.7 leaves Nagle on unless TCP_NODELAY is in the environment; without this
    // every DIMSE message would stall ~40 ms waiting for a delayed ACK.
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Waiting>(io_, std::move(socket), index, peer);
    conn->admitted = ++admissions_;
    ++total_waiting_;
    ++per_peer_[peer];
    waiting_.insert(conn);
    conn->deadline.expires_after(std::chrono::milliseconds(options_.request_deadline_ms));
    conn->deadline.async_wait([this, conn](const boost::system::error_code& e) {
      if (e || conn->finished) return;
      spdlog::warn("connection from {} closed: no complete association request within {} ms", conn->peer,
                   options_.request_deadline_ms);
      Finish(conn);
    });
    WaitReadable(conn);
  }

  void Evict(const std::string& peer) {
    std::shared_ptr<Waiting> oldest;
    for (const std::weak_ptr<Waiting>& w : waiting_) {
      auto conn = w.lock();
      if (!conn || (!peer.empty() && conn->peer != peer)) continue;
      if (!oldest || conn->admitted < oldest->admitted) oldest = conn;
    }
    if (!oldest) return;
    spdlog::warn("connection from {} closed: it sent no complete association request while {} others waited{}",
                 oldest->peer, total_waiting_, peer.empty() ? "" : " from the same peer");
    Finish(oldest);
  }

  void WaitReadable(const std::shared_ptr<Waiting>& conn) {
    conn->socket.async_wait(tcp::socket::wait_read, [this, conn](const boost::system::error_code& e) {
      if (e || conn->finished) return;
      Check(conn);
    });
  }

  // Is the whole first PDU (or TLS record) buffered? Peeks, never consumes.
  void Check(const std::shared_ptr<Waiting>& conn) {
    const int fd = conn->socket.native_handle();
    int available = 0;
    if (::ioctl(fd, FIONREAD, &available) != 0 || available == 0) {
      // Readable with nothing to read: the peer closed (a port probe) or the socket failed.
      Finish(conn);
      return;
    }
    const bool tls = options_.endpoints[conn->endpoint].tls;
    const size_t header = tls ? kTlsRecordHeader : kPduHeader;
    unsigned char head[kPduHeader] = {0};
    if (static_cast<size_t>(available) >= header) {
      if (::recv(fd, head, header, MSG_PEEK) != static_cast<ssize_t>(header)) {
        Finish(conn);
        return;
      }
      size_t needed = 0;
      if (tls) {
        if (head[0] != 0x16) {
          spdlog::warn("connection from {} closed: not a TLS handshake on a TLS port (plain DICOM?)", conn->peer);
          Finish(conn);
          return;
        }
        needed = kTlsRecordHeader + ((size_t{head[3]} << 8) | head[4]);
      } else {
        if (head[0] != 0x01) {
          spdlog::warn("connection from {} closed: first PDU is type 0x{:02X}, not an A-ASSOCIATE-RQ{}", conn->peer,
                       head[0], head[0] == 0x16 ? " (a TLS client on a plain port?)" : "");
          Finish(conn);
          return;
        }
        uint32_t length = (uint32_t{head[2]} << 24) | (uint32_t{head[3]} << 16) | (uint32_t{head[4]} << 8) | head[5];
        if (length > kMaxAssociateRq) {
          spdlog::warn("connection from {} closed: A-ASSOCIATE-RQ of {} bytes (limit {})", conn->peer, length,
                       kMaxAssociateRq);
          Finish(conn);
          return;
        }
        needed = kPduHeader + length;
      }
      if (static_cast<size_t>(available) >= needed) {
        HandOver(conn);
        return;
      }
    }
    // Part of it is here: readiness stays set while bytes are unread, so look again a
    // little later instead of spinning on the same readable state.
    conn->poll.expires_after(kPollInterval);
    conn->poll.async_wait([this, conn](const boost::system::error_code& e) {
      if (e || conn->finished) return;
      Check(conn);
    });
  }

  void HandOver(const std::shared_ptr<Waiting>& conn) {
    conn->deadline.cancel();
    conn->poll.cancel();
    boost::system::error_code ec;
    conn->socket.non_blocking(false, ec);
    int fd = conn->socket.release(ec);
    if (ec || fd < 0) {
      Finish(conn);
      return;
    }
    Forget(conn);
    // DCMTK reads and writes this socket with blocking calls of its own.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    handoff_(fd, conn->endpoint, conn->peer);
  }

  void Finish(const std::shared_ptr<Waiting>& conn) {
    Forget(conn);
    conn->Close();
  }

  void Forget(const std::shared_ptr<Waiting>& conn) {
    if (conn->finished) return;
    conn->finished = true;
    --total_waiting_;
    if (--per_peer_[conn->peer] <= 0) per_peer_.erase(conn->peer);
    waiting_.erase(conn);
  }

  ListenerOptions options_;
  Handoff handoff_;
  asio::io_context io_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  // Only the io thread touches these.
  std::set<std::weak_ptr<Waiting>, std::owner_less<std::weak_ptr<Waiting>>> waiting_;
  int total_waiting_ = 0;
  uint64_t admissions_ = 0;
  std::map<std::string, int> per_peer_;
  std::thread thread_;
};

AssociationListener::AssociationListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AssociationListener::~AssociationListener() { Stop(); }

StatusOr<std::unique_ptr<AssociationListener>> AssociationListener::Start(const ListenerOptions& options,
                                                                        Handoff handoff) {
  auto impl = std::make_unique<Impl>(options, std::move(handoff));
  PXS_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<AssociationListener>(new AssociationListener(std::move(impl)));
}

void AssociationListener::Stop() {
  if (impl_) impl_->Stop();
}

std::vector<uint16_t> AssociationListener::ports() const { return impl_->ports_; }

}  // namespace pxs
