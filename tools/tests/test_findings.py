"""Finding-set mode (--findings, e.g. the edema demo: Edema=2,Effusion=1,Cardiomegaly=1) and the
optional metadata key `finding`: labels, split, per-finding AUCs, a tiny training run."""

import json
import os
import tempfile
import unittest

import helpers
from pxsmodel import evaluate, labels, package, train
from pxsmodel.errors import DataError

SPEC = "Edema=2,Effusion=1,Cardiomegaly"


def write_nih_dataset(folder, rows_spec, size=40):
    """rows_spec: list of sets of positive NIH findings (empty set = No Finding). Writes PNGs
    (abnormal ones with an opacity) and labels.csv in the cxr14 layout."""
    os.makedirs(folder, exist_ok=True)
    header = ["image", "patient_id", "follow_up", "no_finding"] + list(labels.NIH_FINDINGS)
    rows = []
    for i, positives in enumerate(rows_spec):
        name = f"{i:05d}_000.png"
        helpers.write_png(os.path.join(folder, name),
                          helpers.chest_like(7000 + i, size, abnormal=bool(positives),
                                             extent=2.0 * ("Edema" in positives)))
        rows.append([name, f"{i:08d}", 0, int(not positives)]
                    + [int(f in positives) for f in labels.NIH_FINDINGS])
    return helpers.write_csv(os.path.join(folder, "labels.csv"), header, rows)


