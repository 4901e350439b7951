"""The shipped demo package (models/pxs-demo-cxr14.pt): contract keys of version 2 and, when
../shared/data/ralo is present, that it still follows the experts on its held-out subjects."""

import csv
import os
import unittest

import helpers
from pxsmodel import calibration, labels, package

MODELS = os.path.join(helpers.REPO_ROOT, "models")
PKG = os.path.join(MODELS, "pxs-demo-cxr14.pt")
RALO = os.path.join(helpers.SHARED_DATA, "ralo")
RALO_TEST = os.path.join(MODELS, "pxs-demo-cxr14-test-ralo.csv")


class DemoPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.module, cls.meta = package.load_package(PKG)

    def test_name_version_and_size(self):
        self.assertEqual(self.meta["name"], "pxs-demo-cxr14")
        self.assertEqual(self.meta["version"].split(".")[0], "2")
        self.assertLess(os.path.getsize(PKG), 10e6)
        self.assertTrue(self.meta["not_for_clinical_use"])

    def test_calibration_and_trend(self):
        cal = self.meta["calibration"]
        self.assertEqual(cal["scale"], "RALE geographic extent")
        calibration.check_points(cal["points"])
        trend = self.meta["trend"]
        self.assertGreater(trend["stable_delta_calibrated"], 1.0)
        self.assertGreater(trend["stable_delta"], 0.0)
        uppers = [b["upper"] for b in trend["bands"]]
        self.assertIsNone(uppers[-1])
        self.assertEqual(uppers[:-1], sorted(uppers[:-1]))
        # each band bound is the smallest raw PXS that calibrates to the documented cut point
        # (or the map's first point when even that calibrates above the cut)
        first_raw = cal["points"][0][0]
        cuts = calibration.apply(cal["points"], uppers[:-1])
        for upper, got, want in zip(uppers[:-1], cuts, (0.5, 2.5, 5.0)):
            if abs(upper - first_raw) > 1e-6:
                self.assertAlmostEqual(float(got), want, delta=0.05)
            else:
                self.assertGreaterEqual(float(got), want)

    def test_held_out_files_exist(self):
        for name in ("pxs-demo-cxr14-test-labels.csv", "pxs-demo-cxr14-test-ralo.csv",
                     "pxs-demo-cxr14-test.png", "MODEL_CARD.md"):
            self.assertTrue(os.path.isfile(os.path.join(MODELS, name)), name)

    @unittest.skipUnless(os.path.isdir(os.path.join(RALO, "images")),
                         "../shared/data/ralo not present: real-data check of the demo package skipped")
    def test_follows_the_experts_on_held_out_subjects(self):
        recs = labels.read_labels(RALO_TEST, os.path.join(RALO, "images"))
        recs = recs[::4]  # a quarter of the held-out images keeps the test quick
        scores = package.score_files(self.module, self.meta, [r.path for r in recs])
        from pxsmodel import metrics
        rho = metrics.spearman([r.severity for r in recs], scores)["rho"]
        self.assertGreater(rho, 0.4, f"Spearman {rho:.3f} on {len(recs)} held-out RALO images")


if __name__ == "__main__":
    unittest.main()
