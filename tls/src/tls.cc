#include "pxs/tls/tls.h"

#include <fcntl.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmtls/tlscond.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <dcmtk/dcmtls/tlstrans.h>

namespace pxs {
namespace {

StatusOr<DcmTLSSecurityProfile> Profile(const std::string& name) {
  if (name == "bcp195") return TSP_Profile_BCP195;
  if (name == "bcp195-nd") return TSP_Profile_BCP195_ND;
  if (name == "bcp195-extended") return TSP_Profile_BCP195_Extended;
  return Status::InvalidArgument("[tls] profile: '" + name + "' is not bcp195, bcp195-nd or bcp195-extended");
}

// OpenSSL directly for the checks DCMTK's layer does not report separately.
Status CheckCertificateFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return Status::InvalidArgument("[tls] certificate " + path + ": cannot be read");
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!cert) return Status::InvalidArgument("[tls] certificate " + path + ": not a PEM certificate");
  Status s;
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    s = Status::InvalidArgument("[tls] certificate " + path + ": expired");
  } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
    s = Status::InvalidArgument("[tls] certificate " + path + ": not valid yet");
  }
  X509_free(cert);
  return s;
}

Status CheckKeyFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return Status::InvalidArgument("[tls] private_key " + path + ": cannot be read");
  EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!key) return Status::InvalidArgument("[tls] private_key " + path + ": not an unencrypted PEM private key");
  EVP_PKEY_free(key);
  return Status::Ok();
}

using Clock = std::chrono::steady_clock;

// OpenSSL's read buffer with read-ahead: one recv() takes up to this many bytes (about 16
// TLS records of 16 KiB) instead of two recv() per record (5-byte header, then body).
constexpr long kReadAheadBytes = 256 * 1024;

// Why our own connection instead of DCMTK's DcmTLSConnection (measured, 2026-12-03, see
// docs/benchmarks.md): DcmTLSConnection calls SSL_read once per TLS record on a blocking
// socket without read-ahead, and DCMTK polls the socket before every read, so a 10 MB
// image cost ~1,500 read + ~640 poll system calls against ~225 reads in plain TCP, and on
// loopback each small read also runs the sender's transmit path in our context: TLS
// ingest reached 0.57x plain. Its handshake also has no deadline: a client that sent a
// ClientHello and then nothing blocked SSL_accept (and, in the SCP, every other
// association) for ~50 s. Here the socket is non-blocking and every wait is a poll():
//  - read() returns everything already decrypted up to the size asked (a PDU), waiting
//    only when nothing is there yet; with read-ahead one recv() brings many records;
//  - networkDataAvailable() also sees records read ahead but not yet decrypted (DCMTK's
//    SSL_pending() check does not, which would stall with read-ahead on);
//  - the handshake polls with a deadline (TlsLayerOptions::handshake_timeout_s).
class NodeTlsConnection : public DcmTLSConnection {
 public:
  NodeTlsConnection(DcmNativeSocketType fd, SSL* ssl, const TlsLayerOptions* options)
      : DcmTLSConnection(fd, ssl), ssl_(ssl), fd_(fd), options_(options) {}

  OFCondition serverSideHandshake() override { return Handshake(true); }
  OFCondition clientSideHandshake() override { return Handshake(false); }

  ssize_t read(void* buf, size_t nbyte) override {
    char* out = static_cast<char*>(buf);
    size_t total = 0;
    while (total < nbyte) {
      const int r = SSL_read(ssl_, out + total, static_cast<int>(std::min<size_t>(nbyte - total, INT_MAX)));
      if (r > 0) {
        total += static_cast<size_t>(r);
        continue;
      }
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (total > 0) break;  // what has arrived so far; DCMTK asks again for the rest
        if (!Wait(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, std::nullopt)) break;
        continue;
      }
      if (total > 0) break;  // the error shows on the next call
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      errno = EIO;
      return -1;
    }
    return static_cast<ssize_t>(total);
  }

  ssize_t write(void* buf, size_t nbyte) override {
    for (;;) {
      const int r = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(nbyte, INT_MAX)));
      if (r > 0) return r;
      const int e = SSL_get_error(ssl_, r);
      if ((e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) &&
          Wait(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, std::nullopt)) {
        continue;  // OpenSSL wants the same arguments again
      }
      errno = EIO;
      return -1;
    }
  }

  OFBool networkDataAvailable(int timeout_s) override {
    const auto deadline = Clock::now() + std::chrono::seconds(std::max(timeout_s, 0));
    for (;;) {
      if (SSL_pending(ssl_) > 0) return OFTrue;
      char c;
      const int r = SSL_peek(ssl_, &c, 1);  // decrypts a record already read ahead, if complete
      if (r > 0) return OFTrue;
      const int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return OFTrue;  // read() reports it
      if (!Wait(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return OFFalse;
    }
  }

 private:
  OFCondition Handshake(bool server) {
    if (options_->before_handshake) options_->before_handshake();
    const auto deadline = Clock::now() + std::chrono::seconds(options_->handshake_timeout_s);
    for (;;) {
      const int r = server ? SSL_accept(ssl_) : SSL_connect(ssl_);
      if (r == 1) return EC_Normal;
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (Wait(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) continue;
        return makeOFCondition(OFM_dcmtls, OFCondition(DCMTLS_EC_TLSAcceptOperationDidNotComplete).code(), OF_error,
                               ("TLS handshake not completed within " +
                                std::to_string(options_->handshake_timeout_s) + " s")
                                   .c_str());
      }
      // The same conditions as DCMTK's own connection, so the log reads the same.
      const unsigned long queued = ERR_get_error();
      if (e == SSL_ERROR_SSL || (e == SSL_ERROR_SYSCALL && queued != 0)) {
        return DcmTLSTransportLayer::convertOpenSSLError(queued, OFFalse);
      }
      if (e == SSL_ERROR_SYSCALL) return DCMTLS_EC_OpenSSLIOError;
      if (e == SSL_ERROR_ZERO_RETURN) return DCMTLS_EC_TLSConnectionClosedByPeer;
      return DCMTLS_EC_OtherSSLError;
    }
  }

  // Until the socket is ready for `events` (true) or the deadline passes (false); no
  // deadline: as long as it takes, as DCMTK's blocking socket did.
  bool Wait(short events, std::optional<Clock::time_point> deadline) {
    for (;;) {
      int ms = -1;
      if (deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
        if (left <= 0) return false;
        ms = static_cast<int>(std::min<long long>(left, INT_MAX));
      }
      pollfd pfd{static_cast<int>(fd_), events, 0};
      const int n = ::poll(&pfd, 1, ms);
      if (n > 0) return true;  // ready, or an error/hang-up that the next SSL call reports
      if (n == 0) return false;
      if (errno != EINTR) return true;
    }
  }

  SSL* ssl_;  // owned by DcmTLSConnection
  DcmNativeSocketType fd_;
  const TlsLayerOptions* options_;  // the layer's, which outlives its connections
};

class NodeTlsLayer : public DcmTLSTransportLayer {
 public:
  NodeTlsLayer(TlsRole role, TlsLayerOptions options)
      : DcmTLSTransportLayer(role == TlsRole::kAcceptor ? NET_ACCEPTOR : NET_REQUESTOR, nullptr, OFTrue),
        options_(std::move(options)) {}

  DcmTransportConnection* createConnection(DcmNativeSocketType fd, OFBool secure) override {
    if (!secure) return DcmTLSTransportLayer::createConnection(fd, secure);
    SSL* ssl = SSL_new(getNativeHandle());
    if (!ssl) return nullptr;
    if (SSL_set_fd(ssl, static_cast<int>(fd)) != 1 || ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
      SSL_free(ssl);
      return nullptr;
    }
    return new NodeTlsConnection(fd, ssl, &options_);
  }

 private:
  TlsLayerOptions options_;
};

}  // namespace

