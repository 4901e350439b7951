"""Labels CSV reading with clear errors (naming the CSV row) for the train and evaluate commands.

Accepted columns (header names, case-sensitive, extra columns ignored):

* ``image`` (required): file name relative to the image folder (DICOM or PNG);
* ``patient_id`` (required; ``synthetic_patient_id`` or ``subject_id`` accepted): used for
  the patient split and for patient series;
* the normal/abnormal label, one of: ``abnormal`` (0/1, or the words normal/abnormal),
  ``label`` (normal/abnormal) or ``no_finding`` (1 = normal; the NIH ChestX-ray14 layout of
  ``../shared/data/cxr14/labels.csv``);
* ``severity`` (optional): a number, e.g. mRALE; empty cells allowed. Another column can be
  named with ``severity_column`` (e.g. ``geographic_extent_mean`` of the RALO
  ``scores.csv``; detected automatically when there is no ``severity`` column);
* an expert *scores file* (a severity column but no label column, like RALO's
  ``scores.csv``): every row must have a score inside ``severity_range`` (0-8 for the RALO
  columns); normal = score 0;
* ``label_count`` (optional) or the 14 NIH finding columns: the number of positive labels
  (without a label column, ``label_count > 0`` means abnormal);
* ``time_point``, ``follow_up``, ``study_date`` or ``exam_datetime`` (optional): order within a
  patient series (``exam_datetime`` as ``YYYYMMDD_HHMMSS.fff``).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import DataError

NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                "Pleural_Thickening", "Hernia")
PATIENT_COLUMNS = ("patient_id", "synthetic_patient_id", "subject_id")
LABEL_COLUMNS = ("abnormal", "label", "no_finding")
ORDER_COLUMNS = ("time_point", "follow_up", "study_date", "exam_datetime")
# Expert score columns recognised without --severity-column, with their valid range.
KNOWN_SEVERITY_COLUMNS = {"severity": None, "geographic_extent_mean": (0.0, 8.0),
                          "opacity_mean": (0.0, 8.0)}
EXPECTED_HEADER_TEXT = ("image, patient_id, and one of abnormal / label / no_finding / label_count "
                        "(optional: severity, label_count or the 14 NIH finding columns, "
                        "time_point / follow_up / study_date / exam_datetime); or an expert "
                        "scores file: image, subject_id (or patient_id), a severity column "
                        "such as geographic_extent_mean")

_NORMAL_WORDS = {"0", "normal", "no", "false", "n"}
_ABNORMAL_WORDS = {"1", "abnormal", "yes", "true", "y"}


@dataclass
class Record:
    row: int  # line number in the CSV file (header is line 1)
    image: str
    path: str
    patient_id: str
    abnormal: Optional[int]
    severity: Optional[float]
    label_count: Optional[int]
    order: Optional[str]
    raw: Dict[str, str]
    # Which labels file the row came from (several can be combined) and where its
    # normal/abnormal label came from: "label" (a label column) or "severity" (score == 0).
    source: str = ""
    abnormal_from: str = "label"
    severity_column: Optional[str] = None

    @property
    def image_key(self) -> str:
        """Unique across combined labels files: the image's path."""
        return self.path


def _parse_abnormal(column: str, value: str, where: str) -> int:
    text = value.strip().lower()
    if column == "no_finding":
        if text in ("0", "1"):
            return 1 - int(text)
    elif text in _NORMAL_WORDS:
        return 0
    elif text in _ABNORMAL_WORDS:
        return 1
    raise DataError(f"{where}: column '{column}' has value '{value}', expected "
                    + ("0 or 1" if column == "no_finding" else "0/1 or normal/abnormal"))


def detect_severity_column(header) -> Optional[str]:
    return next((c for c in KNOWN_SEVERITY_COLUMNS if c in header), None)


