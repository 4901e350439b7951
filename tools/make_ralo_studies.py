#!/usr/bin/env python3
"""Turn real ralo courses (../shared/data/ralo) into DICOM CR studies for the node.

Usage:
    make_ralo_studies.py OUTPUT_DIR [--ralo DIR] [--subjects ID[,ID...]]
                         [--max-subjects N] [--min-exams K] [--max-exams M]

One DICOM CR file (one study, one series, one instance) per exam of each chosen
subject, written as OUTPUT_DIR/<subject>_e<NN>_<YYYYMMDD>.dcm (NN: the exam's place in
the subject's course, from 01), plus OUTPUT_DIR/index.csv (file, subject, exam, study
date/time, UIDs, the radiologists' mean geographic extent and opacity scores).

Unlike ../shared/data/longitudinal (synthetic courses made of different people's
images), every study of a subject here is the SAME person over time: PatientID is the
ralo subject id (IssuerOfPatientID "RALO"), StudyDate/StudyTime are the real exam time
(scores.csv exam_datetime, YYYYMMDD_HHMMSS.fff). The patient's name, sex and birth date
are not in the data set and are left empty (type 2).

Pixel data: the published 224x224 8-bit JPEG (stored as 3 equal channels) as one 8-bit
MONOCHROME2 channel, Explicit VR Little Endian; ImageType DERIVED and Lossy Image
Compression 01 (ISO_10918_1) say the image was resized and JPEG-compressed before it
got here. No pixel spacing is given: the published images were resized from unknown
detectors. View position AP, as in the data set.

Subjects: --subjects picks them by id; otherwise the first --max-subjects (default 2)
subjects, in scores.csv order, with at least --min-exams (default 4) exams.
--max-exams keeps the first M exams of each course.

Output is deterministic (UIDs are 2.25.<UUID-v5> of fixed names): running it twice
gives byte-identical files, which a node treats as re-sends of the same instances.

Data: ralo is a part of the RALO data set (Cohen J.P. et al., Radiographic Assessment
of Lung Opacity Score Dataset, Zenodo 2021, doi 10.5281/zenodo.4633999), CC BY-SA 4.0:
files made from it are shared under the same licence.

Needs Debian's /usr/bin/python3 with numpy, PIL and pydicom only (python3-numpy
python3-pil python3-pydicom). Never writes into the shared data folder.
"""
import argparse
import csv
import io
import os
import sys
import uuid
from collections import OrderedDict

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RALO = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "ralo"))
UID_NAMESPACE = uuid.UUID("5d1c6f0e-8a7b-5c3d-9e2f-4b6a7c8d9e01")  # fixed, arbitrary
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
ISSUER = "RALO"
NEED_COLUMNS = {"image", "subject_id", "exam_datetime", "geographic_extent_mean", "opacity_mean", "view"}


def uid(name):
    return "2.25.%d" % uuid.uuid5(UID_NAMESPACE, name).int


def parse_exam_time(text, where):
    """'20200310_205935.923' -> ('20200310', '205935.923')."""
    date, sep, time = text.partition("_")
    whole = time.split(".")[0]
    if not sep or len(date) != 8 or not date.isdigit() or len(whole) != 6 or not whole.isdigit():
        raise ValueError("%s: exam_datetime %r is not YYYYMMDD_HHMMSS.fff" % (where, text))
    return date, time


def pixels(jpg_path):
    """The grayscale image of a 3-equal-channel JPEG, and the JPEG's compression ratio."""
    with open(jpg_path, "rb") as fh:
        data = fh.read()
    im = Image.open(io.BytesIO(data))
    a = np.asarray(im)
    if a.ndim == 3:
        a = a[:, :, 0]
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError("%s: expected an 8-bit image, got %s %s" % (jpg_path, a.dtype, a.shape))
    return np.ascontiguousarray(a), a.size / float(len(data))


