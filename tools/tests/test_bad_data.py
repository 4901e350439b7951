"""Bad inputs end with a clear error (exit code 2, naming the row / file), never a traceback;
odd-but-valid inputs (mixed DICOM/PNG, MONOCHROME1, 8-16 bit, duplicates) are handled."""

import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import torch
from torch import nn

import helpers
from pxsmodel import package, preprocess

PRE = dict(preprocess.DEFAULT_PREPROCESSING, resize_short_side=36, center_crop=32)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


class BadDataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        cls.images = os.path.join(root, "images")
        # Every third image a 12-bit DICOM: a mixed folder.
        cls.labels = helpers.make_dataset(cls.images, 4, 5, size=40, dicom_every=3)
        # Add a MONOCHROME1 16-bit DICOM and a 16-bit PNG to the folder.
        img = helpers.chest_like(500, 40, abnormal=True)
        helpers.write_dicom(os.path.join(cls.images, "mono1.dcm"),
                            (65535 - img * 65535).round().astype(np.uint16), bits_stored=16,
                            photometric="MONOCHROME1")
        helpers.write_png(os.path.join(cls.images, "deep.png"), helpers.chest_like(501, 40), bits=16)
        with open(cls.labels, "a", encoding="utf-8") as handle:
            handle.write("mono1.dcm,P500,1,1\ndeep.png,P501,0,0\n")
        anchors = [os.path.join(cls.images, f"img{i:03d}.png") for i in (1, 2)]
        batch, _ = package.load_anchor_images(anchors, PRE)
        meta = package.make_metadata(name="tiny", version="0", embedding_dim=4, anchor_count=2,
                                     preprocessing=PRE, training_data="synthetic",
                                     intended_use="tests")
        cls.package = os.path.join(root, "tiny.pt")
        package.write_package(TinyNet().eval(), batch, meta, cls.package)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def evaluate(self, labels, images=None):
        return helpers.run_cli(["evaluate", "--model", self.package, "--images",
                                images or self.images, "--labels", labels, "--json",
                                "--bootstrap", "50"])

    def write_labels(self, name, lines):
        with open(self.path(name), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return self.path(name)

    def test_mixed_dicom_png_monochrome1_and_16_bit_are_scored(self):
        code, out, err = self.evaluate(self.labels)
        self.assertEqual(code, 0, err)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["n"], 11)
        self.assertEqual(result["n_normal"], 5)

    def test_missing_file_names_the_row(self):
        labels = self.write_labels("missing.csv", [
            "image,patient_id,abnormal", "img000.dcm,P0,0", "img001.png,P1,0", "nothere.png,P9,1"])
        code, _out, err = self.evaluate(labels)
        self.assertEqual(code, 2)
        self.assertIn("row 4", err)
        self.assertIn("nothere.png", err)
        self.assertNotIn("Traceback", err)

    def test_wrong_header(self):
        labels = self.write_labels("header.csv", ["file,patient,finding", "img001.png,P1,0"])
        code, _out, err = self.evaluate(labels)
        self.assertEqual(code, 2)
        self.assertIn("wrong header", err)
        self.assertIn("patient_id", err)

    def test_image_listed_twice_names_both_rows(self):
        labels = self.write_labels("twice.csv", [
            "image,patient_id,abnormal", "img001.png,P1,0", "img004.png,P4,1", "img001.png,P1,0"])
        code, _out, err = self.evaluate(labels)
        self.assertEqual(code, 2)
        self.assertIn("row 4", err)
        self.assertIn("first at row 2", err)

    def test_duplicate_picture_under_two_names_is_counted_once(self):
        images = self.path("dup_images")
        shutil.copytree(self.images, images)
        shutil.copy(os.path.join(images, "img001.png"), os.path.join(images, "copy.png"))
        labels = self.write_labels("dup.csv", [
            "image,patient_id,abnormal", "img001.png,P1,0", "img002.png,P2,0",
            "img005.png,P5,1", "copy.png,P77,0"])
        code, out, err = self.evaluate(labels, images)
        self.assertEqual(code, 0, err)
        self.assertIn("copy.png", err)
        self.assertIn("same image", err)
        self.assertEqual(json.loads(out.strip().splitlines()[-1])["n"], 3)

    def test_bad_label_and_severity_values_name_the_row(self):
        labels = self.write_labels("values.csv", [
            "image,patient_id,abnormal,severity", "img001.png,P1,0,0", "img005.png,P5,maybe,3"])
        code, _out, err = self.evaluate(labels)
        self.assertEqual(code, 2)
        self.assertIn("row 3", err)
        labels = self.write_labels("sev.csv", [
            "image,patient_id,abnormal,severity", "img001.png,P1,0,zero"])
        code, _out, err = self.evaluate(labels)
        self.assertEqual(code, 2)
        self.assertIn("row 2", err)
        self.assertIn("severity", err)

    def test_anchor_folder_without_usable_images(self):
        empty = self.path("no_anchors")
        os.makedirs(empty, exist_ok=True)
        with open(os.path.join(empty, "broken.png"), "wb") as handle:
            handle.write(b"\x89PNG but truncated")
        with open(os.path.join(empty, "notes.txt"), "w", encoding="utf-8") as handle:
            handle.write("not an image")
        checkpoint = self.path("pxs.pth")
        torch.save({}, checkpoint)
        code, _out, err = helpers.run_cli(["export", "--checkpoint", checkpoint, "--anchors", empty,
                                           "--out", self.path("x.pt")])
        self.assertEqual(code, 2)  # refused: no cnn0 keys (checked before the anchors)
        with self.assertRaisesRegex(Exception, "no usable anchor image"):
            package.load_anchor_images(preprocess.list_images(empty), PRE, log=lambda _m: None)
        with self.assertRaisesRegex(Exception, "no usable anchor image"):
            package.load_anchor_images([], PRE)

    def test_export_cli_with_unusable_anchor_folder(self):
        empty = self.path("empty_anchors")
        os.makedirs(empty, exist_ok=True)
        # Our own trainer's checkpoint format with a tiny backbone keeps this test fast.
        from pxsmodel import backbones
        net = backbones.build_backbone("compact", 8)
        checkpoint = self.path("ours.pt")
        torch.save({"format": package.CHECKPOINT_FORMAT, "backbone": "compact", "embedding_dim": 8,
                    "preprocessing": PRE, "model": net.state_dict()}, checkpoint)
        code, _out, err = helpers.run_cli(["export", "--checkpoint", checkpoint, "--anchors", empty,
                                           "--out", self.path("y.pt")])
        self.assertEqual(code, 2)
        self.assertIn("no usable anchor image", err)
        self.assertFalse(os.path.exists(self.path("y.pt")))

    def test_training_drops_duplicate_pictures_and_names_unreadable_rows(self):
        from pxsmodel import labels, train
        images = self.path("train_dups")
        shutil.copytree(self.images, images)
        shutil.copy(os.path.join(images, "img000.dcm"), os.path.join(images, "again.dcm"))
        csv_path = self.write_labels("train_dups.csv", [
            "image,patient_id,abnormal", "img000.dcm,P0,0", "img004.png,P4,1", "again.dcm,P8,0"])
        records = labels.read_labels(csv_path, images)
        warnings = []
        cache = train.ImageCache(records, PRE, log=warnings.append)
        self.assertEqual([r.image for r in cache.records], ["img000.dcm", "img004.png"])
        self.assertIn("row 4 (again.dcm) is the same image as row 2", warnings[0])
        helpers.write_png(os.path.join(images, "blank.png"), np.zeros((20, 20)))
        csv_path = self.write_labels("train_blank.csv", [
            "image,patient_id,abnormal", "img000.dcm,P0,0", "blank.png,P9,1"])
        with self.assertRaisesRegex(Exception, "row 3 \\(blank.png\\).*blank image"):
            train.ImageCache(labels.read_labels(csv_path, images), PRE)

    def test_training_without_normals_is_refused(self):
        labels = self.write_labels("no_normals.csv", [
            "image,patient_id,abnormal", "img004.png,P4,1", "img005.png,P5,1", "img006.dcm,P6,1"])
        code, _out, err = helpers.run_cli(["train", "--images", self.images, "--labels", labels,
                                           "--out", self.path("run_nn"), "--input-size", "32",
                                           "--epochs", "1"])
        self.assertEqual(code, 2)
        self.assertIn("at least one normal", err)

    def test_missing_package_and_missing_csv(self):
        code, _out, err = helpers.run_cli(["evaluate", "--model", self.path("nope.pt"), "--images",
                                           self.images, "--labels", self.labels])
        self.assertEqual(code, 2)
        self.assertIn("nope.pt", err)
        code, _out, err = self.evaluate(self.path("nope.csv"))
        self.assertEqual(code, 2)
        self.assertIn("nope.csv", err)


class CommandLineTest(unittest.TestCase):
    def test_help_on_every_command(self):
        import subprocess
        exe = os.path.join(helpers.TOOLS_DIR, "pxs-model")
        for command in ([], ["export"], ["train"], ["evaluate"]):
            done = subprocess.run([exe, *command, "--help"], capture_output=True, text=True,
                                  timeout=120)
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertIn("usage: pxs-model", done.stdout)


if __name__ == "__main__":
    unittest.main()
