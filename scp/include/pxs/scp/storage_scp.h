// pxs::StorageScp: the node's front door. A DCMTK SCP pool (one thread per association,
// at most max_associations; further callers are refused, transiently, as DCMTK's pool
// does not queue) accepting Verification and Storage of CR, DX (for presentation and for
// processing) and Secondary Capture in every transfer syntax DCMTK can decode here.
// Every C-STORE goes through the Ingester; nothing is acknowledged before it is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs {

class Ingester;

struct StorageScpOptions {
  std::string ae_title = "PXSNODE";
  std::string bind = "127.0.0.1";  // informational: DCMTK 3.6.7 listens on all interfaces (see .cc)
  uint16_t port = 11112;
  int max_associations = 8;
  uint32_t max_pdu = 131072;
  int acse_timeout_s = 30;
  int dimse_timeout_s = 60;
  std::vector<std::string> allowed_calling_aes;  // empty: any
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
  int ActiveAssociations() const;
  // True while a data set is being received or was stored within the last within_ms
  // (the gap between two C-STOREs of one sender): images are arriving.
  bool IngestBusy(int within_ms = 20) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxs
