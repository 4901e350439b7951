"""`pxs-model evaluate` on synthetic data whose separability is known by construction."""

import json
import os
import tempfile
import unittest

import torch
from torch import nn

import helpers
from pxsmodel import metrics, package, preprocess
from pxsmodel.labels import NIH_FINDINGS

PRE = dict(preprocess.DEFAULT_PREPROCESSING, equalize_histogram=False, resize_short_side=40,
           center_crop=32)


class BrightnessNet(nn.Module):
    """Embedding = mean brightness per channel and of the lung band: larger opacities in the
    synthetic images move it away from the normal anchors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lungs = x[:, :, 8:24, 4:28]
        return torch.stack([x.mean((1, 2, 3)), lungs.mean((1, 2, 3))], dim=1) * 10.0


def cxr14_row(name, patient, follow_up, findings):
    flags = [1 if i < findings else 0 for i in range(len(NIH_FINDINGS))]
    return [name, patient, follow_up, int(findings == 0)] + flags


class EvaluateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        cls.images = os.path.join(root, "images")
        anchors = os.path.join(root, "anchors")
        os.makedirs(cls.images)
        os.makedirs(anchors)
        rows = []
        for i in range(12):  # normals
            helpers.write_png(os.path.join(cls.images, f"n{i}.png"), helpers.chest_like(i, 48))
            rows.append(cxr14_row(f"n{i}.png", f"{i:08d}", 0, 0))
        for i in range(12):  # abnormal with 1..4 findings; opacity grows with the count
            k = 1 + i % 4
            helpers.write_png(os.path.join(cls.images, f"a{i}.png"),
                              helpers.chest_like(100 + i, 48, abnormal=True, extent=k))
            rows.append(cxr14_row(f"a{i}.png", f"{100 + i:08d}", 0, k))
        # A patient series getting worse: 0 -> 1 -> 4 findings.
        for step, k in enumerate((0, 1, 4)):
            name = f"s{step}.png"
            helpers.write_png(os.path.join(cls.images, name),
                              helpers.chest_like(200 + step, 48, abnormal=k > 0, extent=k))
            rows.append(cxr14_row(name, "00000999", step, k))
        header = ["image", "patient_id", "follow_up", "no_finding", *NIH_FINDINGS]
        cls.labels = helpers.write_csv(os.path.join(root, "labels.csv"), header, rows)
        for i in range(5):
            helpers.write_png(os.path.join(anchors, f"x{i}.png"), helpers.chest_like(50 + i, 48))
        batch, _ = package.load_anchor_images(preprocess.list_images(anchors), PRE)
        meta = package.make_metadata(name="synthetic", version="0", embedding_dim=2, anchor_count=5,
                                     preprocessing=PRE, training_data="synthetic",
                                     intended_use="tests",
                                     trend={"stable_delta": 0.01, "bands": [{"upper": None, "label": "x"}]})
        cls.package = os.path.join(root, "synthetic.pt")
        package.write_package(BrightnessNet(), batch, meta, cls.package)
        cls.plot = os.path.join(root, "plot.png")
        cls.code, cls.out, cls.err = helpers.run_cli(
            ["evaluate", "--model", cls.package, "--images", cls.images, "--labels", cls.labels,
             "--json", "--plot", cls.plot, "--bootstrap", "300"])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def result(self):
        return json.loads(self.out.strip().splitlines()[-1])

    def test_json_is_last_line_with_required_keys(self):
        self.assertEqual(self.code, 0, self.err)
        result = self.result()
        for key in ("n", "auc", "auc_ci", "spearman_label_count"):
            self.assertIn(key, result)
        self.assertEqual(result["n"], 27)
        self.assertEqual(result["n_normal"], 13)

    def test_separable_data_gives_high_auc_and_positive_spearman(self):
        result = self.result()
        self.assertGreater(result["auc"], 0.9)
        low, high = result["auc_ci"]
        self.assertLessEqual(low, result["auc"])
        self.assertLessEqual(result["auc"], high)
        self.assertLessEqual(high, 1.0)
        self.assertGreater(result["spearman_label_count"], 0.5)

    def test_series_change_direction(self):
        change = self.result()["change_direction"]
        self.assertEqual(change["steps"], 2)
        self.assertEqual(change["sign_agreement_on_changed"], 1.0)

    def test_plot_written(self):
        with open(self.plot, "rb") as handle:
            self.assertEqual(handle.read(8), b"\x89PNG\r\n\x1a\n")

    def test_human_readable_report(self):
        self.assertIn("AUC abnormal vs normal", self.out)
        self.assertIn("95% bootstrap CI", self.out)


class MetricsTest(unittest.TestCase):
    def test_auc_known_values(self):
        self.assertEqual(metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]), 1.0)
        self.assertEqual(metrics.roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]), 0.0)
        self.assertEqual(metrics.roc_auc([0, 1], [0.5, 0.5]), 0.5)  # ties count half
        self.assertAlmostEqual(metrics.roc_auc([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.4]), 0.75)

    def test_bootstrap_ci_brackets_and_narrows_with_n(self):
        import numpy as np
        rng = np.random.default_rng(0)
        def ci_width(n):
            y = [0] * n + [1] * n
            s = list(rng.normal(0, 1, n)) + list(rng.normal(1, 1, n))
            low, high = metrics.bootstrap_auc_ci(y, s, reps=400, seed=1)
            self.assertLessEqual(low, metrics.roc_auc(y, s))
            self.assertGreaterEqual(high, metrics.roc_auc(y, s))
            return high - low
        self.assertGreater(ci_width(15), ci_width(300))


if __name__ == "__main__":
    unittest.main()
