#include "pxs/scp/ingest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <spdlog/spdlog.h>

#include "group_commit.h"
#include "pxs/common/files.h"
#include "pxs/filestore/file_store.h"
#include "pxs/reports/dicom_text.h"
#include "pxs/storage/database.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;

// Storage SOP classes the node accepts (PS3.4 B.5).
constexpr const char* kCrImage = UID_ComputedRadiographyImageStorage;
constexpr const char* kDxPresentation = UID_DigitalXRayImageStorageForPresentation;
constexpr const char* kDxProcessing = UID_DigitalXRayImageStorageForProcessing;
constexpr const char* kSecondaryCapture = UID_SecondaryCaptureImageStorage;

std::string GetString(DcmDataset& ds, const DcmTagKey& tag) {
  OFString value;
  if (ds.findAndGetOFStringArray(tag, value).bad()) return {};
  // DICOM pads strings with spaces (UIDs with NUL); the stored value has neither.
  std::string s(value.c_str());
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t first = s.find_first_not_of(' ');
  return first == std::string::npos ? std::string() : s.substr(first);
}

// Below this much free space a failed write is taken for a full disk.
constexpr uint64_t kDiskFullBytes = 1u << 20;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

IngestResult Reject(uint16_t status, std::string sop, std::string error) {
  IngestResult r;
  r.dimse_status = status;
  r.sop_instance_uid = std::move(sop);
  r.error = std::move(error);
  return r;
}

// Checks that the pixel data can be what the image attributes say, without reading
// or allocating from Rows x Columns (a forged header must not make us allocate GBs).
std::string CheckPixelData(DcmDataset& ds) {
  Uint16 rows = 0, cols = 0, bits_allocated = 0, samples = 0;
  if (ds.findAndGetUint16(DCM_Rows, rows).bad() || rows == 0) return "Rows missing or 0";
  if (ds.findAndGetUint16(DCM_Columns, cols).bad() || cols == 0) return "Columns missing or 0";
  if (ds.findAndGetUint16(DCM_BitsAllocated, bits_allocated).bad()) return "BitsAllocated missing";
  if (bits_allocated != 1 && bits_allocated % 8 != 0) {
    return "BitsAllocated " + std::to_string(bits_allocated) + " is not 1 or a multiple of 8";
  }
  if (ds.findAndGetUint16(DCM_SamplesPerPixel, samples).bad() || samples == 0) {
    return "SamplesPerPixel missing or 0";
  }
  Sint32 frames = 1;
  if (ds.findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;

  DcmElement* pixel = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, pixel).bad() || pixel == nullptr) return "missing Pixel Data";
  DcmPixelData* pixel_data = OFdynamic_cast(DcmPixelData*, pixel);
  // Encapsulated (compressed) pixel data has undefined length; its size is checked by the
  // decoder when the image is scored.
  if (pixel_data != nullptr) {
    E_TransferSyntax xfer = ds.getOriginalXfer();
    if (DcmXfer(xfer).isEncapsulated()) {
      DcmPixelSequence* seq = nullptr;
      if (pixel_data->getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || seq == nullptr ||
          seq->card() < 2) {
        return "compressed Pixel Data holds no fragments";
      }
      return {};
    }
  }
  uint64_t needed_bits = uint64_t{rows} * cols * samples * bits_allocated * static_cast<uint64_t>(frames);
  uint64_t needed = (needed_bits + 7) / 8;
  uint64_t have = pixel->getLength();
  if (have < needed) {
    return "impossible dimensions: " + std::to_string(rows) + " x " + std::to_string(cols) + " x " +
           std::to_string(samples) + " samples x " + std::to_string(bits_allocated) + " bits x " +
           std::to_string(frames) + " frames need " + std::to_string(needed) +
           " bytes but Pixel Data holds " + std::to_string(have);
  }
  return {};
}

// Why an instance that is stored should not be scored by any model, whatever the routes
// say (no model scores colour images or raw detector data); empty when it may be. Which
// models score it is the routes' decision (RouteDecision below).
std::string ScoringSkipReason(DcmDataset& ds, const std::string& sop_class, bool score_for_processing) {
  std::string photometric = Upper(GetString(ds, DCM_PhotometricInterpretation));
  Uint16 samples = 1;
  ds.findAndGetUint16(DCM_SamplesPerPixel, samples);
  if (samples != 1 || (photometric != "MONOCHROME1" && photometric != "MONOCHROME2")) {
    return "colour image (PhotometricInterpretation " + (photometric.empty() ? "missing" : photometric) +
           ", SamplesPerPixel " + std::to_string(samples) + "); PXS needs a greyscale radiograph";
  }
  std::string intent = Upper(GetString(ds, DCM_PresentationIntentType));
  if (!score_for_processing && (sop_class == kDxProcessing || intent == "FOR PROCESSING")) {
    return "DX For Processing (raw detector data); set [scoring] score_for_processing to score it";
  }
  return {};
}

}  // namespace

