// pxs::sender, part 1: C-STORE of files to one DICOM receiver over ONE association
// (DCMTK's DcmSCU), with per-file DIMSE status. The outbox loop is SenderWorker
// (sender_worker.h); this part knows nothing about the database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/tls/tls.h"

namespace pxs {

struct StoreTarget {
  std::string host;
  uint16_t port = 104;
  std::string called_ae;
  bool tls = false;  // DICOM TLS with StoreOptions::tls
};

struct StoreOptions {
  std::string calling_ae = "PXSNODE";
  int connect_timeout_s = 10;  // TCP connect
  int acse_timeout_s = 30;     // association negotiation, release, and after an abort
                               // the wait for the peer to close (DCMTK's ARTIM timer)
  int dimse_timeout_s = 60;    // waiting for each C-STORE response
  // So a receiver that hangs holds the sender for at most dimse + acse timeout.
  uint32_t max_pdu = 65536;
  // For targets with tls: this side's certificate (optional) and the trust store that
  // must verify the receiver's certificate.
  std::optional<TlsSettings> tls;
};

// The outcome of one file of a batch.
struct StoreFileResult {
  std::string file_path;
  std::string sop_instance_uid;  // from the file, "" if it could not be read
  bool ok = false;               // DIMSE status Success (0x0000) or a Warning (0xB...)
  // The C-STORE response status; 0xFFFF when no response came (association or file error).
  uint16_t dimse_status = 0xFFFF;
  std::string error;             // "" when ok; else why, naming the status or the DCMTK error
};

// Sends every file over one association to target, in order. Returns per-file results
// (same order as files); a failure that stops the association (refused, aborted)
// fails the files not yet sent, with that reason. Presentation contexts are proposed
// for the SOP classes found in the files (Explicit and Implicit VR Little Endian).
// Disables Nagle's algorithm on the socket (see DisableNagleForDcmtk()).
std::vector<StoreFileResult> StoreFiles(const StoreTarget& target, const std::vector<std::string>& files,
                                        const StoreOptions& options);

// Turns Nagle's algorithm off for every DCMTK association of the process (DCMTK 3.6.7
// has no API for it; it reads the TCP_NODELAY environment variable, which this sets
// to 1 unless the operator set it). setenv() is not safe while other threads read the
// environment, so call it at start-up before any thread runs; StoreFiles() calls it
// too (once), for programs that did not.
void DisableNagleForDcmtk();

// Human-readable text of a C-STORE status, e.g. "0xA700 Refused: Out of Resources".
std::string DimseStatusText(uint16_t status);

}  // namespace pxs
