#!/usr/bin/env python3
"""The C++ longitudinal library and its Python mirror (tools/pxsmodel/longitudinal.py)
give the same course on the same tables: study value, previous study, change,
calibrated change, trend and band, boundary cases included.

Usage: cross_test.py COURSE_JSON_EXE TOOLS_DIR   (ctest passes both)

The tables stay inside what both sides define: the Python mirror takes one comparable
`study_date` (here the C++ study date and time joined, times written HHMMSS.ffffff so
the C++ side's normalization leaves them as they are) and has no rule for a missing
date, so the C++ fallback to the scoring time is tested by the C++ unit tests only.
Ties of two prior studies at the same time are ordered by scoring in C++ and by study
id in Python; the tie table uses ids that sort like the scoring order.
"""
import json
import os
import subprocess
import sys
import unittest

EXE = sys.argv[1] if len(sys.argv) > 1 else None
TOOLS = sys.argv[2] if len(sys.argv) > 2 else None

BANDS = [{"upper": 0.25, "label": "normal/minimal"}, {"upper": 0.5, "label": "mild"},
         {"upper": None, "label": "severe"}]
MODEL = {"name": "pxs-demo", "version": "2.0.0", "calibration": None,
         "trend": {"stable_delta": 0.125, "bands": BANDS}}
CAL_MODEL = dict(MODEL, trend=dict(MODEL["trend"], stable_delta_calibrated=0.5))
OLD = ("pxs-demo", "1.0.0")


def row(study, date, time, pxs, score_id, model=("pxs-demo", "2.0.0"), calibrated=None, scored_at=None):
    return {"study": study, "study_date": date, "study_time": time, "pxs": pxs, "calibrated": calibrated,
            "model_name": model[0], "model_version": model[1],
            "scored_at": score_id * 1000 if scored_at is None else scored_at, "score_id": score_id}


TABLES = [
    {"name": "boundary: |change| == stable_delta is stable, beyond is not", "model": MODEL, "rows": [
        row("a", "20200101", "080000.000000", 0.25, 1), row("b", "20200102", "080000.000000", 0.375, 2),
        row("c", "20200103", "080000.000000", 0.25, 3), row("d", "20200104", "080000.000000", 0.5, 4),
        row("e", "20200105", "080000.000000", 0.0, 5)]},
    {"name": "calibrated threshold decides when both are calibrated, boundary included", "model": CAL_MODEL, "rows": [
        row("a", "20200101", "080000.000000", 0.25, 1, calibrated=2.0),
        row("b", "20200102", "080000.000000", 0.5, 2, calibrated=2.5),   # +0.5 calibrated: stable
        row("c", "20200103", "080000.000000", 0.5625, 3, calibrated=3.5),  # +1.0 calibrated: worse
        row("d", "20200104", "080000.000000", 0.75, 4)]},                # no calibrated: raw +0.1875 worse
    {"name": "another model's studies are never compared", "model": MODEL, "rows": [
        row("a", "20200101", "080000.000000", 0.9, 1, model=OLD), row("b", "20200102", "080000.000000", 0.3, 2),
        row("c", "20200103", "080000.000000", 0.1, 3, model=OLD), row("d", "20200104", "080000.000000", 0.35, 4),
        row("b", "20200102", "080000.000000", 0.7, 5, model=OLD)]},
    {"name": "a later-dated study sent first is never a prior", "model": MODEL, "rows": [
        row("late", "20200301", "120000.000000", 0.6, 1), row("early", "20200201", "120000.000000", 0.2, 2),
        row("middle", "20200215", "120000.000000", 0.3, 3)]},
    {"name": "the latest-scored instance stands for the study", "model": MODEL, "rows": [
        row("a", "20200101", "080000.000000", 0.2, 1), row("b", "20200102", "080000.000000", 0.9, 2),
        row("b", "20200102", "080000.000000", 0.3, 3), row("a", "20200101", "080000.000000", 0.4, 4)]},
    {"name": "same day, times order the course", "model": MODEL, "rows": [
        row("evening", "20200319", "205935.923000", 0.5, 1), row("morning", "20200319", "055739.127000", 0.2, 2),
        row("noon", "20200319", "120000.000000", 0.3, 3)]},
    {"name": "two priors at the same time: the later-scored is previous", "model": MODEL, "rows": [
        row("p1", "20200101", "080000.000000", 0.2, 1), row("p2", "20200101", "080000.000000", 0.4, 2),
        row("q", "20200102", "080000.000000", 0.45, 3)]},
]


def python_course(table):
    from pxsmodel import longitudinal
    rows = [dict(r, study_date=r["study_date"] + r["study_time"]) for r in table["rows"]]
    return longitudinal.course(rows, table["model"])


def normalized(point):
    """The fields both sides define, in one form (the band: '' for none)."""
    return {"study": point["study"], "value": point["value"], "calibrated": point["calibrated"],
            "previous": point["previous"], "change": point["change"],
            "calibrated_change": point["calibrated_change"], "trend": point["trend"],
            "band": point["band"] or ""}


class CrossTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not EXE or not TOOLS:
            raise unittest.SkipTest("usage: cross_test.py COURSE_JSON_EXE TOOLS_DIR")
        if not os.path.exists(os.path.join(TOOLS, "pxsmodel", "longitudinal.py")):
            raise unittest.SkipTest("SKIPPED: tools/pxsmodel/longitudinal.py not found")
        sys.path.insert(0, TOOLS)
        done = subprocess.run([EXE], input=json.dumps(TABLES), capture_output=True, text=True, check=True)
        cls.cpp = {t["name"]: t["course"] for t in json.loads(done.stdout)}

    def test_every_table_gives_the_same_course(self):
        for table in TABLES:
            with self.subTest(table["name"]):
                cpp = [normalized(p) for p in self.cpp[table["name"]]]
                py = [normalized(p) for p in python_course(table)]
                self.assertEqual(cpp, py)

    def test_the_tables_cover_every_trend(self):
        trends = {p["trend"] for course in self.cpp.values() for p in course}
        self.assertEqual(trends, {"not compared", "stable", "worse", "better"})


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
