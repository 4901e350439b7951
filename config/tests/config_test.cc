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

TEST_F(ConfigTest, DatabaseDefaultsToTheSqliteFileAndReadsPostgresSettings) {
  auto plain = Parse(kMinimal);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->database.url, "sqlite:" + (dir_ / "var/pxsnode/pxsnode.db").string());  // today's file
  EXPECT_EQ(plain->database.pool_size, 4);
  EXPECT_EQ(plain->database.statement_timeout_ms, 0);
  EXPECT_EQ(plain->node.id, "");  // the host name, chosen by storage

  auto pg = Parse(std::string(kMinimal) +
                  "[node]\nid = \"site-a.1\"\n[database]\nurl = \"postgresql://pxs@db1/pxs\"\n"
                  "pool_size = 8\nstatement_timeout_ms = 5000\n");
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  EXPECT_EQ(pg->node.id, "site-a.1");
  EXPECT_EQ(pg->database.url, "postgresql://pxs@db1/pxs");
  EXPECT_EQ(pg->database.pool_size, 8);
  EXPECT_EQ(pg->database.statement_timeout_ms, 5000);

  auto kv = Parse(std::string(kMinimal) + "[database]\nurl = \"host=/run/postgresql dbname=pxs\"\n");
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  EXPECT_EQ(kv->database.url, "host=/run/postgresql dbname=pxs");
  auto relative = Parse(std::string(kMinimal) + "[database]\nurl = \"sqlite:db/x.db\"\n");
  ASSERT_TRUE(relative.ok()) << relative.status().ToString();
  EXPECT_EQ(relative->database.url, "sqlite:" + (dir_ / "db/x.db").string());

  const BadCase cases[] = {
      {"[database]\nurl = \"mysql://x\"\n", "[database] url: must be sqlite:PATH, postgresql://"},
      {"[database]\nurl = \"sqlite:\"\n", "[database] url: sqlite: needs a file path"},
      {"[database]\npool_size = 0\n", "[database] pool_size: must be 1..64 (got 0)"},
      {"[database]\nstatement_timeout_ms = -1\n", "[database] statement_timeout_ms: must be 0..3600000"},
      {"[database]\nurll = \"x\"\n", "[database] urll: unknown key"},
      {"[node]\nid = \"a b\"\n", "[node] id: 'a b' must be 1-64 of"},
  };
  for (const BadCase& c : cases) {
    auto cfg = Parse(std::string(kMinimal) + c.toml);
    ASSERT_FALSE(cfg.ok()) << "accepted: " << c.toml;
    EXPECT_NE(cfg.status().message().find(c.expected_fragment), std::string::npos) << cfg.status().message();
  }
  // A rejected connection string is not echoed: it may hold a password.
  auto secret = Parse(std::string(kMinimal) + "[database]\nurl = \"mysql://u:s3cret@h/d\"\n");
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().message().find("s3cret"), std::string::npos);
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

TEST_F(ConfigTest, Hl7IsOffByDefaultAndReadsSendersAndAuthorities) {
  auto off = Parse(kMinimal);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->hl7.enabled);
  EXPECT_EQ(off->hl7.port, 2575);
  auto cfg = Parse(std::string(kMinimal) +
                   "[hl7]\nenabled = true\nbind = \"0.0.0.0\"\nport = 2600\nallowed_senders = [\"MON\", \"LAB^MAIN\"]\n"
                   "max_message_bytes = 2048\n[[hl7.patient_authorities]]\nauthority = \"1.2.3.4\"\nissuer = \"HOSP_A\"\n"
                   "[[hl7.patient_authorities]]\nauthority = \"LAB\"\nissuer = \"\"\n");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_TRUE(cfg->hl7.enabled);
  EXPECT_EQ(cfg->hl7.bind, "0.0.0.0");
  EXPECT_EQ(cfg->hl7.port, 2600);
  EXPECT_EQ(cfg->hl7.allowed_senders, (std::vector<std::string>{"MON", "LAB^MAIN"}));
  EXPECT_EQ(cfg->hl7.max_message_bytes, 2048u);
  ASSERT_EQ(cfg->hl7.patient_authorities.size(), 2u);
  EXPECT_EQ(cfg->hl7.patient_authorities[0].authority, "1.2.3.4");
  EXPECT_EQ(cfg->hl7.patient_authorities[0].issuer, "HOSP_A");
  EXPECT_EQ(cfg->hl7.patient_authorities[1].issuer, "");
  struct Bad {
    std::string toml, fragment;
  };
  const std::vector<Bad> bad = {
      {"[hl7]\nbind = \"localhost\"\n", "[hl7] bind"},
      {"[hl7]\nport = 70000\n", "[hl7] port"},
      {"[hl7]\nallowed_senders = [\"^X\"]\n", "[hl7] allowed_senders"},
      {"[hl7]\nallowed_senders = [\"A^B^C\"]\n", "[hl7] allowed_senders"},
      {"[hl7]\nmax_message_bytes = 10\n", "[hl7] max_message_bytes"},
      {"[hl7]\nenabeld = true\n", "[hl7] enabeld"},
      {"[hl7]\nenabled = true\nport = 11112\n", "[hl7] port"},
      {"[hl7]\npatient_authorities = \"x\"\n", "[[hl7.patient_authorities]]"},
      {"[[hl7.patient_authorities]]\nissuer = \"A\"\n", "[hl7.patient_authorities #1] authority"},
      {"[[hl7.patient_authorities]]\nauthority = \"A\"\n[[hl7.patient_authorities]]\nauthority = \"A\"\n",
       "[hl7.patient_authorities #2] authority"},
      {"[[hl7.patient_authorities]]\nauthority = \"A\"\nissuer = \"" + std::string(65, 'x') + "\"\n",
       "[hl7.patient_authorities #1] issuer"},
      {"[[hl7.patient_authorities]]\nauthority = \"A\"\nissur = \"B\"\n", "[hl7.patient_authorities #1] issur"},
  };
  for (const Bad& b : bad) {
    auto r = Parse(std::string(kMinimal) + b.toml);
    ASSERT_FALSE(r.ok()) << b.toml;
    EXPECT_NE(r.status().message().find(b.fragment), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(Path()), std::string::npos) << r.status().message();
  }
}

