// Scorer against the committed fixtures of tools/make_test_model.py (tests/fixtures/).
#include "pxs/scoring/scorer.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/cuda.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

namespace pxs::scoring {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(PXS_SOURCE_DIR) + "/tests/fixtures/";
const std::string kTinyModel = kFixtures + "pxs_test_model.pt";

ScorerOptions Cpu(const std::string& path) {
  ScorerOptions o;
  o.model_path = path;
  o.device = "cpu";
  return o;
}

// A deterministic test picture: a smooth blob on a gradient, 12 bits.
DecodedImage Picture(int w, int h, int seed) {
  DecodedImage d;
  d.width = w;
  d.height = h;
  d.bits_stored = 12;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double dx = x - w * (0.3 + 0.1 * seed), dy = y - h * 0.5;
      double v = 1500 + 8.0 * x + 1800 * std::exp(-(dx * dx + dy * dy) / (0.05 * w * h)) + 37 * ((x * 7 + y * seed) % 11);
      d.pixels.push_back(static_cast<uint16_t>(std::clamp(v, 0.0, 4095.0)));
    }
  return d;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("pxs_scorer_test_" + std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Re-saves the tiny fixture with `metadata` as its metadata.json (or none at all).
std::string Resave(const TempDir& dir, const std::string& name, const std::optional<std::string>& metadata) {
  torch::jit::Module m = torch::jit::load(kTinyModel);
  torch::jit::ExtraFilesMap extra;
  if (metadata) extra["metadata.json"] = *metadata;
  const std::string out = dir.File(name);
  m.save(out, extra);
  return out;
}

TEST(Scorer, LoadsTheTinyPackage) {
  auto scorer = Scorer::Create(Cpu(kTinyModel));
  ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
  const ModelInfo& m = (*scorer)->model();
  EXPECT_EQ(m.name, "pxs-test-tiny");
  EXPECT_EQ(m.version, "0.0.1");
  EXPECT_EQ(m.input_height, 64);
  EXPECT_EQ(m.input_width, 64);
  EXPECT_EQ(m.embedding_dim, 32);
  EXPECT_EQ(m.anchor_count, 5);
  EXPECT_EQ(m.preprocessing.resize_short_side, 72);
  EXPECT_FLOAT_EQ(m.preprocessing.std[2], 0.225f);
  EXPECT_TRUE(m.not_for_clinical_use);
  ASSERT_TRUE(m.calibration.has_value());
  EXPECT_EQ(m.calibration->scale, "test-scale");
  EXPECT_EQ(m.trend.bands.size(), 4u);
  EXPECT_EQ(m.trend.bands[1].label, "mild");
  EXPECT_FALSE(m.trend.bands.back().upper.has_value());  // the open-ended last band
  EXPECT_EQ(m.trend.bands.back().label, "severe");
  EXPECT_NE(m.metadata_json.find("pxs-model-package"), std::string::npos);
  EXPECT_EQ((*scorer)->anchors().size(), 5u);
  EXPECT_EQ((*scorer)->device(), "cpu");
}

TEST(Scorer, ScoresAreMedianAnchorDistancesAndCalibrated) {
  auto scorer = Scorer::Create(Cpu(kTinyModel));
  ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
  auto result = (*scorer)->Score(Picture(200, 240, 1));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->embedding.size(), 32u);
  std::vector<double> d;
  for (const auto& a : (*scorer)->anchors()) d.push_back(EmbeddingDistance(result->embedding, a));
  std::sort(d.begin(), d.end());
  EXPECT_DOUBLE_EQ(result->pxs, d[2]);  // 5 anchors: the third smallest
  EXPECT_GT(result->pxs, 0);
  ASSERT_TRUE(result->calibrated.has_value());
  EXPECT_DOUBLE_EQ(*result->calibrated, (*scorer)->model().calibration->Apply(result->pxs));
}

TEST(Scorer, BatchGivesTheSameResultsAsSingleImages) {
  auto scorer = Scorer::Create(Cpu(kTinyModel));
  ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
  std::vector<PreprocessedImage> batch;
  for (int i = 0; i < 4; ++i) {
    auto pre = (*scorer)->Preprocess(Picture(150 + 10 * i, 180, i + 1));
    ASSERT_TRUE(pre.ok()) << pre.status().ToString();
    batch.push_back(*pre);
  }
  auto together = (*scorer)->ScoreBatch(batch);
  ASSERT_EQ(together.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    auto alone = (*scorer)->ScoreBatch({batch[i]});
    ASSERT_TRUE(together[i].ok() && alone[0].ok());
    // Kernels may block differently per batch size: equal to float rounding.
    EXPECT_NEAR(together[i]->pxs, alone[0]->pxs, 1e-5 * alone[0]->pxs) << "image " << i;
    for (size_t k = 0; k < alone[0]->embedding.size(); ++k)
      ASSERT_NEAR(together[i]->embedding[k], alone[0]->embedding[k], 1e-5) << "image " << i << " dim " << k;
  }
  EXPECT_NE(together[0]->pxs, together[1]->pxs);  // different pictures, different scores
}

TEST(Scorer, OptimisedAndPlainModulesAgree) {
  ScorerOptions plain = Cpu(kTinyModel);
  plain.optimize = false;
  auto a = Scorer::Create(Cpu(kTinyModel));
  auto b = Scorer::Create(plain);
  ASSERT_TRUE(a.ok() && b.ok());
  auto ra = (*a)->Score(Picture(100, 100, 2));
  auto rb = (*b)->Score(Picture(100, 100, 2));
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_NEAR(ra->pxs, rb->pxs, 1e-5 * rb->pxs);
}

// The Scorer builds the model input in one fused pass (NCHW, or an NHWC view for
// channels_last); against the contract written out element by element in double,
// ((grey / 255) - mean[c]) / std[c], fed to the package's module as loaded.
void ExpectInputAsTheContract(const std::string& package) {
  auto ref_scorer = Scorer::Create(Cpu(package));
  ASSERT_TRUE(ref_scorer.ok()) << ref_scorer.status().ToString();
  const auto& mi = (*ref_scorer)->model();
  auto pre = (*ref_scorer)->Preprocess(Picture(130, 120, 3));
  ASSERT_TRUE(pre.ok()) << pre.status().ToString();
  torch::Tensor x = torch::empty({1, 3, mi.input_height, mi.input_width});
  auto acc = x.accessor<float, 4>();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < mi.input_height; ++y)
      for (int xx = 0; xx < mi.input_width; ++xx)
        acc[0][c][y][xx] = static_cast<float>(
            (pre->gray.pixels[static_cast<size_t>(y) * mi.input_width + xx] / 255.0 - mi.preprocessing.mean[c]) /
            mi.preprocessing.std[c]);
  torch::jit::Module module = torch::jit::load(kTinyModel);
  module.eval();
  torch::NoGradGuard no_grad;
  torch::Tensor want = module.forward({x}).toTensor().contiguous();
  for (bool optimize : {false, true}) {
    for (bool channels_last : {false, true}) {
      ScorerOptions o = Cpu(package);
      o.optimize = optimize;
      o.channels_last = channels_last;
      auto scorer = Scorer::Create(o);
      ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
      auto got = (*scorer)->ScoreBatch({*pre});
      ASSERT_TRUE(got[0].ok()) << got[0].status().ToString();
      ASSERT_EQ(got[0]->embedding.size(), static_cast<size_t>(want.size(1)));
      for (int64_t k = 0; k < want.size(1); ++k)
        ASSERT_NEAR(got[0]->embedding[k], want[0][k].item<float>(), 1e-4)
            << package << ": optimize " << optimize << " channels_last " << channels_last << " dim " << k;
    }
  }
}

TEST(Scorer, InputIsNormalisedPerChannelAsTheMetadataSays) {
  ExpectInputAsTheContract(kTinyModel);  // ImageNet mean/std: three different channels
  // The same mean and std for every channel take the one-plane path.
  TempDir dir;
  auto base = Scorer::Create(Cpu(kTinyModel));
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  nlohmann::json meta = nlohmann::json::parse((*base)->model().metadata_json);
  meta["preprocessing"]["mean"] = {0.5, 0.5, 0.5};
  meta["preprocessing"]["std"] = {0.25, 0.25, 0.25};
  ExpectInputAsTheContract(Resave(dir, "same_channels.pt", meta.dump()));
}

TEST(Scorer, WrongSizeInputFailsOnlyThatImage) {
  auto scorer = Scorer::Create(Cpu(kTinyModel));
  ASSERT_TRUE(scorer.ok());
  auto good = (*scorer)->Preprocess(Picture(80, 80, 1));
  ASSERT_TRUE(good.ok());
  PreprocessedImage wrong{Image8{10, 10, std::vector<uint8_t>(100, 5)}};
  auto results = (*scorer)->ScoreBatch({wrong, *good});
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(results[1].ok());
  EXPECT_TRUE((*scorer)->ScoreBatch({}).empty());
}

