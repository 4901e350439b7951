#include "pxs/scp/storage_scp.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <filesystem>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scpcfg.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <spdlog/spdlog.h>

#include "pxs/common/files.h"
#include "pxs/common/metrics.h"
#include "association_listener.h"
#include "incoming_file.h"
#include "pxs/scp/ingest.h"
#include "pxs/common/thread_name.h"
#include "pxs/tls/tls.h"

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


}  // namespace

// State shared by the listener's hand-over and every association thread. Policy that SIGHUP may change
// is behind a mutex; the rest is fixed at start.
struct ScpShared {
  StorageScpOptions options;
  Ingester* ingester = nullptr;
  std::mutex policy_mu;
  std::vector<std::string> allowed_calling_aes;
  PeerPolicy peers;
  std::map<size_t, int> active_per_peer;  // under policy_mu: associations held per known peer
  std::atomic<int> active{0};
  std::atomic<int> receiving{0};              // C-STOREs between request and response
  std::atomic<int64_t> last_stored_at_ms{0};  // steady clock
  // Set (under lifecycle_mu) when Stop() begins: later associations are refused.
  std::mutex lifecycle_mu;
  bool stopping = false;

  // With [[peers]]: the caller must be one, under its own limit. Returns the peer's
  // index (to release in Leave()), or nullopt with *why and whether it is transient.
  std::optional<size_t> Enter(const std::string& ae, const std::string& address, const std::string& subject,
                              std::string* why, bool* transient) {
    std::lock_guard<std::mutex> lock(policy_mu);
    *transient = false;
    if (peers.empty()) return kAnyPeer;
    std::optional<size_t> index = peers.Match(ae, address, subject, why);
    if (!index) return std::nullopt;
    const int limit = peers.peers()[*index].max_associations;
    int& held = active_per_peer[*index];
    if (limit > 0 && held >= limit) {
      *why = "peer '" + ae + "' already holds its " + std::to_string(limit) + " association(s)";
      *transient = true;
      return std::nullopt;
    }
    ++held;
    return index;
  }
  void Leave(size_t index) {
    if (index == kAnyPeer) return;
    std::lock_guard<std::mutex> lock(policy_mu);
    if (--active_per_peer[index] <= 0) active_per_peer.erase(index);
  }
  static constexpr size_t kAnyPeer = static_cast<size_t>(-1);

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

// The RFC 2253 subject of the peer's TLS certificate; "" without TLS or certificate.
std::string PeerCertificateSubject(T_ASC_Association* assoc) {
  unsigned long len = DUL_getPeerCertificateLength(assoc->DULassociation);
  if (len == 0) return {};
  std::vector<unsigned char> der(len);
  if (DUL_getPeerCertificate(assoc->DULassociation, der.data(), len) != len) return {};
  const unsigned char* p = der.data();
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(len));
  if (!cert) return {};
  std::string subject;
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char* text = nullptr;
    long n = BIO_get_mem_data(bio, &text);
    if (n > 0) subject.assign(text, static_cast<size_t>(n));
    BIO_free(bio);
  }
  X509_free(cert);
  return subject;
}

// One association, on its own thread.
class AssociationScp : public DcmThreadSCP {
 public:
  explicit AssociationScp(ScpShared* shared) : shared_(shared) {}

 protected:
  // Runs before DCMTK's own checks of the association request: the peer policy and the
  // disk guard are decided here, per connection. The peer's address comes from the
  // listener, which also set TCP_NODELAY on the socket.
  OFCondition processAssociationRQ() override {
    started_ = Clock::now();
    T_ASC_Association* assoc = getAssociation();
    calling_ae_ = assoc->params->DULparams.callingAPTitle;
    called_ae_ = assoc->params->DULparams.calledAPTitle;
    std::string why;
    bool transient = false;
    std::optional<size_t> peer_index = shared_->Enter(calling_ae_, peer_, PeerCertificateSubject(assoc), &why, &transient);
    if (!peer_index) {
      spdlog::warn("association from {} ({}) refused{}: {} ([[peers]])", calling_ae_, peer_,
                   transient ? " (transient)" : "", why);
      refused_ = true;
      refuseAssociation(transient ? DCMSCP_TOO_MANY_ASSOCIATIONS : DCMSCP_CALLING_AE_TITLE_NOT_RECOGNIZED);
      return EC_Normal;
    }
    peer_index_ = *peer_index;
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
    metrics::Registry::Add(metrics::Global().associations);
  }

  void notifyAssociationTermination() override {
    if (peer_index_) {
      shared_->Leave(*peer_index_);
      peer_index_.reset();
    }
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
      if (cond == DIMSE_NODATAAVAILABLE || cond == DUL_READTIMEOUT) {
        // The sender stopped in the middle of the data set for dimse_timeout_s: nothing
        // to answer (it may never read a response); the association is aborted instead,
        // and the partial file is gone (ReceiveFailed).
        ++failed_;
        spdlog::warn("instance {} from {}: data set stalled for {} s mid-transfer: not stored, association aborted",
                     req.AffectedSOPInstanceUID, calling_ae_, shared_->options.dimse_timeout_s);
        return cond;
      }
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
    metrics::Global().ObserveStore(result.dimse_status, ms / 1000);
    return sendSTOREResponse(pres_id, req, result.dimse_status);
  }

 private:
  std::string AcceptedContexts() {
    T_ASC_Association* assoc = getAssociation();
    if (!assoc) return "?";
    return std::to_string(ASC_countAcceptedPresentationContexts(assoc->params));
  }

 protected:
  // DcmSCP keeps its association private; AssociationRunner hands it to us first.
  void SetAssociationHandle(T_ASC_Association* assoc, std::string peer) {
    assoc_ = assoc;
    peer_ = std::move(peer);
  }
  T_ASC_Association* getAssociation() { return assoc_; }

 private:
  T_ASC_Association* assoc_ = nullptr;

  ScpShared* shared_;
  IncomingFile receiving_;
  Clock::time_point started_{};
  std::string calling_ae_, called_ae_, peer_;
  bool accepted_ = false, refused_ = false;
  std::optional<size_t> peer_index_;  // the [[peers]] entry this association counts against
  int stored_ = 0, failed_ = 0;
  uint64_t bytes_ = 0;
};

// One association on its own thread, handed to DCMTK's DcmThreadSCP.
class AssociationRunner : public AssociationScp {
 public:
  explicit AssociationRunner(ScpShared* shared) : AssociationScp(shared) {}
  OFCondition Run(T_ASC_Association* assoc, const std::string& peer) {
    SetAssociationHandle(assoc, peer);
    return AssociationScp::run(assoc);  // drops and destroys the association at its end
  }
};

namespace {

// dcmExternalSocketHandle is DCMTK's one way to hand it a connected socket (inetd mode):
// a process-wide value read at the start of ASC_receiveAssociation(). Setting it and
// receiving are done under this mutex. The listener hands over only connections whose
// association request is already buffered, so the time under it is short. On a TLS port
// only the ClientHello is known to be buffered: the rest of the handshake and the
// association request may take a slow or hostile client seconds, so the lock is released
// as soon as DCMTK has taken the socket (TlsLayerOptions::before_handshake), before the
// handshake; a client that stalled there held every other association up for ~50 s.
std::mutex g_external_socket_mu;
thread_local std::unique_lock<std::mutex>* t_handoff_lock = nullptr;

// DCMTK has read dcmExternalSocketHandle and made its connection: others may hand over.
void ReleaseHandoff() {
  if (t_handoff_lock && t_handoff_lock->owns_lock()) {
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    t_handoff_lock->unlock();
  }
}

// An acceptor network of DCMTK's without a listening socket of its own (the listener
// owns those), with its TLS layer when the port speaks TLS.
struct ScpNetwork {
  T_ASC_Network* net = nullptr;
  TlsLayer tls;
  ~ScpNetwork() {
    if (net) ASC_dropNetwork(&net);  // before the layer it uses
    tls.reset();
  }
};

void RejectTransient(T_ASC_Association* assoc) {
  T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                                ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
  ASC_rejectAssociation(assoc, &rej);
  ASC_dropAssociation(assoc);
  ASC_destroyAssociation(&assoc);
}

StatusOr<std::shared_ptr<ScpNetwork>> MakeNetwork(uint16_t port, int acse_timeout_s, const ScpTlsOptions* tls) {
  auto network = std::make_shared<ScpNetwork>();
  OFCondition c;
  {
    // A set external handle keeps ASC_initializeNetwork() from binding a socket of its own.
    std::lock_guard<std::mutex> lock(g_external_socket_mu);
    dcmExternalSocketHandle.set(STDERR_FILENO);
    c = ASC_initializeNetwork(NET_ACCEPTOR, port, acse_timeout_s, &network->net);
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  }
  if (c.bad()) return Status::Internal(std::string("cannot initialise the DICOM network: ") + c.text());
  if (tls) {
    TlsLayerOptions layer_options;
    layer_options.handshake_timeout_s = std::min(acse_timeout_s, 10);
    layer_options.before_handshake = ReleaseHandoff;
    auto layer = MakeTlsLayer(tls->settings, TlsRole::kAcceptor, std::move(layer_options));
    if (!layer.ok()) return layer.status();
    network->tls = std::move(*layer);
    c = ASC_setTransportLayer(network->net, network->tls.get(), 0);
    if (c.bad()) return Status::Internal(std::string("cannot enable TLS: ") + c.text());
  }
  return network;
}

}  // namespace

