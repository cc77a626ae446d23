// Floors of the dn row kernel's element work (built and run by benchmarks/kernel_floor.py with the kernel's
// own compiler flags). Two questions, each timed against a reference in the same process:
//
//  1. exp/log: is glibc's vector libm (libmvec, what csrc/dn_rows.cpp calls for the general exponents) the
//     cost to beat? The same row loop as the kernel's a^(α−1) = exp((α−1)·ln a) with libmvec, with an inline
//     polynomial exp/log of our own (fdlibm-style log, degree-6 exp; their worst ulp error is printed), and
//     with no transcendental at all (the memory floor).
//  2. The kernel's row sums (in double, eight accumulators over i mod 8: the committed answers' bits depend on
//     that order): is one sum bound by its adds' latency, so that several independent sums in one loop would
//     come almost free? One sum, two sums in two loops, the same two in one loop, all over L1-resident rows.
//
// Output: one line per case, "name microseconds" (best of the repeats); the runner prints the ratios.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#ifdef LATERALNORM_LIBMVEC
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) float logf(float) noexcept;
}
#endif

namespace {

inline int32_t bits_of(float x) {
  int32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float float_of(int32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// ln x for finite x > 0 (normal or subnormal): x = 2^k·m, m in [√½, √2), log(1+f) with s = f/(2+f)
inline float poly_log(float x) {
  const bool sub = x < 1.17549435e-38f;
  const float xs = sub ? x * 8388608.0f : x;  // 2^23
  const int32_t ix = bits_of(xs);
  const int32_t k = (ix - 0x3f3504f3) >> 23;
  const float m = float_of(ix - (k << 23));
  const float kf = float(k) - (sub ? 23.0f : 0.0f);
  const float f = m - 1.0f, s = f / (2.0f + f), z = s * s, w = z * z;
  const float R = z * (0.66666662693f + w * 0.28498786688f) + w * (0.40000972152f + w * 0.24279078841f);
  const float hfsq = 0.5f * f * f;
  return kf * 6.9313812256e-01f - ((hfsq - (s * (hfsq + R) + kf * 9.0580006145e-06f)) - f);
}

// e^x for x in [−87, 88] (clamped): x = n ln 2 + r, |r| ≤ ln2/2, degree-6 polynomial, 2^n by the exponent bits
inline float poly_exp(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = (xc * 1.44269504089f + 12582912.0f) - 12582912.0f;  // round to nearest, vectorizable
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = (p * r * r + r) + 1.0f;
  return float_of(bits_of(e) + (int32_t(n) << 23));
}

// The kernel's pm_of_row for one (M, N) block: a^(α−1) (0 where a = 0) and ln a, by the exp/log of Kind
enum Kind { LIBMVEC, POLY, NONE };
template <Kind K>
__attribute__((noinline)) void powers(const float* __restrict__ a, int64_t n, float e, float* __restrict__ pm,
                                      float* __restrict__ L) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i], safe = x + (x == 0.0f ? 1.0f : 0.0f);
    float l, g;
    if constexpr (K == LIBMVEC) {
      l = logf(safe);
      g = expf(e * l);
    } else if constexpr (K == POLY) {
      l = poly_log(safe);
      g = poly_exp(e * l);
    } else {
      l = safe;
      g = e * safe;
    }
    pm[i] = x > 0.0f ? g : 0.0f;
    L[i] = l;
  }
}