def read_labels(csv_path: str, image_dir: str, require_label: bool = True,
                check_files: bool = True, severity_column: Optional[str] = None,
                severity_range: Optional[Tuple[float, float]] = None) -> List[Record]:
    """Parses and validates the CSV. Raises DataError naming the row for every problem:
    wrong header, missing or duplicate image, unparsable label or severity, a score outside
    `severity_range` (default: the known range of the column, 0-8 for the RALO scores), a
    missing score in a scores file (no label column)."""
    if not os.path.isfile(csv_path):
        raise DataError(f"{csv_path}: labels CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        patient_col = next((c for c in PATIENT_COLUMNS if c in header), None)
        label_col = next((c for c in LABEL_COLUMNS if c in header), None)
        sev_col = severity_column or detect_severity_column(header)
        if severity_column and severity_column not in header:
            raise DataError(f"{csv_path}: no column '{severity_column}' (--severity-column); "
                            f"header is {','.join(header)}")
        if sev_col is not None and severity_range is None:
            severity_range = KNOWN_SEVERITY_COLUMNS.get(sev_col)
        scores_file = label_col is None and sev_col is not None and sev_col != "severity"
        label_source = label_col or ("label_count" if "label_count" in header else None) \
            or ("severity" if scores_file else None)
        if "image" not in header or patient_col is None or (require_label and label_source is None):
            raise DataError(f"{csv_path}: wrong header {','.join(header) or '(empty file)'}; "
                            f"expected columns {EXPECTED_HEADER_TEXT}")
        has_nih = all(f in header for f in NIH_FINDINGS)
        order_col = next((c for c in ORDER_COLUMNS if c in header), None)
        records: List[Record] = []
        first_row_of: Dict[str, int] = {}
        for line_no, row in enumerate(reader, start=2):
            where = f"{csv_path} row {line_no}"
            if None in row or any(v is None for v in row.values()):
                raise DataError(f"{where}: wrong number of fields")
            image = row["image"].strip()
            if not image:
                raise DataError(f"{where}: empty 'image'")
            if image in first_row_of:
                raise DataError(f"{where}: image '{image}' is listed twice "
                                f"(first at row {first_row_of[image]})")
            first_row_of[image] = line_no
            path = os.path.join(image_dir, image)
            if check_files and not os.path.isfile(path):
                raise DataError(f"{where}: image file '{image}' not found in {image_dir}")
            patient = row[patient_col].strip()
            if not patient:
                raise DataError(f"{where}: empty '{patient_col}'")
            abnormal = None
            if label_col is not None:
                abnormal = _parse_abnormal(label_col, row[label_col], where)
            severity = None
            if sev_col is not None:
                text = row[sev_col].strip()
                if text:
                    try:
                        severity = float(text)
                    except ValueError:
                        raise DataError(f"{where}: {sev_col} '{row[sev_col]}' is not a number") from None
                    if not math.isfinite(severity):
                        raise DataError(f"{where}: {sev_col} '{row[sev_col]}' is not a finite number")
                    if severity_range is not None and not (
                            severity_range[0] <= severity <= severity_range[1]):
                        raise DataError(f"{where}: {sev_col} {severity:g} is outside the valid "
                                        f"range {severity_range[0]:g}-{severity_range[1]:g}")
                elif scores_file:
                    raise DataError(f"{where}: missing {sev_col} (every row of a scores file "
                                    "needs a score)")
            label_count = None
            try:
                if "label_count" in header and row["label_count"].strip():
                    label_count = int(row["label_count"])
                elif has_nih:
                    label_count = sum(int(row[f]) for f in NIH_FINDINGS)
            except ValueError:
                raise DataError(f"{where}: finding labels must be integers") from None
            abnormal_from = "label"
            if abnormal is None and label_count is not None:
                abnormal = int(label_count > 0)
            if abnormal is None and scores_file and severity is not None:
                abnormal, abnormal_from = int(severity > 0), "severity"
            order = row[order_col].strip() if order_col else None
            records.append(Record(line_no, image, path, patient, abnormal, severity, label_count,
                                  order, dict(row), source=csv_path, abnormal_from=abnormal_from,
                                  severity_column=sev_col))
    if not records:
        raise DataError(f"{csv_path}: no data rows")
    return records


def order_key(value: Optional[str]):
    """Numbers sort numerically, dates (YYYY-MM-DD, YYYYMMDD or YYYYMMDD_HHMMSS.fff) as text."""
    if value is None:
        return (0, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value.replace("-", ""))
