#include "pxs/scoring/scorer.h"

#include <ATen/autocast_mode.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "pxs/scoring/cpu_features.h"

namespace pxs::scoring {

double EmbeddingDistance(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return std::nan("");
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    sum += d * d;
  }
  return std::sqrt(sum);
}

double MedianAnchorDistance(const std::vector<float>& embedding, const std::vector<std::vector<float>>& anchors) {
  if (anchors.empty()) return std::nan("");
  std::vector<double> d;
  d.reserve(anchors.size());
  for (const auto& anchor : anchors) d.push_back(EmbeddingDistance(embedding, anchor));
  const size_t mid = d.size() / 2;
  std::nth_element(d.begin(), d.begin() + mid, d.end());
  if (d.size() % 2 == 1) return d[mid];
  const double upper = d[mid];
  const double lower = *std::max_element(d.begin(), d.begin() + mid);
  return (lower + upper) / 2;
}

namespace {

// Torch's thread pools are process-wide. The inter-op pool size can only be set once,
// before any inter-op work; later attempts throw, which is fine to ignore (the first
// Scorer decided). The intra-op size can be changed at any time.
void ConfigureThreads(int intra, int inter) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(intra > 0 ? intra : cores);
  static std::once_flag once;
  std::call_once(once, [&] {
    try {
      at::set_num_interop_threads(inter > 0 ? inter : 1);
    } catch (const std::exception&) {
      // already set by someone else in this process
    }
  });
}

StatusOr<torch::Device> ResolveDevice(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  const bool cuda_available = torch::cuda::is_available();
  if (name == "auto") return cuda_available ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!cuda_available)
      return Status::Unavailable("device '" + name + "' requested but CUDA is not available (LibTorch built "
                                 "without CUDA, no driver, or no GPU)");
    int index = 0;
    if (name.size() > 5) {
      const std::string digits = name.substr(5);
      if (digits.empty() || digits.size() > 3 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
        return Status::InvalidArgument("device '" + name + "': expected cuda:N");
      index = std::stoi(digits);
    }
    if (index >= static_cast<int>(torch::cuda::device_count()))
      return Status::InvalidArgument("device '" + name + "': only " + std::to_string(torch::cuda::device_count()) +
                                     " CUDA device(s)");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return Status::InvalidArgument("device '" + name + "': expected auto, cpu, cuda or cuda:N");
}

}  // namespace

StatusOr<std::string> ResolvePrecision(const std::string& name, bool cuda, const CpuBf16Features& cpu) {
  if (name == "fp32") return std::string("fp32");
  if (name == "auto") {
    // CUDA: fp16, which every GPU with tensor cores runs at full speed (bf16 only from
    // compute capability 8.0) and which keeps 3 more mantissa bits than bf16; its narrow
    // range is not reached by the normalised activations of a BatchNorm network, and an
    // overflow would show as a NaN embedding, which is refused, not scored.
    if (cuda) return std::string("fp16");
    return std::string(cpu.any() ? "bf16" : "fp32");
  }
  if (name != "fp16" && name != "bf16")
    return Status::InvalidArgument("precision '" + name + "': expected fp32, fp16, bf16 or auto");
  if (cuda) return name;
  if (name == "fp16") return Status::InvalidArgument("precision 'fp16' needs a CUDA device (device is cpu; use bf16 or auto)");
  // Refused rather than run slowly: without the instructions bf16 is emulated with fp32
  // arithmetic plus conversions (or not offered by oneDNN at all, leaving ATen's reference
  // kernels): slower than fp32 and less exact, so nobody gains from it.
  if (!cpu.any())
    return Status::InvalidArgument("precision 'bf16' on cpu needs a processor with AVX512-BF16 or AMX-BF16; "
                                   "this one has " + cpu.Describe() + " (use fp32, or auto to pick per machine)");
  return std::string("bf16");
}

namespace {

const char* PrecisionName(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat16: return "fp16";
    case torch::kBFloat16: return "bf16";
    default: return "fp32";
  }
}

torch::ScalarType PrecisionType(const std::string& name) {
  if (name == "fp16") return torch::kFloat16;
  if (name == "bf16") return torch::kBFloat16;
  return torch::kFloat32;
}

