"""Training a tiny model on synthetic images, interruption + resume, package + model card."""

import json
import os
import tempfile
import unittest

import torch

import helpers
from pxsmodel import package


def train_args(images, labels, out, *extra):
    return ["train", "--images", images, "--labels", labels, "--out", out,
            "--backbone", "compact", "--embedding-dim", "16", "--input-size", "32",
            "--epochs", "2", "--finetune-epochs", "1", "--pairs-per-epoch", "16",
            "--batch-size", "8", "--anchor-count", "4", "--test-fraction", "0.25",
            "--val-fraction", "0.2", "--seed", "5", "--threads", "1", "--design", "contrastive",
            *extra]


class TrainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.images = os.path.join(cls.tmp.name, "images")
        cls.labels = helpers.make_dataset(cls.images, 10, 14, size=40, severity=True, dicom_every=5)
        cls.out = os.path.join(cls.tmp.name, "run")
        # First call stops after one epoch, as if interrupted; the second resumes.
        cls.first = helpers.run_cli(train_args(cls.images, cls.labels, cls.out,
                                               "--stop-after-epochs", "1"))
        cls.after_first = torch.load(os.path.join(cls.out, "checkpoint_last.pt"))
        cls.second = helpers.run_cli(train_args(cls.images, cls.labels, cls.out, "--resume"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_interrupted_run_saved_one_epoch(self):
        self.assertEqual(self.first[0], 0, self.first[2])
        self.assertEqual(self.after_first["epoch"], 1)
        self.assertIn("epoch 1/3 contrastive", self.first[2])  # progress bar text

    def test_resume_continues_to_the_end(self):
        self.assertEqual(self.second[0], 0, self.second[2])
        self.assertIn("resuming after epoch 1 of 3", self.second[2])
        self.assertNotIn("epoch 1/3", self.second[2])
        last = torch.load(os.path.join(self.out, "checkpoint_last.pt"))
        self.assertEqual(last["epoch"], 3)
        stages = [h["stage"] for h in last["history"]]
        self.assertEqual(stages, ["contrastive", "contrastive", "severity"])
        with open(os.path.join(self.out, "train_log.jsonl"), encoding="utf-8") as handle:
            self.assertEqual(len(handle.read().splitlines()), 3)

    def test_patient_split_has_no_overlap(self):
        split = self.after_first["split"]
        parts = {p for p in split.values()}
        self.assertEqual(parts, {"train", "val", "test"})
        # One image per patient in this data set: the test part must be held out as a file.
        with open(os.path.join(self.out, "test_labels.csv"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        self.assertEqual(lines[0], "image,patient_id,abnormal,severity,label_count")
        self.assertEqual(len(lines) - 1, sum(1 for p in split.values() if p == "test"))

    def test_package_and_model_card(self):
        pkg = os.path.join(self.out, "run.pt")
        module, meta = package.load_package(pkg)
        self.assertEqual(meta["embedding_dim"], 16)
        self.assertEqual(meta["input"]["height"], 32)
        self.assertEqual(tuple(module.anchors.shape), (4, 16))
        self.assertTrue(meta["not_for_clinical_use"])
        bands = [b["upper"] for b in meta["trend"]["bands"]]
        self.assertIsNone(bands[-1])
        self.assertEqual(bands[:-1], sorted(bands[:-1]))
        with open(os.path.join(self.out, "MODEL_CARD.md"), encoding="utf-8") as handle:
            card = handle.read()
        for section in ("## Intended use", "## Data", "## Command line", "## Limitations",
                        "## Metrics on the held-out test part", "95% CI", "severity"):
            self.assertIn(section, card)
        with open(os.path.join(self.out, "test_metrics.json"), encoding="utf-8") as handle:
            metrics = json.load(handle)
        self.assertEqual(metrics["n"], 6)
        self.assertTrue(os.path.isfile(os.path.join(self.out, "test_evaluation.png")))

    def test_our_checkpoint_exports(self):
        anchors = os.path.join(self.tmp.name, "anchors")
        os.makedirs(anchors, exist_ok=True)
        helpers.write_png(os.path.join(anchors, "a.png"), helpers.chest_like(1, 40))
        out_pkg = os.path.join(self.tmp.name, "exported.pt")
        code, out, err = helpers.run_cli(["export", "--checkpoint",
                                          os.path.join(self.out, "checkpoint_best.pt"),
                                          "--anchors", anchors, "--out", out_pkg])
        self.assertEqual(code, 0, err)
        self.assertIn("pxs-model train checkpoint (compact)", out)
        _module, meta = package.load_package(out_pkg)
        self.assertEqual(meta["anchor_count"], 1)
        self.assertEqual(meta["input"]["width"], 32)

    def test_other_backbones_train_and_package(self):
        for backbone, dim in (("resnet18", 12), ("compact-gn", 8)):
            out = os.path.join(self.tmp.name, backbone)
            code, _o, err = helpers.run_cli([
                "train", "--images", self.images, "--labels", self.labels, "--out", out,
                "--backbone", backbone, "--embedding-dim", str(dim), "--input-size", "32",
                "--epochs", "1", "--finetune-epochs", "0", "--pairs-per-epoch", "8",
                "--batch-size", "4", "--test-fraction", "0", "--val-fraction", "0",
                "--anchor-count", "3", "--threads", "1", "--design", "contrastive"])
            self.assertEqual(code, 0, err)
            module, meta = package.load_package(os.path.join(out, f"{backbone}.pt"))
            self.assertEqual(tuple(module.anchors.shape), (3, dim))
            with open(os.path.join(out, "MODEL_CARD.md"), encoding="utf-8") as handle:
                self.assertIn("No test part", handle.read())

    def test_rerun_without_resume_is_refused_and_changed_options_too(self):
        code, _o, err = helpers.run_cli(train_args(self.images, self.labels, self.out))
        self.assertEqual(code, 2)
        self.assertIn("--resume", err)
        code, _o, err = helpers.run_cli(train_args(self.images, self.labels, self.out,
                                                   "--resume", "--lr", "0.5"))
        self.assertEqual(code, 2)
        self.assertIn("lr", err)


if __name__ == "__main__":
    unittest.main()
