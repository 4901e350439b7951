#include "pxs/tls/tls.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>

#include <dcmtk/dcmtls/tlslayer.h>

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

StatusOr<TlsLayer> MakeTlsLayer(const TlsSettings& s, TlsRole role) {
  PXS_RETURN_IF_ERROR(CheckTlsSettings(s, role));
  TlsLayer layer(new DcmTLSTransportLayer(role == TlsRole::kAcceptor ? NET_ACCEPTOR : NET_REQUESTOR, nullptr, OFTrue));
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
