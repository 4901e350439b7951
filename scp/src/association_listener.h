// AssociationListener: the SCP's listening sockets and the wait for each caller's
// A-ASSOCIATE-RQ, on one Boost.Asio thread (pxs-listen).
//
// Why not DCMTK's own listener: DCMTK 3.6.7 binds every interface (0.0.0.0) and reads
// association requests one connection at a time in its listen loop, so one TCP client
// that sends nothing holds every other caller up for the ACSE timeout. Here the node binds
// the configured address itself (or takes the socket systemd passed), accepts at once,
// and waits for each connection's first PDU concurrently, with a deadline and bounds on
// how many connections may wait (in all and per peer address). Only a connection whose
// complete A-ASSOCIATE-RQ (or, on a TLS port, complete TLS ClientHello record) is in the
// kernel's buffer is handed over, so DCMTK never blocks on reading it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs {

struct ListenEndpoint {
  std::string address = "127.0.0.1";  // an IPv4/IPv6 literal; "0.0.0.0" / "::" for all
  uint16_t port = 0;                   // 0 with inherited_fd unset: an ephemeral port (tests)
  int inherited_fd = -1;               // an already listening socket (systemd), used as is
  bool tls = false;                    // the first bytes are a TLS ClientHello
};

struct ListenerOptions {
  std::vector<ListenEndpoint> endpoints;
  int request_deadline_ms = 10000;  // time a caller gets to deliver its first PDU
  int max_waiting = 64;             // connections waiting for their first PDU, in all
  int max_waiting_per_peer = 16;    // ... and from one peer address
};

class AssociationListener {
 public:
  // fd: a connected socket (the caller owns it now); endpoint: index into endpoints;
  // peer: the remote address as text.
  using Handoff = std::function<void(int fd, size_t endpoint, const std::string& peer)>;

  // Binds/listens every endpoint (errors name the address and port) and starts the thread.
  static StatusOr<std::unique_ptr<AssociationListener>> Start(const ListenerOptions& options, Handoff handoff);
  ~AssociationListener();  // Stop()
  AssociationListener(const AssociationListener&) = delete;
  AssociationListener& operator=(const AssociationListener&) = delete;

  // Closes the listening sockets and every waiting connection; joins the thread.
  void Stop();
  // The port each endpoint listens on (resolves port 0).
  std::vector<uint16_t> ports() const;

 private:
  class Impl;
  explicit AssociationListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxs
