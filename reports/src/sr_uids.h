// UIDs of the 2.25 form (ISO/IEC 9834-8: "2.25." + a 128-bit number in decimal), which
// need no registered root: derived from a name where the UID must be stable (tracking
// UID, the SR series of a study), random where it must be new (each SR instance).
#pragma once

#include <string>

namespace pxs {

// 2.25.<first 128 bits of SHA-256(name), as an unsigned decimal>.
std::string UidFromName(const std::string& name);

// 2.25.<a fresh UUID as a decimal> (DCMTK's OFUUID).
std::string RandomUid();

}  // namespace pxs
