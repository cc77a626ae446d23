// exp and log for the kernels' element loops (dn_rows.cpp, exp_rows.cpp). With LATERALNORM_LIBMVEC (GCC on
// x86-64 Linux, where glibc's vector math library is linked: `cpu_kernel.py`) they are declared SIMD-enabled, so
// the vectorized row loops call glibc's vector exp/log (≤ 4 ulp) instead of one scalar call per element.
#pragma once

#include <cmath>

#ifdef LATERALNORM_LIBMVEC
extern "C" {
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) double log(double) noexcept;
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float logf(float) noexcept;
}
#endif

namespace {

inline double vexp(double x) { return exp(x); }
inline float vexp(float x) { return expf(x); }
inline double vlog(double x) { return log(x); }
inline float vlog(float x) { return logf(x); }

}  // namespace
