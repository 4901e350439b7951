"""Severity training (RALO-like expert scores file + cxr14-like labels), calibration in the
package, evaluate's severity mode, bad input of the scores file and the split file."""

import csv
import json
import os
import tempfile
import unittest

import numpy as np

import helpers
from pxsmodel import calibration, evaluate, labels, package, train
from pxsmodel.errors import DataError


def sev_train_args(tmp, out, design="centroid", *extra):
    return ["train", "--images", tmp + "/ralo", "--labels", tmp + "/ralo/scores.csv",
            "--images", tmp + "/cxr", "--labels", tmp + "/cxr/labels.csv", "--out", out,
            "--design", design, "--backbone", "compact", "--embedding-dim", "8",
            "--input-size", "32", "--epochs", "2", "--batch-size", "8", "--anchor-count", "6",
            "--test-fraction", "0.3", "--val-fraction", "0.2", "--seed", "3", "--threads", "1",
            *extra]


class SeverityTrainingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.tmp = cls.tmpdir.name
        helpers.make_scores_dataset(cls.tmp + "/ralo", n_subjects=14, exams=3)
        helpers.make_dataset(cls.tmp + "/cxr", 6, 8, size=40)
        cls.runs = {}
        for design in ("centroid", "siamese"):
            out = os.path.join(cls.tmp, design)
            cls.runs[design] = (out, helpers.run_cli(sev_train_args(cls.tmp, out, design)))

    @classmethod
    def tearDownClass(cls):
        cls.tmpdir.cleanup()

    def test_both_designs_train_and_package_has_calibration(self):
        for design, (out, (code, _o, err)) in self.runs.items():
            self.assertEqual(code, 0, err)
            self.assertIn(f"epoch 2/2 {design}", err)
            self.assertIn("left", err)  # progress bar with ETA
            _module, meta = package.load_package(os.path.join(out, f"{design}.pt"))
            cal = meta["calibration"]
            self.assertEqual(cal["scale"], "RALE geographic extent")
            self.assertEqual((cal["min"], cal["max"]), (0.0, 8.0))
            raw = [p[0] for p in cal["points"]]
            val = [p[1] for p in cal["points"]]
            self.assertTrue(all(b > a for a, b in zip(raw, raw[1:])), raw)
            self.assertTrue(all(b >= a for a, b in zip(val, val[1:])), val)
            self.assertTrue(all(0 <= v <= 8 for v in val))
            trend = meta["trend"]
            self.assertIn("stable_delta_calibrated", trend)
            self.assertGreater(trend["stable_delta"], 0)
            uppers = [b["upper"] for b in trend["bands"]]
            self.assertIsNone(uppers[-1])
            self.assertTrue(all(b > a for a, b in zip(uppers[:-1], uppers[1:-1])))

    def test_calibration_is_fitted_on_the_training_part_only(self):
        out = self.runs["centroid"][0]
        module, meta = package.load_package(os.path.join(out, "centroid.pt"))
        with open(os.path.join(out, "split.csv"), encoding="utf-8") as handle:
            split = list(csv.DictReader(handle))
        train_rows = [r for r in split if r["part"] == "train" and r["severity"] != ""]
        scores = package.score_files(module, meta, [r["path"] for r in train_rows])
        expected = calibration.fit_isotonic(scores, [float(r["severity"]) for r in train_rows])
        np.testing.assert_allclose(np.asarray(meta["calibration"]["points"]),
                                   np.asarray(expected), atol=2e-4)
        # and not what all the scored images would give
        all_rows = [r for r in split if r["severity"] != ""]
        all_scores = package.score_files(module, meta, [r["path"] for r in all_rows])
        everything = calibration.fit_isotonic(all_scores, [float(r["severity"]) for r in all_rows])
        self.assertNotEqual(np.asarray(everything).shape == np.asarray(expected).shape
                            and np.allclose(everything, expected), True)

    def test_split_is_by_subject(self):
        out = self.runs["siamese"][0]
        with open(os.path.join(out, "split.csv"), encoding="utf-8") as handle:
            split = list(csv.DictReader(handle))
        parts = {}
        for r in split:
            parts.setdefault((r["source"], r["patient_id"]), set()).add(r["part"])
        self.assertTrue(all(len(p) == 1 for p in parts.values()), parts)
        self.assertEqual({r["part"] for r in split}, {"train", "val", "test"})
        # both labels files written for evaluate
        self.assertTrue(os.path.isfile(os.path.join(out, "test_labels.csv")))
        self.assertTrue(os.path.isfile(os.path.join(out, "test_labels-2.csv")))

    def test_split_function_never_splits_a_subject(self):
        recs = labels.read_labels(self.tmp + "/ralo/scores.csv", self.tmp + "/ralo")
        for seed in range(5):
            split = train.split_by_patient(recs, 0.3, 0.2, seed)
            seen = {}
            for r in recs:
                seen.setdefault(r.patient_id, set()).add(split[r.image_key])
            self.assertTrue(all(len(v) == 1 for v in seen.values()))
        self.assertEqual(train.split_by_patient(recs, 0.3, 0.2, 1), train.split_by_patient(recs, 0.3, 0.2, 1))

    def test_user_split_with_a_subject_in_two_parts_is_refused(self):
        out = self.runs["centroid"][0]
        with open(os.path.join(out, "split.csv"), encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        pid, part = header.index("patient_id"), header.index("part")
        serial = [i for i, r in enumerate(body) if sum(1 for x in body if x[pid] == r[pid]) > 1]
        body[serial[0]][part] = "test" if body[serial[0]][part] != "test" else "train"
        bad = os.path.join(self.tmp, "bad_split.csv")
        helpers.write_csv(bad, header, body)
        new_out = os.path.join(self.tmp, "bad-split-run")
        code, _o, err = helpers.run_cli(sev_train_args(self.tmp, new_out, "centroid",
                                                       "--split-file", bad))
        self.assertEqual(code, 2)
        self.assertIn("bad_split.csv row", err)
        self.assertIn(body[serial[0]][pid], err)
        self.assertFalse(os.path.exists(os.path.join(new_out, "checkpoint_last.pt")))

    def test_evaluate_severity_mode_json(self):
        out = self.runs["centroid"][0]
        plot = os.path.join(self.tmp, "ev.png")
        code, stdout, err = helpers.run_cli([
            "evaluate", "--model", os.path.join(out, "centroid.pt"),
            "--images", self.tmp + "/ralo", "--labels", self.tmp + "/ralo/scores.csv",
            "--images", self.tmp + "/cxr", "--labels", self.tmp + "/cxr/labels.csv",
            "--json", "--plot", plot, "--bootstrap", "200"])
        self.assertEqual(code, 0, err)
        result = json.loads(stdout.strip().splitlines()[-1])
        sev = result["severity"]
        for key in ("spearman", "spearman_ci", "pearson", "pearson_ci", "mae_calibrated",
                    "mae_calibrated_ci", "change_spearman", "change_spearman_ci",
                    "trend_agreement", "trend_agreement_ci", "n_consecutive_pairs",
                    "expert_stable_delta", "trend_confusion_model_vs_expert"):
            self.assertIn(key, sev)
        self.assertEqual(sev["n_images"], 42)
        self.assertEqual(sev["n_subjects"], 14)
        self.assertEqual(sev["n_consecutive_pairs"], 28)
        lo, hi = sev["spearman_ci"]
        self.assertLessEqual(lo, sev["spearman"])
        self.assertGreaterEqual(hi, sev["spearman"])
        # the AUC is on the labelled (cxr-like) images, not on score-derived labels
        self.assertEqual(result["n_normal"] + result["n_abnormal"], 14)
        for path in (plot, os.path.join(self.tmp, "ev-scatter.png"),
                     os.path.join(self.tmp, "ev-change.png")):
            self.assertTrue(os.path.getsize(path) > 1000, path)


class SeverityMetricsTest(unittest.TestCase):
    """severity_metrics on hand-made scores: the metrics can fail."""

    def records(self, tmp, scores_by_subject):
        rows = []
        k = 0
        for s, seq in enumerate(scores_by_subject):
            for e, v in enumerate(seq):
                rows.append([f"{k}.png", f"S{s}", f"2020031{e}_000000.000", v, v, 2, "AP"])
                k += 1
        path = helpers.write_csv(os.path.join(tmp, "s.csv"), ["image", "subject_id", "exam_datetime",
                                 "geographic_extent_mean", "opacity_mean", "n_raters", "view"], rows)
        return labels.read_labels(path, tmp, check_files=False)

    def test_perfect_and_inverted_model(self):
        with tempfile.TemporaryDirectory() as tmp:
            seqs = [[0, 2, 6], [1, 1, 4], [8, 5, 2], [3, 3.5, 3], [6, 7, 8]]
            recs = self.records(tmp, seqs)
            truth = [r.severity for r in recs]
            meta = {"name": "m", "version": "1", "calibration": {"scale": "x", "points": [[0, 0], [8, 8]]},
                    "trend": {"stable_delta": 1.0, "stable_delta_calibrated": 1.0, "bands": []}}
            good = evaluate.severity_metrics(recs, truth, meta, reps=200)
            self.assertAlmostEqual(good["spearman"], 1.0)
            self.assertAlmostEqual(good["mae_calibrated"], 0.0)
            self.assertAlmostEqual(good["change_spearman"], 1.0)
            self.assertAlmostEqual(good["trend_agreement"], 1.0)
            bad = evaluate.severity_metrics(recs, [8 - t for t in truth], meta, reps=200)
            self.assertLess(bad["spearman"], -0.9)
            self.assertLessEqual(bad["trend_agreement"], 0.5)  # only the 5 stable pairs agree
            self.assertLess(bad["change_spearman"], -0.9)
            self.assertEqual(bad["n_consecutive_pairs"], 10)


class ScoresFileBadInputTest(unittest.TestCase):
    def write(self, tmp, lines):
        os.makedirs(tmp, exist_ok=True)
        for i in range(3):
            helpers.write_png(os.path.join(tmp, f"{i}.png"), helpers.chest_like(i, 32))
        path = os.path.join(tmp, "scores.csv")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("image,subject_id,exam_datetime,geographic_extent_mean,opacity_mean,n_raters,view\n")
            handle.write("\n".join(lines) + "\n")
        return path

    def test_out_of_range_and_missing_scores_name_the_row(self):
        with tempfile.TemporaryDirectory() as tmp:
            for bad, word in (("8.5", "outside"), ("-1", "outside"), ("", "missing"),
                              ("x", "not a number"), ("nan", "finite")):
                path = self.write(tmp, ["0.png,S1,20200301_000000.000,1.0,1,2,AP",
                                        f"1.png,S1,20200302_000000.000,{bad},1,2,AP"])
                with self.assertRaises(DataError) as ctx:
                    labels.read_labels(path, tmp)
                self.assertIn("scores.csv row 3", str(ctx.exception))
                self.assertIn(word, str(ctx.exception))

    def test_unreadable_image_names_file_and_row_and_writes_no_package(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = self.write(tmp, ["0.png,S1,20200301_000000.000,0,0,2,AP",
                                    "1.png,S2,20200302_000000.000,3,3,2,AP",
                                    "2.png,S3,20200302_000000.000,5,5,2,AP"])
            with open(os.path.join(tmp, "1.png"), "wb") as handle:
                handle.write(b"not an image")
            out = os.path.join(tmp, "run")
            code, _o, err = helpers.run_cli(["train", "--images", tmp, "--labels", path, "--out", out,
                                             "--input-size", "32", "--epochs", "1", "--threads", "1"])
            self.assertEqual(code, 2)
            self.assertIn("row 3", err)
            self.assertIn("1.png", err)
            self.assertFalse(any(f.endswith(".pt") for f in os.listdir(out)))

    def test_range_option_and_unknown_column(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = self.write(tmp, ["0.png,S1,20200301_000000.000,7,1,2,AP"])
            with self.assertRaises(DataError) as ctx:
                labels.read_labels(path, tmp, severity_range=(0, 4))
            self.assertIn("outside the valid range 0-4", str(ctx.exception))
            with self.assertRaises(DataError) as ctx:
                labels.read_labels(path, tmp, severity_column="mrale")
            self.assertIn("mrale", str(ctx.exception))
            recs = labels.read_labels(path, tmp, severity_column="opacity_mean")
            self.assertEqual(recs[0].severity, 1.0)
            self.assertEqual(recs[0].abnormal, 1)
            self.assertEqual(recs[0].abnormal_from, "severity")


if __name__ == "__main__":
    unittest.main()
