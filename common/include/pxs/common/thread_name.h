// Names the calling thread (Linux: at most 15 characters), so that `top -H`, `ps -L`
// and /proc/PID/task/*/comm show which part of the node is busy.
#pragma once

#include <pthread.h>

namespace pxs {

inline void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace pxs
