// Scorer: loads a PXS model package once, then scores batches of preprocessed images.
// PXS = median Euclidean distance between an image's embedding and the N cached anchor
// embeddings of the package: one forward pass per image (the published code runs the
// Siamese network 2N times per study).
//
// Typical worker loop (preprocessing of batch k+1 may run on another thread while
// ScoreBatch runs batch k: Preprocess is const and thread-safe; ScoreBatch is not
// re-entrant, call it from one thread):
//   auto scorer = Scorer::Create({.model_path = "model.pt"});   // loads, warms up
//   if (!scorer.ok()) stop the node with scorer.status().ToString();
//   auto pre = (*scorer)->Preprocess(decoded);                  // per image
//   auto results = (*scorer)->ScoreBatch(batch_of_preprocessed); // one result per input
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/scoring/cpu_features.h"
#include "pxs/scoring/decoded_image.h"
#include "pxs/scoring/model_info.h"
#include "pxs/scoring/preprocess.h"

namespace pxs::scoring {

struct ScorerOptions {
  std::string model_path;
  std::string device = "auto";     // auto (CUDA when available) | cpu | cuda | cuda:N
  // fp32 | fp16 | bf16 | auto. fp16: CUDA only. bf16: CUDA, or a CPU with AVX512-BF16 or
  // AMX-BF16 (refused on other CPUs: emulated bf16 is slower than fp32 and less exact).
  // auto: bf16 on such a CPU, fp32 on other CPUs, fp16 on CUDA. precision() names the
  // one chosen. The anchors and the distances stay fp32 in every case.
  std::string precision = "fp32";
  // How bf16 runs on a CPU: "convert" (the frozen module's weights and the input in bf16,
  // oneDNN's bf16 kernels; the default) or "autocast" (fp32 module under CPU autocast,
  // each op casting its inputs per call; kept for the benchmark's comparison).
  std::string cpu_bf16_mode = "convert";
  int intra_op_threads = 0;        // 0: all cores (torch's own default may be 1)
  int inter_op_threads = 1;        // process-wide; only the first Scorer can set it
  bool optimize = true;            // torch::jit::freeze + optimize_for_inference
  int warmup_batch = 1;            // batch size of the warm-up passes at Create (0: none)
  bool channels_last = false;      // NHWC input (with optimize: freeze only, no MKLDNN rewrite)
};

struct ScoreResult {
  double pxs = 0;                     // raw PXS: median distance to the anchors
  std::optional<double> calibrated;   // on the package's calibration scale, if it has one
  std::vector<float> embedding;       // model output, embedding_dim floats (fp32)
};

class Scorer {
 public:
  // Loads and validates the package (refusing one that lacks anything, naming it),
  // moves it to the device, optimises it and runs the warm-up passes.
  static StatusOr<std::unique_ptr<Scorer>> Create(const ScorerOptions& options);
  ~Scorer();
  Scorer(const Scorer&) = delete;
  Scorer& operator=(const Scorer&) = delete;

  const ModelInfo& model() const;
  std::string device() const;     // resolved, e.g. "cpu" or "cuda:0"
  std::string precision() const;  // resolved: fp32 | fp16 | bf16 (never auto)
  const std::vector<std::vector<float>>& anchors() const;  // [N][D], fp32

  // Thread-safe (const, no shared mutable state).
  StatusOr<PreprocessedImage> Preprocess(const DecodedImage& image) const;

  // One result per input, in order. Inputs must have the package's input size; a
  // non-finite embedding (NaN/Inf) fails that image only; a failed forward pass fails
  // every image of the batch with the same status.
  std::vector<StatusOr<ScoreResult>> ScoreBatch(const std::vector<PreprocessedImage>& batch);

  // Preprocess + ScoreBatch of one image.
  StatusOr<ScoreResult> Score(const DecodedImage& image);

 private:
  struct Impl;
  explicit Scorer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The precision a Scorer runs at for `requested` (fp32 | fp16 | bf16 | auto) on a CUDA
// device or on a CPU with `cpu`: "fp32", "fp16" or "bf16", or InvalidArgument naming what
// is missing (fp16 on a CPU; bf16 on a CPU without AVX512-BF16 or AMX-BF16).
StatusOr<std::string> ResolvePrecision(const std::string& requested, bool cuda, const CpuBf16Features& cpu);

// Euclidean distance between two embeddings (double accumulation); the change between
// two studies of one patient (Li et al., npj Digit Med 2020). Sizes must match: a
// mismatch (embeddings of different models) returns NaN.
double EmbeddingDistance(const std::vector<float>& a, const std::vector<float>& b);

// Median of the distances from `embedding` to each anchor (mean of the two middle
// values for an even count, like Python's statistics.median).
double MedianAnchorDistance(const std::vector<float>& embedding,
                            const std::vector<std::vector<float>>& anchors);

}  // namespace pxs::scoring
