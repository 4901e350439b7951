"""Isotonic calibration and the rater-noise stable-change threshold (calibration.py)."""

import math
import os
import unittest

import numpy as np

import helpers
from pxsmodel import calibration
from pxsmodel.errors import DataError


class IsotonicTest(unittest.TestCase):
    def test_monotone_strict_points_within_range(self):
        rng = np.random.default_rng(1)
        raw = rng.random(300)
        target = np.clip(8 * raw ** 2 + rng.normal(0, 1.2, 300), 0, 8)
        points = calibration.fit_isotonic(raw, target, max_points=20)
        self.assertLessEqual(len(points), 20)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        self.assertTrue(all(b > a for a, b in zip(xs, xs[1:])))
        self.assertTrue(all(b >= a for a, b in zip(ys, ys[1:])))
        self.assertTrue(all(0 <= y <= 8 for y in ys))
        calibration.check_points(points)
        # follows the truth: mid-range error small
        mid = calibration.apply(points, [0.5])[0]
        self.assertLess(abs(mid - 2.0), 0.8)
        # clamped outside
        self.assertEqual(calibration.apply(points, [-5])[0], ys[0])
        self.assertEqual(calibration.apply(points, [5])[0], ys[-1])

    def test_decreasing_data_gives_flat_map(self):
        points = calibration.fit_isotonic([0, 1, 2, 3], [8, 6, 4, 2])
        ys = [p[1] for p in points]
        self.assertEqual(len(set(ys)), 1)
        self.assertAlmostEqual(ys[0], 5.0)

    def test_pav_matches_brute_force_order(self):
        y = [1, 3, 2, 2, 5, 4, 6]
        fit = calibration.pav(y)
        self.assertTrue(all(b >= a for a, b in zip(fit, fit[1:])))
        self.assertAlmostEqual(sum(fit), sum(y))
        np.testing.assert_allclose(fit, [1, 7 / 3, 7 / 3, 7 / 3, 4.5, 4.5, 6])

    def test_inverse_and_trend_bands(self):
        points = [[0.0, 0.0], [1.0, 4.0], [2.0, 8.0]]
        self.assertAlmostEqual(calibration.inverse(points, 2.0), 0.5)
        trend = calibration.trend_settings(points, 1.6)
        uppers = [b["upper"] for b in trend["bands"]]
        self.assertEqual(uppers[:3], [0.125, 0.625, 1.25])
        self.assertIsNone(uppers[3])
        self.assertAlmostEqual(trend["stable_delta"], 0.4)  # 1.6 / slope 4
        self.assertEqual(trend["stable_delta_calibrated"], 1.6)

    def test_bad_input(self):
        with self.assertRaises(DataError):
            calibration.fit_isotonic([1.0], [2.0])
        with self.assertRaises(DataError):
            calibration.fit_isotonic([1.0, float("nan")], [2.0, 3.0])
        with self.assertRaises(DataError):
            calibration.check_points([[0, 0], [0, 1]])
        with self.assertRaises(DataError):
            calibration.check_points([[0, 2], [1, 1]])


class RaterNoiseTest(unittest.TestCase):
    def synthetic_means(self, n, p_agree_extra, sigma, seed=0):
        """Two integer raters: truth t, rater difference d from the mixture model."""
        rng = np.random.default_rng(seed)
        t = rng.integers(0, 9, n)
        d = np.where(rng.random(n) < p_agree_extra, 0, np.round(rng.normal(0, sigma, n))).astype(int)
        r1 = t
        r2 = t + d
        return (r1 + r2) / 2.0, d  # (off-scale values do not matter to the estimate)

    def test_recovers_the_rater_difference_sd(self):
        means, d = self.synthetic_means(40000, 0.3, 1.5)
        p_ge2 = float(np.mean(np.abs(d) >= 2))
        noise = calibration.rater_noise(means, p_diff_ge2=p_ge2)
        self.assertAlmostEqual(noise["p_odd"], float(np.mean(np.abs(d) % 2 == 1)), places=6)
        self.assertAlmostEqual(noise["sd_rater_difference"], float(np.std(d)), delta=0.08)
        self.assertAlmostEqual(noise["sigma_latent"], 1.5, delta=0.15)
        # MDC95 = 1.96 * sqrt(2) * SD(d) / 2
        self.assertAlmostEqual(noise["mdc95"], 1.96 * math.sqrt(2) * noise["sd_rater_difference"] / 2)
        self.assertEqual(noise["smallest_detectable_grid_change"],
                         math.floor(noise["mdc95"] / 0.5) * 0.5 + 0.5)

    def test_more_disagreement_gives_a_larger_threshold(self):
        a, da = self.synthetic_means(20000, 0.5, 1.0, seed=1)
        b, db = self.synthetic_means(20000, 0.1, 2.0, seed=2)
        na = calibration.rater_noise(a, float(np.mean(np.abs(da) >= 2)))
        nb = calibration.rater_noise(b, float(np.mean(np.abs(db) >= 2)))
        self.assertLess(na["stable_delta"], nb["stable_delta"])

    def test_refuses_scores_off_the_half_grid(self):
        with self.assertRaises(DataError):
            calibration.rater_noise([0.25] * 20)
        with self.assertRaises(DataError):
            calibration.rater_noise([1.0, 2.0])

    @unittest.skipUnless(os.path.isfile(os.path.join(helpers.SHARED_DATA, "ralo", "scores.csv")),
                         "../shared/data/ralo/scores.csv not present: real-data check skipped")
    def test_ralo_scores(self):
        import csv
        with open(os.path.join(helpers.SHARED_DATA, "ralo", "scores.csv"), encoding="utf-8") as h:
            means = [float(r["geographic_extent_mean"]) for r in csv.DictReader(h)]
        noise = calibration.rater_noise(means, 0.2)
        self.assertTrue(0.25 < noise["p_odd"] < 0.45)
        self.assertTrue(1.0 < noise["stable_delta"] < 2.5, noise)


if __name__ == "__main__":
    unittest.main()