bool Ingester::IsAcceptedSopClass(const std::string& uid) {
  return uid == kCrImage || uid == kDxPresentation || uid == kDxProcessing || uid == kSecondaryCapture;
}

bool Ingester::IsValidUid(const std::string& uid) {
  if (uid.empty() || uid.size() > 64) return false;
  size_t component_start = 0;
  for (size_t i = 0; i <= uid.size(); ++i) {
    if (i == uid.size() || uid[i] == '.') {
      size_t len = i - component_start;
      if (len == 0) return false;                                  // empty component
      if (len > 1 && uid[component_start] == '0') return false;    // leading zero
      component_start = i + 1;
    } else if (uid[i] < '0' || uid[i] > '9') {
      return false;
    }
  }
  return true;
}

class Ingester::Impl {
 public:
  Impl(const IngestOptions& options, Database* db)
      : options_(options),
        db_(db),
        own_store_(options.file_store ? nullptr : std::make_unique<FileStore>(options.data_dir)),
        store_(options.file_store ? options.file_store : own_store_.get()),
        committer_(db, store_) {}

  Status Init() {
    StatusOr<int> removed = store_->Open();
    if (!removed.ok()) return removed.status();
    // Temp files left by a crash or a kill were never acknowledged: Open() removed them.
    if (*removed > 0) spdlog::info("ingest: removed {} unacknowledged temp file(s)", *removed);
    return Status::Ok();
  }

  // Path 1 (file import, tests): a parsed data set. Checked first, so that nothing is
  // written for a data set that is refused or already stored.
  IngestResult Ingest(DcmDataset& ds, E_TransferSyntax xfer, const IngestSource& src) {
    ReceivedInstance rec;
    if (std::optional<IngestResult> refused = Describe(ds, xfer, src, &rec)) return *refused;
    std::string temp = NewTempPath();
    Status written = WriteFile(ds, xfer, src.calling_ae, temp);
    if (!written.ok()) {
      store_->RemoveQuietly(temp);
      return Reject(dimse_status::kOutOfResources, rec.sop_instance_uid, written.ToString());
    }
    return StoreClaimed(rec, temp);
  }

  // Path 2 (the SCP): DCMTK received the data set bit for bit into `temp` (a name from
  // NewTempPath). Only the attributes are parsed; Pixel Data stays on disk, so the image
  // is neither copied into memory nor encoded a second time. From here on the file is
  // ours: it becomes the stored instance or it is removed.
  IngestResult IngestReceived(const ReceivedFile& received, const IngestSource& src) {
    const std::string& temp = received.path;
    DcmFileFormat file;
    // Values above this size are not read now (DCMTK loads them on demand); DCMTK still
    // checks that each fits in the file, so a stream that ended early is refused here.
    constexpr Uint32 kLazyValueBytes = 64 * 1024;
    OFCondition cond = file.loadFile(temp.c_str(), EXS_Unknown, EGL_noChange, kLazyValueBytes, ERM_fileOnly);
    // A file cut short by a failed write is our fault (0xA700), not the sender's data.
    if (std::string short_by = CheckComplete(temp, file, received.dataset_bytes); !short_by.empty()) {
      return ReceiveFailed(temp, short_by, src);
    }
    if (cond.bad()) {
      store_->RemoveQuietly(temp);
      return Reject(dimse_status::kCannotUnderstand, src.command_sop_instance_uid,
                    std::string("data set cannot be parsed: ") + cond.text());
    }
    DcmDataset& ds = *file.getDataset();
    ReceivedInstance rec;
    if (std::optional<IngestResult> refused = Describe(ds, ds.getOriginalXfer(), src, &rec)) {
      store_->RemoveQuietly(temp);
      return *refused;
    }
    return StoreClaimed(rec, temp);
  }

