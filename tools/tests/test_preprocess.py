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


ROBUST = dict(preprocess.DEFAULT_PREPROCESSING, **preprocess.ROBUST_PREPROCESSING,
              resize_short_side=40, center_crop=32)


def framed_chest(seed=3, size=(160, 140), body=(30, 130, 25, 115)):
    """A chest-like body (8-bit) inside a noisy dark border: rows body[0]:body[1], columns
    body[2]:body[3]."""
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 10, size).astype(np.uint8)
    y0, y1, x0, x1 = body
    canvas[y0:y1, x0:x1] = (helpers.chest_like(seed, max(y1 - y0, x1 - x0))[:y1 - y0, :x1 - x0] * 200 + 40)
    return canvas


class PercentileIntensityTest(unittest.TestCase):
    def test_exact_values_on_a_small_array(self):
        # 11 values: k = floor(10 / 100 * 10) = 1 -> 10; floor(90 / 100 * 10) = 9 -> 90.
        values = np.array([[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 4095]], dtype=np.float64)
        out = preprocess.percentile_to_uint8(values, 10.0, 90.0)
        # (v - 10) / 80 clipped, * 255, truncated: 20 -> 31.875 -> 31, 50 -> 127.5 -> 127.
        self.assertEqual(out.tolist(), [[0, 0, 31, 63, 95, 127, 159, 191, 223, 255, 255]])
        self.assertEqual(preprocess.percentile_index(0.5, 2048 * 2048), 20971)
        self.assertEqual(preprocess.percentile_index(99.5, 2048 * 2048), 4173331)  # 4173331.485

    def test_outliers_do_not_compress_the_body(self):
        # A 12-bit body in 1000..3000 with a burnt-in white label (4095) and a black marker (0)
        # covering 0.2 % of the image: min-max squeezes the body into ~125 levels, the
        # percentiles spread it over (nearly) all 256.
        rng = np.random.default_rng(1)
        body = rng.integers(1000, 3001, (200, 200)).astype(np.float64)
        body[0:4, 0:10] = 4095
        body[196:200, 190:200] = 0
        decoded = preprocess.DecodedImage(body, False, "dicom")
        minmax = preprocess.to_uint8(decoded, "x")
        robust = preprocess.to_uint8(decoded, "x", dict(intensity="percentile", intensity_percentiles=[0.5, 99.5]))
        inner = (slice(10, 190), slice(10, 190))
        self.assertLess(int(minmax[inner].max()) - int(minmax[inner].min()), 130)
        self.assertGreater(int(robust[inner].max()) - int(robust[inner].min()), 250)
        self.assertEqual(int(robust[0, 0]), 255)
        self.assertEqual(int(robust[199, 199]), 0)

    def test_monochrome1_inverted_after_percentiles(self):
        values = np.arange(1000, dtype=np.float64).reshape(20, 50)
        pre = dict(intensity="percentile", intensity_percentiles=[1, 99])
        mono2 = preprocess.to_uint8(preprocess.DecodedImage(values, False, "dicom"), "x", pre)
        mono1 = preprocess.to_uint8(preprocess.DecodedImage(values, True, "dicom"), "x", pre)
        self.assertTrue(np.array_equal(mono1, 255 - mono2))

    def test_falls_back_to_minmax_and_refuses_blank(self):
        # 99 % zeros: both percentiles are 0, so min-max it is.
        values = np.zeros((10, 10))
        values[0, 0] = 7
        pre = dict(intensity="percentile", intensity_percentiles=[0.5, 99.5])
        out = preprocess.to_uint8(preprocess.DecodedImage(values, False, "dicom"), "x", pre)
        self.assertEqual(int(out[0, 0]), 255)
        self.assertEqual(int(out.sum()), 255)
        with self.assertRaisesRegex(DataError, "blank image"):
            preprocess.to_uint8(preprocess.DecodedImage(np.full((4, 4), 9.0), False, "png"), "x", pre)
        with self.assertRaisesRegex(DataError, "preprocessing.intensity 'gamma'"):
            preprocess.to_uint8(preprocess.DecodedImage(values, False, "png"), "x", dict(intensity="gamma"))

    def test_absent_keys_are_the_published_pipeline(self):
        png = helpers.write_png(os.path.join(tempfile.mkdtemp(), "a.png"), helpers.chest_like(5, 64))
        explicit = dict(PRE, intensity="minmax", body_crop=False)
        self.assertTrue(torch.equal(preprocess.preprocess_file(png, PRE), preprocess.preprocess_file(png, explicit)))


