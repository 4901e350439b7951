// pxs::tls: DICOM TLS (PS3.15 Annex B.9, the BCP 195 profiles) settings shared by the SCP
// (acceptor) and the sender (requestor): building DCMTK's TLS layer from PEM files, and
// checking those files before the node starts (--check-config) so that an unreadable
// key, a key that does not match its certificate or an expired certificate is a clear
// message instead of failed handshakes.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "pxs/common/status.h"

class DcmTLSTransportLayer;

namespace pxs {

struct TlsSettings {
  std::string certificate;           // PEM; this side's certificate
  std::string private_key;           // PEM, unencrypted
  std::string trusted_certificates;  // PEM file, or a folder of hashed PEM files (c_rehash)
  std::string profile = "bcp195";    // bcp195 | bcp195-nd | bcp195-extended
  // Acceptor: the peer must present a certificate the trust store verifies. Requestor:
  // the server's certificate is always verified.
  bool require_peer_certificate = false;
};

enum class TlsRole { kAcceptor, kRequestor };

// Fails, naming the file and the problem, when a file cannot be read, the key does not
// match the certificate, the certificate is expired or not yet valid, or the profile is
// unknown. Missing optional files (no certificate for a requestor) are fine.
Status CheckTlsSettings(const TlsSettings& settings, TlsRole role);

struct TlsLayerDeleter {
  void operator()(DcmTLSTransportLayer* layer) const;
};
using TlsLayer = std::unique_ptr<DcmTLSTransportLayer, TlsLayerDeleter>;

// How the layer's connections behave (not configuration: chosen by the SCP / the sender).
struct TlsLayerOptions {
  // A handshake not finished in this time fails (a client that sends a ClientHello and
  // then nothing must not hold a thread, or anything else, for longer).
  int handshake_timeout_s = 10;
  // Called on the connection's thread when DCMTK hands the accepted socket to the layer,
  // before the handshake: the SCP releases the lock it holds around DCMTK's process-wide
  // external socket handle there, so that handshakes run concurrently.
  std::function<void()> before_handshake;
};

// The layer DCMTK's network uses (ASC_setTransportLayer / DcmSCU::useSecureConnection).
// Runs CheckTlsSettings first. Its connections read ahead (many TLS records per system
// call), return everything already decrypted in one read, and do the handshake with a
// deadline; see tls.cc for why.
StatusOr<TlsLayer> MakeTlsLayer(const TlsSettings& settings, TlsRole role, TlsLayerOptions options = {});

}  // namespace pxs