def mixed_spec(n_normal=12, n_edema=10, n_effusion=8, n_other=10):
    return ([set()] * n_normal + [{"Edema"}] * (n_edema // 2)
            + [{"Edema", "Effusion"}] * (n_edema - n_edema // 2)
            + [{"Effusion"}] * (n_effusion // 2) + [{"Cardiomegaly"}] * (n_effusion - n_effusion // 2)
            + [{"Nodule"}] * n_other)


class FindingsLabelsTest(unittest.TestCase):
    def test_parse_findings(self):
        self.assertEqual(labels.parse_findings(SPEC),
                         {"Edema": 2.0, "Effusion": 1.0, "Cardiomegaly": 1.0})
        self.assertEqual(list(labels.parse_findings(SPEC))[0], "Edema")  # primary first
        for bad, word in (("Oedema=2", "unknown finding 'Oedema'"), ("Edema=0", "positive"),
                          ("Edema=x", "not a number"), ("Edema,Edema", "twice"), ("", "no finding")):
            with self.assertRaises(DataError) as ctx:
                labels.parse_findings(bad)
            self.assertIn(word, str(ctx.exception))

    def test_finding_score_and_other_findings(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_nih_dataset(tmp, [set(), {"Edema", "Effusion"}, {"Cardiomegaly"},
                                           {"Nodule"}, {"Edema", "Nodule"}])
            findings = labels.parse_findings(SPEC)
            recs = labels.read_labels(path, tmp, findings=findings)
            self.assertEqual([r.severity for r in recs], [0.0, 3.0, 1.0, 0.0, 2.0])
            self.assertEqual([r.abnormal for r in recs], [0, 1, 1, 1, 1])  # No Finding = normal
            self.assertEqual(recs[1].findings, {"Edema": 1, "Effusion": 1, "Cardiomegaly": 0})
            self.assertEqual(recs[0].severity_column, labels.FINDINGS_COLUMN)
            kept = labels.read_labels(path, tmp, findings=findings, other_findings="exclude")
            self.assertEqual([r.image for r in kept], [recs[i].image for i in (0, 1, 2, 4)])
            # without the mode nothing changes: no severity, no findings
            plain = labels.read_labels(path, tmp)
            self.assertTrue(all(r.severity is None and r.findings is None for r in plain))

    def test_bad_input_names_file_column_and_row(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_nih_dataset(tmp, [set(), {"Edema"}])
            with open(path, encoding="utf-8") as handle:
                text = handle.read().splitlines()
            header = text[0].split(",")
            col = header.index("Edema")
            cells = text[2].split(",")
            cells[col] = "yes"
            bad = os.path.join(tmp, "bad.csv")
            with open(bad, "w", encoding="utf-8") as handle:
                handle.write("\n".join([text[0], text[1], ",".join(cells)]) + "\n")
            with self.assertRaises(DataError) as ctx:
                labels.read_labels(bad, tmp, findings={"Edema": 1.0})
            self.assertIn("bad.csv row 3", str(ctx.exception))
            self.assertIn("'Edema'", str(ctx.exception))
            no_col = os.path.join(tmp, "nocol.csv")
            helpers.write_csv(no_col, ["image", "patient_id", "abnormal"],
                              [["00000_000.png", "1", 0]])
            with self.assertRaises(DataError) as ctx:
                labels.read_labels(no_col, tmp, findings={"Edema": 1.0})
            self.assertIn("nocol.csv", str(ctx.exception))
            self.assertIn("Edema", str(ctx.exception))

    def test_split_spreads_the_primary_positives(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_nih_dataset(tmp, mixed_spec(n_normal=20, n_edema=10, n_other=20), size=16)
            recs = labels.read_labels(path, tmp, findings=labels.parse_findings(SPEC))
            for seed in (1, 2, 3):
                split = train.split_by_patient(recs, 0.3, 0.2, seed)
                train.check_split(recs, split)
                edema_in = {p: sum(1 for r in recs if r.findings["Edema"] and split[r.image_key] == p)
                            for p in ("train", "val", "test")}
                # the 10 Edema patients form one stratum: round(10 * 0.3) = 3 in test and
                # round(10 * 0.2) = 2 in val whatever the seed (by chance alone 0-10)
                self.assertEqual(edema_in, {"train": 5, "val": 2, "test": 3}, seed)


class FindingMetricsTest(unittest.TestCase):
    def test_auc_vs_normal_and_vs_all(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_nih_dataset(tmp, mixed_spec(), size=16)
            recs = labels.read_labels(path, tmp, findings=labels.parse_findings(SPEC))
            perfect = [r.severity + (0.5 if r.abnormal else 0.0) for r in recs]
            res = evaluate.finding_metrics(recs, perfect, reps=200)
            self.assertEqual(res["Edema"]["n_positive"], 10)
            self.assertEqual(res["Edema"]["vs_normal"]["n_negative"], 12)
            self.assertEqual(res["Edema"]["vs_all"]["n_negative"], len(recs) - 10)
            self.assertAlmostEqual(res["Edema"]["vs_normal"]["auc"], 1.0)
            self.assertAlmostEqual(res["Edema"]["vs_all"]["auc"], 1.0)
            lo, hi = res["Edema"]["vs_all"]["auc_ci"]
            self.assertLessEqual(lo, 1.0)
            # a score that only separates abnormal from normal is perfect vs normal but not
            # vs all (the Nodule images score as high as the edema ones)
            any_finding = [float(r.abnormal) for r in recs]
            res = evaluate.finding_metrics(recs, any_finding, reps=200)
            self.assertAlmostEqual(res["Edema"]["vs_normal"]["auc"], 1.0)
            self.assertLess(res["Edema"]["vs_all"]["auc"], 0.8)
            inverted = [-v for v in perfect]
            res = evaluate.finding_metrics(recs, inverted, reps=200)
            self.assertAlmostEqual(res["Edema"]["vs_all"]["auc"], 0.0)
            plain = labels.read_labels(path, tmp)
            self.assertIsNone(evaluate.finding_metrics(plain, perfect))


class FindingMetadataTest(unittest.TestCase):
    def test_parse_and_check(self):
        finding = package.parse_finding("SCT,19242006,Pulmonary edema")
        self.assertEqual(finding, {"scheme": "SCT", "value": "19242006", "meaning": "Pulmonary edema"})
        self.assertIsNone(package.parse_finding(""))
        for bad in ("SCT,19242006", "SCT,,Pulmonary edema"):
            with self.assertRaises(DataError):
                package.parse_finding(bad)
        meta = {k: "x" for k in package.REQUIRED_METADATA_KEYS}
        meta.update(format=package.PACKAGE_FORMAT,
                    preprocessing={k: 0 for k in package.REQUIRED_PREPROCESSING_KEYS})
        package.check_metadata(meta)
        meta["finding"] = {"scheme": "SCT", "value": "19242006"}
        with self.assertRaises(DataError) as ctx:
            package.check_metadata(meta, "pkg.pt")
        self.assertIn("'meaning'", str(ctx.exception))
        meta["finding"] = {"scheme": "SCT", "value": "1", "meaning": "m", "code": "2"}
        with self.assertRaises(DataError) as ctx:
            package.check_metadata(meta)
        self.assertIn("unknown key", str(ctx.exception))


class FindingsTrainTest(unittest.TestCase):
    """A tiny training run in finding-set mode: package metadata and evaluate's JSON."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.images = os.path.join(cls.tmp.name, "cxr")
        cls.labels = write_nih_dataset(cls.images, mixed_spec(), size=40)
        cls.out = os.path.join(cls.tmp.name, "run")
        cls.result = helpers.run_cli([
            "train", "--images", cls.images, "--labels", cls.labels, "--out", cls.out,
            "--findings", SPEC, "--finding", "SCT,19242006,Pulmonary edema",
            "--name", "edema-test", "--backbone", "compact", "--embedding-dim", "8",
            "--input-size", "32", "--epochs", "2", "--batch-size", "8", "--anchor-count", "4",
            "--test-fraction", "0.3", "--val-fraction", "0.2", "--seed", "3", "--threads", "1"])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_package_says_what_it_measures(self):
        code, _out, err = self.result
        self.assertEqual(code, 0, err)
        _module, meta = package.load_package(os.path.join(self.out, "edema-test.pt"))
        self.assertEqual(meta["finding"], {"scheme": "SCT", "value": "19242006",
                                           "meaning": "Pulmonary edema"})
        cal = meta["calibration"]
        self.assertIn("Edema 2 + Effusion 1 + Cardiomegaly 1", cal["scale"])
        self.assertEqual((cal["min"], cal["max"]), (0.0, 4.0))
        self.assertEqual(meta["trend"]["stable_delta_calibrated"], 1.0)
        self.assertNotIn("rater_noise", meta)
        with open(os.path.join(self.out, "test_metrics.json"), encoding="utf-8") as handle:
            test = json.load(handle)
        self.assertIn("Edema", test["findings"])
        self.assertEqual(test["findings"]["Edema"]["n_positive"], 3)  # stratified: 10 x 0.3
        with open(os.path.join(self.out, "MODEL_CARD.md"), encoding="utf-8") as handle:
            card = handle.read()
        self.assertIn("| Edema | 3 |", card)
        self.assertIn('"value": "19242006"', card)

    def test_evaluate_reports_finding_aucs(self):
        code, stdout, err = helpers.run_cli([
            "evaluate", "--model", os.path.join(self.out, "edema-test.pt"),
            "--images", self.images, "--labels", os.path.join(self.out, "test_labels.csv"),
            "--findings", SPEC, "--json", "--bootstrap", "100"])
        self.assertEqual(code, 0, err)
        result = json.loads(stdout.strip().splitlines()[-1])
        self.assertEqual(set(result["findings"]), {"Edema", "Effusion", "Cardiomegaly"})
        edema = result["findings"]["Edema"]
        self.assertEqual(edema["n_positive"], 3)
        self.assertEqual(edema["vs_all"]["n_negative"], result["n"] - 3)
        self.assertIn("AUC Edema (3 positive) vs normal", stdout)
        # the same file without --findings: no finding-set metrics, as before
        code, stdout, err = helpers.run_cli([
            "evaluate", "--model", os.path.join(self.out, "edema-test.pt"),
            "--images", self.images, "--labels", os.path.join(self.out, "test_labels.csv"),
            "--json", "--bootstrap", "100"])
        self.assertEqual(code, 0, err)
        self.assertNotIn("findings", json.loads(stdout.strip().splitlines()[-1]))

    def test_bad_finding_option_is_refused(self):
        code, _out, err = helpers.run_cli([
            "train", "--images", self.images, "--labels", self.labels,
            "--out", os.path.join(self.tmp.name, "bad"), "--findings", "Edema",
            "--finding", "SCT,19242006", "--input-size", "32", "--epochs", "1"])
        self.assertEqual(code, 2)
        self.assertIn("--finding", err)
        code, _out, err = helpers.run_cli([
            "train", "--images", self.images, "--labels", self.labels,
            "--out", os.path.join(self.tmp.name, "bad2"), "--findings", "Oedema",
            "--input-size", "32", "--epochs", "1"])
        self.assertEqual(code, 2)
        self.assertIn("unknown finding 'Oedema'", err)


if __name__ == "__main__":
    unittest.main()
