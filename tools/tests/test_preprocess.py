"""The contract preprocessing for DICOM and PNG: same picture, same tensor."""

import os
import tempfile
import unittest

import cv2
import numpy as np
import torch

import helpers  # noqa: F401  (puts tools/ on sys.path)
from pxsmodel import preprocess
from pxsmodel.errors import DataError

PRE = dict(preprocess.DEFAULT_PREPROCESSING, resize_short_side=40, center_crop=32)


class PreprocessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.image = helpers.chest_like(7, size=64)

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_png_pipeline_matches_manual_steps(self):
        png = helpers.write_png(self.path("a.png"), self.image)
        tensor = preprocess.preprocess_file(png, PRE)
        self.assertEqual(tuple(tensor.shape), (3, 32, 32))
        self.assertTrue(torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2]))
        self.assertGreaterEqual(float(tensor.min()), 0.0)
        self.assertLessEqual(float(tensor.max()), 1.0)
        # Independent re-implementation of the steps with PIL directly.
        from PIL import Image
        raw = np.array(Image.open(png)).astype(np.float64)
        u8 = ((raw - raw.min()) / (raw.max() - raw.min()) * 255).astype(np.uint8)  # truncation
        eq = cv2.equalizeHist(u8)
        resized = np.array(Image.fromarray(eq).resize((40, 40), Image.BILINEAR))
        crop = resized[4:36, 4:36].astype(np.float32) / 255
        self.assertLess(float((tensor[0] - torch.from_numpy(crop)).abs().max()), 1e-6)

    def test_dicom_12bit_equals_png_of_same_picture(self):
        stored = (self.image * 4095).round().astype(np.uint16)
        dcm = helpers.write_dicom(self.path("a.dcm"), stored, bits_stored=12)
        png16 = helpers.write_png(self.path("a16.png"), stored.astype(np.float64) / 65535, bits=16)
        t_dcm = preprocess.preprocess_file(dcm, PRE)
        t_png = preprocess.preprocess_file(png16, PRE)
        self.assertTrue(torch.equal(t_dcm, t_png), "DICOM and 16-bit PNG of one picture differ")

    def test_monochrome1_is_inverted(self):
        stored = (self.image * 4095).round().astype(np.uint16)
        mono2 = helpers.write_dicom(self.path("m2.dcm"), stored)
        mono1 = helpers.write_dicom(self.path("m1.dcm"), 4095 - stored, photometric="MONOCHROME1")
        self.assertTrue(torch.equal(preprocess.preprocess_file(mono1, PRE),
                                    preprocess.preprocess_file(mono2, PRE)))

    def test_bits_above_high_bit_are_masked(self):
        stored = (self.image * 4095).round().astype(np.uint16)
        clean = helpers.write_dicom(self.path("c.dcm"), stored)
        dirty = helpers.write_dicom(self.path("d.dcm"), stored, garbage_above_high_bit=True)
        self.assertTrue(torch.equal(preprocess.preprocess_file(clean, PRE),
                                    preprocess.preprocess_file(dirty, PRE)))

    def test_8_and_16_bit_png_agree(self):
        img8 = (self.image * 255).round() / 255  # representable exactly in both depths
        p8 = helpers.write_png(self.path("p8.png"), img8, bits=8)
        p16 = helpers.write_png(self.path("p16.png"), img8, bits=16)
        diff = (preprocess.preprocess_file(p8, PRE) - preprocess.preprocess_file(p16, PRE)).abs().max()
        self.assertLessEqual(float(diff), 1 / 255 + 1e-6)

    def test_autocrop_removes_black_border(self):
        framed = np.zeros((80, 80))
        framed[10:70, 20:60] = self.image[:60, :40] * 0.9 + 0.1
        u8 = preprocess.to_uint8(preprocess.DecodedImage(framed, False, "png"))
        cropped = preprocess.autocrop(u8, 2)
        self.assertEqual(cropped.shape, (60, 40))
        # Nothing above the threshold: 1x1, as the published function and the node.
        self.assertEqual(preprocess.autocrop(np.zeros((5, 5), np.uint8), 2).shape, (1, 1))

    def test_autocrop_happens_before_equalisation(self):
        framed = np.zeros((80, 80))
        framed[10:70, 20:60] = self.image[:60, :40] * 0.9 + 0.1
        png = helpers.write_png(self.path("framed.png"), framed)
        pre = dict(PRE, autocrop=True)
        image = preprocess.to_8bit_display(png, pre)
        self.assertEqual(image.shape, (60, 40))
        u8 = preprocess.to_uint8(preprocess.decode_image(png))
        self.assertTrue(np.array_equal(image, cv2.equalizeHist(np.ascontiguousarray(u8[10:70, 20:60]))))

    def test_blank_image_is_an_error(self):
        png = helpers.write_png(self.path("blank.png"), np.full((20, 20), 0.5))
        with self.assertRaisesRegex(DataError, "blank.png.*blank image"):
            preprocess.preprocess_file(png, PRE)

    def test_mean_std_applied(self):
        png = helpers.write_png(self.path("a.png"), self.image)
        pre = dict(PRE, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
        plain = preprocess.preprocess_file(png, PRE)
        normed = preprocess.preprocess_file(png, pre)
        self.assertLess(float(((plain - 0.5) / 0.25 - normed).abs().max()), 1e-6)

    def test_unreadable_and_non_image_files(self):
        bad = self.path("broken.png")
        with open(bad, "wb") as handle:
            handle.write(b"not a png")
        with self.assertRaisesRegex(DataError, "broken.png"):
            preprocess.preprocess_file(bad, PRE)
        with self.assertRaisesRegex(DataError, "not found"):
            preprocess.preprocess_file(self.path("missing.png"), PRE)

    def test_parity_with_the_node_reference_pipeline(self):
        """tools/reference_pxs.py is the scoring engineer's Python reference the C++ node is
        checked against bit for bit; our tensors must be identical to its tensors."""
        ref_path = os.path.join(helpers.TOOLS_DIR, "reference_pxs.py")
        if not os.path.isfile(ref_path):
            self.skipTest("SKIPPED: tools/reference_pxs.py not found")
        import importlib.util
        spec = importlib.util.spec_from_file_location("reference_pxs", ref_path)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        framed = np.zeros((90, 70))
        framed[5:85, 8:66] = helpers.chest_like(11, 80)[:, :58] * 0.95 + 0.05
        cases = [
            ("mono2_12bit.dcm", (framed * 4095).round(), 12, "MONOCHROME2", False),
            ("mono1_16bit.dcm", 65535 - (framed * 65535).round(), 16, "MONOCHROME1", False),
            ("dirty_10bit.dcm", (framed * 1023).round(), 10, "MONOCHROME2", True),
            ("odd_values.dcm", (framed * 3001 + 17).round(), 12, "MONOCHROME2", False),
        ]
        for name, stored, bits, photometric, dirty in cases:
            path = helpers.write_dicom(self.path(name), stored.astype(np.uint16), bits_stored=bits,
                                       photometric=photometric, garbage_above_high_bit=dirty)
            for autocrop in (False, True):
                pre = dict(preprocess.DEFAULT_PREPROCESSING, resize_short_side=50, center_crop=48,
                           autocrop=autocrop, mean=[0.1, 0.2, 0.3], std=[0.5, 0.6, 0.7])
                ours = preprocess.preprocess_file(path, pre)
                theirs = reference.to_tensor(reference.dicom_to_8bit(path, pre), pre)[0]
                self.assertTrue(torch.equal(ours, theirs), f"{name}, autocrop {autocrop}")

    def test_shared_cxr14_image_if_present(self):
        folder = os.path.join(helpers.SHARED_DATA, "cxr14", "images")
        if not os.path.isdir(folder):
            self.skipTest("SKIPPED: ../shared/data/cxr14 not found (shared test data is not "
                          "present on this machine)")
        first = sorted(os.listdir(folder))[0]
        tensor = preprocess.preprocess_file(os.path.join(folder, first),
                                            dict(preprocess.DEFAULT_PREPROCESSING))
        self.assertEqual(tuple(tensor.shape), (3, 320, 320))
        # Histogram equalisation spreads the values over the whole range.
        self.assertLess(float(tensor.min()), 0.05)
        self.assertGreater(float(tensor.max()), 0.95)


if __name__ == "__main__":
    unittest.main()
