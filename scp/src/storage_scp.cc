#include "pxs/scp/storage_scp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scppool.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <spdlog/spdlog.h>

#include "pxs/common/files.h"
#include "incoming_file.h"
#include "pxs/scp/ingest.h"
#include "pxs/common/thread_name.h"

namespace pxs {
namespace {

using Clock = std::chrono::steady_clock;

// Transfer syntaxes accepted for storage, in order of preference. Everything DCMTK 3.6.7
// decodes here: JPEG 2000 is deliberately absent (no open codec), so a sender that
// offers it alongside an uncompressed syntax converts.
const char* const kStorageTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_RLELosslessTransferSyntax,
};
const char* const kStorageSopClasses[] = {
    UID_ComputedRadiographyImageStorage,
    UID_DigitalXRayImageStorageForPresentation,
    UID_DigitalXRayImageStorageForProcessing,
    UID_SecondaryCaptureImageStorage,
};

std::string SocketAddress(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, buf, sizeof(buf));
  } else if (addr.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(addr);
    if (IN6_IS_ADDR_V4MAPPED(&a6.sin6_addr)) {
      inet_ntop(AF_INET, &a6.sin6_addr.s6_addr[12], buf, sizeof(buf));
    } else {
      inet_ntop(AF_INET6, &a6.sin6_addr, buf, sizeof(buf));
    }
  }
  return buf;
}

// DcmTransportConnection::getSocket() is protected in DCMTK 3.6.7 and nothing public
// exposes an association's socket. A pointer-to-member formed through a derived class
// passes the access check; we only read the descriptor (for TCP_NODELAY and addresses).
struct SocketOf : DcmTransportConnection {
  static int Get(DcmTransportConnection* conn) {
    auto getter = &SocketOf::getSocket;
    return static_cast<int>((conn->*getter)());
  }
};

}  // namespace

// State shared by the pool and every association thread. Policy that SIGHUP may change
// is behind a mutex; the rest is fixed at start.
struct ScpShared {
  StorageScpOptions options;
  Ingester* ingester = nullptr;
  std::mutex policy_mu;
  std::vector<std::string> allowed_calling_aes;
  std::atomic<int> active{0};
  std::atomic<int> receiving{0};              // C-STOREs between request and response
  std::atomic<int64_t> last_stored_at_ms{0};  // steady clock
  // Set (under lifecycle_mu) before the pool is asked to stop; see Worker.
  std::mutex lifecycle_mu;
  bool stopping = false;

  bool CallingAeAllowed(const std::string& ae) {
    std::lock_guard<std::mutex> lock(policy_mu);
    if (allowed_calling_aes.empty()) return true;
    for (const std::string& allowed : allowed_calling_aes) {
      if (allowed == ae) return true;
    }
    return false;
  }

  // Disk guard: true (with the reason) when free space is below either floor.
  bool DiskTooFull(std::string* why) {
    auto space = QueryDiskSpace(options.data_dir);
    if (!space.ok()) {
      *why = space.status().ToString();
      return true;
    }
    double percent = space->total_bytes ? 100.0 * space->free_bytes / space->total_bytes : 0;
    if (space->free_bytes < options.min_free_bytes || percent < options.min_free_percent) {
      *why = fmt::format("{:.2f} GB ({:.1f}%) free in {}, floor is {:.2f} GB / {:.1f}%", space->free_bytes / 1e9,
                         percent, options.data_dir, options.min_free_bytes / 1e9, options.min_free_percent);
      return true;
    }
    return false;
  }
};

namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

// Marks a C-STORE in progress for StorageScp::IngestBusy().
class ReceivingScope {
 public:
  explicit ReceivingScope(ScpShared* shared) : shared_(shared) { shared_->receiving.fetch_add(1); }
  ~ReceivingScope() {
    shared_->last_stored_at_ms.store(SteadyNowMs());
    shared_->receiving.fetch_sub(1);
  }
  ReceivingScope(const ReceivingScope&) = delete;
  ReceivingScope& operator=(const ReceivingScope&) = delete;

 private:
  ScpShared* shared_;
};

}  // namespace

// One association. DCMTK's pool constructs one of these per association thread.
class AssociationScp : public DcmThreadSCP {
 public:
  explicit AssociationScp(ScpShared* shared) : shared_(shared) {}