// CPU autocast for one forward pass on this thread (autocast state is thread-local);
// restores the previous state and drops the cast cache afterwards.
class CpuAutocast {
 public:
  explicit CpuAutocast(bool on) : on_(on) {
    if (!on_) return;
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~CpuAutocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
  CpuAutocast(const CpuAutocast&) = delete;
  CpuAutocast& operator=(const CpuAutocast&) = delete;

 private:
  bool on_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace

struct Scorer::Impl {
  ScorerOptions options;
  ModelInfo info;
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  torch::ScalarType dtype = torch::kFloat32;  // of the module's weights and its input
  torch::ScalarType precision = torch::kFloat32;  // what the user asked for, resolved
  bool autocast = false;                      // CPU bf16 by autocast (dtype stays fp32)
  bool channels_last = false;
  std::vector<std::vector<float>> anchors;
  torch::Tensor scale, bias;    // [1,3,1,1] on the device, fp32: inv_std / 255 and -mean * inv_std
  bool same_channels = false;   // mean and std equal for the 3 channels
  std::mutex forward_mutex;     // ScoreBatch is documented as single-caller; this makes misuse safe

  // Runs the model on an already checked uint8 batch [B,1,H,W]; returns [B,D] fp32 on CPU.
  torch::Tensor Forward(torch::Tensor batch_u8) {
    torch::InferenceMode guard;
    CpuAutocast autocast_guard(autocast);
    if (device.is_cuda()) {
      if (!batch_u8.is_pinned()) batch_u8 = batch_u8.pin_memory();
      batch_u8 = batch_u8.to(device, /*non_blocking=*/true);  // bytes, not floats: 4x less to copy
    }
    // x = grey / 255 * inv_std[c] - mean[c] * inv_std[c] for the 3 channels, written in one
    // pass (addcmul) straight into the layout the module wants. The former form
    // (div, expand, sub, mul, cast, reorder to NHWC: 6 passes, 4 of them over 3 channels)
    // took 6-9 ms per batch of 16 at 160 px on this 2-core host, a quarter of a bf16 pass.
    const int64_t b = batch_u8.size(0), h = batch_u8.size(2), w = batch_u8.size(3);
    torch::Tensor grey = batch_u8.to(torch::kFloat32);  // [B,1,H,W]: one plane, not three
    torch::Tensor x;
    if (channels_last && same_channels) {
      // Every channel the same (both demo packages): one plane computed and cast, then
      // copied 3-fold in the narrow dtype. Bit-identical to the next branch, half its time
      // for bf16 (1.1 vs 2.1 ms per batch of 16 at 160 px).
      x = torch::addcmul(bias.view({3}).slice(0, 0, 1), grey.view({b, h, w, 1}), scale.view({3}).slice(0, 0, 1))
              .to(dtype)
              .expand({b, h, w, 3})
              .contiguous()
              .permute({0, 3, 1, 2});
    } else if (channels_last) {
      // [B,H,W,1] x [3] -> [B,H,W,3]; the permuted view is [B,3,H,W] with NHWC strides.
      x = torch::addcmul(bias.view({3}), grey.view({b, h, w, 1}), scale.view({3})).to(dtype).permute({0, 3, 1, 2});
    } else {
      x = torch::addcmul(bias, grey, scale).to(dtype);  // [B,3,H,W], contiguous
    }
    torch::jit::IValue out = module.forward({x});
    if (!out.isTensor()) throw std::runtime_error("forward() did not return a tensor");
    return out.toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
  }
};

Scorer::Scorer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Scorer::~Scorer() = default;
const ModelInfo& Scorer::model() const { return impl_->info; }
std::string Scorer::device() const { return impl_->device.str(); }
std::string Scorer::precision() const { return PrecisionName(impl_->precision); }
const std::vector<std::vector<float>>& Scorer::anchors() const { return impl_->anchors; }

StatusOr<std::unique_ptr<Scorer>> Scorer::Create(const ScorerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  const std::string& path = options.model_path;
  StatusOr<torch::Device> device = ResolveDevice(options.device);
  if (!device.ok()) return device.status();
  impl->device = *device;
  StatusOr<std::string> resolved =
      ResolvePrecision(options.precision, impl->device.is_cuda(), impl->device.is_cuda() ? CpuBf16Features{} : DetectCpuBf16());
  if (!resolved.ok()) return resolved.status();
  const torch::ScalarType dtype = PrecisionType(*resolved);
  impl->precision = dtype;
  impl->dtype = dtype;
  impl->channels_last = options.channels_last;
  const bool cpu_bf16 = !impl->device.is_cuda() && dtype == torch::kBFloat16;
  if (cpu_bf16) {
    if (options.cpu_bf16_mode != "convert" && options.cpu_bf16_mode != "autocast")
      return Status::InvalidArgument("cpu_bf16_mode '" + options.cpu_bf16_mode + "': expected convert or autocast");
    impl->autocast = options.cpu_bf16_mode == "autocast";
    if (impl->autocast) impl->dtype = torch::kFloat32;  // autocast casts per op
    // oneDNN's bf16 convolutions work on NHWC; a plain NCHW input would be reordered
    // before and after every convolution.
    if (!impl->autocast) impl->channels_last = true;
  }
  ConfigureThreads(options.intra_op_threads, options.inter_op_threads);

  // 1. Load the TorchScript file and its metadata.json.
  torch::jit::ExtraFilesMap extra{{"metadata.json", ""}};
  try {
    impl->module = torch::jit::load(path, torch::kCPU, extra);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return Status::InvalidArgument("model package " + path + ": cannot load as TorchScript: " + what);
  }
  if (extra["metadata.json"].empty())
    return Status::InvalidArgument("model package " + path + ": missing extra file 'metadata.json'");
  StatusOr<ModelInfo> info = ParseModelMetadata(extra["metadata.json"]);
  if (!info.ok()) return Status::InvalidArgument(path + ": " + info.status().message());
  impl->info = std::move(info).value();
  const ModelInfo& mi = impl->info;

  // 2. The cached anchor embeddings, checked against the metadata.
  if (!impl->module.find_method("forward"))
    return Status::InvalidArgument("model package " + path + ": missing method 'forward'");
  if (!impl->module.hasattr("anchors") || !impl->module.attr("anchors").isTensor())
    return Status::InvalidArgument("model package " + path + ": missing tensor 'anchors' (the [N,D] anchor embeddings)");
  torch::Tensor anchors = impl->module.attr("anchors").toTensor();
  if (anchors.dim() != 2 || anchors.size(0) != mi.anchor_count || anchors.size(1) != mi.embedding_dim)
    return Status::InvalidArgument("model package " + path + ": 'anchors' has shape " +
                                   c10::str(anchors.sizes()) + ", metadata says [" + std::to_string(mi.anchor_count) +
                                   ", " + std::to_string(mi.embedding_dim) + "]");
  anchors = anchors.to(torch::kCPU, torch::kFloat32).contiguous();
  if (!torch::isfinite(anchors).all().item<bool>())
    return Status::InvalidArgument("model package " + path + ": 'anchors' contains NaN or Inf");
  for (int64_t i = 0; i < anchors.size(0); ++i) {
    const float* row = anchors[i].data_ptr<float>();
    impl->anchors.emplace_back(row, row + anchors.size(1));
  }

  // 3. Inference form: eval, frozen (weights become constants, conv+bn folded) and
  //    optimised for inference (oneDNN layouts on CPU), then moved to the device.
  try {
    impl->module.eval();
    // Device and dtype first: freezing turns the weights into graph constants, which a
    // later Module::to() would no longer move.
    impl->module.to(impl->device, impl->dtype);
    if (options.optimize) {
      impl->module = torch::jit::freeze(impl->module);
      // optimize_for_inference rewrites convolutions for MKLDNN's blocked layout, which
      // makes a channels-last input pointless; channels-last keeps the frozen graph as is.
      // Neither for bf16 on CPU: in LibTorch 1.13 that rewrite handles fp32 weights only,
      // and its prepacked ops are not on autocast's lists.
      if (!impl->device.is_cuda() && !impl->channels_last && !cpu_bf16)
        impl->module = torch::jit::optimize_for_inference(impl->module);
    }
    const auto& pp = mi.preprocessing;
    // In double, then rounded once to fp32.
    const torch::Tensor inv_std = 1.0 / torch::tensor({pp.std[0], pp.std[1], pp.std[2]}, torch::kFloat64);
    const torch::Tensor mean = torch::tensor({pp.mean[0], pp.mean[1], pp.mean[2]}, torch::kFloat64);
    impl->scale = (inv_std / 255.0).to(torch::kFloat32).view({1, 3, 1, 1}).to(impl->device);
    impl->bias = (-mean * inv_std).to(torch::kFloat32).view({1, 3, 1, 1}).to(impl->device);
    impl->same_channels = pp.mean[0] == pp.mean[1] && pp.mean[1] == pp.mean[2] && pp.std[0] == pp.std[1] &&
                          pp.std[1] == pp.std[2];
  } catch (const std::exception& e) {
    std::string what = e.what();
    return Status::Internal("model package " + path + ": preparing for inference failed: " +
                            what.substr(0, what.find('\n')));
  }

  // 4. Warm-up: the first passes allocate, pick kernels and let the JIT profile; doing
  //    them now keeps the first study from being slow, and proves the output shape.
  if (options.warmup_batch > 0) {
    try {
      torch::Tensor zeros =
          torch::zeros({options.warmup_batch, 1, mi.input_height, mi.input_width}, torch::kUInt8);
      for (int i = 0; i < 3; ++i) {
        torch::Tensor out = impl->Forward(zeros);
        if (out.dim() != 2 || out.size(0) != options.warmup_batch || out.size(1) != mi.embedding_dim)
          return Status::InvalidArgument("model package " + path + ": forward() returned shape " +
                                         c10::str(out.sizes()) + ", expected [" + std::to_string(options.warmup_batch) +
                                         ", " + std::to_string(mi.embedding_dim) + "]");
      }
    } catch (const std::exception& e) {
      std::string what = e.what();
      return Status::InvalidArgument("model package " + path + ": warm-up forward pass failed: " +
                                     what.substr(0, what.find('\n')));
    }
  }
  return std::unique_ptr<Scorer>(new Scorer(std::move(impl)));
}

StatusOr<PreprocessedImage> Scorer::Preprocess(const DecodedImage& image) const {
  return scoring::Preprocess(image, impl_->info.preprocessing);
}

std::vector<StatusOr<ScoreResult>> Scorer::ScoreBatch(const std::vector<PreprocessedImage>& batch) {
  const ModelInfo& mi = impl_->info;
  std::vector<StatusOr<ScoreResult>> results(batch.size(), Status::Internal("not scored"));
  std::vector<size_t> valid;  // indices of inputs with the package's input size
  for (size_t i = 0; i < batch.size(); ++i) {
    const Image8& g = batch[i].gray;
    if (g.width != mi.input_width || g.height != mi.input_height ||
        g.pixels.size() != static_cast<size_t>(g.width) * g.height) {
      results[i] = Status::InvalidArgument("preprocessed image is " + std::to_string(g.width) + "x" +
                                           std::to_string(g.height) + ", the model takes " +
                                           std::to_string(mi.input_width) + "x" + std::to_string(mi.input_height));
    } else {
      valid.push_back(i);
    }
  }
  if (valid.empty()) return results;

  const int64_t plane = static_cast<int64_t>(mi.input_height) * mi.input_width;
  // Pinned (page-locked) host memory on CUDA, so the copy to the GPU is a direct DMA.
  torch::Tensor input = torch::empty({static_cast<int64_t>(valid.size()), 1, mi.input_height, mi.input_width},
                                     torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(impl_->device.is_cuda()));
  for (size_t k = 0; k < valid.size(); ++k)
    std::memcpy(input.data_ptr<uint8_t>() + k * plane, batch[valid[k]].gray.pixels.data(), plane);

  torch::Tensor out;
  try {
    std::lock_guard<std::mutex> lock(impl_->forward_mutex);
    out = impl_->Forward(input);
  } catch (const std::exception& e) {
    std::string what = e.what();
    Status failed = Status::Internal("forward pass failed: " + what.substr(0, what.find('\n')));
    for (size_t i : valid) results[i] = failed;
    return results;
  }
  if (out.dim() != 2 || out.size(0) != static_cast<int64_t>(valid.size()) || out.size(1) != mi.embedding_dim) {
    Status bad = Status::Internal("forward() returned shape " + c10::str(out.sizes()));
    for (size_t i : valid) results[i] = bad;
    return results;
  }
  for (size_t k = 0; k < valid.size(); ++k) {
    const float* row = out.data_ptr<float>() + k * mi.embedding_dim;
    ScoreResult r;
    r.embedding.assign(row, row + mi.embedding_dim);
    if (!std::all_of(r.embedding.begin(), r.embedding.end(), [](float v) { return std::isfinite(v); })) {
      results[valid[k]] = Status::Internal("model output contains NaN or Inf (not a score)");
      continue;
    }
    r.pxs = MedianAnchorDistance(r.embedding, impl_->anchors);
    if (!std::isfinite(r.pxs)) {
      results[valid[k]] = Status::Internal("PXS is not finite");
      continue;
    }
    if (mi.calibration) r.calibrated = mi.calibration->Apply(r.pxs);
    results[valid[k]] = std::move(r);
  }
  return results;
}

StatusOr<ScoreResult> Scorer::Score(const DecodedImage& image) {
  StatusOr<PreprocessedImage> pre = Preprocess(image);
  if (!pre.ok()) return pre.status();
  return std::move(ScoreBatch({std::move(pre).value()}).front());
}

}  // namespace pxs::scoring
