#!/usr/bin/python3
"""Builds the ingest benchmark's input once: N realistic chest X-ray DICOM files
(CR, 2048 x 2500, 12 bits stored in 16, explicit VR little endian, ~10 MB each) from
the NIH images in ../shared/data/cxr14, into a cache folder OUTSIDE ../shared.

    make_cache.py CACHE_DIR [--count 100] [--cxr14 ../shared/data/cxr14]

Each file is its own patient and study with fresh UIDs (2.25 + uuid4), so every run of the
benchmark sends instances the receiver has not seen; the pixels are the PNG scaled to
0..4095 and resized (bicubic) to 2048 x 2500.
"""
import argparse
import csv
import os
import sys
import uuid

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian


def uid():
    return "2.25." + str(uuid.uuid4().int)


def write_one(png, path, index):
    img = Image.open(png).convert("L").resize((2048, 2500), Image.BICUBIC)
    px = (np.asarray(img, dtype=np.float32) * (4095.0 / 255.0)).round().clip(0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(), uid()
    ds.PatientName = "BENCH^%04d" % index
    ds.PatientID = "BENCH-%04d" % index
    ds.IssuerOfPatientID = "PXSBENCH"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = px.tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache_dir")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--cxr14", default=os.path.join(here, "..", "..", "..", "shared", "data", "cxr14"))
    args = ap.parse_args()
    cxr14 = os.path.realpath(args.cxr14)
    cache = os.path.realpath(args.cache_dir)
    if cache.startswith(os.path.realpath(os.path.join(cxr14, "..")) + os.sep):
        sys.exit("make_cache.py: refusing to write inside shared/data: " + cache)
    with open(os.path.join(cxr14, "labels.csv")) as f:
        images = [row[next(iter(row))] for row in csv.DictReader(f)][: args.count]
    os.makedirs(cache, exist_ok=True)
    for i, name in enumerate(images):
        out = os.path.join(cache, "bench_%04d.dcm" % i)
        if not os.path.exists(out):
            write_one(os.path.join(cxr14, "images", name), out, i)
    print("make_cache.py: %d files in %s" % (len(images), cache))


if __name__ == "__main__":
    main()