  // In bit-preserving mode DCMTK does not parse the data set while receiving, so a
  // receive that fails while the association lives failed on our side: writing the file
  // (disk full, I/O error). That is "out of resources" for the sender, who may retry.
  IngestResult ReceiveFailed(const std::string& temp, const std::string& why, const IngestSource& src) {
    auto space = QueryDiskSpace(options_.data_dir);  // before the partial file is removed
    store_->RemoveQuietly(temp);
    bool full = space.ok() && space->free_bytes < kDiskFullBytes;
    return Reject(dimse_status::kOutOfResources, src.command_sop_instance_uid,
                  "cannot store the data set" + std::string(full ? " (disk full in " + options_.data_dir + ")" : "") +
                      ": " + why);
  }

  // DCMTK writes the file meta information, then every data set byte as it arrives, but
  // does not report a failed write (e.g. ENOSPC) in 3.6.7. A complete file is exactly
  // preamble + "DICM" + meta group (its group length says how long) + the data set bytes
  // that arrived. `loaded` is the file as loadFile() read it: the meta group is there even
  // when the data set after it could not be parsed. Returns why the file is not complete;
  // empty when it is (or when the sizes are unknown).
  static std::string CheckComplete(const std::string& temp, DcmFileFormat& loaded, uint64_t dataset_bytes) {
    Uint32 group_length = 0;
    if (dataset_bytes == 0 ||
        loaded.getMetaInfo()->findAndGetUint32(DCM_FileMetaInformationGroupLength, group_length).bad()) {
      return {};
    }
    constexpr uint64_t kPreambleAndMagic = 128 + 4;
    constexpr uint64_t kGroupLengthElement = 12;  // tag, VR, length, UL value
    uint64_t expected = kPreambleAndMagic + kGroupLengthElement + group_length + dataset_bytes;
    std::error_code ec;
    uint64_t actual = fs::file_size(temp, ec);
    if (ec || actual == expected) return {};
    return "the received data set was not written completely (" + std::to_string(actual) + " of " +
           std::to_string(expected) + " bytes in " + temp + ")";
  }

  std::string NewTempPath() { return store_->NewTempPath(); }

