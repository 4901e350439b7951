// pxs::Ingester: the one path by which a received data set becomes a stored, recorded,
// queued instance. The SCP calls it for every C-STORE; tests (and imports) call it with
// files. It never acknowledges before the instance is durable:
//   validate -> write temp file -> fsync -> link into data_dir/dicom/<study>/<series>/<sop>.dcm
//   -> group commit (fsync of the touched folders + one SQLite transaction for the batch)
// and maps every failure to the DIMSE status DICOM expects (PS3.4 Annex B.2.3):
//   0x0000 Success, 0xA700 Refused: Out of Resources (disk full, I/O or database error),
//   0xA900 Data Set Does Not Match SOP Class (missing pixel data, impossible dimensions,
//   invalid UIDs), 0xC000 Cannot Understand (unparseable data).
// Thread-safety: Ingest() may be called from any number of association threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "pxs/common/status.h"
#include "pxs/routing/route.h"

class DcmDataset;

namespace pxs {

class Database;

namespace dimse_status {
constexpr uint16_t kSuccess = 0x0000;
constexpr uint16_t kOutOfResources = 0xA700;
constexpr uint16_t kDataSetDoesNotMatchSopClass = 0xA900;
constexpr uint16_t kCannotUnderstand = 0xC000;
}  // namespace dimse_status

// What to do when an instance arrives again under a stored SOP Instance UID with other
// content (docs/conformance.md). An identical re-send is always a harmless duplicate.
enum class ConflictPolicy {
  kKeepFirst,  // keep the stored copy; the new one is acknowledged, logged, audited, dropped
  kReplace,    // the new copy replaces the stored file, is audited and scored again
};

class FileStore;

struct IngestOptions {
  std::string data_dir;                 // files go to data_dir/dicom, temp files to data_dir/incoming
  // The data folder's owner; nullptr: the ingester makes its own on data_dir (tests pass
  // one with a fault-injecting file system). Must outlive the ingester.
  FileStore* file_store = nullptr;
  ConflictPolicy on_conflict = ConflictPolicy::kKeepFirst;
  bool score_for_processing = false;    // score DX "For Processing" images instead of declining them
  std::function<void()> on_job_queued;  // called after a scoring job was committed (wakes the worker)
  // Which models score an instance ([[models]] routes; may change on SIGHUP, so the
  // callback reads the current router). Unset: one unnamed model on the default chest route.
  std::function<routing::Decision(const routing::InstanceFacts&)> route;
};

// Who sent the data set, and what the DIMSE command said about it (empty when the data
// set comes from a file, then only the data set's own attributes count).
struct IngestSource {
  std::string calling_ae;
  std::string peer_address;
  std::string command_sop_class_uid;
  std::string command_sop_instance_uid;
};

struct IngestResult {
  uint16_t dimse_status = dimse_status::kSuccess;
  bool duplicate = false;     // Success for a SOP Instance UID already stored (nothing changed)
  bool replaced = false;      // Success; the stored file was replaced (ConflictPolicy::kReplace)
  std::string note;           // for the log line: "stored", "duplicate, identical", ...
  std::string sop_instance_uid;
  std::string skip_reason;    // non-empty: stored but not queued for scoring, and why
  std::string error;          // non-empty when dimse_status is not Success
  uint64_t bytes = 0;         // size of the stored file
};

class Ingester {
 public:
  // The database must outlive the Ingester.
  static StatusOr<std::unique_ptr<Ingester>> Create(const IngestOptions& options, Database* db);
  ~Ingester();
  Ingester(const Ingester&) = delete;
  Ingester& operator=(const Ingester&) = delete;

  // Takes a data set received in transfer syntax `xfer` (DCMTK E_TransferSyntax as int,
  // so that this header needs no DCMTK include).
  IngestResult Ingest(DcmDataset& dataset, int xfer, const IngestSource& source);
  // Reads a DICOM file and ingests it; unreadable files give 0xC000 with the reason.
  IngestResult IngestFile(const std::string& path, const IngestSource& source);

  // The SCP's receive-to-file path. NewReceivePath() names a fresh temp file under
  // data_dir/incoming; the SCP lets DCMTK write the data set into it exactly as received
  // (file meta information + data set, no re-encoding), then hands it over with
  // IngestReceived(): the file becomes the stored instance or is removed; a file that
  // holds fewer than the data set bytes that arrived was cut short by a failed write
  // (0xA700). When the receive itself failed, ReceiveFailed() removes what was written
  // and gives 0xA700 (the data set is not parsed while it arrives, so the failure was ours).
  struct ReceivedFile {
    std::string path;            // from NewReceivePath()
    uint64_t dataset_bytes = 0;  // data set bytes that arrived; 0: unknown
  };
  std::string NewReceivePath();
  IngestResult IngestReceived(const ReceivedFile& file, const IngestSource& source);
  IngestResult ReceiveFailed(const std::string& temp_path, const std::string& why, const IngestSource& source);

  // The SOP classes the node stores (CR, DX for presentation/processing, Secondary Capture).
  static bool IsAcceptedSopClass(const std::string& sop_class_uid);
  // DICOM UID syntax (PS3.5 9.1): 1..64 chars, digits and dots, no empty component, no
  // leading zero in a multi-digit component. Only such UIDs become path components.
  static bool IsValidUid(const std::string& uid);

 private:
  class Impl;
  explicit Ingester(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxs
