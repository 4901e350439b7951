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

Finding-set mode (``findings``, e.g. ``{"Edema": 2, "Effusion": 1, "Cardiomegaly": 1}``; the
``--findings`` option of train and evaluate): for a labels file with NIH finding columns the
target is a *finding score*, the sum of the weights of the set's positive findings (0 for
"No Finding" and for images with only other findings), stored as the record's severity; the
normal/abnormal label stays the file's own (No Finding = normal), so normal anchors remain
normal images. ``other_findings="exclude"`` drops the rows whose only findings are outside
the set.
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
    # Finding-set mode: 0/1 per finding of the set, in the set's order (None otherwise).
    findings: Optional[Dict[str, int]] = None

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


FINDINGS_COLUMN = "finding score"
OTHER_FINDINGS = ("keep", "exclude")


def parse_findings(spec: str, option: str = "--findings") -> Dict[str, float]:
    """'Edema=2,Effusion=1,Cardiomegaly' -> {'Edema': 2.0, 'Effusion': 1.0, 'Cardiomegaly': 1.0}
    (weight 1 when omitted). The first finding is the primary one (the split keeps its
    positives apart per part). Errors name the option and the item."""
    out: Dict[str, float] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, weight = item.partition("=")
        name = name.strip()
        if name not in NIH_FINDINGS:
            raise DataError(f"{option}: unknown finding '{name}' (choose from "
                            f"{', '.join(NIH_FINDINGS)})")
        if name in out:
            raise DataError(f"{option}: finding '{name}' given twice")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise DataError(f"{option}: weight '{weight}' of {name} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"{option}: weight of {name} must be a positive number (is {weight})")
        out[name] = value
    if not out:
        raise DataError(f"{option}: no finding given (e.g. Edema=2,Effusion=1,Cardiomegaly=1)")
    return out


def findings_text(findings: Dict[str, float]) -> str:
    """'Edema 2 + Effusion 1 + Cardiomegaly 1' (for scale names and model cards)."""
    return " + ".join(f"{name} {weight:g}" for name, weight in findings.items())


def detect_severity_column(header) -> Optional[str]:
    return next((c for c in KNOWN_SEVERITY_COLUMNS if c in header), None)


def read_labels(csv_path: str, image_dir: str, require_label: bool = True,
                check_files: bool = True, severity_column: Optional[str] = None,
                severity_range: Optional[Tuple[float, float]] = None,
                findings: Optional[Dict[str, float]] = None,
                other_findings: str = "keep") -> List[Record]:
    """Parses and validates the CSV. Raises DataError naming the row for every problem:
    wrong header, missing or duplicate image, unparsable label or severity, a score outside
    `severity_range` (default: the known range of the column, 0-8 for the RALO scores), a
    missing score in a scores file (no label column). With `findings` (finding-set mode,
    see the module text) the severity is the finding score."""
    if findings and severity_column:
        raise DataError("--findings and --severity-column exclude each other")
    if other_findings not in OTHER_FINDINGS:
        raise DataError(f"--other-findings '{other_findings}': expected one of "
                        f"{', '.join(OTHER_FINDINGS)}")
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
        if findings:
            missing = [f for f in findings if f not in header]
            if missing:
                raise DataError(f"{csv_path}: --findings needs the column(s) {', '.join(missing)}; "
                                f"header is {','.join(header)}")
            if label_col is None and "label_count" not in header and not has_nih:
                raise DataError(f"{csv_path}: --findings needs a normal/abnormal label "
                                "(no_finding, abnormal, label) to know the normal images")
            sev_col = None  # the finding score replaces any severity column
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
            positives = None
            if findings:
                positives = {}
                for name in findings:
                    text = row[name].strip()
                    if text not in ("0", "1"):
                        raise DataError(f"{where}: finding '{name}' has value '{row[name]}', "
                                        "expected 0 or 1")
                    positives[name] = int(text)
                severity = float(sum(w for name, w in findings.items() if positives[name]))
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
            if findings and abnormal == 0 and severity > 0:
                raise DataError(f"{where}: marked normal but has a positive finding of the set "
                                f"({', '.join(n for n, v in positives.items() if v)})")
            if findings and other_findings == "exclude" and abnormal == 1 and severity == 0:
                continue  # only findings outside the set: left out by request
            order = row[order_col].strip() if order_col else None
            records.append(Record(line_no, image, path, patient, abnormal, severity, label_count,
                                  order, dict(row), source=csv_path, abnormal_from=abnormal_from,
                                  severity_column=FINDINGS_COLUMN if findings else sev_col,
                                  findings=positives))
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
