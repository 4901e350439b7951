// Certificates for TLS tests, made with OpenSSL's C API (openssl's command line cannot
// make an already expired certificate): a CA, and keys with certificates signed by it or
// self-signed, valid from/to offsets in seconds from now. Written as PEM files.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <string>

namespace pxs::testing {

struct TestKeyPair {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  ~TestKeyPair() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

inline void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// issuer == nullptr: self-signed. is_ca: a CA certificate.
inline void MakeCertificate(TestKeyPair& out, const std::string& common_name, const TestKeyPair* issuer, bool is_ca,
                            long valid_from_s = -3600, long valid_to_s = 30 * 86400) {
  out.key = EVP_RSA_gen(2048);
  out.cert = X509_new();
  X509_set_version(out.cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(out.cert), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(out.cert), valid_from_s);
  X509_gmtime_adj(X509_getm_notAfter(out.cert), valid_to_s);
  X509_set_pubkey(out.cert, out.key);
  X509_NAME* name = X509_get_subject_name(out.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert : out.cert;
  X509_set_issuer_name(out.cert, X509_get_subject_name(issuer_cert));
  AddExtension(out.cert, issuer_cert, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (!is_ca) AddExtension(out.cert, issuer_cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  X509_sign(out.cert, issuer ? issuer->key : out.key, EVP_sha256());
}

inline void WritePem(const TestKeyPair& pair, const std::string& cert_path, const std::string& key_path) {
  if (FILE* f = std::fopen(cert_path.c_str(), "w")) {
    PEM_write_X509(f, pair.cert);
    std::fclose(f);
  }
  if (!key_path.empty()) {
    if (FILE* f = std::fopen(key_path.c_str(), "w")) {
      PEM_write_PrivateKey(f, pair.key, nullptr, nullptr, 0, nullptr, nullptr);
      std::fclose(f);
    }
  }
}

}  // namespace pxs::testing
