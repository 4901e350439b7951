// pxs::StorageScp: the node's front door. It listens only where configured (or on the
// socket systemd passed), waits for the callers' association requests concurrently (see
// association_listener.h), and runs each association on its own thread with DCMTK (at
// most max_associations at once; further callers are refused, transiently), accepting
// Verification and Storage of CR, DX (for presentation and for processing) and Secondary
// Capture in every transfer syntax DCMTK can decode here, over plain TCP or DICOM TLS.
// Every C-STORE goes through the Ingester; nothing is acknowledged before it is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/scp/peer_policy.h"
#include "pxs/tls/tls.h"

namespace pxs {

class Ingester;

// DICOM TLS (PS3.15 B.9 / BCP 195) on the SCP's port.
struct ScpTlsOptions {
  bool enabled = false;
  TlsSettings settings;     // the node's certificate and key; trust and require_peer_certificate for callers
  uint16_t plain_port = 0;  // >0: also plain TCP on this port (legacy modalities)
};

struct StorageScpOptions {
  std::string ae_title = "PXSNODE";
  std::string bind = "127.0.0.1";  // the address the listening sockets are bound to
  uint16_t port = 11112;           // 0: an ephemeral port (tests; see ports())
  int inherited_listen_fd = -1;    // systemd socket activation: listen on this socket instead
  ScpTlsOptions tls;
  // Refused TLS handshakes (and other security events) for the audit log.
  std::function<void(const std::string& action, const std::string& details)> audit;
  int max_associations = 8;
  uint32_t max_pdu = 131072;
  int acse_timeout_s = 30;
  int dimse_timeout_s = 60;
  std::vector<std::string> allowed_calling_aes;  // empty: any
  PeerPolicy peers;                               // [[peers]]; empty: any peer
  // Disk guard on the data folder.
  std::string data_dir;
  uint64_t min_free_bytes = 0;
  double min_free_percent = 0;
};

class StorageScp {
 public:
  // The ingester must outlive the SCP.
  StorageScp(const StorageScpOptions& options, Ingester* ingester);
  ~StorageScp();
  StorageScp(const StorageScp&) = delete;
  StorageScp& operator=(const StorageScp&) = delete;

  // Opens the port and starts accepting on a background thread. Fails (e.g. port in
  // use) with a Status naming the port.
  Status Start();
  // Stops accepting new associations and waits up to grace_s for running ones to end.
  // Returns false when some were still running at the deadline (the caller may exit
  // anyway: nothing they sent was acknowledged before it was durable).
  bool Stop(int grace_s);
  // SIGHUP: replace the calling-AE allowlist for new associations.
  void SetAllowedCallingAes(const std::vector<std::string>& aes);
  // SIGHUP: replace the known peers for new associations.
  void SetPeers(PeerPolicy peers);
  // SIGHUP: load the TLS certificate, key and trust anew for new associations; on error
  // the old ones stay in use.
  Status ReloadTls(const ScpTlsOptions& tls);
  int ActiveAssociations() const;
  // The ports listened on: the main port, then the plain port when TLS has one.
  std::vector<uint16_t> ports() const;
  // True while a data set is being received or was stored within the last within_ms
  // (the gap between two C-STOREs of one sender): images are arriving.
  bool IngestBusy(int within_ms = 20) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxs
