// Helpers shared by the storage tests: a scratch folder and instance builders.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "postgres_server.h"  // tests/support
#include "pxs/storage/database.h"

namespace pxs::testing_util {

// The storage suites run on both backends: on SQLite by default, on a real PostgreSQL
// (tests/support/postgres_server.h, one server per test process) when
// PXS_TEST_BACKEND=postgresql, as the ctest entries named postgres/... set it.
inline bool OnPostgres() {
  const char* backend = std::getenv("PXS_TEST_BACKEND");
  return backend && std::string(backend) == "postgresql";
}

// Without PostgreSQL's binaries every test of a postgres/ run is skipped, saying why.
class PostgresBackendEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (OnPostgres() && !testing::PostgresServer::Shared().available()) {
      GTEST_SKIP() << "PostgreSQL backend tests skipped: " << testing::PostgresServer::Shared().why_unavailable();
    }
  }
};
inline ::testing::Environment* const kPostgresBackendEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresBackendEnvironment);

// A fresh folder under the system temp dir, removed with everything in it, and (on
// PostgreSQL) a fresh database: db() is where the test's node database is, a file in
// the folder or a postgresql:// URL.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "pxs_storage_XXXXXX").string();
    path_ = mkdtemp(pattern.data()) ? pattern : std::string();
    if (OnPostgres() && testing::PostgresServer::Shared().available()) {
      url_ = testing::PostgresServer::Shared().CreateDatabase();
    }
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string db() const { return OnPostgres() ? url_ : DatabasePathFor(path_); }
  // On PostgreSQL: the database's name on the shared test server (for psql).
  std::string pg_database() const {
    const size_t start = url_.find(":///");
    if (start == std::string::npos) return {};
    return url_.substr(start + 4, url_.find('?') - start - 4);
  }

 private:
  std::string path_;
  std::string url_;
};

// For tests of what only SQLite has (its file, PRAGMA user_version, raw sqlite3 access).
#define PXS_SKIP_ON_POSTGRES(why) \
  if (::pxs::testing_util::OnPostgres()) GTEST_SKIP() << "SQLite only: " << why

inline ReceivedInstance MakeInstance(const std::string& sop_uid, const std::string& study_uid,
                                     const std::string& patient_id, const std::string& study_date = "20240101",
                                     int64_t received_at_ms = 1'700'000'000'000) {
  ReceivedInstance in;
  in.sop_instance_uid = sop_uid;
  in.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
  in.study_uid = study_uid;
  in.series_uid = study_uid + ".1";
  in.patient = {patient_id, patient_id.empty() ? "" : "HOSP"};
  in.patient_name = patient_id.empty() ? "ANON^X" : "DOE^" + patient_id;
  in.study_date = study_date;
  in.study_time = "101500";
  in.accession_number = "ACC" + study_uid.substr(study_uid.size() > 3 ? study_uid.size() - 3 : 0);
  in.modality = "DX";
  in.body_part = "CHEST";
  in.view_position = "PA";
  in.transfer_syntax_uid = "1.2.840.10008.1.2.1";
  in.file_path = "dicom/" + sop_uid + ".dcm";
  in.file_size = 1234;
  in.sha256 = std::string(64, 'a');
  in.calling_ae = "MODALITY1";
  in.peer_address = "127.0.0.1";
  in.received_at_ms = received_at_ms;
  return in;
}

inline ScoreRecord MakeScore(int64_t job_id, double pxs, int64_t scored_at_ms = 1'700'000'060'000) {
  ScoreRecord s;
  s.job_id = job_id;
  s.pxs = pxs;
  s.raw_distance = pxs;
  s.embedding = {0.5f, -1.25f, 3.0f};
  s.model_name = "pxs-densenet121";
  s.model_version = "1.0";
  s.queue_ms = 1;
  s.decode_ms = 2;
  s.inference_ms = 3;
  s.scored_at_ms = scored_at_ms;
  return s;
}

}  // namespace pxs::testing_util
