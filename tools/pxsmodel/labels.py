"""Labels CSV reading with clear errors (naming the CSV row) for the train and evaluate commands.

Accepted columns (header names, case-sensitive, extra columns ignored):

* ``image`` (required): file name relative to the image folder (DICOM or PNG);
* ``patient_id`` (required; ``synthetic_patient_id`` accepted): used for the patient split
  and for patient series;
* the normal/abnormal label, one of: ``abnormal`` (0/1, or the words normal/abnormal),
  ``label`` (normal/abnormal) or ``no_finding`` (1 = normal; the NIH ChestX-ray14 layout of
  ``../shared/data/cxr14/labels.csv``);
* ``severity`` (optional): a number, e.g. mRALE; empty cells allowed;
* ``label_count`` (optional) or the 14 NIH finding columns: the number of positive labels
  (without a label column, ``label_count > 0`` means abnormal);
* ``time_point``, ``follow_up`` or ``study_date`` (optional): order within a patient series.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import DataError

NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                "Pleural_Thickening", "Hernia")
PATIENT_COLUMNS = ("patient_id", "synthetic_patient_id")
LABEL_COLUMNS = ("abnormal", "label", "no_finding")
ORDER_COLUMNS = ("time_point", "follow_up", "study_date")
EXPECTED_HEADER_TEXT = ("image, patient_id, and one of abnormal / label / no_finding / label_count "
                        "(optional: severity, label_count or the 14 NIH finding columns, "
                        "time_point / follow_up / study_date)")

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


def read_labels(csv_path: str, image_dir: str, require_label: bool = True,
                check_files: bool = True) -> List[Record]:
    """Parses and validates the CSV. Raises DataError naming the row for every problem:
    wrong header, missing or duplicate image, unparsable label or severity."""
    if not os.path.isfile(csv_path):
        raise DataError(f"{csv_path}: labels CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        patient_col = next((c for c in PATIENT_COLUMNS if c in header), None)
        label_col = next((c for c in LABEL_COLUMNS if c in header), None)
        label_source = label_col or ("label_count" if "label_count" in header else None)
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
            if "severity" in header and row["severity"].strip():
                try:
                    severity = float(row["severity"])
                except ValueError:
                    raise DataError(f"{where}: severity '{row['severity']}' is not a number") from None
            label_count = None
            try:
                if "label_count" in header and row["label_count"].strip():
                    label_count = int(row["label_count"])
                elif has_nih:
                    label_count = sum(int(row[f]) for f in NIH_FINDINGS)
            except ValueError:
                raise DataError(f"{where}: finding labels must be integers") from None
            if abnormal is None and label_count is not None:
                abnormal = int(label_count > 0)
            order = row[order_col].strip() if order_col else None
            records.append(Record(line_no, image, path, patient, abnormal, severity, label_count,
                                  order, dict(row)))
    if not records:
        raise DataError(f"{csv_path}: no data rows")
    return records


def order_key(value: Optional[str]):
    """Numbers sort numerically, dates (YYYY-MM-DD or YYYYMMDD) as text."""
    if value is None:
        return (0, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value.replace("-", ""))
