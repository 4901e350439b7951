// The scored source image as the SR builder and the trend sheet read it (private to
// reports/): header only, text decoded to UTF-8 by the one reader (dicom_text.h).
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <memory>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/longitudinal/course.h"

namespace pxs {

struct SrInput;

struct SourceImage {
  DcmFileFormat file;
  DcmDataset* dataset = nullptr;
  std::string study_uid, study_date, study_time, sop_class_uid, sop_instance_uid, patient_id,
      issuer, modality;
  std::vector<std::string> text_problems;
};

std::string GetString(DcmItem* item, const DcmTagKey& tag);

StatusOr<std::unique_ptr<SourceImage>> LoadSource(const std::string& path);

// This study's row for the longitudinal rule (the newest score of the study), and the
// rule's options for this input: the SR and the trend sheet build the same course.
longitudinal::ScoredInstance CurrentScoredInstance(const SrInput& in, const SourceImage& src);
longitudinal::CourseOptions CourseOptionsFor(const SrInput& in);

// Numbers that cannot be written as DS (NaN, infinity) are refused up front, naming
// which one (sr_builder.cc).
Status CheckFinite(const SrInput& in);

}  // namespace pxs
