#include "pxs/scp/peer_policy.h"

#include <gtest/gtest.h>

namespace pxs {
namespace {

TEST(PeerPolicy, MatchesAeAddressCidrAndSubject) {
  auto policy = PeerPolicy::Create({{"CR1", "10.1.2.3", "", 2},
                                    {"PACS", "10.20.0.0/16", "", 0},
                                    {"TLSMOD", "", "CN=modality", 1},
                                    {"V6", "fd00::/8", "", 0}});
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  std::string why;
  EXPECT_EQ(policy->Match("CR1", "10.1.2.3", "", &why), std::optional<size_t>(0));
  EXPECT_FALSE(policy->Match("CR1", "10.1.2.4", "", &why));
  EXPECT_NE(why.find("not expected from 10.1.2.4"), std::string::npos) << why;
  EXPECT_EQ(policy->Match("PACS", "10.20.255.1", "", &why), std::optional<size_t>(1));
  EXPECT_EQ(policy->Match("PACS", "::ffff:10.20.0.9", "", &why), std::optional<size_t>(1));  // v4-mapped
  EXPECT_FALSE(policy->Match("PACS", "10.21.0.1", "", &why));
  EXPECT_EQ(policy->Match("TLSMOD", "192.168.1.1", "CN=modality", &why), std::optional<size_t>(2));
  EXPECT_FALSE(policy->Match("TLSMOD", "192.168.1.1", "CN=someone-else", &why));
  EXPECT_NE(why.find("certificate subject 'CN=someone-else'"), std::string::npos) << why;
  EXPECT_FALSE(policy->Match("TLSMOD", "192.168.1.1", "", &why));
  EXPECT_EQ(policy->Match("V6", "fd12::1", "", &why), std::optional<size_t>(3));
  EXPECT_FALSE(policy->Match("V6", "fe80::1", "", &why));
  EXPECT_FALSE(policy->Match("STRANGER", "10.1.2.3", "", &why));
  EXPECT_NE(why.find("'STRANGER' is not a known peer"), std::string::npos) << why;
}

TEST(PeerPolicy, BadAddressesAreNamed) {
  auto bad = PeerPolicy::Create({{"A", "10.0.0.0/33", "", 0}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("prefix too long"), std::string::npos) << bad.status().ToString();
  bad = PeerPolicy::Create({{"B", "modality.local", "", 0}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("#1 (B)"), std::string::npos) << bad.status().ToString();
  bad = PeerPolicy::Create({{"", "10.0.0.1", "", 0}});
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace pxs