 protected:
  // Runs before DCMTK's own checks of the association request: the disk guard, the bind
  // address and Nagle's algorithm are decided here, per connection.
  OFCondition processAssociationRQ() override {
    started_ = Clock::now();
    T_ASC_Association* assoc = getAssociation();
    calling_ae_ = assoc->params->DULparams.callingAPTitle;
    called_ae_ = assoc->params->DULparams.calledAPTitle;
    peer_ = assoc->params->DULparams.callingPresentationAddress;
    if (DcmTransportConnection* conn = DUL_getTransportConnection(assoc->DULassociation)) {
      int fd = SocketOf::Get(conn);
      // DCMTK 3.6.7 leaves Nagle on unless TCP_NODELAY is in the environment; without
      // this every DIMSE message stalls ~40 ms waiting for a delayed ACK.
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      sockaddr_storage local{}, remote{};
      socklen_t len = sizeof(local);
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) local_address_ = SocketAddress(local);
      len = sizeof(remote);
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &len) == 0) peer_ = SocketAddress(remote);
    }
    // DCMTK 3.6.7 always listens on every interface; the configured bind address is
    // enforced by refusing connections that arrived on another local address.
    const std::string& bind = shared_->options.bind;
    if (!bind.empty() && bind != "0.0.0.0" && bind != "::" && !local_address_.empty() && local_address_ != bind) {
      spdlog::warn("association from {} ({}) refused: arrived on {} but the node is bound to {}", calling_ae_, peer_,
                   local_address_, bind);
      refused_ = true;
      refuseAssociation(DCMSCP_CALLING_HOST_NOT_ALLOWED);
      return EC_Normal;
    }
    std::string why;
    if (shared_->DiskTooFull(&why)) {
      spdlog::warn("association from {} ({}) refused (transient): disk guard: {}", calling_ae_, peer_, why);
      refused_ = true;
      refuseAssociation(DCMSCP_TOO_MANY_ASSOCIATIONS);  // A-ASSOCIATE-RJ transient, local limit exceeded
      return EC_Normal;
    }
    return DcmThreadSCP::processAssociationRQ();
  }

  OFBool checkCalledAETitleAccepted(const OFString& called) override {
    bool ok = called == shared_->options.ae_title.c_str();
    if (!ok) {
      spdlog::warn("association from {} ({}) refused: called AE title '{}' is not '{}'", calling_ae_, peer_,
                   called.c_str(), shared_->options.ae_title);
      refused_ = true;
    }
    return ok;
  }

  OFBool checkCallingAETitleAccepted(const OFString& calling) override {
    bool ok = shared_->CallingAeAllowed(calling.c_str());
    if (!ok) {
      spdlog::warn("association from {} ({}) refused: calling AE title not in [scp] allowed_calling_aes",
                   calling.c_str(), peer_);
      refused_ = true;
    }
    return ok;
  }

  void notifyAssociationAcknowledge() override {
    accepted_ = true;
    shared_->active.fetch_add(1);
  }

  void notifyAssociationTermination() override {
    if (!accepted_) {
      if (!refused_) spdlog::info("association from {} ({}) not accepted (no acceptable presentation context)",
                                  calling_ae_, peer_);
      return;
    }
    shared_->active.fetch_sub(1);
    double secs = std::chrono::duration<double>(Clock::now() - started_).count();
    spdlog::info("association end: caller={} peer={} called={} contexts={} instances={} failed={} bytes={} "
                 "duration={:.2f}s",
                 calling_ae_, peer_, called_ae_, AcceptedContexts(), stored_, failed_, bytes_, secs);
    accepted_ = false;
  }

  // Called by DCMTK for every PDV received: start write-back of what has reached the
  // page cache, so that the fdatasync before Success has little left to flush.
  void notifyRECEIVEProgress(const unsigned long byte_count) override { receiving_.Progress(byte_count); }

  OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
    if (msg->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(msg, info);
    T_DIMSE_C_StoreRQ& req = msg->msg.CStoreRQ;
    T_ASC_PresentationContextID pres_id = info.presentationContextID;
    IngestSource source{calling_ae_, peer_, req.AffectedSOPClassUID, req.AffectedSOPInstanceUID};
    auto t0 = Clock::now();
    // The data set goes straight into a temp file, bit for bit as received: no parse of
    // Pixel Data into memory and no second encoding (the in-memory receive and re-save
    // cost more CPU per 10 MB image than everything else in ingest together).
    std::string temp = shared_->ingester->NewReceivePath();
    ReceivingScope receiving_now(shared_);
    receiving_.Begin(temp);
    OFCondition cond = receiveSTORERequest(req, pres_id, OFString(temp.c_str()));
    const uint64_t dataset_bytes = receiving_.Finish();
    IngestResult result;
    if (cond.bad()) {
      result = shared_->ingester->ReceiveFailed(temp, cond.text(), source);
      if (cond == DUL_PEERABORTEDASSOCIATION || cond == DUL_PEERREQUESTEDRELEASE) {
        ++failed_;
        spdlog::warn("instance {} from {}: not stored: the association ended during the transfer ({})",
                     req.AffectedSOPInstanceUID, calling_ae_, cond.text());
        return cond;
      }
    } else {
      result = shared_->ingester->IngestReceived({temp, dataset_bytes}, source);
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (result.dimse_status == dimse_status::kSuccess) {
      ++stored_;
      bytes_ += result.bytes;
      spdlog::info("instance {} from {}: status 0x0000 {}{} ({} bytes, {:.0f} ms)", result.sop_instance_uid,
                   calling_ae_, result.note.empty() ? "stored" : result.note,
                   result.skip_reason.empty() ? "" : "; not scored: " + result.skip_reason, result.bytes, ms);
    } else {
      ++failed_;
      spdlog::warn("instance {} from {}: status 0x{:04X}: {}", req.AffectedSOPInstanceUID, calling_ae_,
                   result.dimse_status, result.error);
    }
    return sendSTOREResponse(pres_id, req, result.dimse_status);
  }

 private:
  std::string AcceptedContexts() {
    T_ASC_Association* assoc = getAssociation();
    if (!assoc) return "?";
    return std::to_string(ASC_countAcceptedPresentationContexts(assoc->params));
  }

 protected:
  // DcmSCP keeps its association private; the pool hands it to us first (see Worker).
  void SetAssociationHandle(T_ASC_Association* assoc) { assoc_ = assoc; }
  T_ASC_Association* getAssociation() { return assoc_; }

 private:
  T_ASC_Association* assoc_ = nullptr;

  ScpShared* shared_;
  IncomingFile receiving_;
  Clock::time_point started_{};
  std::string calling_ae_, called_ae_, peer_, local_address_;
  bool accepted_ = false, refused_ = false;
  int stored_ = 0, failed_ = 0;
  uint64_t bytes_ = 0;
};

