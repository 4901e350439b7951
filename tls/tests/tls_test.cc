// CheckTlsSettings / MakeTlsLayer on certificates made here: what --check-config reports.
#include "pxs/tls/tls.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_certs.h"

namespace pxs {
namespace {

namespace fs = std::filesystem;
using testing::MakeCertificate;
using testing::TestKeyPair;
using testing::WritePem;

class TlsSettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pxs-tls-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    MakeCertificate(ca_, "PXS Test CA", nullptr, true);
    WritePem(ca_, P("ca.pem"), "");
    MakeCertificate(server_, "pxsnode", &ca_, false);
    WritePem(server_, P("server.pem"), P("server.key"));
    MakeCertificate(other_, "other", &ca_, false);
    WritePem(other_, P("other.pem"), P("other.key"));
    MakeCertificate(expired_, "expired", &ca_, false, -7200, -3600);
    WritePem(expired_, P("expired.pem"), P("expired.key"));
    MakeCertificate(future_, "future", &ca_, false, 3600, 7200);
    WritePem(future_, P("future.pem"), P("future.key"));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string P(const std::string& name) { return (dir_ / name).string(); }
  TlsSettings Settings(const std::string& cert, const std::string& key) {
    return TlsSettings{P(cert), P(key), P("ca.pem"), "bcp195", false};
  }

  fs::path dir_;
  TestKeyPair ca_, server_, other_, expired_, future_;
};

TEST_F(TlsSettingsTest, AGoodCertificateAndKeyMakeALayer) {
  EXPECT_TRUE(CheckTlsSettings(Settings("server.pem", "server.key"), TlsRole::kAcceptor).ok());
  auto layer = MakeTlsLayer(Settings("server.pem", "server.key"), TlsRole::kAcceptor);
  EXPECT_TRUE(layer.ok()) << layer.status().ToString();
}

TEST_F(TlsSettingsTest, ExpiredAndNotYetValidCertificatesAreNamed) {
  Status s = CheckTlsSettings(Settings("expired.pem", "expired.key"), TlsRole::kAcceptor);
  EXPECT_NE(s.message().find("expired.pem: expired"), std::string::npos) << s.ToString();
  s = CheckTlsSettings(Settings("future.pem", "future.key"), TlsRole::kAcceptor);
  EXPECT_NE(s.message().find("not valid yet"), std::string::npos) << s.ToString();
}

TEST_F(TlsSettingsTest, AKeyThatDoesNotMatchItsCertificateIsRefused) {
  auto layer = MakeTlsLayer(Settings("server.pem", "other.key"), TlsRole::kAcceptor);
  ASSERT_FALSE(layer.ok());
  EXPECT_NE(layer.status().message().find("does not match certificate"), std::string::npos)
      << layer.status().ToString();
}

TEST_F(TlsSettingsTest, UnreadableOrMissingFilesAreNamed) {
  std::ofstream(P("garbage.key")) << "not a key\n";
  Status s = CheckTlsSettings(Settings("server.pem", "garbage.key"), TlsRole::kAcceptor);
  EXPECT_NE(s.message().find("garbage.key: not an unencrypted PEM private key"), std::string::npos) << s.ToString();
  s = CheckTlsSettings(Settings("missing.pem", "server.key"), TlsRole::kAcceptor);
  EXPECT_NE(s.message().find("missing.pem: cannot be read"), std::string::npos) << s.ToString();
  TlsSettings no_trust = Settings("server.pem", "server.key");
  no_trust.trusted_certificates.clear();
  no_trust.require_peer_certificate = true;
  s = CheckTlsSettings(no_trust, TlsRole::kAcceptor);
  EXPECT_NE(s.message().find("trusted_certificates is required"), std::string::npos) << s.ToString();
  TlsSettings bad_profile = Settings("server.pem", "server.key");
  bad_profile.profile = "tls1.0";
  EXPECT_EQ(CheckTlsSettings(bad_profile, TlsRole::kAcceptor).code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace pxs