class StorageScp::Impl {
 public:
  Impl(const StorageScpOptions& options, Ingester* ingester) {
    shared_.options = options;
    shared_.ingester = ingester;
    shared_.allowed_calling_aes = options.allowed_calling_aes;
    shared_.peers = options.peers;
  }

  Status Start() {
    const StorageScpOptions& o = shared_.options;
    DcmSCPConfig cfg;
    cfg.setAETitle(o.ae_title.c_str());
    cfg.setPort(o.port);
    cfg.setMaxReceivePDULength(o.max_pdu);
    cfg.setACSETimeout(o.acse_timeout_s);
    cfg.setDIMSETimeout(o.dimse_timeout_s);
    cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
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
    config_ = DcmSharedSCPConfig(cfg);

    // Endpoint 0: the node's port (TLS when [tls] is on); endpoint 1: [tls] plain_port.
    ListenerOptions listen;
    listen.request_deadline_ms = std::min(o.acse_timeout_s, 10) * 1000;
    listen.max_waiting = std::max(64, 4 * o.max_associations);
    listen.max_waiting_per_peer = std::max(4, o.max_associations);
    listen.endpoints.push_back({o.bind, o.port, o.inherited_listen_fd, o.tls.enabled});
    if (o.tls.enabled && o.tls.plain_port > 0) listen.endpoints.push_back({o.bind, o.tls.plain_port, -1, false});
    for (const ListenEndpoint& ep : listen.endpoints) {
      auto network = MakeNetwork(ep.port, o.acse_timeout_s, ep.tls ? &o.tls : nullptr);
      if (!network.ok()) return network.status();
      networks_.push_back(std::move(*network));
    }
    auto listener = AssociationListener::Start(listen, [this](int fd, size_t endpoint, const std::string& peer) {
      Dispatch(fd, endpoint, peer);
    });
    if (!listener.ok()) return listener.status();
    listener_ = std::move(*listener);
    return Status::Ok();
  }

  Status ReloadTls(const ScpTlsOptions& tls) {
    if (!shared_.options.tls.enabled || !tls.enabled) {
      return Status::Unsupported("turning [tls] on or off needs a restart");
    }
    auto network = MakeNetwork(shared_.options.port, shared_.options.acse_timeout_s, &tls);
    if (!network.ok()) return network.status();
    std::lock_guard<std::mutex> lock(networks_mu_);
    networks_[0] = std::move(*network);  // associations running on the old one keep it alive
    return Status::Ok();
  }

  // On the listener thread: one thread per connection from here on.
  void Dispatch(int fd, size_t endpoint, const std::string& peer) {
    std::shared_ptr<ScpNetwork> network;
    {
      std::lock_guard<std::mutex> lock(networks_mu_);
      network = networks_[endpoint];
    }
    {
      std::lock_guard<std::mutex> lock(threads_mu_);
      ++threads_;
    }
    std::thread([this, fd, network, peer] {
      NameThisThread("pxs-assoc");
      RunConnection(fd, *network, peer);
      std::lock_guard<std::mutex> lock(threads_mu_);
      --threads_;
      threads_cv_.notify_all();
    }).detach();
  }