// DCMTK's DcmSCPPool<SCP> default-constructs its SCPs; ours need the shared state, so
// the pool creates its workers itself (the hook DCMTK provides for exactly this).
class ScpPool : public DcmBaseSCPPool {
 public:
  explicit ScpPool(ScpShared* shared) : shared_(shared) {}

 protected:
  class Worker : public DcmBaseSCPWorker, private AssociationScp {
   public:
    Worker(DcmBaseSCPPool& pool, ScpShared* shared)
        : DcmBaseSCPWorker(pool), AssociationScp(shared), shared_(shared) {}
    OFCondition setSharedConfig(const DcmSharedSCPConfig& config) override {
      return AssociationScp::setSharedConfig(config);
    }
    OFBool busy() override { return AssociationScp::isConnected(); }
    OFCondition setAssociation(T_ASC_Association* assoc) override {
      SetAssociationHandle(assoc);
      return DcmBaseSCPWorker::setAssociation(assoc);
    }

   protected:
    OFCondition workerListen(T_ASC_Association* const assoc) override {
      NameThisThread("pxs-assoc");
      OFCondition result = AssociationScp::run(assoc);
      // The pool deletes this worker right after we return (unless it is shutting down).
      WaitUntilStarted();
      ReleaseThreadUnlessStopping();
      return result;
    }

   private:
    // DCMTK 3.6.7's OFThread::start() stores the new thread's id into this object after
    // pthread_create returns, while the pool deletes the worker as soon as its association
    // ends. An association refused at once (disk guard, a bare TCP probe) could end before
    // that store: a write into freed memory ("malloc(): ... corrupted", seen in CI). The
    // id is non-zero once start() has written it.
    void WaitUntilStarted() {
      for (int i = 0; i < 10000 && threadID() == 0; ++i) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    // The pool deletes a finished worker without joining its thread, so every association
    // would leave an unjoined thread behind (its 8 MB stack mapping and ~150 KB resident,
    // measured: after ~30,000 associations the process runs out of memory mappings and can
    // start no more threads). Detaching as the association ends lets the system reclaim
    // it. Not once StorageScp::Stop() has begun: at shutdown the pool joins its busy
    // workers itself (joining a detached thread would not wait for it). Stop() raises
    // `stopping` under the same mutex before it asks the pool to stop, and the pool needs
    // at least one accept timeout after that before it joins anyone, while this thread
    // only has notifyThreadExit() left to run.
    void ReleaseThreadUnlessStopping() {
      std::lock_guard<std::mutex> lock(shared_->lifecycle_mu);
      if (!shared_->stopping) pthread_detach(pthread_self());
    }
    ScpShared* shared_;
  };
  DcmBaseSCPWorker* createSCPWorker() override { return new Worker(*this, shared_); }

