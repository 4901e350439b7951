"""Export of a published-PXS-shaped checkpoint (randomly initialised here, no downloads)."""

import json
import os
import tempfile
import unittest

import numpy as np
import torch
from torch import nn
from torchvision import models

import helpers
from pxsmodel import package, preprocess


class SiameseNetworkDenseNet121Shape(nn.Module):
    """Same attribute layout as QTIM-Lab/PXS-score's SiameseNetwork_DenseNet121 (written
    here from its description: torchvision densenet121 as `cnn0`, 1000-d output)."""

    def __init__(self):
        super().__init__()
        self.cnn0 = models.densenet121(weights=None)

    def forward(self, input0, input1):
        return self.cnn0(input0), self.cnn0(input1)


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(3)
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        cls.anchors = os.path.join(root, "anchors")
        os.makedirs(cls.anchors)
        for i in range(3):
            helpers.write_png(os.path.join(cls.anchors, f"n{i}.png"), helpers.chest_like(i, 40))
        # One anchor as 12-bit MONOCHROME1 DICOM: mixed inputs must work.
        stored = (helpers.chest_like(9, 40) * 4095).round().astype(np.uint16)
        helpers.write_dicom(os.path.join(cls.anchors, "n9.dcm"), 4095 - stored,
                            photometric="MONOCHROME1")
        cls.net = SiameseNetworkDenseNet121Shape().eval()
        # Give BatchNorm non-trivial running statistics so eval mode is really exercised.
        with torch.no_grad():
            for module in cls.net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
        cls.checkpoint = os.path.join(root, "PXS_score_model.pth")
        # Saved as the published code would (DataParallel adds 'module.').
        torch.save({f"module.{k}": v for k, v in cls.net.state_dict().items()}, cls.checkpoint)
        cls.package_path = os.path.join(root, "pxs.pt")
        cls.code, cls.out, cls.err = helpers.run_cli([
            "export", "--checkpoint", cls.checkpoint, "--anchors", cls.anchors,
            "--out", cls.package_path, "--name", "test-pxs", "--version", "0.1.0",
            "--input-size", "64", "--resize", "72", "--threads", "1"])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_export_succeeds_and_prints_summary(self):
        self.assertEqual(self.code, 0, self.err)
        self.assertIn("published PXS", self.out)
        self.assertIn("anchors:     4 of 4", self.out)
        self.assertIn("max |diff|", self.out)

    def test_metadata_complete(self):
        module, meta = package.load_package(self.package_path)
        for key in package.REQUIRED_METADATA_KEYS:
            self.assertIn(key, meta)
        for key in package.REQUIRED_PREPROCESSING_KEYS:
            self.assertIn(key, meta["preprocessing"])
        self.assertEqual(meta["format"], "pxs-model-package")
        self.assertEqual(meta["format_version"], 1)
        self.assertEqual(meta["name"], "test-pxs")
        self.assertEqual(meta["embedding_dim"], 1000)
        self.assertEqual(meta["anchor_count"], 4)
        self.assertEqual(meta["input"], {"channels": 3, "height": 64, "width": 64})
        self.assertEqual(meta["preprocessing"]["resize_short_side"], 72)
        self.assertTrue(meta["not_for_clinical_use"])
        self.assertEqual(tuple(module.anchors.shape), (4, 1000))
        self.assertEqual(module.anchors.dtype, torch.float32)

    def test_scripted_embeddings_match_eager(self):
        module, meta = package.load_package(self.package_path)
        fresh = os.path.join(self.tmp.name, "new.png")
        helpers.write_png(fresh, helpers.chest_like(77, 50, abnormal=True))
        batch = preprocess.preprocess_files([fresh], meta["preprocessing"])
        with torch.no_grad():
            eager, _ = self.net(batch, batch)
            scripted = module(batch)
        self.assertEqual(tuple(scripted.shape), (1, 1000))
        self.assertLess(float((eager - scripted).abs().max()), 1e-5)
        # Anchors are the eager embeddings of the anchor images with the package's preprocessing.
        paths = preprocess.list_images(self.anchors)
        with torch.no_grad():
            expected, _ = self.net(*(preprocess.preprocess_files(paths, meta["preprocessing"]),) * 2)
        self.assertLess(float((expected - module.anchors).abs().max()), 1e-5)

    def test_metadata_is_valid_json_in_extra_file(self):
        extra = {"metadata.json": ""}
        torch.jit.load(self.package_path, _extra_files=extra)
        self.assertEqual(json.loads(extra["metadata.json"])["trend"]["stable_delta"], 1.0)

    def test_wrong_checkpoint_is_refused(self):
        bogus = os.path.join(self.tmp.name, "bogus.pth")
        torch.save({"fc.weight": torch.zeros(2, 2)}, bogus)
        code, _out, err = helpers.run_cli(["export", "--checkpoint", bogus, "--anchors",
                                           self.anchors, "--out", bogus + ".pt"])
        self.assertEqual(code, 2)
        self.assertIn("cnn0", err)


if __name__ == "__main__":
    unittest.main()
