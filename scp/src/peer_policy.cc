#include "pxs/scp/peer_policy.h"

#include <arpa/inet.h>

#include <cstring>

namespace pxs {
namespace {

// An IPv4 or IPv6 literal into 16 bytes (IPv4 in the first 4); false if neither.
bool ParseAddress(const std::string& text, bool* v6, std::array<uint8_t, 16>* bytes) {
  bytes->fill(0);
  in_addr a4{};
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    *v6 = false;
    std::memcpy(bytes->data(), &a4, 4);
    return true;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    // An IPv4-mapped IPv6 address is the IPv4 address.
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      *v6 = false;
      std::memcpy(bytes->data(), &a6.s6_addr[12], 4);
    } else {
      *v6 = true;
      std::memcpy(bytes->data(), &a6, 16);
    }
    return true;
  }
  return false;
}

}  // namespace

StatusOr<PeerPolicy> PeerPolicy::Create(std::vector<KnownPeer> peers) {
  PeerPolicy policy;
  for (size_t i = 0; i < peers.size(); ++i) {
    const KnownPeer& p = peers[i];
    const std::string name = "[[peers]] #" + std::to_string(i + 1) + " (" + p.ae_title + ")";
    if (p.ae_title.empty()) return Status::InvalidArgument(name + ": ae_title is required");
    if (p.max_associations < 0) return Status::InvalidArgument(name + ": max_associations must be 0 or more");
    Network net;
    if (!p.address.empty()) {
      net.any = false;
      std::string host = p.address;
      int bits = -1;
      if (size_t slash = host.find('/'); slash != std::string::npos) {
        std::string len = host.substr(slash + 1);
        host = host.substr(0, slash);
        if (len.empty() || len.find_first_not_of("0123456789") != std::string::npos || len.size() > 3) {
          return Status::InvalidArgument(name + ": address '" + p.address + "': bad prefix length");
        }
        bits = std::stoi(len);
      }
      if (!ParseAddress(host, &net.v6, &net.bytes)) {
        return Status::InvalidArgument(name + ": address '" + p.address + "' is not an IP address or CIDR");
      }
      const int max_bits = net.v6 ? 128 : 32;
      if (bits > max_bits) return Status::InvalidArgument(name + ": address '" + p.address + "': prefix too long");
      net.prefix_bits = bits < 0 ? max_bits : bits;
    }
    policy.networks_.push_back(net);
  }
  policy.peers_ = std::move(peers);
  return policy;
}

bool PeerPolicy::Contains(const Network& net, const std::string& address) {
  if (net.any) return true;
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
  if (!ParseAddress(address, &v6, &bytes) || v6 != net.v6) return false;
  int bits = net.prefix_bits;
  for (size_t i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - bits));
    if ((bytes[i] & mask) != (net.bytes[i] & mask)) return false;
  }
  return true;
}

std::optional<size_t> PeerPolicy::Match(const std::string& calling_ae, const std::string& peer_address,
                                        const std::string& peer_subject, std::string* why_not) const {
  bool ae_known = false, address_ok = false;
  for (size_t i = 0; i < peers_.size(); ++i) {
    const KnownPeer& p = peers_[i];
    if (p.ae_title != calling_ae) continue;
    ae_known = true;
    if (!Contains(networks_[i], peer_address)) continue;
    address_ok = true;
    if (!p.certificate_subject.empty() && p.certificate_subject != peer_subject) continue;
    return i;
  }
  if (why_not) {
    if (!ae_known) *why_not = "calling AE title '" + calling_ae + "' is not a known peer";
    else if (!address_ok) *why_not = "AE '" + calling_ae + "' is not expected from " + peer_address;
    else *why_not = "AE '" + calling_ae + "' presented certificate subject '" +
                    (peer_subject.empty() ? std::string("(none)") : peer_subject) + "', not the configured one";
  }
  return std::nullopt;
}

}  // namespace pxs