void TlsLayerDeleter::operator()(DcmTLSTransportLayer* layer) const { delete layer; }

Status CheckTlsSettings(const TlsSettings& s, TlsRole role) {
  auto profile = Profile(s.profile);
  if (!profile.ok()) return profile.status();
  if (role == TlsRole::kAcceptor && (s.certificate.empty() || s.private_key.empty())) {
    return Status::InvalidArgument("[tls] certificate and private_key are required to accept TLS");
  }
  if (s.certificate.empty() != s.private_key.empty()) {
    return Status::InvalidArgument("[tls] certificate and private_key go together");
  }
  if (!s.certificate.empty()) PXS_RETURN_IF_ERROR(CheckCertificateFile(s.certificate));
  if (!s.private_key.empty()) PXS_RETURN_IF_ERROR(CheckKeyFile(s.private_key));
  if ((role == TlsRole::kRequestor || s.require_peer_certificate) && s.trusted_certificates.empty()) {
    return Status::InvalidArgument("[tls] trusted_certificates is required to verify the peer's certificate");
  }
  if (!s.trusted_certificates.empty() && !std::filesystem::exists(s.trusted_certificates)) {
    return Status::InvalidArgument("[tls] trusted_certificates " + s.trusted_certificates + ": not found");
  }
  // The layer itself checks that the key matches the certificate.
  return Status::Ok();
}

StatusOr<TlsLayer> MakeTlsLayer(const TlsSettings& s, TlsRole role, TlsLayerOptions options) {
  PXS_RETURN_IF_ERROR(CheckTlsSettings(s, role));
  TlsLayer layer(new NodeTlsLayer(role, std::move(options)));
  SSL_CTX* ctx = layer->getNativeHandle();
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, kReadAheadBytes);
  SSL_CTX_clear_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // keep the buffers between records
  OFCondition c = layer->setTLSProfile(*Profile(s.profile));
  if (c.good()) c = layer->activateCipherSuites();
  if (c.bad()) return Status::InvalidArgument("[tls] profile " + s.profile + ": " + c.text());
  if (!s.private_key.empty() && layer->setPrivateKeyFile(s.private_key.c_str(), DCF_Filetype_PEM).bad()) {
    return Status::InvalidArgument("[tls] private_key " + s.private_key + ": cannot be loaded");
  }
  if (!s.certificate.empty() && layer->setCertificateFile(s.certificate.c_str(), DCF_Filetype_PEM).bad()) {
    return Status::InvalidArgument("[tls] certificate " + s.certificate + ": cannot be loaded (key too weak for " +
                                   s.profile + "?)");
  }
  if (!s.private_key.empty() && !layer->checkPrivateKeyMatchesCertificate()) {
    return Status::InvalidArgument("[tls] private_key " + s.private_key + " does not match certificate " +
                                   s.certificate);
  }
  if (!s.trusted_certificates.empty()) {
    std::error_code ec;
    c = std::filesystem::is_directory(s.trusted_certificates, ec)
            ? layer->addTrustedCertificateDir(s.trusted_certificates.c_str(), DCF_Filetype_PEM)
            : layer->addTrustedCertificateFile(s.trusted_certificates.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return Status::InvalidArgument("[tls] trusted_certificates " + s.trusted_certificates + ": " + c.text());
  }
  if (role == TlsRole::kRequestor) {
    layer->setCertificateVerification(DCV_requireCertificate);
  } else {
    layer->setCertificateVerification(s.require_peer_certificate ? DCV_requireCertificate : DCV_checkCertificate);
  }
  return layer;
}

}  // namespace pxs