 private:
  // Validates the data set against the command and the node's rules and fills `rec` from
  // its attributes. Returns the refusal when the instance must not be stored.
  std::optional<IngestResult> Describe(DcmDataset& ds, E_TransferSyntax xfer, const IngestSource& src,
                                       ReceivedInstance* rec) {
    std::string sop_class = GetString(ds, DCM_SOPClassUID);
    std::string sop = GetString(ds, DCM_SOPInstanceUID);
    // The data set must be the instance the command announced (PS3.4 B.2.3: A900).
    if (!src.command_sop_class_uid.empty() && sop_class != src.command_sop_class_uid) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop,
                    "SOPClassUID in the data set (" + sop_class + ") differs from the command's (" +
                        src.command_sop_class_uid + ")");
    }
    if (!IsAcceptedSopClass(sop_class)) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop,
                    "SOP class '" + sop_class + "' is not stored by this node (CR, DX, SC only)");
    }
    if (!IsValidUid(sop)) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop, "invalid SOPInstanceUID '" + sop + "'");
    }
    if (!src.command_sop_instance_uid.empty() && sop != src.command_sop_instance_uid) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop,
                    "SOPInstanceUID in the data set differs from the command's (" + src.command_sop_instance_uid + ")");
    }
    std::string study = GetString(ds, DCM_StudyInstanceUID);
    std::string series = GetString(ds, DCM_SeriesInstanceUID);
    if (!IsValidUid(study)) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop, "invalid StudyInstanceUID '" + study + "'");
    }
    if (!IsValidUid(series)) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop, "invalid SeriesInstanceUID '" + series + "'");
    }
    if (std::string pixel_problem = CheckPixelData(ds); !pixel_problem.empty()) {
      return Reject(dimse_status::kDataSetDoesNotMatchSopClass, sop, pixel_problem);
    }

    rec->sop_instance_uid = sop;
    rec->sop_class_uid = sop_class;
    rec->study_uid = study;
    rec->series_uid = series;
    ReadTexts(ds, rec);
    rec->transfer_syntax_uid = DcmXfer(xfer).getXferID();
    rec->calling_ae = src.calling_ae;
    rec->peer_address = src.peer_address;
    rec->skip_reason = ScoringSkipReason(ds, sop_class, options_.score_for_processing);
    if (rec->skip_reason.empty()) {
      routing::Decision decision = Route(ds, *rec);
      rec->models = std::move(decision.models);
      rec->skip_reason = std::move(decision.no_model_reason);
    }
    return std::nullopt;
  }

  // The models whose routes select the instance ([[models]]; without a router, tests and
  // imports: one unnamed model on the default chest route).
  routing::Decision Route(DcmDataset& ds, const ReceivedInstance& rec) const {
    routing::InstanceFacts facts;
    facts.modality = rec.modality;
    facts.sop_class_uid = rec.sop_class_uid;
    facts.body_part = rec.body_part;
    facts.view_position = rec.view_position;
    facts.calling_ae = rec.calling_ae;
    facts.station_name = GetString(ds, DCM_StationName);
    Uint16 rows = 0, columns = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, columns);
    facts.rows = rows;
    facts.columns = columns;
    if (options_.route) return options_.route(facts);
    static const routing::Router kOneUnnamedModel({{"", routing::Route::DefaultChest()}});
    return kOneUnnamedModel.Decide(facts);
  }

  // The handful of text attributes the database keeps, each decoded on its own from the
  // declared Specific Character Set to UTF-8 and cleaned for its VR by the reader the SR
  // builder uses too (so the database and the SR agree). Plain ASCII values, nearly all
  // of them, cost a scan; nothing else of the data set is converted. A value that cannot
  // be decoded never refuses an instance the sender will see acknowledged: it is kept
  // with its undecodable bytes as %HH and the log says which attribute and why.
  void ReadTexts(DcmDataset& ds, ReceivedInstance* rec) {
    const DicomTextReader reader(ds);
    std::string problems;
    auto text = [&](const DcmTagKey& tag) {
      DicomText t = reader.Get(ds, tag);
      if (!t.problem.empty()) {
        problems += (problems.empty() ? "" : "; ") + std::string(tag.toString().c_str()) + " " + t.problem;
      }
      return std::move(t.utf8);
    };
    rec->patient.patient_id = text(DCM_PatientID);
    rec->patient.issuer = text(DCM_IssuerOfPatientID);
    rec->patient_name = text(DCM_PatientName);
    rec->study_date = text(DCM_StudyDate);
    rec->study_time = text(DCM_StudyTime);
    rec->accession_number = text(DCM_AccessionNumber);
    rec->modality = text(DCM_Modality);
    rec->body_part = text(DCM_BodyPartExamined);
    rec->view_position = text(DCM_ViewPosition);
    if (!problems.empty()) {
      spdlog::warn("ingest {}: text kept with %HH escapes, the instance is not refused for it "
                   "(docs/conformance.md 6): {}",
                   rec->sop_instance_uid, problems);
    }
  }

  // The complete temp file of a described instance becomes the stored instance, a
  // duplicate, or (by policy) the replacement of the stored copy. Everything from the
  // "already stored?" question to the database's answer happens under the instance's
  // claim, so two associations sending the same SOP Instance UID at once are decided
  // one after the other and an acknowledged file is never replaced by a race.
  IngestResult StoreClaimed(ReceivedInstance& rec, const std::string& temp) {
    FileStore::Claim claim = store_->ClaimInstance(rec.sop_instance_uid);
    auto known = db_->FindStoredFile(rec.sop_instance_uid);
    if (!known.ok()) {
      store_->RemoveQuietly(temp);
      return Reject(dimse_status::kOutOfResources, rec.sop_instance_uid, "database: " + known.status().ToString());
    }
    if (known->has_value()) return Resent(rec, **known, temp);
    return Keep(rec, temp);
  }

  // A SOP Instance UID already stored arrived again. Identical data set bytes: a harmless
  // duplicate (a retry). Otherwise the configured policy decides, and says so in the
  // log and the audit log. Either way the sender gets Success: the instance is stored.
  IngestResult Resent(ReceivedInstance& rec, const Database::StoredFile& stored, const std::string& temp) {
    IngestResult result;
    result.sop_instance_uid = rec.sop_instance_uid;
    result.skip_reason = rec.skip_reason;
    result.duplicate = true;
    if (!stored.on_this_node) {
      // Another node sharing the database (PostgreSQL) received it first and holds the
      // file and its scoring: this copy is the same instance, stored once (issue 16).
      store_->RemoveQuietly(temp);
      result.note = "duplicate, already stored by another node sharing the database";
      return result;  // the SCP logs the note
    }
    StatusOr<std::string> new_digest = DataSetDigest(temp);
    StatusOr<std::string> old_digest = DataSetDigest(store_->Absolute(stored.file_path));
    if (new_digest.ok() && old_digest.ok() && *new_digest == *old_digest) {
      store_->RemoveQuietly(temp);
      result.note = "duplicate, identical to the stored copy";
      return result;
    }
    std::string what = "SOP Instance UID " + rec.sop_instance_uid + " re-sent by " +
                       (rec.calling_ae.empty() ? std::string("a file import") : "AE " + rec.calling_ae) +
                       " with different content (transfer syntax " + rec.transfer_syntax_uid + ", stored " +
                       stored.transfer_syntax_uid + ")";
    if (!old_digest.ok()) what += "; the stored copy is unreadable: " + old_digest.status().ToString();
    if (options_.on_conflict == ConflictPolicy::kKeepFirst) {
      store_->RemoveQuietly(temp);
      result.note = "duplicate with different content, first copy kept (on_conflict = keep_first)";
      spdlog::warn("ingest: {}: first copy kept (on_conflict = keep_first)", what);
      if (Status audited = db_->AddNodeAudit("instance_conflict_kept_first", what); !audited.ok()) {
        spdlog::warn("ingest: audit of {} not written: {}", rec.sop_instance_uid, audited.ToString());
      }
      return result;
    }
    Status replaced = store_->Replace(temp, stored.file_path, &rec.file_size);
    if (!replaced.ok()) {
      return Reject(dimse_status::kOutOfResources, rec.sop_instance_uid, "cannot replace: " + replaced.ToString());
    }
    rec.file_path = stored.file_path;
    rec.received_at_ms = NowMs();
    Status recorded = db_->RecordReplacedInstance(rec, what + "; replaced and queued for scoring again");
    if (!recorded.ok()) {
      // The new bytes are on disk under the stored name but the database still describes
      // the old file: verify will say so. Refuse, so that the sender sends again.
      return Reject(dimse_status::kOutOfResources, rec.sop_instance_uid, "replaced, not recorded: " + recorded.ToString());
    }
    spdlog::warn("ingest: {}: replaced, scored again (on_conflict = replace)", what);
    result.duplicate = false;
    result.replaced = true;
    result.bytes = rec.file_size;
    result.note = "replaced the stored copy (on_conflict = replace)";
    if (rec.skip_reason.empty() && options_.on_job_queued) options_.on_job_queued();
    return result;
  }

  // SHA-256 of the data set bytes after the file meta information: what the sender sent,
  // whatever meta header (source AE, implementation) each copy got. A file without a
  // readable meta group length is hashed whole.
  static StatusOr<std::string> DataSetDigest(const std::string& path) {
    DcmFileFormat meta_only;
    uint64_t offset = 0;
    Uint32 group_length = 0;
    if (meta_only.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_metaOnly).good() &&
        meta_only.getMetaInfo()->findAndGetUint32(DCM_FileMetaInformationGroupLength, group_length).good()) {
      offset = 128 + 4 + 12 + uint64_t{group_length};  // preamble, DICM, (0002,0000) UL, the group
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
    Sha256Stream sha;
    Status read = sha.UpdateFromFile(fd, &offset, path);
    ::close(fd);
    if (!read.ok()) return read;
    return sha.HexDigest();
  }

  // Makes the complete temp file the stored instance (FileStore::Place: fdatasync, link
  // under the layout's name), then the group commit (folder syncs + one transaction).
  // The caller holds the claim and the database does not know the instance, so a file
  // already at the name is a crash's unacknowledged leftover and may be replaced; on a
  // failed commit the file placed here is removed again for the same reason.
  IngestResult Keep(ReceivedInstance& rec, const std::string& temp) {
    const std::string& sop = rec.sop_instance_uid;
    const std::string rel = FileStore::InstancePath(rec.study_uid, rec.series_uid, sop);

    auto t_sync = std::chrono::steady_clock::now();
    std::vector<std::string> dirs_to_sync;
    Status placed = store_->Place(temp, rel, /*replace_leftover=*/true, &rec.file_size, &dirs_to_sync);
    if (!placed.ok()) return Reject(dimse_status::kOutOfResources, sop, placed.ToString());
    rec.file_path = rel;
    rec.received_at_ms = NowMs();

    auto t_commit = std::chrono::steady_clock::now();
    GroupCommitter::Outcome outcome = committer_.Commit(rec, dirs_to_sync);
    spdlog::debug("ingest {}: fsync + link {:.1f} ms, folder sync + commit {:.1f} ms", sop,
                  std::chrono::duration<double, std::milli>(t_commit - t_sync).count(),
                  std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_commit).count());
    if (!outcome.status.ok()) {
      (void)store_->Remove(rel);
      return Reject(dimse_status::kOutOfResources, sop, "not recorded: " + outcome.status.ToString());
    }
    IngestResult result;
    result.sop_instance_uid = sop;
    result.skip_reason = rec.skip_reason;
    result.bytes = rec.file_size;
    result.duplicate = outcome.insert == InsertOutcome::kDuplicate;
    result.note = result.duplicate ? "duplicate, first copy kept" : "stored";
    if (result.duplicate) {
      // Under the claim the database did not know the instance, so the row that won is
      // another node's (a shared PostgreSQL, both committing at once): the file placed
      // here is nobody's and goes; the other node's copy is the stored one.
      auto winner = db_->FindStoredFile(sop);
      if (winner.ok() && winner->has_value() && !(*winner)->on_this_node) {
        (void)store_->Remove(rel);
        result.note = "duplicate, already stored by another node sharing the database";
      }
    }
    if (!result.duplicate && rec.skip_reason.empty() && options_.on_job_queued) options_.on_job_queued();
    return result;
  }

  // Writes the data set as a DICOM file, with file meta information naming the sender.
  Status WriteFile(DcmDataset& ds, E_TransferSyntax xfer, const std::string& calling_ae, const std::string& temp) {
    DcmFileFormat file(&ds, /*copyDataset=*/OFFalse);
    if (!calling_ae.empty()) {
      file.getMetaInfo()->putAndInsertString(DCM_SourceApplicationEntityTitle, calling_ae.c_str());
    }
    OFCondition cond = file.saveFile(temp.c_str(), xfer, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0,
                                     EWM_updateMeta);
    int saved_errno = errno;
    file.getAndRemoveDataset();  // the caller owns the data set
    if (cond.good()) return Status::Ok();
    auto space = QueryDiskSpace(options_.data_dir);
    bool full = saved_errno == ENOSPC || (space.ok() && space->free_bytes < kDiskFullBytes);
    std::string what = "cannot write " + temp + ": " + cond.text();
    return full ? Status::NoSpace(what + " (disk full)") : Status::IoError(what);
  }

  IngestOptions options_;
  Database* db_;
  std::unique_ptr<FileStore> own_store_;
  FileStore* store_;
  GroupCommitter committer_;
};

