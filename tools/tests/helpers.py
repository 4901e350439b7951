"""Synthetic fixtures for the pxs-model tests: images, DICOM files and label CSVs written to
temporary folders (never into the repository or ../shared/data)."""

import contextlib
import csv
import io
import os
import sys

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(TOOLS_DIR)
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)

from pxsmodel import cli  # noqa: E402


def chest_like(seed: int, size: int = 48, abnormal: bool = False, extent: float = 1.0) -> np.ndarray:
    """A float image in [0,1]: dark 'lungs' on a brighter body; abnormal images get a bright
    opacity in a lung field, larger with `extent`. Different seeds give different noise and
    lung shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.6 + 0.05 * rng.standard_normal((size, size))
    for cx in (0.3, 0.7):
        r = 0.17 + 0.02 * rng.standard_normal()
        lung = ((xx - cx) / r) ** 2 + ((yy - 0.5) / (r * 1.8)) ** 2 < 1
        img[lung] -= 0.4
    if abnormal:
        cx, cy = rng.choice([0.3, 0.7]), 0.45 + 0.1 * rng.random()
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2) < ((0.08 + 0.04 * extent) * (1 + 0.1 * rng.random())) ** 2
        img[blob] += 0.45
    return np.clip(img, 0, 1)


def write_png(path: str, image01: np.ndarray, bits: int = 8) -> str:
    if bits == 8:
        Image.fromarray((image01 * 255).round().astype(np.uint8)).save(path)
    else:
        Image.fromarray((image01 * 65535).round().astype(np.uint16)).save(path)
    return path


def write_dicom(path: str, stored: np.ndarray, bits_stored: int = 12,
                photometric: str = "MONOCHROME2", garbage_above_high_bit: bool = False) -> str:
    """Uncompressed 16-bit-allocated DICOM with the given stored values (uint16 array)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "TEST"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    values = stored.astype(np.uint16)
    if garbage_above_high_bit:
        values = values | np.uint16(1 << 15)  # e.g. overlay bits left in the pixel data
    ds.PixelData = values.tobytes()
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.save_as(path, write_like_original=False)
    return path


def write_csv(path: str, header, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_dataset(folder: str, n_normal: int, n_abnormal: int, size: int = 48,
                 severity: bool = False, dicom_every: int = 0):
    """Writes images (PNG, and every `dicom_every`-th as 12-bit DICOM) and labels.csv in the
    cxr14 layout subset: image,patient_id,abnormal[,severity],label_count."""
    os.makedirs(folder, exist_ok=True)
    rows = []
    for i in range(n_normal + n_abnormal):
        abnormal = i >= n_normal
        img = chest_like(1000 + i, size, abnormal)
        if dicom_every and i % dicom_every == 0:
            name = f"img{i:03d}.dcm"
            write_dicom(os.path.join(folder, name), (img * 4095).round().astype(np.uint16))
        else:
            name = f"img{i:03d}.png"
            write_png(os.path.join(folder, name), img)
        row = [name, f"P{i:03d}", int(abnormal)]
        if severity:
            row.append(0 if not abnormal else 2 + i % 5)
        row.append(0 if not abnormal else 1 + i % 3)
        rows.append(row)
    header = ["image", "patient_id", "abnormal"] + (["severity"] if severity else []) + ["label_count"]
    return write_csv(os.path.join(folder, "labels.csv"), header, rows)


def run_cli(argv):
    """Runs pxs-model in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def make_scores_dataset(folder: str, n_subjects: int = 12, exams: int = 3, size: int = 40,
                        seed: int = 0, name: str = "scores.csv"):
    """A RALO-like expert scores file: image,subject_id,exam_datetime,geographic_extent_mean,
    opacity_mean,n_raters,view; serial exams per subject whose opacity grows with the score
    (means of two integer ratings, on the 0.5 grid; some subjects have a 0 exam)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    k = 0
    for s in range(n_subjects):
        base = int(rng.integers(0, 7))
        for e in range(exams):
            score = float(np.clip(base + int(rng.integers(-1, 3)) * 0.5 * e, 0, 8))
            if s % 4 == 0 and e == 0:
                score = 0.0
            img = chest_like(5000 + k, size, abnormal=score > 0, extent=score)
            image = f"{k:04d}.png"
            write_png(os.path.join(folder, image), img)
            rows.append([image, f"S{s:03d}", f"202003{10 + e:02d}_120000.000", score, score, 2, "AP"])
            k += 1
    header = ["image", "subject_id", "exam_datetime", "geographic_extent_mean", "opacity_mean",
              "n_raters", "view"]
    return write_csv(os.path.join(folder, name), header, rows)
