"""The product's longitudinal rule (tools/pxsmodel/longitudinal.py): boundary cases."""

import unittest

import helpers  # noqa: F401  (sys.path)
from pxsmodel import longitudinal

META = {"name": "m", "version": "2.0.0", "calibration": None,
        "trend": {"stable_delta": 0.1,
                  "bands": [{"upper": 0.2, "label": "normal/minimal"},
                            {"upper": 0.5, "label": "mild"}, {"upper": None, "label": "severe"}]}}
CAL_META = dict(META, calibration={"scale": "s", "points": [[0.0, 0.0], [1.0, 8.0]]},
                trend=dict(META["trend"], stable_delta_calibrated=1.5))


def row(study, date, pxs, name="m", version="2.0.0", **kw):
    return dict(study=study, study_date=date, pxs=pxs, model_name=name, model_version=version, **kw)


class LongitudinalRuleTest(unittest.TestCase):
    def test_first_study_not_compared_and_band(self):
        out = longitudinal.course([row("A", "2020-01-01", 0.3)], META)
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0]["trend"], "not compared")
        self.assertIsNone(out[0]["change"])
        self.assertEqual(out[0]["band"], "mild")

    def test_change_equal_to_delta_is_stable(self):
        # 0.25 and 0.125 are exact in binary: |change| == delta exactly
        meta = dict(META, trend=dict(META["trend"], stable_delta=0.125))
        out = longitudinal.course([row("A", 1, 0.25), row("B", 2, 0.375), row("C", 3, 0.25),
                                   row("D", 4, 0.5)], meta)
        self.assertEqual([o["trend"] for o in out], ["not compared", "stable", "stable", "worse"])
        out = longitudinal.course([row("A", 1, 0.5), row("B", 2, 0.25)], meta)
        self.assertEqual(out[1]["trend"], "better")

    def test_other_model_or_version_never_compared(self):
        rows = [row("A", 1, 0.1, version="1.0.0"), row("B", 2, 0.9),
                row("C", 3, 0.1, name="other")]
        out = longitudinal.course(rows, META)
        self.assertEqual([o["study"] for o in out], ["B"])
        self.assertEqual(out[0]["trend"], "not compared")

    def test_later_or_same_dated_study_is_never_a_prior(self):
        # given out of order: the later-dated study must not be the prior of the earlier
        rows = [row("LATE", "2020-03-01", 0.9), row("EARLY", "2020-01-01", 0.1),
                row("SAME", "2020-01-01", 0.5)]
        out = {o["study"]: o for o in longitudinal.course(rows, META)}
        self.assertEqual(out["EARLY"]["trend"], "not compared")
        self.assertEqual(out["SAME"]["trend"], "not compared")  # same date: not strictly before
        self.assertIn(out["LATE"]["previous"], ("EARLY", "SAME"))
        self.assertEqual(out["LATE"]["trend"], "worse")

    def test_latest_scored_instance_is_the_value(self):
        rows = [row("A", 1, 0.1), row("B", 2, 0.9, scored_at=5), row("B", 2, 0.15, scored_at=9),
                row("B", 2, 0.95, scored_at=7)]
        out = longitudinal.course(rows, META)
        self.assertEqual(out[1]["value"], 0.15)
        self.assertEqual(out[1]["trend"], "stable")

    def test_calibrated_threshold_used_when_both_calibrated(self):
        # raw change 0.15 > raw delta 0.1 but calibrated change 1.2 <= 1.5: stable
        out = longitudinal.course([row("A", 1, 0.3), row("B", 2, 0.45)], CAL_META)
        self.assertAlmostEqual(out[1]["calibrated_change"], 1.2)
        self.assertEqual(out[1]["trend"], "stable")
        out = longitudinal.course([row("A", 1, 0.3), row("B", 2, 0.5)], CAL_META)
        self.assertEqual(out[1]["trend"], "worse")  # 1.6 > 1.5
        # without the calibrated threshold the raw rule applies
        no_cal_delta = dict(CAL_META, trend=META["trend"])
        out = longitudinal.course([row("A", 1, 0.3), row("B", 2, 0.45)], no_cal_delta)
        self.assertEqual(out[1]["trend"], "worse")

    def test_band_boundary_is_exclusive(self):
        self.assertEqual(longitudinal.band_of(0.2, META["trend"]["bands"]), "mild")
        self.assertEqual(longitudinal.band_of(0.1999, META["trend"]["bands"]), "normal/minimal")
        self.assertEqual(longitudinal.band_of(99, META["trend"]["bands"]), "severe")


if __name__ == "__main__":
    unittest.main()