Ingester::Ingester(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ingester::~Ingester() = default;

StatusOr<std::unique_ptr<Ingester>> Ingester::Create(const IngestOptions& options, Database* db) {
  auto impl = std::make_unique<Impl>(options, db);
  PXS_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Ingester>(new Ingester(std::move(impl)));
}

IngestResult Ingester::Ingest(DcmDataset& dataset, int xfer, const IngestSource& source) {
  return impl_->Ingest(dataset, static_cast<E_TransferSyntax>(xfer), source);
}

std::string Ingester::NewReceivePath() { return impl_->NewTempPath(); }

IngestResult Ingester::IngestReceived(const ReceivedFile& file, const IngestSource& source) {
  return impl_->IngestReceived(file, source);
}

IngestResult Ingester::ReceiveFailed(const std::string& temp_path, const std::string& why,
                                     const IngestSource& source) {
  return impl_->ReceiveFailed(temp_path, why, source);
}

IngestResult Ingester::IngestFile(const std::string& path, const IngestSource& source) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Reject(dimse_status::kCannotUnderstand, "", path + ": not a file");
  }
  if (fs::file_size(path, ec) == 0) return Reject(dimse_status::kCannotUnderstand, "", path + ": empty file, not DICOM");
  DcmFileFormat file;
  OFCondition cond = file.loadFile(path.c_str());
  if (cond.bad()) {
    return Reject(dimse_status::kCannotUnderstand, "", path + ": not readable as DICOM: " + cond.text());
  }
  DcmDataset* ds = file.getDataset();
  // Values longer than DCMTK's lazy-load threshold are read on demand; load them now so
  // a file truncated inside Pixel Data is refused here, not later.
  cond = ds->loadAllDataIntoMemory();
  if (cond.bad()) {
    return Reject(dimse_status::kCannotUnderstand, "", path + ": data set cannot be read completely: " + cond.text());
  }
  return impl_->Ingest(*ds, ds->getOriginalXfer(), source);
}

}  // namespace pxs