TEST(Scorer, NanOutputIsAnErrorNotAScore) {
  auto scorer = Scorer::Create(Cpu(kFixtures + "pxs_test_model_nan.pt"));
  ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();  // the zero warm-up input is finite
  auto normal = (*scorer)->Preprocess(Picture(90, 90, 3));
  ASSERT_TRUE(normal.ok());
  PreprocessedImage white{Image8{64, 64, std::vector<uint8_t>(64 * 64, 255)}};
  auto results = (*scorer)->ScoreBatch({white, *normal});
  ASSERT_EQ(results.size(), 2u);
  ASSERT_FALSE(results[0].ok());
  EXPECT_NE(results[0].status().message().find("NaN"), std::string::npos);
  EXPECT_TRUE(results[1].ok()) << results[1].status().ToString();
}

TEST(Scorer, RefusesPackageWithoutAnchors) {
  auto scorer = Scorer::Create(Cpu(kFixtures + "pxs_test_model_no_anchors.pt"));
  ASSERT_FALSE(scorer.ok());
  EXPECT_NE(scorer.status().message().find("anchors"), std::string::npos) << scorer.status().ToString();
}

TEST(Scorer, RefusesMissingFileGarbageAndMissingMetadata) {
  TempDir dir;
  auto missing = Scorer::Create(Cpu(dir.File("nope.pt")));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.pt"), std::string::npos);

  std::string garbage = dir.File("garbage.pt");
  { std::ofstream(garbage) << "not a zip file"; }
  EXPECT_FALSE(Scorer::Create(Cpu(garbage)).ok());

  auto no_meta = Scorer::Create(Cpu(Resave(dir, "no_meta.pt", std::nullopt)));
  ASSERT_FALSE(no_meta.ok());
  EXPECT_NE(no_meta.status().message().find("metadata.json"), std::string::npos) << no_meta.status().ToString();

  auto not_json = Scorer::Create(Cpu(Resave(dir, "bad_json.pt", std::string("{\"name\": "))));
  ASSERT_FALSE(not_json.ok());
  EXPECT_NE(not_json.status().message().find("not valid JSON"), std::string::npos);
}

// Every required key, removed one at a time, must be refused with an error naming it.
TEST(Scorer, RefusesPackageLackingAnyRequiredKey) {
  auto base = Scorer::Create(Cpu(kTinyModel));
  ASSERT_TRUE(base.ok());
  const nlohmann::json meta = nlohmann::json::parse((*base)->model().metadata_json);
  const std::vector<std::string> required = {
      "/format", "/format_version", "/name", "/version", "/embedding_dim", "/anchor_count",
      "/input", "/input/channels", "/input/height", "/input/width", "/preprocessing",
      "/preprocessing/equalize_histogram", "/preprocessing/autocrop", "/preprocessing/autocrop_threshold",
      "/preprocessing/resize_short_side", "/preprocessing/center_crop", "/preprocessing/mean",
      "/preprocessing/std", "/training_data", "/intended_use", "/not_for_clinical_use", "/trend",
      "/trend/stable_delta", "/trend/bands"};
  TempDir dir;
  int n = 0;
  for (const std::string& pointer : required) {
    nlohmann::json broken = meta;
    const nlohmann::json::json_pointer ptr(pointer);
    broken[ptr.parent_pointer()].erase(ptr.back());
    auto scorer = Scorer::Create(Cpu(Resave(dir, "m" + std::to_string(n++) + ".pt", broken.dump())));
    ASSERT_FALSE(scorer.ok()) << pointer << " removed but the package was accepted";
    std::string key = pointer.substr(1);
    std::replace(key.begin(), key.end(), '/', '.');
    EXPECT_NE(scorer.status().message().find("'" + key + "'"), std::string::npos)
        << pointer << ": " << scorer.status().ToString();
  }
  // Calibration is optional: absent or null is fine.
  nlohmann::json no_cal = meta;
  no_cal.erase("calibration");
  auto ok = Scorer::Create(Cpu(Resave(dir, "no_cal.pt", no_cal.dump())));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_FALSE((*ok)->model().calibration.has_value());
  // Metadata that disagrees with the anchors is refused.
  nlohmann::json wrong_dim = meta;
  wrong_dim["embedding_dim"] = 31;
  auto bad = Scorer::Create(Cpu(Resave(dir, "dim.pt", wrong_dim.dump())));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("anchors"), std::string::npos) << bad.status().ToString();
}

TEST(Scorer, RefusesBadDeviceAndPrecision) {
  ScorerOptions o = Cpu(kTinyModel);
  o.device = "tpu";
  EXPECT_EQ(Scorer::Create(o).status().code(), Status::Code::kInvalidArgument);
  o.device = "cpu";
  o.precision = "fp16";
  EXPECT_EQ(Scorer::Create(o).status().code(), Status::Code::kInvalidArgument);
  o.precision = "int4";
  EXPECT_EQ(Scorer::Create(o).status().code(), Status::Code::kInvalidArgument);
  if (!torch::cuda::is_available()) {
    o.precision = "fp32";
    o.device = "cuda:0";
    EXPECT_EQ(Scorer::Create(o).status().code(), Status::Code::kUnavailable);
    o.device = "auto";
    auto a = Scorer::Create(o);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ((*a)->device(), "cpu");
  }
}

TEST(CpuFeatures, ReadsWholeFlagWordsOfProcCpuinfo) {
  const std::string both = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n";
  EXPECT_TRUE(CpuBf16FromCpuinfo(both).avx512_bf16);
  EXPECT_TRUE(CpuBf16FromCpuinfo(both).amx_bf16);
  const CpuBf16Features avx = CpuBf16FromCpuinfo("flags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n");
  EXPECT_TRUE(avx.avx512_bf16);
  EXPECT_FALSE(avx.amx_bf16);
  EXPECT_EQ(avx.Describe(), "AVX512-BF16");
  // Words that merely contain the name, a line other than flags, and no flags at all.
  EXPECT_FALSE(CpuBf16FromCpuinfo("flags\t\t: avx512_bf16x xamx_bf16 avx512f\n").any());
  EXPECT_FALSE(CpuBf16FromCpuinfo("model name\t: avx512_bf16\nflags\t\t: fpu sse2\n").any());
  EXPECT_FALSE(CpuBf16FromCpuinfo("").any());
  EXPECT_EQ(CpuBf16FromCpuinfo("").Describe(), "no bf16 instructions");
}

std::optional<std::string> ProcCpuinfo() {
  std::ifstream in("/proc/cpuinfo");
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// cpuid + xgetbv against the kernel's own account of the same processor.
TEST(CpuFeatures, CpuidAgreesWithTheKernel) {
  const auto text = ProcCpuinfo();
  if (!text || text->find("flags") == std::string::npos) GTEST_SKIP() << "no /proc/cpuinfo flags here";
  const CpuBf16Features kernel = CpuBf16FromCpuinfo(*text);
  const CpuBf16Features cpuid = DetectCpuBf16();
  EXPECT_EQ(cpuid.avx512_bf16, kernel.avx512_bf16);
  EXPECT_EQ(cpuid.amx_bf16, kernel.amx_bf16);
}

TEST(ResolvePrecision, AutoPicksBf16OnlyWhereTheCpuHasIt) {
  const CpuBf16Features none, avx{.avx512_bf16 = true}, amx{.amx_bf16 = true};
  EXPECT_EQ(*ResolvePrecision("auto", false, none), "fp32");
  EXPECT_EQ(*ResolvePrecision("auto", false, avx), "bf16");
  EXPECT_EQ(*ResolvePrecision("auto", false, amx), "bf16");
  EXPECT_EQ(*ResolvePrecision("auto", true, none), "fp16");
  EXPECT_EQ(*ResolvePrecision("fp32", false, avx), "fp32");
  EXPECT_EQ(*ResolvePrecision("bf16", false, avx), "bf16");
  EXPECT_EQ(*ResolvePrecision("bf16", true, none), "bf16");
  EXPECT_EQ(*ResolvePrecision("fp16", true, none), "fp16");
  // Explicit bf16 on a CPU without the instructions is refused, saying what is missing.
  auto refused = ResolvePrecision("bf16", false, none);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("AVX512-BF16"), std::string::npos) << refused.status().ToString();
  EXPECT_FALSE(ResolvePrecision("fp16", false, avx).ok());
  EXPECT_FALSE(ResolvePrecision("BF16", false, avx).ok());
}

TEST(Scorer, AutoPrecisionIsWhatTheCpuHas) {
  const auto text = ProcCpuinfo();
  if (!text) GTEST_SKIP() << "no /proc/cpuinfo";
  ScorerOptions o = Cpu(kTinyModel);
  o.precision = "auto";
  auto scorer = Scorer::Create(o);
  ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
  EXPECT_EQ((*scorer)->precision(), CpuBf16FromCpuinfo(*text).any() ? "bf16" : "fp32");
  EXPECT_EQ((*Scorer::Create(Cpu(kTinyModel)))->precision(), "fp32");
}

// bf16 against fp32 on the same pictures: close (the drift bound), but not identical
// (so bf16 really ran). `tolerance` is in raw PXS units.
void ExpectBf16CloseToFp32(const std::string& package, const std::string& mode, double tolerance) {
  ScorerOptions o32 = Cpu(package), o16 = Cpu(package);
  o16.precision = "bf16";
  o16.cpu_bf16_mode = mode;
  auto fp32 = Scorer::Create(o32);
  auto bf16 = Scorer::Create(o16);
  ASSERT_TRUE(fp32.ok()) << fp32.status().ToString();
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  EXPECT_EQ((*bf16)->precision(), "bf16");
  std::vector<PreprocessedImage> batch;
  for (int i = 0; i < 6; ++i) {
    auto pre = (*fp32)->Preprocess(Picture(400 + 16 * i, 480, i + 1));
    ASSERT_TRUE(pre.ok()) << pre.status().ToString();
    batch.push_back(*pre);
  }
  auto a = (*fp32)->ScoreBatch(batch);
  auto b = (*bf16)->ScoreBatch(batch);
  bool embeddings_differ = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    ASSERT_TRUE(a[i].ok() && b[i].ok()) << b[i].status().ToString();
    EXPECT_NEAR(b[i]->pxs, a[i]->pxs, tolerance) << package << " " << mode << " image " << i;
    embeddings_differ |= a[i]->embedding != b[i]->embedding;
  }
  EXPECT_TRUE(embeddings_differ) << "bf16 gave bit-identical embeddings: did it run in fp32?";
}

TEST(Scorer, Bf16OnCpuStaysCloseToFp32) {
  if (!DetectCpuBf16().any()) {
    ScorerOptions o = Cpu(kTinyModel);
    o.precision = "bf16";
    auto refused = Scorer::Create(o);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("AVX512-BF16"), std::string::npos);
    GTEST_SKIP() << "this CPU has no bf16 instructions: bf16 is refused (checked)";
  }
  // The demo package: 2 % of the PXS span its calibration covers (the score's range).
  const std::string demo = std::string(PXS_SOURCE_DIR) + "/models/pxs-demo-cxr14.pt";
  auto demo_scorer = Scorer::Create(Cpu(demo));
  ASSERT_TRUE(demo_scorer.ok()) << demo_scorer.status().ToString();
  ASSERT_TRUE((*demo_scorer)->model().calibration.has_value());
  const auto& points = (*demo_scorer)->model().calibration->points;
  const double demo_tolerance = 0.02 * (points.back().first - points.front().first);
  ExpectBf16CloseToFp32(demo, "convert", demo_tolerance);
  ExpectBf16CloseToFp32(demo, "autocast", demo_tolerance);
  // The tiny test network (no calibrated range): 2 % of its score on these pictures.
  auto tiny = (*Scorer::Create(Cpu(kTinyModel)))->Score(Picture(400, 480, 1));
  ASSERT_TRUE(tiny.ok());
  ExpectBf16CloseToFp32(kTinyModel, "convert", 0.02 * tiny->pxs);
  ExpectBf16CloseToFp32(kTinyModel, "autocast", 0.02 * tiny->pxs);
  ScorerOptions bad = Cpu(kTinyModel);
  bad.precision = "bf16";
  bad.cpu_bf16_mode = "magic";
  EXPECT_EQ(Scorer::Create(bad).status().code(), Status::Code::kInvalidArgument);
}

TEST(EmbeddingDistance, EuclideanAndMedian) {
  EXPECT_DOUBLE_EQ(EmbeddingDistance({0.f, 0.f}, {3.f, 4.f}), 5.0);
  EXPECT_DOUBLE_EQ(EmbeddingDistance({1.f, 2.f, 3.f}, {1.f, 2.f, 3.f}), 0.0);
  EXPECT_TRUE(std::isnan(EmbeddingDistance({1.f}, {1.f, 2.f})));
  // Distances 1, 2, 3, 10 -> median (2 + 3) / 2.
  std::vector<std::vector<float>> anchors = {{1.f}, {-2.f}, {3.f}, {10.f}};
  EXPECT_DOUBLE_EQ(MedianAnchorDistance({0.f}, anchors), 2.5);
  anchors.pop_back();
  EXPECT_DOUBLE_EQ(MedianAnchorDistance({0.f}, anchors), 2.0);
}

TEST(Calibration, InterpolatesAndClamps) {
  Calibration c;
  c.points = {{0.0, 0.0}, {1.0, 6.0}, {4.0, 24.0}};
  EXPECT_DOUBLE_EQ(c.Apply(-1.0), 0.0);
  EXPECT_DOUBLE_EQ(c.Apply(0.5), 3.0);
  EXPECT_DOUBLE_EQ(c.Apply(2.5), 15.0);
  EXPECT_DOUBLE_EQ(c.Apply(9.0), 24.0);
}

TEST(ParseModelMetadata, ListsEveryProblem) {
  auto r = ParseModelMetadata(R"({"format": "other", "name": ""})");
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("'format'"), std::string::npos);
  EXPECT_NE(m.find("'name' must not be empty"), std::string::npos);
  EXPECT_NE(m.find("'version'"), std::string::npos);
  EXPECT_NE(m.find("'preprocessing'"), std::string::npos);
  EXPECT_FALSE(ParseModelMetadata("[1,2]").ok());
  EXPECT_FALSE(ParseModelMetadata("").ok());
  EXPECT_FALSE(ParseModelMetadata(std::string(10000, '[')).ok());  // deep nesting, no crash
  // A number too large for a double (found by fuzz_model_metadata): an error, not a crash.
  auto huge = ParseModelMetadata(std::string(400, '9'));
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("not valid JSON"), std::string::npos) << huge.status().ToString();
}

}  // namespace
}  // namespace pxs::scoring
