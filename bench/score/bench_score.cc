// pxs_bench_score: throughput and latency of the C++ scoring engine (LibTorch only, so it
// builds with PXS_SCORING_ONLY on a GPU machine that has nothing but a LibTorch).
//
//   pxs_bench_score --model PKG.pt [--device cpu|cuda|cuda:N] [--precision fp32|fp16|bf16]
//                   [--batches 1,8,32] [--iters 5] [--threads 0] [--studies 16]
//                   [--width 2048 --height 2500]
//
// Measures, on synthetic 12-bit images of the given size (the same pattern as
// bench/score/bench_python.py):
//   * C++ preprocessing, ms per image (min-max .. centre crop);
//   * inference: per batch size, images/s and p50/p99 batch latency of ScoreBatch;
//   * a whole pipeline per study: preprocessing of batch k+1 on a second thread while
//     batch k is scored (the worker's pattern), studies/s at batch 1 and 8 (best reported).
// The last line of output is one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pxs/scoring/scorer.h"

namespace {

using Clock = std::chrono::steady_clock;
using pxs::scoring::DecodedImage;
using pxs::scoring::PreprocessedImage;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// A 12-bit test picture: smooth gradients plus a deterministic texture; `seed` varies it.
DecodedImage SyntheticImage(int width, int height, int seed) {
  DecodedImage d;
  d.width = width;
  d.height = height;
  d.bits_stored = 12;
  d.pixels.resize(static_cast<size_t>(width) * height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      d.pixels[static_cast<size_t>(y) * width + x] =
          static_cast<uint16_t>((x * 3 + y * 2 + ((x * y + seed * 7919) % 97) * 5 + seed * 13) % 4096);
  return d;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const double rank = p / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (rank - lo) * (v[hi] - v[lo]);
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  pxs::scoring::ScorerOptions options;
  options.device = "cpu";
  std::vector<int> batches = {1, 8, 32};
  int iters = 5, studies = 16, width = 2048, height = 2500;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") options.model_path = next();
    else if (a == "--device") options.device = next();
    else if (a == "--precision") options.precision = next();
    else if (a == "--threads") options.intra_op_threads = std::atoi(next().c_str());
    else if (a == "--batches") batches = ParseList(next());
    else if (a == "--iters") iters = std::max(1, std::atoi(next().c_str()));
    else if (a == "--studies") studies = std::max(1, std::atoi(next().c_str()));
    else if (a == "--width") width = std::atoi(next().c_str());
    else if (a == "--height") height = std::atoi(next().c_str());
    else if (a == "--no-optimize") options.optimize = false;
    else if (a == "--channels-last") options.channels_last = true;
    else {
      std::cerr << "unknown argument " << a << "\n";
      return 2;
    }
  }
  if (options.model_path.empty()) {
    std::cerr << "usage: pxs_bench_score --model PKG.pt [--device D] [--precision P] [--batches 1,8,32] "
                 "[--iters N] [--threads N] [--studies N]\n";
    return 2;
  }

  const auto t_load = Clock::now();
  auto created = pxs::scoring::Scorer::Create(options);
  if (!created.ok()) {
    std::cerr << created.status().ToString() << "\n";
    return 1;
  }
  auto& scorer = *created;
  const double load_ms = Ms(Clock::now() - t_load);
  const int threads = options.intra_op_threads > 0 ? options.intra_op_threads
                                                    : static_cast<int>(std::thread::hardware_concurrency());
  std::printf("model %s %s (%dx%d), device %s, precision %s, %d intra-op threads; load + warm-up %.0f ms\n",
              scorer->model().name.c_str(), scorer->model().version.c_str(), scorer->model().input_width,
              scorer->model().input_height, scorer->device().c_str(), scorer->precision().c_str(), threads, load_ms);

  // Preprocessing.
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  std::vector<DecodedImage> images;
  for (int i = 0; i < 4; ++i) images.push_back(SyntheticImage(width, height, i));
  std::vector<double> pre_ms;
  std::vector<PreprocessedImage> pre;
  for (int i = 0; i < std::max(8, max_batch); ++i) {
    const auto t0 = Clock::now();
    auto p = scorer->Preprocess(images[i % images.size()]);
    pre_ms.push_back(Ms(Clock::now() - t0));
    if (!p.ok()) {
      std::cerr << p.status().ToString() << "\n";
      return 1;
    }
    pre.push_back(*p);
  }
  const double pre_p50 = Percentile(pre_ms, 50);
  std::printf("preprocessing %dx%d 12-bit: p50 %.1f ms per image\n", width, height, pre_p50);

  // Inference per batch size.
  std::ostringstream batch_json;
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const int b = batches[bi];
    std::vector<PreprocessedImage> batch(pre.begin(), pre.begin() + b);
    scorer->ScoreBatch(batch);  // first pass at this batch size: allocation, kernel choice
    std::vector<double> lat;
    const auto t0 = Clock::now();
    for (int it = 0; it < iters; ++it) {
      const auto s = Clock::now();
      auto results = scorer->ScoreBatch(batch);
      lat.push_back(Ms(Clock::now() - s));
      if (!results[0].ok()) {
        std::cerr << results[0].status().ToString() << "\n";
        return 1;
      }
    }
    const double total_s = Ms(Clock::now() - t0) / 1000.0;
    const double ips = b * iters / total_s;
    const double p50 = Percentile(lat, 50), p99 = Percentile(lat, 99);
    std::printf("batch %2d: %8.2f images/s, batch latency p50 %.1f ms p99 %.1f ms (%d iterations)\n", b, ips, p50,
                p99, iters);
    batch_json << (bi ? ", " : "") << "{\"batch\": " << b << ", \"images_per_s\": " << ips
               << ", \"p50_ms\": " << p50 << ", \"p99_ms\": " << p99 << ", \"iterations\": " << iters << "}";
  }

  // Pipeline: preprocess batch k+1 on a second thread while batch k is scored (the
  // worker's pattern), at batch 1 and 8; on a small CPU batch 1 is often the faster.
  auto preprocess_range = [&](int first, int count) {
    std::vector<PreprocessedImage> out;
    for (int i = first; i < first + count; ++i) out.push_back(*scorer->Preprocess(images[i % images.size()]));
    return out;
  };
  auto pipeline = [&](int pipe_batch) {
    const auto tp0 = Clock::now();
    int done = 0;
    std::vector<PreprocessedImage> current = preprocess_range(0, std::min(pipe_batch, studies));
    while (done < studies) {
      const int next_first = done + static_cast<int>(current.size());
      const int next_count = std::min(pipe_batch, studies - next_first);
      std::future<std::vector<PreprocessedImage>> next;
      if (next_count > 0) next = std::async(std::launch::async, preprocess_range, next_first, next_count);
      scorer->ScoreBatch(current);
      done += static_cast<int>(current.size());
      current = next_count > 0 ? next.get() : std::vector<PreprocessedImage>{};
    }
    const double sps = studies / (Ms(Clock::now() - tp0) / 1000.0);
    std::printf("pipeline (preprocess %dx%d + score, batch %d, overlapped): %.2f studies/s over %d studies\n", width,
                height, pipe_batch, sps, studies);
    return sps;
  };
  // The same studies one after another, without a second thread: on a 2-core CPU the
  // preprocessing thread can take a core from one of the intra-op threads, and every
  // parallel region then waits for it.
  auto sequential = [&] {
    const auto tp0 = Clock::now();
    for (int i = 0; i < studies; ++i) scorer->ScoreBatch(preprocess_range(i, 1));
    const double sps = studies / (Ms(Clock::now() - tp0) / 1000.0);
    std::printf("sequential (preprocess %dx%d, then score, batch 1): %.2f studies/s over %d studies\n", width, height,
                sps, studies);
    return sps;
  };
  int pipe_batch = 1;
  const char* pipe_mode = "overlapped";
  double pipeline_sps = pipeline(1);
  if (max_batch >= 8) {
    const double sps8 = pipeline(8);
    if (sps8 > pipeline_sps) pipeline_sps = sps8, pipe_batch = 8;
  }
  if (const double sps_seq = sequential(); sps_seq > pipeline_sps) {
    pipeline_sps = sps_seq, pipe_batch = 1, pipe_mode = "sequential";
  }

  std::printf(
      "{\"bench\": \"score-cpp\", \"model\": \"%s\", \"device\": \"%s\", \"precision\": \"%s\", \"threads\": %d, "
      "\"load_ms\": %.1f, \"preprocess_ms\": %.2f, \"batches\": [%s], \"pipeline\": {\"batch\": %d, \"mode\": \"%s\", "
      "\"studies\": %d, \"studies_per_s\": %.4f}}\n",
      scorer->model().name.c_str(), scorer->device().c_str(), scorer->precision().c_str(), threads, load_ms, pre_p50,
      batch_json.str().c_str(), pipe_batch, pipe_mode, studies, pipeline_sps);
  return 0;
}
