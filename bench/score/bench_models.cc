// pxs_bench_models: what several models and CPU bf16 cost in the C++ engine.
// bench/score/bench_models.py runs it next to Python in one run; it can also run alone.
//
//   pxs_bench_models multi --model A.pt --model B.pt [--threads 0] [--rounds 3] FILE.dcm...
//     The worker's pattern per image (pipeline/src/scoring_worker.cc): decode the DICOM
//     file once, preprocess once per distinct preprocessing (packages that differ only in
//     the resize and crop share the full-resolution steps), score each model at batch 1.
//     Peers in the same rounds, alternated: "one model per image" (image i scored by
//     model i % 2 only: decode + its preprocessing + its pass) and "two models per image"
//     (one decode, both models). Prints ms per image of each step and the ratio.
//
//   pxs_bench_models precision --model P.pt --precision fp32|bf16 --images RAW [--batch 16]
//                              [--threads 0] [--rounds 3] [--timed 128]
//     RAW (written by bench_models.py): per image uint32 width, uint32 height, then
//     width*height 8-bit grey values. Preprocesses every image with the node's C++ path,
//     scores all of them (bf16: the node's "convert" mode) and then, in --rounds rounds
//     over the first --timed images, times ScoreBatch (input conversion, forward pass,
//     anchor distances). Prints every PXS (the caller computes the drift between two
//     runs) and the best round's images/s.
//
//   pxs_bench_models paired --model P.pt --images RAW [--batch 16] [--threads 0] [--rounds 3]
//                           [--timed 128]
//     Every variant in one process, interleaved pass by pass (one pass = the --timed images
//     at --batch), so that a busy host slows all of them alike: C++ ScoreBatch fp32, bf16
//     "convert" and bf16 "autocast", and "peer autocast", the package's module as
//     torch.jit.load gives it to Python (not frozen, NCHW fp32 input made beforehand,
//     forward passes only, under CPU bf16 autocast): the libtorch calls Python's
//     `with torch.autocast("cpu", dtype=torch.bfloat16): module(x)` makes, minus the
//     interpreter. Prints each variant's median and best images/s and the median of the
//     per-round ratios (bench_models.py runs real Python as the other peer).
// The last line of output is one JSON object.
#include <ATen/autocast_mode.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pxs/imaging/dicom_decoder.h"
#include "pxs/scoring/scorer.h"

namespace {

using Clock = std::chrono::steady_clock;
using pxs::scoring::DecodedImage;
using pxs::scoring::PreprocessedImage;
using pxs::scoring::Scorer;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "pxs_bench_models: " << what << "\n";
  std::exit(1);
}

std::unique_ptr<Scorer> Load(const std::string& path, const std::string& precision, int threads,
                             const std::string& bf16_mode = "convert") {
  auto s = Scorer::Create({.model_path = path, .device = "cpu", .precision = precision, .cpu_bf16_mode = bf16_mode,
                           .intra_op_threads = threads});
  if (!s.ok()) Die(s.status().ToString());
  return std::move(*s);
}

