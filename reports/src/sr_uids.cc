#include "sr_uids.h"

#include <algorithm>

#include <dcmtk/ofstd/ofuuid.h>

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

// Hand-written: DCMTK generates only new (time/random) UUIDs, and a UID that must come
// out the same for the same name (ISO/IEC 9834-8 name-based) has no library call here.
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
  // DCMTK's UUID printed as an OID is exactly the 2.25 form.
  OFUUID uuid;
  OFString uid;
  uuid.toString(uid, OFUUID::ER_RepresentationOID);
  return uid.c_str();
}

}  // namespace pxs