// One row sum as the kernel's lane_sum (eight double accumulators over i mod 8, the tail, then the lanes)
__attribute__((noinline)) double lane_sum(const float* __restrict__ x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

// Two such sums in one loop (the same additions per sum: the same bits). Written with GCC's vector types, one
// 8-lane double accumulator per sum: with plain arrays GCC keeps two sums' accumulators in memory and the loop
// runs several times slower, which would say nothing about the adders.
typedef double V8d __attribute__((vector_size(64)));
typedef float V8f __attribute__((vector_size(32)));
inline V8d widen8(const float* p) {
  V8f f;
  std::memcpy(&f, p, sizeof f);
  return __builtin_convertvector(f, V8d);
}
__attribute__((noinline)) void lane_sum2(const float* __restrict__ x, const float* __restrict__ y, int64_t n,
                                         double* __restrict__ out) {
  V8d a = {0, 0, 0, 0, 0, 0, 0, 0}, b = a;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a += widen8(x + i);
    b += widen8(y + i);
  }
  double s = 0, t = 0;
  for (; i < n; ++i) {
    s += static_cast<double>(x[i]);
    t += static_cast<double>(y[i]);
  }
  for (int k = 0; k < 8; ++k) {
    s += a[k];
    t += b[k];
  }
  out[0] = s;
  out[1] = t;
}

template <typename F>
double best_us(F f, int repeats) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    best = us < best ? us : best;
  }
  return best;
}

double ulp_error(double got, double ref) {
  const float rf = static_cast<float>(ref);
  return std::fabs(got - ref) / std::fabs(double(std::nextafter(rf, INFINITY)) - double(rf));
}

}  // namespace

int main() {
  const int64_t rows = 1024, n = 512, total = rows * n;  // the benchmark's (1024, 512)
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::vector<float> a(total), pm(total), L(total);
  for (auto& v : a) v = std::max(normal(rng), 0.0f);  // relu(t): half the elements 0, as with rect
  const float e = 0.5f;                               // α − 1 for α = 1.5
  volatile double sink = 0;
  std::printf("exp_log_libmvec %.1f\n", best_us([&] { powers<LIBMVEC>(a.data(), total, e, pm.data(), L.data()); }, 30));
  std::printf("exp_log_poly %.1f\n", best_us([&] { powers<POLY>(a.data(), total, e, pm.data(), L.data()); }, 30));
  std::printf("exp_log_none %.1f\n", best_us([&] { powers<NONE>(a.data(), total, e, pm.data(), L.data()); }, 30));
  double worst_log = 0, worst_exp = 0;
  for (uint32_t u = 0x00800000u; u < 0x7f800000u; u += 97) {
    const float x = float_of(static_cast<int32_t>(u));
    worst_log = std::max(worst_log, ulp_error(poly_log(x), std::log(double(x))));
  }
  for (float x = -87.0f; x < 88.0f; x += 0.000731f)
    worst_exp = std::max(worst_exp, ulp_error(poly_exp(x), std::exp(double(x))));
  std::printf("poly_log_worst_ulp %.3f\npoly_exp_worst_ulp %.3f\n", worst_log, worst_exp);

  // the sums run over two L1-resident rows, as the kernel's run over its per-row scratch
  std::vector<float> x(2 * n), y(2 * n);
  for (int64_t i = 0; i < 2 * n; ++i) {
    x[i] = normal(rng);
    y[i] = normal(rng);
  }
  double two[2];
  std::printf("sum_one %.1f\n", best_us([&] {
    for (int64_t r = 0; r < rows; ++r) sink = sink + lane_sum(x.data() + (r % 2) * n, n);
  }, 30));
  std::printf("sum_two_loops %.1f\n", best_us([&] {
    for (int64_t r = 0; r < rows; ++r)
      sink = sink + lane_sum(x.data() + (r % 2) * n, n) + lane_sum(y.data() + (r % 2) * n, n);
  }, 30));
  std::printf("sum_two_fused %.1f\n", best_us([&] {
    for (int64_t r = 0; r < rows; ++r) {
      lane_sum2(x.data() + (r % 2) * n, y.data() + (r % 2) * n, n, two);
      sink = sink + two[0] + two[1];
    }
  }, 30));
  lane_sum2(x.data(), y.data(), n, two);
  std::printf("sum_fused_same_bits %d\n", two[0] == lane_sum(x.data(), n) && two[1] == lane_sum(y.data(), n));
  return 0;
}
