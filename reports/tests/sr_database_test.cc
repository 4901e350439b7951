// The SR against the database: synthetic longitudinal courses are recorded and scored
// in a real pxs::Database, each study's SR is built from PatientHistory(), and the
// numbers read back out of the SR must equal the database's.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "pxs/reports/sr_builder.h"
#include "pxs/reports/sr_reader.h"
#include "pxs/storage/database.h"

namespace fs = std::filesystem;

namespace pxs {
namespace {

const fs::path kSharedData = fs::path(PXS_SOURCE_DIR) / ".." / "shared" / "data";

std::string Header(DcmDataset* ds, const DcmTagKey& tag) {
  OFString v;
  ds->findAndGetOFStringArray(tag, v);
  return v.c_str();
}

TEST(SrDatabaseTest, NumbersInTheSrEqualTheDatabase) {
  const fs::path script = kSharedData / "longitudinal" / "make_dicom.py";
  if (!fs::exists(script) || !fs::exists(kSharedData / "cxr14")) {
    GTEST_SKIP() << "SKIPPED: ../shared/data/longitudinal or ../shared/data/cxr14 not found "
                    "(shared test data is not present on this machine)";
  }
  std::string tmpl = (fs::temp_directory_path() / "pxs-srdb-test-XXXXXX").string();
  const fs::path tmp = ::mkdtemp(tmpl.data());
  const fs::path courses = tmp / "courses";
  const std::string cmd = "/usr/bin/python3 '" + script.string() + "' '" + courses.string() +
                          "' --patients PXSLONG-002,PXSLONG-003 > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  auto opened = Database::Open((tmp / "pxs.db").string(), Database::Mode::kReadWrite);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Database& db = **opened;

  // Receive every course file (as the SCP would), then score every job.
  std::vector<ReceivedInstance> batch;
  std::map<std::string, fs::path> file_of_study;
  for (const auto& entry : fs::directory_iterator(courses)) {
    if (entry.path().extension() != ".dcm") continue;
    DcmFileFormat f;
    ASSERT_TRUE(f.loadFile(entry.path().c_str(), EXS_Unknown, EGL_noChange, 4096).good());
    DcmDataset* ds = f.getDataset();
    ReceivedInstance r;
    r.sop_instance_uid = Header(ds, DCM_SOPInstanceUID);
    r.sop_class_uid = Header(ds, DCM_SOPClassUID);
    r.study_uid = Header(ds, DCM_StudyInstanceUID);
    r.series_uid = Header(ds, DCM_SeriesInstanceUID);
    r.patient = {Header(ds, DCM_PatientID), Header(ds, DCM_IssuerOfPatientID)};
    r.study_date = Header(ds, DCM_StudyDate);
    r.study_time = Header(ds, DCM_StudyTime);
    r.modality = "CR";
    r.file_path = entry.path().filename().string();
    r.received_at_ms = 1;
    file_of_study[r.study_uid] = entry.path();
    batch.push_back(r);
  }
  ASSERT_GE(batch.size(), 6u);
  std::vector<InsertOutcome> outcomes;
  ASSERT_TRUE(db.RecordInstances(batch, &outcomes).ok());
  auto jobs = db.ClaimJobs(100);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), batch.size());
  std::map<std::string, Job> job_of_study;
  for (const Job& job : *jobs) {
    ScoreRecord s;
    s.job_id = job.id;
    // Distinct, non-round synthetic scores so a mix-up of studies would show.
    s.pxs = 1.0 + std::fmod(static_cast<double>(job.id) * 2.718281828, 9.0);
    s.raw_distance = s.pxs;
    s.calibrated = s.pxs * 1.7;
    s.embedding = {static_cast<float>(job.id), 1.0f, 2.0f};
    s.model_name = "pxs-demo-cxr14";
    s.model_version = "1.0.0";
    s.scored_at_ms = 1000 + job.id;
    ASSERT_TRUE(db.CompleteJob(s).ok());
    job_of_study[job.study_uid] = job;
  }

  SrModelInfo model;
  model.name = "pxs-demo-cxr14";
  model.version = "1.0.0";
  model.calibration_scale = "mRALE";
  model.trend = PublishedPxsThresholds();
  int checked = 0;
  for (const auto& [study_uid, job] : job_of_study) {
    auto history = db.PatientHistory(job.patient);
    ASSERT_TRUE(history.ok()) << history.status().ToString();
    SrInput in;
    in.source_image_path = file_of_study[study_uid].string();
    in.model = model;
    in.node.device_observer_uid = "2.25.5";
    const StudyScore* current = nullptr;
    for (const StudyScore& s : *history) {
      if (s.study_uid == study_uid) {
        current = &s;
        continue;
      }
      in.priors.push_back({s.study_uid, s.study_date, s.study_time, s.sop_instance_uid, s.pxs,
                           s.calibrated, s.model_name, s.model_version, std::nullopt});
    }
    ASSERT_NE(current, nullptr);
    in.pxs = current->pxs;
    in.calibrated = current->calibrated;
    const std::string out = (tmp / (study_uid + ".sr.dcm")).string();
    ASSERT_TRUE(BuildStructuredReport(in, out).ok());
    auto c = ReadStructuredReport(out);
    ASSERT_TRUE(c.ok()) << c.status().ToString();

    // Every earlier study of the patient is in the SR, with the database's numbers;
    // later ones (this study received late) are not its priors.
    std::map<std::string, const StudyScore*> db_by_study;
    const StudyScore* latest_prior = nullptr;
    for (const StudyScore& s : *history) {
      if (s.study_date > current->study_date) continue;
      db_by_study[s.study_uid] = &s;
      if (s.study_uid != study_uid && (!latest_prior || s.study_date > latest_prior->study_date)) {
        latest_prior = &s;
      }
    }
    ASSERT_EQ(c->groups.size(), db_by_study.size());
    EXPECT_EQ(c->groups[0].study_uid, study_uid);
    EXPECT_EQ(c->groups[0].time_point_order, static_cast<int>(db_by_study.size()));
    for (const auto& g : c->groups) {
      ASSERT_TRUE(db_by_study.count(g.study_uid)) << g.study_uid;
      const StudyScore& s = *db_by_study[g.study_uid];
      EXPECT_EQ(g.pxs, s.pxs);
      EXPECT_EQ(g.calibrated, s.calibrated);
      EXPECT_EQ(g.algorithm_version, s.model_version);
    }
    if (latest_prior) {
      ASSERT_TRUE(c->groups[0].pxs_change.has_value());
      EXPECT_DOUBLE_EQ(*c->groups[0].pxs_change, current->pxs - latest_prior->pxs);
      longitudinal::ScoredInstance now_row, prior_row;
      now_row.pxs = current->pxs;
      prior_row.pxs = latest_prior->pxs;
      EXPECT_EQ(c->groups[0].trend, longitudinal::TrendText(longitudinal::Compare(now_row, prior_row, model.trend).trend));
    } else {
      EXPECT_FALSE(c->groups[0].pxs_change.has_value());
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(batch.size()));
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace pxs
