#!/usr/bin/python3
"""Synthetic DICOM courses for scripts/demo.sh when ../shared/data is absent: a few
patients, 3 studies each, CR 512x512, 12 bits. The pictures are smooth noise shaped like a
chest film, NOT X-rays: they only show the node's mechanics (store, score, compare, report).

    make_demo_dicom.py OUT_DIR [--patients 4]
"""
import argparse
import os
import uuid

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian


def uid():
    return "2.25." + str(uuid.uuid4().int)


def picture(rng, severity):
    y, x = np.mgrid[0:512, 0:512] / 512.0
    lungs = np.exp(-(((x - 0.3) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2)) + np.exp(-(((x - 0.7) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2))
    img = 3000 - 2200 * lungs + severity * 600 * rng.random((512, 512)) * lungs + 150 * rng.random((512, 512))
    return img.clip(0, 4095).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--patients", type=int, default=4)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    for p in range(args.patients):
        for t, date in enumerate(["20260102", "20260105", "20260109"]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
            meta.MediaStorageSOPInstanceUID = uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = os.path.join(args.out_dir, "DEMO-%03d_tp%d_%s.dcm" % (p + 1, t + 1, date))
            ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(), uid()
            ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = "DEMO^%03d" % (p + 1), "DEMO-%03d" % (p + 1), "PXSDEMO"
            ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, "100000", "DEMO%03d%d" % (p + 1, t + 1)
            ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
            px = picture(rng, severity=t)
            ds.Rows, ds.Columns = px.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = px.tobytes()
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(path, write_like_original=False)
    print("make_demo_dicom.py: %d synthetic studies in %s" % (3 * args.patients, args.out_dir))


if __name__ == "__main__":
    main()