  void RunConnection(int fd, ScpNetwork& network, const std::string& peer) {
    const StorageScpOptions& o = shared_.options;
    T_ASC_Association* assoc = nullptr;
    OFCondition cond;
    {
      std::unique_lock<std::mutex> lock(g_external_socket_mu);
      t_handoff_lock = &lock;
      dcmExternalSocketHandle.set(fd);
      cond = ASC_receiveAssociation(network.net, &assoc, o.max_pdu, nullptr, nullptr, network.tls ? OFTrue : OFFalse,
                                    DUL_NOBLOCK, o.acse_timeout_s);
      ReleaseHandoff();  // plain TCP, or a TLS connection DCMTK never got to
      t_handoff_lock = nullptr;
    }
    if (cond.bad()) {
      // From here the socket is DCMTK's: it closes it with the association (or, after a
      // failed TLS handshake, with the connection it made).
      spdlog::warn("{}connection from {} refused: {}", network.tls ? "TLS " : "", peer, cond.text());
      if (network.tls && o.audit) o.audit("tls_connection_refused", "peer " + peer + ": " + cond.text());
      if (assoc) {
        ASC_dropAssociation(assoc);
        ASC_destroyAssociation(&assoc);
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lock(shared_.lifecycle_mu);
      if (shared_.stopping || running_associations_ >= o.max_associations) {
        spdlog::warn("association from {} ({}) refused (transient): {}", assoc->params->DULparams.callingAPTitle, peer,
                     shared_.stopping ? std::string("the node is shutting down")
                                      : "max_associations (" + std::to_string(o.max_associations) + ") reached");
        RejectTransient(assoc);
        return;
      }
      ++running_associations_;
    }
    AssociationRunner runner(&shared_);
    runner.setSharedConfig(config_);
    runner.Run(assoc, peer);
    std::lock_guard<std::mutex> lock(shared_.lifecycle_mu);
    --running_associations_;
  }

  bool Stop(int grace_s) {
    if (!listener_) return true;
    listener_->Stop();
    {
      std::lock_guard<std::mutex> lock(shared_.lifecycle_mu);
      shared_.stopping = true;
    }
    // Running associations finish (their senders get every response); new connections
    // were refused from the moment the listener closed.
    std::unique_lock<std::mutex> lock(threads_mu_);
    bool finished = threads_cv_.wait_for(lock, std::chrono::seconds(grace_s + 2), [&] { return threads_ == 0; });
    lock.unlock();
    listener_.reset();
    return finished;
  }

  std::vector<uint16_t> ports() const { return listener_ ? listener_->ports() : std::vector<uint16_t>{}; }

  ScpShared shared_;
  DcmSharedSCPConfig config_;
  std::mutex networks_mu_;
  std::vector<std::shared_ptr<ScpNetwork>> networks_;
  std::unique_ptr<AssociationListener> listener_;
  int running_associations_ = 0;  // under shared_.lifecycle_mu
  std::mutex threads_mu_;
  std::condition_variable threads_cv_;
  int threads_ = 0;
};

StorageScp::StorageScp(const StorageScpOptions& options, Ingester* ingester)
    : impl_(std::make_unique<Impl>(options, ingester)) {}
StorageScp::~StorageScp() {
  if (impl_ && impl_->listener_) impl_->Stop(0);
}
Status StorageScp::Start() { return impl_->Start(); }
bool StorageScp::Stop(int grace_s) { return impl_->Stop(grace_s); }
void StorageScp::SetPeers(PeerPolicy peers) {
  std::lock_guard<std::mutex> lock(impl_->shared_.policy_mu);
  impl_->shared_.peers = std::move(peers);
  impl_->shared_.active_per_peer.clear();  // indices refer to the old list
}
void StorageScp::SetAllowedCallingAes(const std::vector<std::string>& aes) {
  std::lock_guard<std::mutex> lock(impl_->shared_.policy_mu);
  impl_->shared_.allowed_calling_aes = aes;
}
Status StorageScp::ReloadTls(const ScpTlsOptions& tls) { return impl_->ReloadTls(tls); }
std::vector<uint16_t> StorageScp::ports() const { return impl_->ports(); }
int StorageScp::ActiveAssociations() const { return impl_->shared_.active.load(); }
bool StorageScp::IngestBusy(int within_ms) const {
  return impl_->shared_.receiving.load() > 0 || SteadyNowMs() - impl_->shared_.last_stored_at_ms.load() < within_ms;
}

}  // namespace pxs
