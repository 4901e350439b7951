// pxs::PeerPolicy: which callers may associate, and how many associations each may hold.
// A known peer is a calling AE title with, optionally, the network it calls from (an
// address or CIDR) and, over TLS, the subject of its certificate. With peers configured,
// every association must match one; each peer may have its own concurrency limit so that
// one sender cannot take every slot of [scp] max_associations from the others.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs {

struct KnownPeer {
  std::string ae_title;             // required: the calling AE title
  std::string address;              // "" (any), "10.1.2.3", "10.1.0.0/16", "fd00::/8"
  std::string certificate_subject;  // "" (any); else RFC 2253, e.g. "CN=cr-room-2,O=Hospital"
  int max_associations = 0;         // 0: no limit of its own
};

class PeerPolicy {
 public:
  PeerPolicy() = default;  // no peers: anyone (the AE allowlist still applies)
  // Fails naming the peer and the address that is not an IP address or CIDR.
  static StatusOr<PeerPolicy> Create(std::vector<KnownPeer> peers);

  bool empty() const { return peers_.empty(); }
  const std::vector<KnownPeer>& peers() const { return peers_; }
  // The index of the first peer the caller matches; nullopt with the reason otherwise.
  // peer_subject: "" when the connection has no (verified) certificate.
  std::optional<size_t> Match(const std::string& calling_ae, const std::string& peer_address,
                              const std::string& peer_subject, std::string* why_not) const;

 private:
  struct Network {
    bool any = true;
    bool v6 = false;
    std::array<uint8_t, 16> bytes{};
    int prefix_bits = 0;
  };
  static bool Contains(const Network& net, const std::string& address);
  std::vector<KnownPeer> peers_;
  std::vector<Network> networks_;
};

}  // namespace pxs