int Multi(const std::vector<std::string>& models, const std::vector<std::string>& files, int threads, int rounds) {
  if (models.size() != 2 || files.empty()) Die("multi needs two --model and at least one DICOM file");
  std::vector<std::unique_ptr<Scorer>> scorers;
  for (const std::string& m : models) scorers.push_back(Load(m, "fp32", threads));
  // As the worker: the same preprocessing is done once; packages that differ only in the
  // resize and crop share the full-resolution steps.
  const auto& p0 = scorers[0]->model().preprocessing;
  const auto& p1 = scorers[1]->model().preprocessing;
  const bool shared = pxs::scoring::PreprocessingKey(scorers[0]->model()) == pxs::scoring::PreprocessingKey(scorers[1]->model());
  const bool shared_full = !shared && pxs::scoring::HasFullResolutionSteps(p0) && pxs::scoring::HasFullResolutionSteps(p1) &&
                           pxs::scoring::FullResolutionKey(p0) == pxs::scoring::FullResolutionKey(p1);
  struct Steps {
    double decode = 0, preprocess = 0, score = 0, total = 0;
  };
  auto decode = [&](const std::string& f, Steps& s) {
    const auto t = Clock::now();
    auto d = pxs::imaging::DecodeDicomFile(f);
    if (!d.ok()) Die(f + ": " + d.status().ToString());
    s.decode += Ms(Clock::now() - t);
    return std::move(*d);
  };
  auto run = [&](Scorer& scorer, const PreprocessedImage& pre, Steps& s) {
    const auto t = Clock::now();
    auto r = scorer.ScoreBatch({pre});
    if (!r[0].ok()) Die(r[0].status().ToString());
    s.score += Ms(Clock::now() - t);
  };
  auto preprocess = [&](const Scorer& scorer, const DecodedImage& d, Steps& s) {
    const auto t = Clock::now();
    auto p = scorer.Preprocess(d);
    if (!p.ok()) Die(p.status().ToString());
    s.preprocess += Ms(Clock::now() - t);
    return std::move(*p);
  };
  auto one_model = [&] {
    Steps s;
    const auto t0 = Clock::now();
    for (size_t i = 0; i < files.size(); ++i) {
      Scorer& scorer = *scorers[i % 2];
      DecodedImage d = decode(files[i], s);
      run(scorer, preprocess(scorer, d, s), s);
    }
    s.total = Ms(Clock::now() - t0);
    return s;
  };
  auto two_models = [&] {
    Steps s;
    const auto t0 = Clock::now();
    for (const std::string& f : files) {
      DecodedImage d = decode(f, s);
      if (shared_full) {
        const auto t = Clock::now();
        auto equalised = pxs::scoring::CroppedAndEqualised(d, p0);
        if (!equalised.ok()) Die(f + ": " + equalised.status().ToString());
        auto a = pxs::scoring::ResizeAndCrop(*equalised, p0);
        auto b = pxs::scoring::ResizeAndCrop(*equalised, p1);
        if (!a.ok() || !b.ok()) Die(f + ": resize failed");
        s.preprocess += Ms(Clock::now() - t);
        run(*scorers[0], *a, s);
        run(*scorers[1], *b, s);
        continue;
      }
      PreprocessedImage first = preprocess(*scorers[0], d, s);
      run(*scorers[0], first, s);
      run(*scorers[1], shared ? first : preprocess(*scorers[1], d, s), s);
    }
    s.total = Ms(Clock::now() - t0);
    return s;
  };
  one_model();  // warm-up: page cache, allocator, the first passes at this size
  two_models();
  Steps best1{1e300, 0, 0, 1e300}, best2{1e300, 0, 0, 1e300};
  for (int r = 0; r < rounds; ++r) {
    Steps a = one_model(), b = two_models();
    std::printf("round %d: one model per image %.1f ms/image, two models per image %.1f ms/image (%.2fx)\n", r + 1,
                a.total / files.size(), b.total / files.size(), b.total / a.total);
    if (a.total < best1.total) best1 = a;
    if (b.total < best2.total) best2 = b;
  }
  const double n = static_cast<double>(files.size());
  auto json = [&](const Steps& s) {
    std::ostringstream o;
    o << "{\"ms_per_image\": " << s.total / n << ", \"decode_ms\": " << s.decode / n << ", \"preprocess_ms\": "
      << s.preprocess / n << ", \"score_ms\": " << s.score / n << "}";
    return o.str();
  };
  std::printf("best rounds: one model per image %.1f ms (decode %.1f, preprocess %.1f, score %.1f); two models %.1f ms "
              "(decode %.1f, preprocess %.1f, score %.1f): %.2fx (goal <= 1.7x); preprocessing %s\n",
              best1.total / n, best1.decode / n, best1.preprocess / n, best1.score / n, best2.total / n,
              best2.decode / n, best2.preprocess / n, best2.score / n, best2.total / best1.total,
              shared ? "shared" : shared_full ? "full-resolution steps shared, resize and crop per model"
                                              : "differs between the two packages (done once per model)");
  std::printf("{\"bench\": \"score-models-cpp\", \"models\": [\"%s %s\", \"%s %s\"], \"images\": %zu, \"threads\": %d, "
              "\"rounds\": %d, \"preprocessing_shared\": \"%s\", \"one_model_per_image\": %s, \"two_models_per_image\": %s, "
              "\"ratio\": %.4f}\n",
              scorers[0]->model().name.c_str(), scorers[0]->model().version.c_str(), scorers[1]->model().name.c_str(),
              scorers[1]->model().version.c_str(), files.size(), threads, rounds, shared ? "all" : shared_full ? "full-resolution" : "none",
              json(best1).c_str(), json(best2).c_str(), best2.total / best1.total);
  return 0;
}

std::vector<DecodedImage> ReadRaw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die(path + ": cannot open");
  std::vector<DecodedImage> out;
  uint32_t size[2];
  while (in.read(reinterpret_cast<char*>(size), sizeof(size))) {
    if (size[0] == 0 || size[1] == 0 || size[0] > 16384 || size[1] > 16384) {
      Die(path + ": image " + std::to_string(out.size()) + " has a bad size");
    }
    std::vector<uint8_t> grey(static_cast<size_t>(size[0]) * size[1]);
    if (!in.read(reinterpret_cast<char*>(grey.data()), static_cast<std::streamsize>(grey.size()))) {
      Die(path + ": image " + std::to_string(out.size()) + " is cut short");
    }
    DecodedImage d;
    d.width = static_cast<int>(size[0]);
    d.height = static_cast<int>(size[1]);
    d.bits_stored = 8;
    d.bits_allocated = 8;
    d.pixels.assign(grey.begin(), grey.end());
    out.push_back(std::move(d));
  }
  if (out.empty()) Die(path + ": no images");
  return out;
}

int Precision(const std::string& model, const std::string& precision, const std::string& bf16_mode,
              const std::string& raw, int batch, int threads, int rounds, int timed) {
  const std::vector<DecodedImage> images = ReadRaw(raw);
  // One precision per process: a second Scorer in the same process (the other precision)
  // slowed the first one's passes by up to 2x here, which the node (one Scorer per model)
  // never sees.
  std::unique_ptr<Scorer> scorer = Load(model, precision, threads, bf16_mode);  // bf16 is refused on a CPU without it
  std::vector<PreprocessedImage> pre;
  for (const DecodedImage& d : images) {
    auto p = scorer->Preprocess(d);
    if (!p.ok()) Die(p.status().ToString());
    pre.push_back(std::move(*p));
  }
  auto score_all = [&](size_t count, std::vector<double>* pxs) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < count; i += batch) {
      std::vector<PreprocessedImage> b(pre.begin() + i, pre.begin() + std::min(count, i + batch));
      for (auto& r : scorer->ScoreBatch(b)) {
        if (!r.ok()) Die(r.status().ToString());
        if (pxs) pxs->push_back(r->pxs);
      }
    }
    return Ms(Clock::now() - t0);
  };
  std::vector<double> pxs;
  score_all(pre.size(), &pxs);
  const size_t n = std::min(pre.size(), static_cast<size_t>(timed));
  double best = 1e300;
  for (int r = 0; r < rounds; ++r) {
    const double ms = score_all(n, nullptr);
    std::printf("round %d: %s %.1f images/s\n", r + 1, scorer->precision().c_str(), n * 1000.0 / ms);
    best = std::min(best, ms);
  }
  std::ostringstream list;
  list.precision(17);
  for (size_t i = 0; i < pxs.size(); ++i) list << (i ? ", " : "") << pxs[i];
  std::printf("{\"bench\": \"score-precision-cpp\", \"model\": \"%s %s\", \"precision\": \"%s\", \"bf16_mode\": \"%s\", \"threads\": %d, "
              "\"batch\": %d, \"timed_images\": %zu, \"images_per_s\": %.4f, \"pxs\": [%s]}\n",
              scorer->model().name.c_str(), scorer->model().version.c_str(), scorer->precision().c_str(), bf16_mode.c_str(), threads, batch,
              n, n * 1000.0 / best, list.str().c_str());
  return 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

int Paired(const std::string& model, const std::string& raw, int batch, int threads, int rounds, int timed) {
  const std::vector<DecodedImage> images = ReadRaw(raw);
  std::unique_ptr<Scorer> fp32 = Load(model, "fp32", threads);
  std::unique_ptr<Scorer> convert = Load(model, "bf16", threads, "convert");
  std::unique_ptr<Scorer> autocast = Load(model, "bf16", threads, "autocast");
  std::vector<PreprocessedImage> pre;
  for (const DecodedImage& d : images) {
    auto p = fp32->Preprocess(d);
    if (!p.ok()) Die(p.status().ToString());
    pre.push_back(std::move(*p));
  }
  const size_t n = std::min(pre.size(), static_cast<size_t>(timed));
  // The peer's input as Python's preprocess_files gives it: [N,3,H,W] fp32, contiguous.
  const auto& mi = fp32->model();
  const auto& pp = mi.preprocessing;
  torch::Tensor input = torch::empty({static_cast<int64_t>(n), 3, mi.input_height, mi.input_width});
  for (size_t i = 0; i < n; ++i) {
    torch::Tensor g = torch::from_blob(const_cast<uint8_t*>(pre[i].gray.pixels.data()),
                                       {1, mi.input_height, mi.input_width}, torch::kUInt8)
                          .to(torch::kFloat32)
                          .div(255.f);
    for (int c = 0; c < 3; ++c) input[static_cast<int64_t>(i)][c].copy_((g[0] - pp.mean[c]) / pp.std[c]);
  }
  torch::jit::Module peer = torch::jit::load(model, torch::kCPU);
  peer.eval();
  auto peer_pass = [&] {
    torch::NoGradGuard no_grad;  // as drift_python.embed
    const bool was = at::autocast::is_cpu_enabled();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
    const auto t0 = Clock::now();
    for (size_t i = 0; i < n; i += batch) {
      torch::Tensor x = input.slice(0, static_cast<int64_t>(i), static_cast<int64_t>(std::min(n, i + batch)));
      peer.forward({x});
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();  // leaving `with`
      at::autocast::increment_nesting();
    }
    const double ms = Ms(Clock::now() - t0);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(was);
    return ms;
  };
  auto scorer_pass = [&](Scorer& s) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < n; i += batch) {
      std::vector<PreprocessedImage> b(pre.begin() + i, pre.begin() + std::min(n, i + batch));
      for (auto& r : s.ScoreBatch(b))
        if (!r.ok()) Die(r.status().ToString());
    }
    return Ms(Clock::now() - t0);
  };
  const char* names[] = {"fp32", "bf16", "bf16_autocast", "peer_autocast"};
  auto pass = [&](int v) {
    switch (v) {
      case 0: return scorer_pass(*fp32);
      case 1: return scorer_pass(*convert);
      case 2: return scorer_pass(*autocast);
      default: return peer_pass();
    }
  };
  for (int v = 0; v < 4; ++v) pass(v), pass(v);  // warm-up: the profiling executor, allocations at this batch
  std::vector<std::vector<double>> ips(4);
  std::vector<double> r_fp32, r_peer, r_auto;
  for (int r = 0; r < rounds; ++r) {
    double ms[4];
    for (int k = 0; k < 4; ++k) {
      const int v = (r + k) % 4;  // rotate the order: no variant always runs first
      ms[v] = pass(v);
      ips[v].push_back(n * 1000.0 / ms[v]);
    }
    r_fp32.push_back(ms[0] / ms[1]);
    r_peer.push_back(ms[3] / ms[1]);
    r_auto.push_back(ms[0] / ms[2]);
    std::printf("round %d: fp32 %.1f, bf16 %.1f, bf16_autocast %.1f, peer_autocast %.1f images/s; bf16/fp32 %.2fx, "
                "bf16/peer %.2fx\n", r + 1, ips[0].back(), ips[1].back(), ips[2].back(), ips[3].back(), r_fp32.back(),
                r_peer.back());
  }
  std::ostringstream o;
  o << "{\"bench\": \"score-paired-cpp\", \"model\": \"" << mi.name << " " << mi.version << "\", \"threads\": " << threads
    << ", \"batch\": " << batch << ", \"timed_images\": " << n << ", \"rounds\": " << rounds;
  for (int v = 0; v < 4; ++v)
    o << ", \"" << names[v] << "\": {\"median\": " << Median(ips[v])
      << ", \"best\": " << *std::max_element(ips[v].begin(), ips[v].end()) << "}";
  o << ", \"median_ratio_bf16_vs_fp32\": " << Median(r_fp32) << ", \"median_ratio_bf16_vs_peer_autocast\": "
    << Median(r_peer) << ", \"median_ratio_bf16_autocast_vs_fp32\": " << Median(r_auto) << "}";
  std::printf("%s\n", o.str().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: pxs_bench_models multi --model A --model B [--threads N] [--rounds N] FILE.dcm...\n"
                 "       pxs_bench_models precision --model P --precision fp32|bf16 --images RAW [--batch N] [--threads N] [--rounds N] "
                 "[--timed N]\n"
                 "       pxs_bench_models paired --model P --images RAW [--batch N] [--threads N] [--rounds N] [--timed N]\n";
    return 2;
  }
  const std::string mode = argv[1];
  std::vector<std::string> models, files;
  std::string raw, precision = "fp32", bf16_mode = "convert";
  int threads = 0, rounds = 3, batch = 16, timed = 128;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](int min) {
      const std::string v = next();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < min || n > 100000) Die(a + ": not a number >= " + std::to_string(min) + ": " + v);
      return static_cast<int>(n);
    };
    if (a == "--model") models.push_back(next());
    else if (a == "--images") raw = next();
    else if (a == "--precision") precision = next();
    else if (a == "--bf16-mode") bf16_mode = next();
    else if (a == "--threads") threads = number(0);
    else if (a == "--rounds") rounds = number(1);
    else if (a == "--batch") batch = number(1);
    else if (a == "--timed") timed = number(1);
    else if (!a.empty() && a[0] == '-') Die("unknown option " + a);
    else files.push_back(a);
  }
  if (threads == 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (mode == "multi") return Multi(models, files, threads, rounds);
  if (mode == "precision") {
    if (models.size() != 1 || raw.empty()) Die("precision needs one --model and --images RAW");
    return Precision(models[0], precision, bf16_mode, raw, batch, threads, rounds, timed);
  }
  if (mode == "paired") {
    if (models.size() != 1 || raw.empty()) Die("paired needs one --model and --images RAW");
    return Paired(models[0], raw, batch, threads, rounds, timed);
  }
  Die("unknown mode " + mode + " (multi | precision | paired)");
}