TEST_F(ConfigTest, ReportsReadTheTrendSheetAndTheClinicalWindow) {
  auto off = Parse(kMinimal);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->reports.trend_sheet);
  EXPECT_DOUBLE_EQ(off->reports.clinical_window_h, 24.0);
  auto on = Parse(std::string(kMinimal) + "[reports]\ntrend_sheet = true\nclinical_window_h = 6\n");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->reports.trend_sheet);
  EXPECT_DOUBLE_EQ(on->reports.clinical_window_h, 6.0);
  auto bad = Parse(std::string(kMinimal) + "[reports]\nclinical_window_h = 0\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("[reports] clinical_window_h"), std::string::npos) << bad.status().message();
  auto not_bool = Parse(std::string(kMinimal) + "[reports]\ntrend_sheet = \"yes\"\n");
  ASSERT_FALSE(not_bool.ok());
  EXPECT_NE(not_bool.status().message().find("[reports] trend_sheet"), std::string::npos);
}

TEST_F(ConfigTest, ScoringModelIsTheOneModelShorthand) {
  auto cfg = Parse("[scoring]\nmodel = \"model.pt\"\nprecision = \"auto\"\n");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->models.size(), 1u);
  EXPECT_EQ(cfg->models[0].name, "");  // the package's own name, once loaded
  EXPECT_EQ(cfg->models[0].package, (dir_ / "model.pt").string());
  EXPECT_EQ(cfg->models[0].precision, "auto");
  EXPECT_EQ(cfg->models[0].route.body_part, routing::Route::DefaultChest().body_part);
}

TEST_F(ConfigTest, ReadsModelsWithRoutesAndDefaultsFromScoring) {
  auto cfg = Parse(R"(
[scoring]
device = "cpu"
max_batch = 2
[[models]]
name = "pxs"
package = "model.pt"
[[models]]
name = "edema"
package = "edema.pt"
precision = "bf16"
enabled = false
[models.route]
modality = ["CR", "DX"]
station_name = ["ED-CR1"]
min_rows = 1024
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->models.size(), 2u);
  EXPECT_EQ(cfg->models[0].name, "pxs");
  EXPECT_EQ(cfg->models[0].device, "cpu");
  EXPECT_TRUE(cfg->models[0].enabled);
  EXPECT_EQ(cfg->models[0].route.view_position, routing::Route::DefaultChest().view_position);
  EXPECT_EQ(cfg->models[1].package, (dir_ / "edema.pt").string());
  EXPECT_EQ(cfg->models[1].precision, "bf16");
  EXPECT_FALSE(cfg->models[1].enabled);
  EXPECT_EQ(cfg->models[1].route.modality, (std::vector<std::string>{"CR", "DX"}));
  EXPECT_TRUE(cfg->models[1].route.body_part.empty());  // a route given replaces the default
  EXPECT_EQ(cfg->models[1].route.min_rows, 1024);
}

TEST_F(ConfigTest, BadModelTablesNameTheKey) {
  auto err = [&](const std::string& text) {
    auto cfg = Parse(text);
    EXPECT_FALSE(cfg.ok()) << text;
    return cfg.ok() ? std::string() : cfg.status().message();
  };
  EXPECT_NE(err("[[models]]\nname = \"a\"\npackage = \"m.pt\"\n[models.route]\nbody_parts = [\"CHEST\"]\n")
                .find("[models #1 route] body_parts: unknown key"),
            std::string::npos);
  EXPECT_NE(err("[[models]]\nname = \"a\"\npackage = \"m.pt\"\n[[models]]\nname = \"a\"\npackage = \"n.pt\"\n")
                .find("[models #2] name: two models are named 'a'"),
            std::string::npos);
  EXPECT_NE(err("[[models]]\nname = \"a|b\"\npackage = \"m.pt\"\n").find("[models #1] name"), std::string::npos);
  EXPECT_NE(err("[[models]]\nname = \"a\"\n").find("[models #1] package: is required"), std::string::npos);
  EXPECT_NE(err("[scoring]\nmodel = \"m.pt\"\n[[models]]\npackage = \"n.pt\"\n").find("[scoring] model"),
            std::string::npos);
  EXPECT_NE(err("[[models]]\npackage = \"m.pt\"\nprecision = \"int8\"\n").find("[models #1] precision"),
            std::string::npos);
  EXPECT_NE(err("[[models]]\npackage = \"m.pt\"\n[models.route]\nmin_rows = \"big\"\n").find("min_rows"),
            std::string::npos);
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
