// Which bfloat16 instructions this processor (and its operating system) offers, so that
// precision = "auto" picks bf16 on CPU only where it pays: without AVX512-BF16 or AMX-BF16
// oneDNN emulates bf16 with fp32 arithmetic plus conversions, slower than plain fp32.
#pragma once

#include <string>
#include <string_view>

namespace pxs::scoring {

struct CpuBf16Features {
  bool avx512_bf16 = false;  // AVX512_BF16 (e.g. AMD Zen 4, Intel Cooper Lake / Sapphire Rapids)
  bool amx_bf16 = false;     // AMX-BF16 tiles (Intel Sapphire Rapids and later)
  bool any() const { return avx512_bf16 || amx_bf16; }
  std::string Describe() const;  // "AVX512-BF16", "AVX512-BF16 + AMX-BF16" or "no bf16 instructions"
};

// Asks the processor (cpuid) and checks that the OS saves the registers the
// instructions need (xgetbv: the ZMM state for AVX-512, the tile state for AMX). On
// processors other than x86-64: none.
CpuBf16Features DetectCpuBf16();

// The same from the text of /proc/cpuinfo (the kernel's view: it leaves out flags it
// does not support). Whole words of the first "flags" line: avx512_bf16, amx_bf16.
CpuBf16Features CpuBf16FromCpuinfo(std::string_view cpuinfo);

}  // namespace pxs::scoring
