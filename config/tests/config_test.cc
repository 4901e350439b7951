#include "pxs/config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace pxs {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pxs_config_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "model.pt") << "placeholder";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path() const { return (dir_ / "pxsnode.toml").string(); }
  StatusOr<Config> Parse(const std::string& text) { return ParseConfig(text, Path()); }

  fs::path dir_;
};

const char* kMinimal = "[scoring]\nmodel = \"model.pt\"\n";

TEST_F(ConfigTest, MinimalConfigGetsDefaultsAndResolvesPathsAgainstTheFile) {
  auto cfg = Parse(kMinimal);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->node.ae_title, "PXSNODE");
  EXPECT_EQ(cfg->node.bind, "127.0.0.1");
  EXPECT_EQ(cfg->scoring.model, (dir_ / "model.pt").string());
  EXPECT_EQ(cfg->node.data_dir, (dir_ / "var/pxsnode").string());
  EXPECT_TRUE(cfg->scp.allowed_calling_aes.empty());
}

TEST_F(ConfigTest, ReadsEveryInterfaceKey) {
  auto cfg = Parse(R"(
[node]
ae_title = "NODE1"
bind = "0.0.0.0"
port = 4242
data_dir = "/srv/pxs"
[scp]
allowed_calling_aes = ["MOD1", "PACS"]
max_associations = 4
max_pdu = 32768
[scoring]
model = "model.pt"
device = "cuda:1"
[[destinations]]
name = "pacs"
ae_title = "PACS"
host = "10.0.0.5"
port = 104
[reports]
send_to = ["pacs", "caller"]
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->node.port, 4242);
  EXPECT_EQ(cfg->node.data_dir, "/srv/pxs");
  EXPECT_EQ(cfg->scp.allowed_calling_aes, (std::vector<std::string>{"MOD1", "PACS"}));
  EXPECT_EQ(cfg->scp.max_associations, 4);
  EXPECT_EQ(cfg->scp.max_pdu, 32768u);
  EXPECT_EQ(cfg->scoring.device, "cuda:1");
  ASSERT_EQ(cfg->destinations.size(), 1u);
  EXPECT_EQ(cfg->FindDestinationByAeTitle("PACS")->host, "10.0.0.5");
  EXPECT_EQ(cfg->reports.send_to.size(), 2u);
}

// Each bad value must be refused with a message naming the file, the key and the fault.
struct BadCase {
  const char* toml;
  const char* expected_fragment;
};

TEST_F(ConfigTest, BadValuesNameFileKeyAndFault) {
  const BadCase cases[] = {
      {"[node]\nport = 0\n[scoring]\nmodel=\"model.pt\"\n", "[node] port: must be 1..65535 (got 0)"},
      {"[node]\nae_title = \"THIS_IS_WAY_TOO_LONG_FOR_AN_AE\"\n[scoring]\nmodel=\"model.pt\"\n",
       "[node] ae_title"},
      {"[node]\nprot = 1\n[scoring]\nmodel=\"model.pt\"\n", "[node] prot: unknown key"},
      {"[scp]\nmax_associations = \"many\"\n[scoring]\nmodel=\"model.pt\"\n",
       "[scp] max_associations: must be an integer"},
      {"[scoring]\nmodel=\"model.pt\"\ndevice=\"tpu\"\n", "[scoring] device: must be auto, cpu, cuda or cuda:N"},
      {"[scoring]\nmodel=\"model.pt\"\n[reports]\nsend_to=[\"nowhere\"]\n", "[reports] send_to: 'nowhere'"},
      {"[scoring]\nmodel=\"model.pt\"\n[[destinations]]\nname=\"p\"\nae_title=\"P\"\nport=104\n",
       "[destinations #1] host: must be set"},
      {"[scoring]\nmodel=\"model.pt\"\n[extra]\n", "[extra]: unknown section"},
      {"", "[scoring] model: is required"},
      {"[node\n", "pxsnode.toml:1:"},
  };
  for (const BadCase& c : cases) {
    auto cfg = Parse(c.toml);
    ASSERT_FALSE(cfg.ok()) << "accepted: " << c.toml;
    const std::string& msg = cfg.status().message();
    EXPECT_NE(msg.find(Path()), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected_fragment), std::string::npos) << "message: " << msg;
  }
}

TEST_F(ConfigTest, LoadConfigReportsAMissingFile) {
  auto cfg = LoadConfig((dir_ / "nope.toml").string());
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("nope.toml"), std::string::npos);
}

TEST_F(ConfigTest, TheShippedExampleConfigIsValid) {
  auto cfg = LoadConfig(PXS_SOURCE_DIR "/config/pxsnode.example.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
}

TEST_F(ConfigTest, HttpIsOffByDefaultAndReadsTokens) {
  auto off = Parse(kMinimal);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->http.enabled);
  EXPECT_EQ(off->http.bind, "127.0.0.1");
  const std::string hash(64, 'A');
  auto cfg = Parse(std::string(kMinimal) + "[http]\nenabled = true\nport = 8443\n[[http.tokens]]\nname = \"ops\"\n"
                   "role = \"admin\"\nsha256 = \"" + hash + "\"\n");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_TRUE(cfg->http.enabled);
  EXPECT_EQ(cfg->http.port, 8443);
  ASSERT_EQ(cfg->http.tokens.size(), 1u);
  EXPECT_EQ(cfg->http.tokens[0].role, "admin");
  EXPECT_EQ(cfg->http.tokens[0].sha256, std::string(64, 'a'));  // compared in lower case
  auto bad_role = Parse(std::string(kMinimal) + "[[http.tokens]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"" +
                        hash + "\"\n");
  ASSERT_FALSE(bad_role.ok());
  EXPECT_NE(bad_role.status().message().find("[http.tokens #1] role"), std::string::npos) << bad_role.status().message();
  auto not_a_hash = Parse(std::string(kMinimal) + "[[http.tokens]]\nname = \"x\"\nrole = \"viewer\"\nsha256 = \"secret\"\n");
  ASSERT_FALSE(not_a_hash.ok());
  EXPECT_NE(not_a_hash.status().message().find("sha256"), std::string::npos);
  EXPECT_FALSE(Parse(std::string(kMinimal) + "[http]\nenabeld = true\n").ok());  // misspelt key
}

TEST(AeTitle, Validation) {
  EXPECT_TRUE(IsValidAeTitle("PXSNODE"));
  EXPECT_TRUE(IsValidAeTitle("A B"));
  EXPECT_FALSE(IsValidAeTitle(""));
  EXPECT_FALSE(IsValidAeTitle("    "));
  EXPECT_FALSE(IsValidAeTitle("BACK\\SLASH"));
  EXPECT_FALSE(IsValidAeTitle("12345678901234567"));
}

}  // namespace
}  // namespace pxs
