#include "pxs/scoring/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cstdint>
#include <sstream>

namespace pxs::scoring {

std::string CpuBf16Features::Describe() const {
  if (avx512_bf16 && amx_bf16) return "AVX512-BF16 + AMX-BF16";
  if (avx512_bf16) return "AVX512-BF16";
  if (amx_bf16) return "AMX-BF16";
  return "no bf16 instructions";
}

#if defined(__x86_64__) || defined(__i386__)
namespace {

// XCR0 through xgetbv (the instruction, so that no -mxsave is needed for the builtin).
uint64_t ReadXcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

}  // namespace

CpuBf16Features DetectCpuBf16() {
  CpuBf16Features f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid(1, eax, ebx, ecx, edx);
  if (!(ecx & (1u << 27))) return f;  // OSXSAVE: without it xgetbv faults and nothing is enabled
  const uint64_t xcr0 = ReadXcr0();
  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM: the state AVX-512 code needs saved.
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;
  // XTILECFG and XTILEDATA (bits 17, 18). Linux also wants arch_prctl(ARCH_REQ_XCOMP_PERM)
  // per process; oneDNN asks for it itself before it uses the tiles.
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const unsigned max_leaf7_subleaf = eax;
  const bool avx512f = ebx & (1u << 16);
  f.amx_bf16 = os_amx && (edx & (1u << 22));
  if (max_leaf7_subleaf >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx512_bf16 = os_avx512 && avx512f && (eax & (1u << 5));
  }
  return f;
}
#else
CpuBf16Features DetectCpuBf16() { return {}; }
#endif

CpuBf16Features CpuBf16FromCpuinfo(std::string_view cpuinfo) {
  CpuBf16Features f;
  std::istringstream lines{std::string(cpuinfo)};
  std::string line;
  while (std::getline(lines, line)) {
    // "flags\t\t: fpu vme ..." (x86); the first processor's line speaks for all.
    if (line.rfind("flags", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    std::string w;
    while (words >> w) {
      if (w == "avx512_bf16") f.avx512_bf16 = true;
      if (w == "amx_bf16") f.amx_bf16 = true;
    }
    break;
  }
  return f;
}

}  // namespace pxs::scoring
