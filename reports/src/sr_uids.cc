#include "sr_uids.h"

#include <algorithm>
#include <random>

#include "pxs/common/files.h"

namespace pxs {
namespace {

std::string Decimal(unsigned __int128 v) {
  if (v == 0) return "0";
  std::string digits;
  while (v > 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  std::reverse(digits.begin(), digits.end());
  return digits;
}

}  // namespace

std::string UidFromName(const std::string& name) {
  const std::string hex = Sha256Hex(name);
  unsigned __int128 v = 0;
  for (size_t i = 0; i < 32; ++i) {  // 32 hex digits = 128 bits
    const char c = hex[i];
    v = (v << 4) | static_cast<unsigned>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return "2.25." + Decimal(v);
}

std::string RandomUid() {
  std::random_device rd;
  unsigned __int128 v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 32) | rd();
  // Mark as a random (version 4, variant 1) UUID, as ISO/IEC 9834-8 suggests.
  v &= ~(static_cast<unsigned __int128>(0xF) << 76);
  v |= static_cast<unsigned __int128>(0x4) << 76;
  v &= ~(static_cast<unsigned __int128>(0x3) << 62);
  v |= static_cast<unsigned __int128>(0x2) << 62;
  return "2.25." + Decimal(v);
}

}  // namespace pxs