 private:
  ScpShared* shared_;
};

class StorageScp::Impl {
 public:
  Impl(const StorageScpOptions& options, Ingester* ingester) : pool_(&shared_) {
    shared_.options = options;
    shared_.ingester = ingester;
    shared_.allowed_calling_aes = options.allowed_calling_aes;
  }

  Status Start() {
    const StorageScpOptions& o = shared_.options;
    DcmSCPConfig& cfg = pool_.getConfig();
    cfg.setAETitle(o.ae_title.c_str());
    cfg.setPort(o.port);
    cfg.setMaxReceivePDULength(o.max_pdu);
    cfg.setACSETimeout(o.acse_timeout_s);
    cfg.setDIMSETimeout(o.dimse_timeout_s);
    cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    // Non-blocking accept with a 1 s timeout so that Stop() is noticed promptly.
    cfg.setConnectionBlockingMode(DUL_NOBLOCK);
    cfg.setConnectionTimeout(1);
    cfg.setHostLookupEnabled(OFFalse);
    OFList<OFString> storage_ts;
    for (const char* ts : kStorageTransferSyntaxes) storage_ts.push_back(ts);
    OFList<OFString> verification_ts;
    verification_ts.push_back(UID_LittleEndianExplicitTransferSyntax);
    verification_ts.push_back(UID_LittleEndianImplicitTransferSyntax);
    verification_ts.push_back(UID_BigEndianExplicitTransferSyntax);
    OFCondition cond = cfg.addPresentationContext(UID_VerificationSOPClass, verification_ts);
    for (const char* sop : kStorageSopClasses) {
      if (cond.good()) cond = cfg.addPresentationContext(sop, storage_ts);
    }
    if (cond.bad()) return Status::Internal(std::string("cannot configure presentation contexts: ") + cond.text());
    pool_.setMaxThreads(static_cast<Uint16>(o.max_associations));

    // Probe the port first so that "address in use" is a clear start-up error rather
    // than a failure inside the listener thread.
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(o.port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    int rc = bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    int err = errno;
    close(probe);
    if (rc != 0) return Status::Unavailable("cannot listen on port " + std::to_string(o.port) + ": " + strerror(err));

    listener_ = std::thread([this] {
      NameThisThread("pxs-listen");
      OFCondition c = pool_.listen();
      if (c.bad()) spdlog::error("SCP listener stopped: {}", c.text());
      std::lock_guard<std::mutex> lock(mu_);
      listener_done_ = true;
      done_cv_.notify_all();
    });
    return Status::Ok();
  }

  bool Stop(int grace_s) {
    if (!listener_.joinable()) return true;
    {
      std::lock_guard<std::mutex> lock(shared_.lifecycle_mu);
      shared_.stopping = true;
    }
    pool_.stopAfterCurrentAssociations();
    std::unique_lock<std::mutex> lock(mu_);
    bool finished = done_cv_.wait_for(lock, std::chrono::seconds(grace_s + 2), [&] { return listener_done_; });
    lock.unlock();
    if (finished) {
      listener_.join();
    } else {
      // DCMTK's pool joins its busy workers inside listen(); we cannot interrupt that,
      // so the caller exits without it. Nothing those associations sent was
      // acknowledged before it was durable.
      listener_.detach();
    }
    return finished;
  }

  ScpShared shared_;
  ScpPool pool_;
  std::thread listener_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool listener_done_ = false;
};

StorageScp::StorageScp(const StorageScpOptions& options, Ingester* ingester)
    : impl_(std::make_unique<Impl>(options, ingester)) {}
StorageScp::~StorageScp() {
  if (impl_ && impl_->listener_.joinable()) impl_->Stop(0);
}
Status StorageScp::Start() { return impl_->Start(); }
bool StorageScp::Stop(int grace_s) { return impl_->Stop(grace_s); }
void StorageScp::SetAllowedCallingAes(const std::vector<std::string>& aes) {
  std::lock_guard<std::mutex> lock(impl_->shared_.policy_mu);
  impl_->shared_.allowed_calling_aes = aes;
}
int StorageScp::ActiveAssociations() const { return impl_->shared_.active.load(); }
bool StorageScp::IngestBusy(int within_ms) const {
  return impl_->shared_.receiving.load() > 0 || SteadyNowMs() - impl_->shared_.last_stored_at_ms.load() < within_ms;
}

}  // namespace pxs