class OptionalKeysTest(unittest.TestCase):
    def test_values_the_node_refuses_are_refused_naming_the_key(self):
        preprocess.check_optional_keys(ROBUST)
        preprocess.check_optional_keys(preprocess.DEFAULT_PREPROCESSING)
        cases = [({"intensity": "gamma"}, "preprocessing.intensity"),
                 ({"intensity_percentiles": [99, 1]}, "preprocessing.intensity_percentiles"),
                 ({"intensity_percentiles": [0.5]}, "preprocessing.intensity_percentiles"),
                 ({"body_crop": "yes"}, "preprocessing.body_crop' must be true"),
                 ({"body_crop_flat_range": 2.5}, "preprocessing.body_crop_flat_range"),
                 ({"body_crop_fraction": 0}, "preprocessing.body_crop_fraction"),
                 ({"body_crop_min_size": 1.5}, "preprocessing.body_crop_min_size")]
        for keys, expected in cases:
            with self.assertRaisesRegex(DataError, expected.replace(".", r"\.")):
                preprocess.check_optional_keys(dict(ROBUST, **keys))
        with self.assertRaisesRegex(DataError, "body_crop_fraction"):
            preprocess.to_8bit(preprocess.DecodedImage(framed_chest(), False, "png"), "x",
                               dict(ROBUST, body_crop_fraction=2))


class BodyCropTest(unittest.TestCase):
    def test_noisy_dark_border_is_removed(self):
        image = framed_chest()
        self.assertEqual(preprocess.body_crop_box(image, ROBUST), (30, 129, 25, 114))

    def test_text_block_apart_from_the_body_is_left_out(self):
        image = framed_chest()
        image[4:20, 4:60] = 255    # a burnt-in label in the corner, wider than 1/3 of the image
        image[140:150, 100:135] = 250  # an "L" marker below the body
        self.assertEqual(preprocess.body_crop_box(image, ROBUST), (30, 129, 25, 114))

    def test_flat_white_and_black_borders_are_trimmed(self):
        image = framed_chest()
        image[:, :12] = 255   # collimator shutter, white after the inversion
        image[150:, :] = 0    # padding
        image[:8, :] = 250
        y0, y1, x0, x1 = preprocess.body_crop_box(image, ROBUST)
        self.assertEqual((y0, y1, x0, x1), (30, 129, 25, 114))

    def test_never_collapses(self):
        image = np.zeros((100, 80), np.uint8)
        image[48:52, 38:42] = 200  # a tiny bright spot is all there is
        y0, y1, x0, x1 = preprocess.body_crop_box(image, ROBUST)
        self.assertEqual((y1 - y0 + 1, x1 - x0 + 1), (50, 40))  # body_crop_min_size 0.5
        self.assertEqual((y0, x0), (25, 20))                      # grown about the spot
        corner = np.zeros((100, 80), np.uint8)
        corner[0:3, 77:80] = 200
        self.assertEqual(preprocess.body_crop_box(corner, ROBUST), (0, 49, 40, 79))  # kept inside
        flat = np.full((30, 30), 128, np.uint8)
        self.assertEqual(preprocess.body_crop_box(flat, ROBUST), (0, 29, 0, 29))

    def test_two_passes_with_the_intensity_recomputed_then_equalisation(self):
        stored = framed_chest().astype(np.float64) * 16 + 100  # 12-bit-like stored values
        stored[4:20, 4:60] = 4095                              # a label
        decoded = preprocess.DecodedImage(stored, False, "dicom")
        image = preprocess.to_8bit(decoded, "x", ROBUST)
        expected = stored
        for _ in range(2):
            u8 = preprocess.to_uint8(preprocess.DecodedImage(expected, False, "dicom"), "x", ROBUST)
            y0, y1, x0, x1 = preprocess.body_crop_box(u8, ROBUST)
            expected = expected[y0:y1 + 1, x0:x1 + 1]
        expected = preprocess.to_uint8(preprocess.DecodedImage(expected, False, "dicom"), "x", ROBUST)
        self.assertTrue(np.array_equal(image, expected))
        self.assertLessEqual(image.shape[0], 100)  # inside the body (rows 30..129)
        self.assertEqual(int(image.max()), 255)    # the label no longer sets the intensity range
        display = preprocess.to_8bit_display(helpers.write_dicom(
            os.path.join(tempfile.mkdtemp(), "f.dcm"), stored.astype(np.uint16)), ROBUST)
        self.assertTrue(np.array_equal(display, cv2.equalizeHist(expected)))
        with self.assertRaisesRegex(ValueError, "to_8bit"):
            preprocess.equalize_and_crop(image, ROBUST)

    def test_same_relative_crop_at_full_size_and_224_px(self):
        """A full-size DICOM and its 224-px downsample (what ralo's JPEGs are) crop alike."""
        folder = os.path.join(helpers.SHARED_DATA, "dicom")
        if not os.path.isdir(folder):
            self.skipTest("SKIPPED: ../shared/data/dicom not found (shared test data is not present)")
        from PIL import Image
        names = ["cr_mono2_explicit_le.dcm", "dx_presentation_mono1_voi.dcm", "dx_processing_14bit.dcm",
                 "dx_presentation_16bit_rescale.dcm", "sc_mono2_8bit_chest.dcm"]
        for name in names:
            full = preprocess.to_uint8(preprocess.decode_image(os.path.join(folder, name)), name, ROBUST)
            small = np.array(Image.fromarray(full).resize((224, 224), Image.BILINEAR))
            a = np.array(preprocess.body_crop_box(full, ROBUST), np.float64) + [0, 1, 0, 1]
            b = np.array(preprocess.body_crop_box(small, ROBUST), np.float64) + [0, 1, 0, 1]
            rel_a = a / np.repeat(full.shape, 2)
            rel_b = b / 224.0
            self.assertLess(float(np.abs(rel_a - rel_b).max()), 0.03, f"{name}: {rel_a} vs {rel_b}")

    def test_bordered_dicom_scores_like_the_unbordered_one(self):
        """The same picture with and without a border and label gives (nearly) the same tensor
        with the body crop, and very different ones without it."""
        tmp = tempfile.mkdtemp()
        body = (helpers.chest_like(9, 120) * 3000 + 500).round()
        framed = np.full((200, 180), 40.0)
        framed[40:160, 30:150] = body
        framed[5:15, 5:70] = 4095
        plain = helpers.write_dicom(os.path.join(tmp, "plain.dcm"), body.astype(np.uint16))
        boxed = helpers.write_dicom(os.path.join(tmp, "boxed.dcm"), framed.astype(np.uint16))
        a, b = preprocess.preprocess_file(plain, ROBUST), preprocess.preprocess_file(boxed, ROBUST)
        self.assertLess(float((a - b).abs().mean()), 0.02)
        a0, b0 = preprocess.preprocess_file(plain, PRE), preprocess.preprocess_file(boxed, PRE)
        self.assertGreater(float((a0 - b0).abs().mean()), 0.1)


if __name__ == "__main__":
    unittest.main()