def build(subject, exam_no, row, arr, ratio):
    date, time = parse_exam_time(row["exam_datetime"], "%s exam %d" % (subject, exam_no))
    key = "ralo/%s/%s" % (subject, row["image"])
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.SOPClassUID = CR_IMAGE
    ds.SOPInstanceUID = uid(key + "/instance")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber = "RALO%s" % os.path.splitext(row["image"])[0]
    ds.Modality = "CR"
    ds.Manufacturer = "RALO data set (Stony Brook University Hospital)"
    ds.InstitutionName = "Stony Brook University Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR CHEST PORTABLE 1 VIEW"
    ds.SeriesDescription = "AP"
    ds.PatientName = "RALO^%s" % subject
    ds.PatientID = subject
    ds.IssuerOfPatientID = ISSUER
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = uid(key + "/study")
    ds.SeriesInstanceUID = uid(key + "/series")
    ds.StudyID = str(exam_no)
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "%.2f" % ratio
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.DerivationDescription = "published RALO JPEG, resized to 224x224, grayscale"
    ds.ViewPosition = row.get("view") or "AP"
    ds.PatientOrientation = ["R", "F"]  # AP: the patient's right is on the viewer's left
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OB"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return ds


def write(ds, path):
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        ds.save_as(path, write_like_original=False)


def inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def courses(scores_csv):
    """subject -> its rows in exam-time order (scores.csv order of first appearance)."""
    with open(scores_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not NEED_COLUMNS <= set(reader.fieldnames):
            raise ValueError("%s: expected columns %s" % (scores_csv, ",".join(sorted(NEED_COLUMNS))))
        by_subject = OrderedDict()
        for line, row in enumerate(reader, start=2):
            parse_exam_time(row["exam_datetime"], "%s line %d" % (scores_csv, line))
            by_subject.setdefault(row["subject_id"], []).append(row)
    for rows in by_subject.values():
        rows.sort(key=lambda r: r["exam_datetime"])
    return by_subject


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output_dir")
    ap.add_argument("--ralo", default=DEFAULT_RALO, help="the ralo folder (scores.csv, images/)")
    ap.add_argument("--subjects", help="comma-separated subject ids (default: see --max-subjects)")
    ap.add_argument("--max-subjects", type=int, default=2)
    ap.add_argument("--min-exams", type=int, default=4)
    ap.add_argument("--max-exams", type=int, help="keep only the first M exams of each course")
    args = ap.parse_args()

    shared = os.path.dirname(os.path.realpath(args.ralo))
    if inside(args.output_dir, shared):
        sys.exit("refusing to write into the shared data folder (%s): choose a folder outside it" % args.output_dir)
    try:
        by_subject = courses(os.path.join(args.ralo, "scores.csv"))
    except (OSError, ValueError) as e:
        sys.exit("make_ralo_studies: %s" % e)
    if args.subjects:
        chosen = [s.strip() for s in args.subjects.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in by_subject]
        if unknown:
            sys.exit("make_ralo_studies: no such subject in scores.csv: %s" % ", ".join(unknown))
    else:
        chosen = [s for s, rows in by_subject.items() if len(rows) >= args.min_exams][: args.max_subjects]
        if not chosen:
            sys.exit("make_ralo_studies: no subject has %d or more exams" % args.min_exams)

    os.makedirs(args.output_dir, exist_ok=True)
    index = []
    for subject in chosen:
        rows = by_subject[subject][: args.max_exams] if args.max_exams else by_subject[subject]
        for exam_no, row in enumerate(rows, start=1):
            jpg = os.path.join(args.ralo, "images", row["image"])
            try:
                arr, ratio = pixels(jpg)
            except (OSError, ValueError) as e:
                sys.exit("make_ralo_studies: %s: %s" % (jpg, e))
            ds = build(subject, exam_no, row, arr, ratio)
            name = "%s_e%02d_%s.dcm" % (subject, exam_no, ds.StudyDate)
            write(ds, os.path.join(args.output_dir, name))
            index.append({"file": name, "patient_id": subject, "issuer": ISSUER, "exam": exam_no,
                          "study_date": ds.StudyDate, "study_time": ds.StudyTime,
                          "study_uid": ds.StudyInstanceUID, "sop_instance_uid": ds.SOPInstanceUID,
                          "image": row["image"], "geographic_extent_mean": row["geographic_extent_mean"],
                          "opacity_mean": row["opacity_mean"]})
    with open(os.path.join(args.output_dir, "index.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(index[0].keys()))
        w.writeheader()
        w.writerows(index)
    print("make_ralo_studies: %d studies of %d subject(s) (%s) in %s" %
          (len(index), len(chosen), ", ".join(chosen), args.output_dir))


if __name__ == "__main__":
    main()
