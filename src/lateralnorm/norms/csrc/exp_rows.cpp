// The exp family of divisive normalization (fn=exp, a fixed α) with an O(N) pool (κ self, uniform or band) on
// CPU, a few sweeps of a row each way (norms/exp_rows.py has the formula and the Python nodes for the other pools).
//
// Per row of y (features last), t = y (or y centered in two passes, as the composite centers), s = max_j t_j:
//   ψ = e^{α(t − s)},  P = pool(ψ) (self ψ_i; uniform Σ_j ψ_j; band Σ_{j=i−before}^{i+after} ψ_j),
//   e = e^{min(−α s, 80)},  D = β e + c P,  z = e^{p(t − s)} D^{−r} e^{(p − α r) s},  out = γ z + b
// (e^{p(t − s)} is ψ where p = α, a product of ψs where p = 2α, 3α, 4α, and the other way where α = 2p, 3p, 4p: see
// Lead). Backward from the forward's ψ (or numerator: Lead) and each row's s and S = Σ ψ (kept when a gradient is to
// come: one plane):
//   gz = g γ,  h = gz z,  gD = −r h / D,  gψ = poolᵀ(c gD),  gt = p h + α ψ gψ,  gy = gt − mean(gt) when centered;
//   column sums Σ g z (γ), Σ g (b), Σ gD e (β), Σ gD P (c), per block of 64 rows in T, the blocks added in order in
//   double (no result depends on the thread count). s is a constant to the gradient, as the composite's
//   detached maximum: the output's true derivative through it is zero.

#include <torch/extension.h>
#include <torch/csrc/autograd/custom_function.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "autograd_node.h"  // the nodes' shared bookkeeping (dn_rows.cpp's too)
#include "vec_math.h"  // vexp, vlog

// defined in dn_rows.cpp: the module path's NonNegative value and gradient (the arithmetic dn_rows_node uses)
at::Tensor module_param_value(const at::Tensor& src, double bound, double pedestal, at::ScalarType dt);
at::Tensor module_param_grad(const at::Tensor& g, const at::Tensor& src, double bound);
// defined in dn_rows.cpp: a matrix layer node's source (β, U, V) valued and differentiated as NonNegNode does
at::Tensor source_value(const at::Tensor& src, double bound, double pedestal);
at::Tensor source_grad(const at::Tensor& g, const at::Tensor& src, double bound);
// defined in lowrank_product.cpp: the K-thin products, (W, t) = ((ψ V) Uᵀ, ψ V) and (gψ, gU, gV)
std::tuple<at::Tensor, at::Tensor> lowrank_product_forward(const at::Tensor& psi, const at::Tensor& u,
                                                           const at::Tensor& v);
std::tuple<at::Tensor, at::Tensor, at::Tensor> lowrank_product_backward(const at::Tensor& gw, const at::Tensor& psi,
                                                                        const at::Tensor& t, const at::Tensor& u,
                                                                        const at::Tensor& v, bool need_psi,
                                                                        bool need_u, bool need_v);

namespace {

enum Pool : int64_t { SELF = 0, UNIFORM = 1, BAND = 2 };
constexpr int64_t kBlock = 64;   // rows per block of column partial sums
// e^{−α s} capped at e^80 (the composite caps β e^{−α s} instead: the two agree wherever neither cap is reached,
// −α s ≤ 80 and ln β − α s ≤ 80, and differ only where β e^{−α s} is beyond e^80, a row e^{−80} of its scale)
constexpr double kExpCap = 80.0;

// How a row's numerator e^{p(t − s)} and ψ = e^{α(t − s)} are had (one exp an element each way but in the last case):
// the same (p = α); the numerator a product of ψs (p = kα, k = 2, 3, 4); ψ a product of numerators (α = kp; the
// kept plane then holds the numerator instead of ψ); or each its own exp (the numerator's again in the backward).
enum Lead : int { SAME = 0, NUM_FROM_PSI = 1, PSI_FROM_NUM = 2, TWO_EXPS = 3 };

struct ExpCfg {
  int64_t kind;
  bool center;
  double alpha, p, r;
  int64_t before, after;
  int lead = SAME;
  int power = 1;  // k of NUM_FROM_PSI or PSI_FROM_NUM
};

// k where a = k b for k = 2, 3 or 4 (exactly, as doubles), else 0
inline int small_multiple(double a, double b) {
  for (int k = 2; k <= 4; ++k)
    if (a == k * b) return k;
  return 0;
}

// the lead of (α, p); `psi_first`: ψ must be computed first (the matrix pools get ψ from their own node)
inline ExpCfg with_lead(ExpCfg k, bool psi_first) {
  if (k.p == k.alpha) return k;
  if (int m = small_multiple(k.p, k.alpha)) {
    k.lead = NUM_FROM_PSI;
    k.power = m;
  } else if (int m2 = psi_first ? 0 : small_multiple(k.alpha, k.p)) {
    k.lead = PSI_FROM_NUM;
    k.power = m2;
  } else {
    k.lead = TWO_EXPS;
  }
  return k;
}

// x^k by products (k = 1…4) into out
template <typename T>
const T* powered(const T* __restrict__ x, int64_t n, int k, T* __restrict__ out) {
  if (k == 2)
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * x[i];
  else if (k == 3)
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * x[i] * x[i];
  else if (k == 4)
    for (int64_t i = 0; i < n; ++i) {
      const T x2 = x[i] * x[i];
      out[i] = x2 * x2;
    }
  else
    return x;
  return out;
}

// One row's scratch: t (a centered row; else the input is read as it is), the numerator where it is not the kept
// plane (z: NUM_FROM_PSI, TWO_EXPS), ψ where the kept plane holds the numerator (psi), the band pool's window sums
// (pool) and the neighbour pairs they are added from (pairs), and the backward's h, gw and gψ.
template <typename T>
struct Row {
  std::vector<T> t, z, psi, pool, pairs, h, gw, gpsi;
  Row(int64_t n, int64_t padding) : t(n), z(n), psi(n), pool(n), pairs(n + padding), h(n), gw(n), gpsi(n) {}
};

// Σ x in double over 32 lanes (four independent vectors of 8: one chain of adds a row was its time)
template <typename T>
double row_sum(const T* __restrict__ x, int64_t n) {
  double acc[32] = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 32; ++k) acc[k] += static_cast<double>(x[i + k]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  for (int k = 0; k < 32; ++k) s += acc[k];
  return s;
}

// win[i] = Σ_{j=i−before}^{i+after} x[j] over the row (zeros outside), however wide: the row's neighbour pairs q[j] =
// z[j] + z[j + 1] of z (the row between `before` and `after` zeros) into `pairs`, then for 32 bytes of outputs at a
// time every other pair (and the last element of an odd window) taken by shifted (unaligned) loads into a register:
// win[i] = q[i] + q[i + 2] + … (+ z[i + width − 1]), in that order for every element. Measured on 1024 rows of 512 with
// 11 offsets (a C++ harness): one pass over the row an offset, each adding into memory, 0.38 ms; a 16-float array as
// the accumulator 0.83 (GCC kept it in memory); a 64-byte register 0.19 (each unaligned load split two cache lines); a
// 32-byte one from a zero-padded copy of the row 0.16–0.25; from the copy's pairs (six loads for eleven) 0.14, its
// pairs of pairs 0.15; from the row's own pairs (no copy) 0.12, a 64-byte register there 0.14. Windows wider than 64
// took a running sum in double: a chain of dependent adds (the kernel's step at width 41 3.9 ms so, 2.8 ms by pairs)
// whose differences lose a window of small values after large ones (a row of ψ spanning e^{±100}); pairs are sums of
// the values themselves at any width (O(N × width / 2)).
constexpr int64_t kFixedLast = 16;  // windows of up to 17 (band:8) with their adds unrolled at compile time

// the pairs' window sums for last = width − 1 ≥ 1: `Last` at compile time (its adds unrolled: a runtime count of
// them left a loop a vector of outputs, 0.18 → 0.13 ms for width 11 in the C++ harness), or 0 (read from `last`)
template <int64_t Last, typename T>
void pair_windows(const T* __restrict__ x, int64_t n, int64_t before, int64_t after, int64_t last_rt,
                  T* __restrict__ pairs, T* __restrict__ win) {
  const int64_t last = Last > 0 ? Last : last_rt;
  auto z = [&](int64_t j) { return j >= before && j < before + n ? x[j - before] : T(0); };  // the padded row
  typedef T vec __attribute__((vector_size(32)));
  constexpr int64_t L = 32 / sizeof(T);
  for (int64_t j = 0; j + 1 < before; ++j) pairs[j] = T(0);  // q over [0, n + last): zero beyond the row
  if (before > 0) pairs[before - 1] = x[0];
  int64_t j = 0;
  for (; j + 1 + L <= n; j += L) {  // 32-byte loads (GCC's 64-byte ones split a cache line at every x[j + 1 …])
    vec a, b;
    __builtin_memcpy(&a, x + j, sizeof(vec));
    __builtin_memcpy(&b, x + j + 1, sizeof(vec));
    a += b;
    __builtin_memcpy(pairs + before + j, &a, sizeof(vec));
  }
  for (; j + 1 < n; ++j) pairs[before + j] = x[j] + x[j + 1];
  pairs[before + n - 1] = x[n - 1];
  for (int64_t q = before + n; q < n + last; ++q) pairs[q] = T(0);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    vec acc, v;
    __builtin_memcpy(&acc, pairs + i, sizeof(vec));
#pragma GCC unroll 16
    for (int64_t o = 2; o < last; o += 2) {
      __builtin_memcpy(&v, pairs + i + o, sizeof(vec));
      acc += v;
    }
    if (last % 2 == 0) {  // z[i + last …] = x[i + after …]
      if (i + after + L <= n) __builtin_memcpy(&v, x + i + after, sizeof(vec));
      else
        for (int64_t l = 0; l < L; ++l) v[l] = z(i + last + l);
      acc += v;
    }
    __builtin_memcpy(win + i, &acc, sizeof(vec));
  }
  for (; i < n; ++i) {
    T acc = pairs[i];
    for (int64_t o = 2; o < last; o += 2) acc += pairs[i + o];
    if (last % 2 == 0) acc += z(i + last);
    win[i] = acc;
  }
}

// pair_windows with its width fixed at compile time where last is one of Ls
template <typename T, int64_t... Ls>
bool fixed_pair_windows(std::integer_sequence<int64_t, Ls...>, const T* x, int64_t n, int64_t before,
                        int64_t after, T* pairs, T* win) {
  const int64_t last = before + after;
  return ((last == Ls + 1 && (pair_windows<Ls + 1>(x, n, before, after, last, pairs, win), true)) || ...);
}

template <typename T>
void window_sums(const T* __restrict__ x, int64_t n, int64_t before, int64_t after, T* __restrict__ pairs,
                 T* __restrict__ win) {
  const int64_t width = before + after + 1;
  if (width == 1) {
    std::copy(x, x + n, win);
    return;
  }
  if (!fixed_pair_windows(std::make_integer_sequence<int64_t, kFixedLast>{}, x, n, before, after, pairs, win))
    pair_windows<0>(x, n, before, after, width - 1, pairs, win);
}

// max_i x[i] over two 32-byte vectors of lanes, then across them; NaN if any element is NaN, as torch's amax (then
// the whole row is NaN, as the composite's). Whether to look for a NaN: a lane sum of x·0, NaN only where the row has
// a NaN or an infinity (a compare-and-select drops a NaN, so the sum finds it). Written with vector types: GCC left
// the same loop on 16 scalar lanes in scalar registers (one element an instruction; 11% of a band step's time).
template <typename T>
T row_max(const T* __restrict__ x, int64_t n) {
  typedef T vec __attribute__((vector_size(32)));
  constexpr int64_t L = 32 / sizeof(T);
  constexpr T inf = std::numeric_limits<T>::infinity();
  vec m0, m1, o0 = {}, o1 = {};
  for (int64_t l = 0; l < L; ++l) m0[l] = m1[l] = -inf;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    vec a, b;
    __builtin_memcpy(&a, x + i, sizeof(vec));
    __builtin_memcpy(&b, x + i + L, sizeof(vec));
    m0 = m0 < a ? a : m0;
    m1 = m1 < b ? b : m1;
    o0 += a * T(0);
    o1 += b * T(0);
  }
  T m = -inf, o = T(0);
  for (; i < n; ++i) {
    m = std::max(m, x[i]);
    o += x[i] * T(0);
  }
  for (int64_t l = 0; l < L; ++l) {
    m = std::max(m, std::max(m0[l], m1[l]));
    o += o0[l] + o1[l];
  }
  if (o != o)  // a NaN or an infinity somewhere: a NaN makes the row's maximum NaN
    for (int64_t j = 0; j < n; ++j)
      if (x[j] != x[j]) return x[j];
  return m;
}

// A row's t: y itself, or y centered in two passes (as `center_rows`: t = y − mean y, then t − mean t) into w.t;
// the forward and the backward both take it from here, so they see the same values
template <typename T>
const T* row_t(const T* y, int64_t n, bool center, Row<T>& w) {
  if (!center) return y;
  T* __restrict__ t = w.t.data();
  const T m1 = static_cast<T>(row_sum(y, n) / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = y[i] - m1;
  const T m2 = static_cast<T>(row_sum(t, n) / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) t[i] -= m2;
  return t;
}

// the row's shift s and its kept values into `lead`: ψ = e^{α(t − s)}, or the numerator e^{p(t − s)} (PSI_FROM_NUM)
template <typename T>
T lead_row(const T* y, int64_t n, const ExpCfg& k, Row<T>& w, T* __restrict__ lead) {
  const T* __restrict__ t = row_t(y, n, k.center, w);
  const T s = row_max(t, n), a = static_cast<T>(k.lead == PSI_FROM_NUM ? k.p : k.alpha);
  for (int64_t i = 0; i < n; ++i) lead[i] = vexp((t[i] - s) * a);
  return s;
}

// ψ from the kept values: themselves, or the numerator's power into w.psi (PSI_FROM_NUM)
template <typename T>
const T* psi_of(const T* lead, int64_t n, const ExpCfg& k, Row<T>& w) {
  return k.lead == PSI_FROM_NUM ? powered(lead, n, k.power, w.psi.data()) : lead;
}

// ---- Each row's element work in a few sweeps. Forward: the row maximum, ψ, the pool (uniform: its sum S; band:
// its window sums), then the output with 1/D, z and the affine computed in one sweep. Backward from the forward's
// kept plane (ψ, or the numerator: Lead), s and S (kept: no exp but where p and α are no small multiple of each other, one there for the numerator): one
// sweep (self), two (uniform: ψ's gradient is one number a row, the sum of the first sweep's terms) or two and the
// window sums (band), the main sweep over two rows at once.

// D^{−r} from 1/D: R = 1 (r = 1), 2 (r = 1/2), 0 (any r, through exp and log)
template <int R, typename T>
inline T inv_power(T inv, T r) {
  if constexpr (R == 1) return inv;
  else if constexpr (R == 2) return std::sqrt(inv);
  else return vexp(r * vlog(inv));
}

inline int r_kind(double r) { return r == 1.0 ? 1 : (r == 0.5 ? 2 : 0); }

// the numerator e^{p(t − s)} from the kept values `lead` (ψ, or the numerator itself): them (SAME, PSI_FROM_NUM),
// their power (NUM_FROM_PSI), or its own exp (TWO_EXPS), into w.z (t from y, as the forward's)
template <typename T>
const T* numerator(const T* y, const T* lead, T s, int64_t n, const ExpCfg& k, Row<T>& w) {
  if (k.lead == SAME || k.lead == PSI_FROM_NUM) return lead;
  if (k.lead == NUM_FROM_PSI) return powered(lead, n, k.power, w.z.data());
  const T* __restrict__ t = row_t(y, n, k.center, w);
  T* __restrict__ num = w.z.data();
  const T p = static_cast<T>(k.p);
  for (int64_t i = 0; i < n; ++i) num[i] = vexp((t[i] - s) * p);
  return num;
}

template <typename T>
T row_scale(T s, const ExpCfg& k) {  // e = e^{min(−α s, 80)}
  return static_cast<T>(std::exp(std::min(-k.alpha * static_cast<double>(s), kExpCap)));
}

template <typename T>
T shift_factor(T s, const ExpCfg& k) {  // e^{(p − α r) s} (1 where p = α r)
  return k.p != k.alpha * k.r ? static_cast<T>(std::exp((k.p - k.alpha * k.r) * static_cast<double>(s))) : T(1);
}

// the pool's per-element values P: ψ itself (self), or the window sums into w.pool (band); uniform: unused (S)
template <int Kind, typename T>
const T* pooled(const T* psi, int64_t n, const ExpCfg& k, Row<T>& w) {
  if constexpr (Kind == BAND) {
    window_sums(psi, n, k.before, k.after, w.pairs.data(), w.pool.data());
    return w.pool.data();
  }
  return psi;
}

// one row's output into o; the kept values (ψ, or the numerator: Lead) into lead; (s, S) into kept_s where given
template <typename T, int Kind, int R>
void forward_row(const T* y, int64_t n, const ExpCfg& k, const T* __restrict__ beta, const T* __restrict__ c,
                 const T* __restrict__ gm, const T* __restrict__ bi, Row<T>& w, T* __restrict__ lead,
                 T* __restrict__ o, T* kept_s) {
  const T s = lead_row(y, n, k, w, lead);
  const T* __restrict__ psi = psi_of(lead, n, k, w);
  const T S = Kind == UNIFORM ? static_cast<T>(row_sum(psi, n)) : T(0);
  const T* __restrict__ P = pooled<Kind>(psi, n, k, w);
  const T e = row_scale(s, k), corr = shift_factor(s, k), r = static_cast<T>(k.r);
  const T* __restrict__ num = numerator(y, lead, s, n, k, w);
  for (int64_t i = 0; i < n; ++i) {
    const T inv = T(1) / (beta[i] * e + c[i] * (Kind == UNIFORM ? S : P[i]));
    o[i] = gm[i] * (num[i] * inv_power<R>(inv, r) * corr) + bi[i];
  }
  if (kept_s) {
    kept_s[0] = s;
    kept_s[1] = S;
  }
}

// One row of the backward: its inputs, the values the main sweep reads (ψ, the pool P, the numerator), its row
// numbers, and where its h, gw and input gradient go
template <typename T>
struct GradRow {
  const T *g, *psi, *P, *num;
  T S, e, corr;
  T *h, *gw, *gy;
};

template <typename T, int Kind>
GradRow<T> grad_row(const T* gr, const T* y, const T* lead, T s, T S, int64_t n, const ExpCfg& k, Row<T>& w,
                    T* gyr) {
  const T* psi = psi_of(lead, n, k, w);
  return GradRow<T>{gr, psi, pooled<Kind>(psi, n, k, w), numerator(y, lead, s, n, k, w), S, row_scale(s, k),
                    shift_factor(s, k), w.h.data(), w.gw.data(), gyr};
}

// one row's terms of the main sweep at element i (the column sums' terms added into z_, g_, e_, p_)
template <typename T, int Kind, int R>
inline void grad_terms(int64_t i, const T* __restrict__ g, const T* __restrict__ psi, const T* __restrict__ P,
                       const T* __restrict__ num, T S, T e, T corr, T* __restrict__ h, T* __restrict__ gw,
                       T* __restrict__ gy, T beta_i, T c_i, T gm_i, T r, T mr, T pe, T a, T& z_, T& g_, T& e_,
                       T& p_) {
  const T gri = g[i];
  const T Pi = Kind == UNIFORM ? S : P[i];
  const T inv = T(1) / (beta_i * e + c_i * Pi);
  const T gz = gri * (num[i] * inv_power<R>(inv, r) * corr);
  const T hz = gz * gm_i;
  const T gd = mr * hz * inv;
  z_ += gz;
  g_ += gri;
  e_ += gd * e;
  p_ += gd * Pi;
  if constexpr (Kind == SELF) {
    gy[i] = pe * hz + a * psi[i] * (gd * c_i);
  } else {
    h[i] = hz;
    gw[i] = gd * c_i;
  }
}

// The main sweep over M = 1 or 2 rows (the second row's pointers unused where M = 1), each column sum read and
// written once for them. Every pointer a __restrict__ parameter of a function kept out of line: GCC ignores it on a
// struct's members or a local and lost it here when inlining, and the alias checks between some twenty pointers are
// more than it versions a loop for (the loop ran scalar: the backward 2x slower).
template <typename T, int Kind, int R, int M>
__attribute__((noinline)) void main_sweep(int64_t n, const ExpCfg& k, const T* __restrict__ beta,
                                          const T* __restrict__ c, const T* __restrict__ gm, T* __restrict__ cz,
                                          T* __restrict__ cg, T* __restrict__ ce, T* __restrict__ cpool,
                                          const T* __restrict__ g0, const T* __restrict__ psi0,
                                          const T* __restrict__ P0, const T* __restrict__ num0, T S0, T e0, T corr0,
                                          T* __restrict__ h0, T* __restrict__ gw0, T* __restrict__ gy0,
                                          const T* __restrict__ g1, const T* __restrict__ psi1,
                                          const T* __restrict__ P1, const T* __restrict__ num1, T S1, T e1, T corr1,
                                          T* __restrict__ h1, T* __restrict__ gw1, T* __restrict__ gy1) {
  const T r = static_cast<T>(k.r), a = static_cast<T>(k.alpha), pe = static_cast<T>(k.p), mr = static_cast<T>(-k.r);
  for (int64_t i = 0; i < n; ++i) {
    T z_ = cz[i], g_ = cg[i], e_ = ce[i], p_ = cpool[i];
    grad_terms<T, Kind, R>(i, g0, psi0, P0, num0, S0, e0, corr0, h0, gw0, gy0, beta[i], c[i], gm[i], r, mr, pe, a,
                           z_, g_, e_, p_);
    if constexpr (M == 2)
      grad_terms<T, Kind, R>(i, g1, psi1, P1, num1, S1, e1, corr1, h1, gw1, gy1, beta[i], c[i], gm[i], r, mr, pe,
                             a, z_, g_, e_, p_);
    cz[i] = z_;
    cg[i] = g_;
    ce[i] = e_;
    cpool[i] = p_;
  }
}

// The backward of M = 1 or 2 rows: the main sweep over them together (each column sum's traffic, 4 loads and 4
// stores a vector of elements, was a quarter of the backward one row at a time; the rows' terms are added in row
// order, as one row at a time added them), then each row's input gradient from its h, gw and ψ:
// uniform through the row's Σ gw, band through gw's window (the window's transpose).
template <typename T, int Kind, int R, int M>
void backward_rows(const GradRow<T>* q, int64_t n, const ExpCfg& k, const T* beta, const T* c, const T* gm,
                   T* cols, Row<T>* w) {
  const GradRow<T>& a0 = q[0];
  const GradRow<T>& a1 = q[M - 1];
  main_sweep<T, Kind, R, M>(n, k, beta, c, gm, cols, cols + n, cols + 2 * n, cols + 3 * n, a0.g, a0.psi, a0.P,
                            a0.num, a0.S, a0.e, a0.corr, a0.h, a0.gw, a0.gy, a1.g, a1.psi, a1.P, a1.num, a1.S, a1.e,
                            a1.corr, a1.h, a1.gw, a1.gy);
  const T a = static_cast<T>(k.alpha), pe = static_cast<T>(k.p);
  for (int m = 0; m < M; ++m) {
    const GradRow<T>& qm = q[m];
    const T *__restrict__ h = qm.h, *__restrict__ psi = qm.psi;
    T* __restrict__ gyr = qm.gy;
    if constexpr (Kind == UNIFORM) {
      const T G = static_cast<T>(row_sum(qm.gw, n));
      for (int64_t i = 0; i < n; ++i) gyr[i] = pe * h[i] + a * psi[i] * G;
    } else if constexpr (Kind == BAND) {
      T* __restrict__ gpsi = w[m].gpsi.data();
      window_sums(qm.gw, n, k.after, k.before, w[m].pairs.data(), gpsi);  // the window's transpose
      for (int64_t i = 0; i < n; ++i) gyr[i] = pe * h[i] + a * psi[i] * gpsi[i];
    }
    if (k.center) {
      const T mean = static_cast<T>(row_sum(gyr, n) / static_cast<double>(n));
      for (int64_t i = 0; i < n; ++i) gyr[i] -= mean;
    }
  }
}

// f(Kind, R) for the layer's pool and r, each as a std::integral_constant (a generic lambda reads their ::value)
template <int Kind, typename F>
void with_r(const ExpCfg& k, F&& f) {
  const int rk = r_kind(k.r);
  if (rk == 1) f(std::integral_constant<int, Kind>{}, std::integral_constant<int, 1>{});
  else if (rk == 2) f(std::integral_constant<int, Kind>{}, std::integral_constant<int, 2>{});
  else f(std::integral_constant<int, Kind>{}, std::integral_constant<int, 0>{});
}

template <typename F>
void with_layer(const ExpCfg& k, F&& f) {
  if (k.kind == UNIFORM) with_r<UNIFORM>(k, f);
  else if (k.kind == SELF) with_r<SELF>(k, f);
  else with_r<BAND>(k, f);
}

// A missing γ or b read as ones or zeros: `fill` holds them (empty where the tensor is given). A `p ? p[i] : …` in
// a vector loop became a masked load from address 0, which the CPU serves by a microcode assist on every vector
// (a learned-β softmax form ran 2x slower).
template <typename T>
const T* values_or(const at::Tensor& v, int64_t n, T value, std::vector<T>& fill) {
  if (v.numel() > 0) return v.data_ptr<T>();
  fill.assign(n, value);
  return fill.data();
}

// The column sums of `width` quantities from the blocks' partial sums (blocks, width, n) in double, the blocks added
// in block order (no result depends on the thread count); returned as (width, n) in double
at::Tensor in_order_sums(const at::Tensor& part, int64_t blocks, int64_t width, int64_t n) {
  at::Tensor sums = at::zeros({width, n}, part.options());
  const double* pp = part.data_ptr<double>();
  double* sp = sums.data_ptr<double>();
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < width * n; ++j) sp[j] += pp[b * width * n + j];
  return sums;
}

ExpCfg cfg_of(int64_t kind, bool center, double alpha, double p, double r, int64_t before, int64_t after) {
  TORCH_CHECK(kind == SELF || kind == UNIFORM || kind == BAND, "exp_rows: kind must be 0 (self), 1 (uniform) or 2 (band)");
  TORCH_CHECK(before >= 0 && after >= 0, "exp_rows: a band's before and after must be >= 0");
  return with_lead(ExpCfg{kind, center, alpha, p, r, before, after}, false);
}

void check_rows(const at::Tensor& y, const at::Tensor& beta, const at::Tensor& c, const at::Tensor& gamma,
                const at::Tensor& bias) {
  TORCH_CHECK(y.dim() == 2 && y.device().is_cpu() && y.is_contiguous() &&
                  (y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble),
              "exp_rows: y must be a contiguous 2-D CPU float32/float64 tensor");
  const int64_t n = y.size(1);
  for (const at::Tensor* v : {&beta, &c})
    TORCH_CHECK(v->numel() == n && v->is_contiguous() && v->scalar_type() == y.scalar_type(),
                "exp_rows: β and c must be N contiguous values of y's dtype");
  for (const at::Tensor* v : {&gamma, &bias})
    TORCH_CHECK(v->numel() == 0 || (v->numel() == n && v->is_contiguous() && v->scalar_type() == y.scalar_type()),
                "exp_rows: γ and b must be empty or N contiguous values of y's dtype");
}

// (out, kept, (s, S)): out = γ z + b (γ, b: empty where the layer has none); with `keep` (a gradient to come) each
// element's ψ (or numerator: Lead) and each row's shift s and pool sum S (the uniform pool's; else 0), from which the
// backward starts, else two empties
std::vector<at::Tensor> exp_rows_forward(const at::Tensor& y, const at::Tensor& beta, const at::Tensor& c,
                                         const at::Tensor& gamma, const at::Tensor& bias, int64_t kind, bool center,
                                         double alpha, double p, double r, int64_t before, int64_t after,
                                         bool keep) {
  check_rows(y, beta, c, gamma, bias);
  const ExpCfg k = cfg_of(kind, center, alpha, p, r, before, after);
  const int64_t m = y.size(0), n = y.size(1);
  at::Tensor out = at::empty_like(y);
  at::Tensor kept = keep ? at::empty_like(y) : at::empty({0}, y.options());
  at::Tensor shift = keep ? at::empty({m, 2}, y.options()) : at::empty({0}, y.options());
  if (m == 0 || n == 0) return {out, kept, shift};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "exp_rows_forward", [&] {
    using T = scalar_t;
    const T *yp = y.data_ptr<T>(), *bp = beta.data_ptr<T>(), *cp = c.data_ptr<T>();
    std::vector<T> ones, zeros;
    const T *gp = values_or(gamma, n, T(1), ones), *bi = values_or(bias, n, T(0), zeros);
    T* op = out.data_ptr<T>();
    T* kp = keep ? kept.data_ptr<T>() : nullptr;
    T* sp = keep ? shift.data_ptr<T>() : nullptr;
    at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      Row<T> w(n, before + after);
      std::vector<T> psi_scratch(keep ? 0 : n);
      with_layer(k, [&](auto kind_c, auto r_c) {
        for (int64_t row = r0; row < r1; ++row)  // ψ (or the numerator: Lead) straight into the kept plane
          forward_row<T, decltype(kind_c)::value, decltype(r_c)::value>(
              yp + row * n, n, k, bp, cp, gp, bi, w, keep ? kp + row * n : psi_scratch.data(), op + row * n,
              keep ? sp + 2 * row : nullptr);
      });
    });
  });
  return {out, kept, shift};
}

// (gy, gβ, gc, gγ, gb) from the forward's kept plane (ψ, or the numerator: Lead) and (s, S); gγ and gb empty where
// the layer has none
std::vector<at::Tensor> exp_rows_backward(const at::Tensor& g_in, const at::Tensor& y, const at::Tensor& beta,
                                          const at::Tensor& c, const at::Tensor& gamma, const at::Tensor& bias,
                                          int64_t kind, bool center, double alpha, double p, double r,
                                          int64_t before, int64_t after, const at::Tensor& kept,
                                          const at::Tensor& shift) {
  check_rows(y, beta, c, gamma, bias);
  TORCH_CHECK(kept.sizes() == y.sizes() && kept.is_contiguous() && kept.scalar_type() == y.scalar_type() &&
                  shift.numel() == 2 * y.size(0) && shift.is_contiguous() && shift.scalar_type() == y.scalar_type(),
              "exp_rows: the backward starts from the forward's kept plane and row numbers: run the forward with "
              "keep=True and pass what it returned");
  const ExpCfg k = cfg_of(kind, center, alpha, p, r, before, after);
  const at::Tensor g = g_in.contiguous().to(y.scalar_type());
  TORCH_CHECK(g.sizes() == y.sizes(), "exp_rows: the gradient must have y's shape");
  const int64_t m = y.size(0), n = y.size(1), blocks = (m + kBlock - 1) / kBlock;
  at::Tensor gy = at::empty_like(y);
  at::Tensor part = at::empty({std::max<int64_t>(blocks, 1), 4, n}, y.options().dtype(at::kDouble));
  if (m > 0 && n > 0) {
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "exp_rows_backward", [&] {
      using T = scalar_t;
      const T *yp = y.data_ptr<T>(), *gp = g.data_ptr<T>(), *bp = beta.data_ptr<T>(), *cp = c.data_ptr<T>();
      const T *kp = kept.data_ptr<T>(), *sp = shift.data_ptr<T>();
      std::vector<T> ones;
      const T* gm = values_or(gamma, n, T(1), ones);
      T* gyp = gy.data_ptr<T>();
      double* pp = part.data_ptr<double>();
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        Row<T> w[2] = {Row<T>(n, before + after), Row<T>(n, before + after)};
        std::vector<T> cols(4 * n);  // the block's column sums in T (Σ g z, Σ g, Σ gD e, Σ gD P), then to double
        with_layer(k, [&](auto kind_c, auto r_c) {
          constexpr int Kind = decltype(kind_c)::value, R = decltype(r_c)::value;
          auto row = [&](int64_t i, Row<T>& wi) {
            return grad_row<T, Kind>(gp + i * n, yp + i * n, kp + i * n, sp[2 * i], sp[2 * i + 1], n, k, wi,
                                     gyp + i * n);
          };
          for (int64_t b = b0; b < b1; ++b) {
            std::fill(cols.begin(), cols.end(), T(0));
            const int64_t end = std::min(m, (b + 1) * kBlock);
            int64_t i = b * kBlock;
            for (; i + 2 <= end; i += 2) {  // two rows a sweep
              const GradRow<T> q[2] = {row(i, w[0]), row(i + 1, w[1])};
              backward_rows<T, Kind, R, 2>(q, n, k, bp, cp, gm, cols.data(), w);
            }
            if (i < end) {
              const GradRow<T> q[1] = {row(i, w[0])};
              backward_rows<T, Kind, R, 1>(q, n, k, bp, cp, gm, cols.data(), w);
            }
            double* dst = pp + b * 4 * n;
            for (int64_t j = 0; j < 4 * n; ++j) dst[j] = static_cast<double>(cols[j]);
          }
        });
      });
    });
  }
  const at::Tensor sums = in_order_sums(part, blocks, 4, n);
  at::Tensor gbeta = sums[2].to(y.scalar_type()), gc = sums[3].to(y.scalar_type());
  at::Tensor ggamma = gamma.numel() > 0 ? sums[0].to(y.scalar_type()) : at::empty({0}, y.options());
  at::Tensor gbias = bias.numel() > 0 ? sums[1].to(y.scalar_type()) : at::empty({0}, y.options());
  return {gy, gbeta, gc, ggamma, gbias};
}

// ---- A matrix pool's element work (κ full, gaussian, low-rank: the pool W = ψ κᵀ is the κ structure's own
// product between two nodes, norms/exp_rows.py): ψ and each row's shift from rows t, and the output from t, ψ, s
// and W, each in one sweep a row each way (the PyTorch ops they replace took three passes for ψ and six for the
// output and kept D and z besides).

// (ψ, s) for contiguous rows t: s = max t per row (a NaN row NaN), ψ = e^{α(t − s)}
std::vector<at::Tensor> exp_psi_rows(const at::Tensor& t, double alpha) {
  TORCH_CHECK(t.dim() == 2 && t.device().is_cpu() && t.is_contiguous() &&
                  (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
              "exp_rows: t must be a contiguous 2-D CPU float32/float64 tensor");
  const int64_t m = t.size(0), n = t.size(1);
  at::Tensor psi = at::empty_like(t), shift = at::empty({m, 1}, t.options());
  if (m == 0 || n == 0) return {psi, shift};
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "exp_psi_rows", [&] {
    using T = scalar_t;
    const T* tp = t.data_ptr<T>();
    T *pp = psi.data_ptr<T>(), *sp = shift.data_ptr<T>();
    const T a = static_cast<T>(alpha);
    at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const T* __restrict__ x = tp + row * n;
        T* __restrict__ o = pp + row * n;
        const T sh = row_max(x, n);
        for (int64_t i = 0; i < n; ++i) o[i] = vexp((x[i] - sh) * a);
        sp[row] = sh;
      }
    });
  });
  return {psi, shift};
}

// α g ψ (ψ's node's backward), added to `into` (the output node's gradient of t) in place where it is given
at::Tensor exp_psi_rows_backward(const at::Tensor& g_in, const at::Tensor& psi, double alpha, at::Tensor into) {
  const at::Tensor g = g_in.contiguous().to(psi.scalar_type());
  TORCH_CHECK(g.sizes() == psi.sizes() && psi.is_contiguous(), "exp_rows: the gradient must have ψ's shape");
  const bool add = into.defined() && into.numel() > 0;
  TORCH_CHECK(!add || (into.sizes() == psi.sizes() && into.is_contiguous() && into.scalar_type() == psi.scalar_type()),
              "exp_rows: the gradient to add into must be contiguous, of ψ's shape and type");
  at::Tensor out = add ? into : at::empty_like(psi);
  const int64_t total = psi.numel();
  AT_DISPATCH_FLOATING_TYPES(psi.scalar_type(), "exp_psi_rows_backward", [&] {
    using T = scalar_t;
    const T *__restrict__ gp = g.data_ptr<T>(), *__restrict__ pp = psi.data_ptr<T>();
    T* __restrict__ op = out.data_ptr<T>();
    const T a = static_cast<T>(alpha);
    at::parallel_for(0, total, 16384, [&](int64_t i0, int64_t i1) {
      if (add)
        for (int64_t i = i0; i < i1; ++i) op[i] += a * (gp[i] * pp[i]);
      else
        for (int64_t i = i0; i < i1; ++i) op[i] = a * (gp[i] * pp[i]);
    });
  });
  return out;
}

void check_given(const at::Tensor& t, const at::Tensor& psi, const at::Tensor& shift, const at::Tensor& w,
                 const at::Tensor& beta, const at::Tensor& gamma, const at::Tensor& bias) {
  TORCH_CHECK(t.dim() == 2 && t.device().is_cpu() && t.is_contiguous() &&
                  (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
              "exp_rows: t must be a contiguous 2-D CPU float32/float64 tensor");
  for (const at::Tensor* v : {&psi, &w})
    TORCH_CHECK(v->sizes() == t.sizes() && v->is_contiguous() && v->scalar_type() == t.scalar_type(),
                "exp_rows: ψ and W must be contiguous, of t's shape and type");
  TORCH_CHECK(shift.numel() == t.size(0) && shift.is_contiguous() && shift.scalar_type() == t.scalar_type(),
              "exp_rows: one shift a row, of t's type");
  check_rows(t, beta, beta, gamma, bias);
}

// out = γ z + b, z = e^{p(t − s)} (β e + W)^{−r} e^{(p − α r) s} (t read where the numerator takes its own exp)
at::Tensor exp_given_rows(const at::Tensor& t, const at::Tensor& psi, const at::Tensor& shift, const at::Tensor& w,
                          const at::Tensor& beta, const at::Tensor& gamma, const at::Tensor& bias, double alpha,
                          double p, double r) {
  check_given(t, psi, shift, w, beta, gamma, bias);
  const ExpCfg k = with_lead(ExpCfg{SELF, false, alpha, p, r, 0, 0}, true);
  const int64_t m = t.size(0), n = t.size(1);
  at::Tensor out = at::empty_like(t);
  if (m == 0 || n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "exp_given_rows", [&] {
    using T = scalar_t;
    const T *tp = t.data_ptr<T>(), *pp = psi.data_ptr<T>(), *sp = shift.data_ptr<T>(), *wp = w.data_ptr<T>();
    const T* __restrict__ bp = beta.data_ptr<T>();
    std::vector<T> ones, zeros;
    const T *__restrict__ gm = values_or(gamma, n, T(1), ones), *__restrict__ bi = values_or(bias, n, T(0), zeros);
    T* op = out.data_ptr<T>();
    at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      Row<T> scratch(n, 0);
      with_r<SELF>(k, [&](auto, auto r_c) {
        constexpr int R = decltype(r_c)::value;
        for (int64_t row = r0; row < r1; ++row) {
          const T s = sp[row], e = row_scale(s, k), corr = shift_factor(s, k), rr = static_cast<T>(r);
          const T* __restrict__ num = numerator(tp + row * n, pp + row * n, s, n, k, scratch);
          const T* __restrict__ W = wp + row * n;
          T* __restrict__ o = op + row * n;
          for (int64_t i = 0; i < n; ++i) {
            const T inv = T(1) / (bp[i] * e + W[i]);
            o[i] = gm[i] * (num[i] * inv_power<R>(inv, rr) * corr) + bi[i];
          }
        }
      });
    });
  });
  return out;
}

// (gt, gW, gβ, gγ, gb) of exp_given_rows: gt = p g γ z (ψ's node adds α ψ gψ), gW = −r g γ z / D; column sums per
// block of 64 rows in T, the blocks added in order in double (gγ, gb empty where the layer has none)
std::vector<at::Tensor> exp_given_rows_backward(const at::Tensor& g_in, const at::Tensor& t, const at::Tensor& psi,
                                                const at::Tensor& shift, const at::Tensor& w,
                                                const at::Tensor& beta, const at::Tensor& gamma,
                                                const at::Tensor& bias, double alpha, double p, double r) {
  check_given(t, psi, shift, w, beta, gamma, bias);
  const ExpCfg k = with_lead(ExpCfg{SELF, false, alpha, p, r, 0, 0}, true);
  const at::Tensor g = g_in.contiguous().to(t.scalar_type());
  TORCH_CHECK(g.sizes() == t.sizes(), "exp_rows: the gradient must have t's shape");
  const int64_t m = t.size(0), n = t.size(1), blocks = (m + kBlock - 1) / kBlock;
  at::Tensor gt = at::empty_like(t), gw = at::empty_like(t);
  at::Tensor part = at::empty({std::max<int64_t>(blocks, 1), 3, n}, t.options().dtype(at::kDouble));
  if (m > 0 && n > 0) {
    AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "exp_given_rows_backward", [&] {
      using T = scalar_t;
      const T *tp = t.data_ptr<T>(), *pp = psi.data_ptr<T>(), *sp = shift.data_ptr<T>(), *wp = w.data_ptr<T>();
      const T *gp = g.data_ptr<T>(), *__restrict__ bp = beta.data_ptr<T>();
      std::vector<T> ones;
      const T* __restrict__ gm = values_or(gamma, n, T(1), ones);
      T *gtp = gt.data_ptr<T>(), *gwp = gw.data_ptr<T>();
      double* dp = part.data_ptr<double>();
      const T pe = static_cast<T>(p), mr = static_cast<T>(-r), rr = static_cast<T>(r);
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        Row<T> scratch(n, 0);
        std::vector<T> cols(3 * n);  // Σ g z, Σ g, Σ gD e
        with_r<SELF>(k, [&](auto, auto r_c) {
          constexpr int R = decltype(r_c)::value;
          for (int64_t b = b0; b < b1; ++b) {
            std::fill(cols.begin(), cols.end(), T(0));
            T *__restrict__ cz = cols.data(), *__restrict__ cg = cz + n, *__restrict__ ce = cz + 2 * n;
            for (int64_t row = b * kBlock; row < std::min(m, (b + 1) * kBlock); ++row) {
              const T s = sp[row], e = row_scale(s, k), corr = shift_factor(s, k);
              const T* __restrict__ num = numerator(tp + row * n, pp + row * n, s, n, k, scratch);
              const T *__restrict__ W = wp + row * n, *__restrict__ gr = gp + row * n;
              T *__restrict__ gtr = gtp + row * n, *__restrict__ gwr = gwp + row * n;
              for (int64_t i = 0; i < n; ++i) {
                const T inv = T(1) / (bp[i] * e + W[i]);
                const T gz = gr[i] * (num[i] * inv_power<R>(inv, rr) * corr);
                const T hz = gz * gm[i];
                const T gd = mr * hz * inv;
                gtr[i] = pe * hz;
                gwr[i] = gd;
                cz[i] += gz;
                cg[i] += gr[i];
                ce[i] += gd * e;
              }
            }
            double* dst = dp + b * 3 * n;
            for (int64_t j = 0; j < 3 * n; ++j) dst[j] = static_cast<double>(cols[j]);
          }
        });
      });
    });
  }
  const at::Tensor sums = in_order_sums(part, blocks, 3, n);
  at::Tensor gbeta = sums[2].to(t.scalar_type());
  at::Tensor ggamma = gamma.numel() > 0 ? sums[0].to(t.scalar_type()) : at::empty({0}, t.options());
  at::Tensor gbias = bias.numel() > 0 ? sums[1].to(t.scalar_type()) : at::empty({0}, t.options());
  return {gt, gw, gbeta, ggamma, gbias};
}

// ---- The O(N) layer as one C++ autograd node (eager CPU): β and c taken as the layer holds them (a non-negative
// parameter's raw values and bound, or a fixed buffer with bound < 0) and valued here, the kernel each way, their
// gradients here: no Python call a step (the Python autograd.Function, the two NonNegative nodes and the views
// around them cost ~0.12 ms a step, ~0.25x LayerNorm at (1024, 512) and most of the step at the studies' sizes).
// A double backward (create_graph) differentiates the plain formula in Python (exp_rows._node_formula_backward).
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using lateralnorm_node::needs_of;
using lateralnorm_node::optional_of;
using lateralnorm_node::python_fallback;
using lateralnorm_node::tensor_or_undefined;

// numbers: kind, center, α, p, r, before, after, β's bound, c's bound, the pedestal, keep
struct ExpRowsLayerNode : public torch::autograd::Function<ExpRowsLayerNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& beta_src,
                            const at::Tensor& c_src, const c10::optional<at::Tensor>& gamma,
                            const c10::optional<at::Tensor>& bias, std::vector<double> v) {
    const at::ScalarType dt = y.scalar_type();
    const int64_t n = y.size(1);
    auto per_unit = [&](const at::Tensor& src, double bound) {
      at::Tensor value = module_param_value(src.reshape({-1}), bound, v[9], dt);
      return value.numel() == n ? value : value.expand({n}).contiguous();
    };
    const at::Tensor beta = per_unit(beta_src, v[7]), c = per_unit(c_src, v[8]);
    const at::Tensor empty = at::empty({0}, y.options());
    const at::Tensor g_ = gamma.has_value() ? gamma->to(dt).contiguous() : empty;
    const at::Tensor b_ = bias.has_value() ? bias->to(dt).contiguous() : empty;
    std::vector<at::Tensor> res = exp_rows_forward(y, beta, c, g_, b_, static_cast<int64_t>(v[0]), v[1] != 0.0,
                                                   v[2], v[3], v[4], static_cast<int64_t>(v[5]),
                                                   static_cast<int64_t>(v[6]), v[10] != 0.0);
    ctx->save_for_backward({y, beta_src, c_src, gamma.has_value() ? *gamma : at::Tensor(),
                            bias.has_value() ? *bias : at::Tensor(), res[1], res[2], beta, c, g_, b_});
    ctx->saved_data["numbers"] = v;
    return res[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &y = s[0], &beta_src = s[1], &c_src = s[2], &gamma = s[3], &bias = s[4];
    const std::vector<double> v = ctx->saved_data["numbers"].toDoubleVector();
    const auto need = needs_of<5>(ctx, {true, true, true, gamma.defined(), bias.defined()});
    variable_list out(6);  // one per forward argument (the numbers last, never a gradient)
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = python_fallback("lateralnorm.norms.exp_rows", "_node_formula_backward")(
          grads[0], y, beta_src, c_src, optional_of(gamma), optional_of(bias), v,
          pybind11::make_tuple(need[0], need[1], need[2], need[3], need[4]));
      for (size_t i = 0; i < 5 && i < got.size(); ++i) out[i] = tensor_or_undefined(got[i]);
      return out;
    }
    std::vector<at::Tensor> res = exp_rows_backward(grads[0], y, s[7], s[8], s[9], s[10], static_cast<int64_t>(v[0]),
                                                    v[1] != 0.0, v[2], v[3], v[4], static_cast<int64_t>(v[5]),
                                                    static_cast<int64_t>(v[6]), s[5], s[6]);
    if (need[0]) out[0] = res[0];
    auto source_grad = [&](const at::Tensor& colsum, const at::Tensor& src, double bound) {
      at::Tensor gv = src.numel() == colsum.numel() ? colsum : colsum.sum().reshape({1});
      gv = gv.reshape(src.sizes()).to(src.scalar_type());
      return bound < 0 ? gv : module_param_grad(gv, src, bound).reshape(src.sizes());
    };
    if (need[1]) out[1] = source_grad(res[1], beta_src, v[7]);
    if (need[2]) out[2] = source_grad(res[2], c_src, v[8]);
    if (need[3]) out[3] = res[3].reshape(gamma.sizes()).to(gamma.scalar_type());
    if (need[4]) out[4] = res[4].reshape(bias.sizes()).to(bias.scalar_type());
    return out;
  }
};

// A matrix κ's layer of the exp family as one node (eager CPU): what exp_rows.py's ExpPsiRows, the pool's own nodes,
// ExpGivenRows and the NonNeg nodes compute, in the same calls and order each way (the same bits), without the
// boundaries between them (two of them Python autograd.Functions). Its input is the rows t (centered by the caller
// where the layer centers). The pool: a low-rank κ's (`k1`, `k2`: U's and V's sources, the kernel's K-thin
// products), or torch's linear map by κ's value (`k1`; its gradients by the mm calls autograd makes for F.linear:
// gW κ, gWᵀ ψ), whose own nodes take κ's gradient. β (and U, V) as the layer holds them: a raw NonNegative parameter
// and its bound, or a fixed buffer (bound < 0). A double backward (create_graph) differentiates the plain formula in
// Python (exp_rows._matrix_node_formula_backward).
// numbers: α, p, r, β's bound, the pedestal, then U's and V's bounds for a low-rank κ
struct ExpMatrixRowsNode : public torch::autograd::Function<ExpMatrixRowsNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& t, const at::Tensor& beta_src,
                            const at::Tensor& k1, const c10::optional<at::Tensor>& k2,
                            const c10::optional<at::Tensor>& gamma, const c10::optional<at::Tensor>& bias,
                            std::vector<double> v) {
    const bool lowrank = k2.has_value();
    const int64_t n = t.size(1);
    const at::Tensor beta = source_value(beta_src, v[3], v[4]).reshape({-1}).expand({n}).contiguous();
    const at::Tensor u = lowrank ? source_value(k1, v[5], v[4]) : k1;
    const at::Tensor vv = lowrank ? source_value(*k2, v[6], v[4]) : at::Tensor();
    const at::Tensor empty = at::empty({0}, t.options());
    const at::Tensor g_ = gamma.has_value() ? gamma->contiguous() : empty;
    const at::Tensor b_ = bias.has_value() ? bias->contiguous() : empty;
    const std::vector<at::Tensor> ps = exp_psi_rows(t, v[0]);  // (ψ, s)
    at::Tensor w, thin;
    if (lowrank) {
      std::tie(w, thin) = lowrank_product_forward(ps[0], u, vv);
    } else {
      w = at::linear(ps[0], u);
    }
    at::Tensor out = exp_given_rows(t, ps[0], ps[1], w, beta, g_, b_, v[0], v[1], v[2]);
    ctx->save_for_backward({t, beta_src, k1, lowrank ? *k2 : at::Tensor(), gamma.has_value() ? *gamma : at::Tensor(),
                            bias.has_value() ? *bias : at::Tensor(), ps[0], ps[1], w, thin, beta, u, vv, g_, b_});
    ctx->saved_data["numbers"] = v;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &t = s[0], &beta_src = s[1], &k1 = s[2], &k2 = s[3], &gamma = s[4], &bias = s[5], &psi = s[6],
                     &shift = s[7], &w = s[8], &thin = s[9], &beta = s[10], &u = s[11], &vv = s[12];
    const std::vector<double> v = ctx->saved_data["numbers"].toDoubleVector();
    const bool lowrank = k2.defined();
    // the variable inputs' edges in order: t, β, κ (or U), then V, γ and b where given
    const auto need = needs_of<6>(ctx, {true, true, true, lowrank, gamma.defined(), bias.defined()});
    variable_list out(7);  // t, β, κ (or U), V, γ, b, the numbers
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = python_fallback("lateralnorm.norms.exp_rows", "_matrix_node_formula_backward")(
          grads[0], t, beta_src, k1, optional_of(k2), optional_of(gamma), optional_of(bias), v,
          pybind11::make_tuple(need[0], need[1], need[2], need[3], need[4], need[5]));
      for (size_t i = 0; i < 6 && i < got.size(); ++i) out[i] = tensor_or_undefined(got[i]);
      return out;
    }
    // the output half: (gt's share, gW, gβ, gγ, gb) — ExpGivenRows' call
    std::vector<at::Tensor> res =
        exp_given_rows_backward(grads[0], t, psi, shift, w, beta, s[13], s[14], v[0], v[1], v[2]);
    // the pool: gψ and its inputs' gradients — the low-rank node's call, or autograd's mm calls
    at::Tensor gpsi;
    if (lowrank) {
      const auto pg = lowrank_product_backward(res[1], psi, thin, u, vv, need[0], need[2], need[3]);
      gpsi = std::get<0>(pg);
      if (need[2]) out[2] = source_grad(std::get<1>(pg), k1, v[5]);
      if (need[3]) out[3] = source_grad(std::get<2>(pg), k2, v[6]);
    } else {
      if (need[0]) gpsi = at::mm(res[1], u);
      if (need[2]) out[2] = at::mm(res[1].t(), psi);
    }
    // ψ's half, α g ψ added into the output half's share in place — ExpPsiRows' call
    if (need[0]) out[0] = exp_psi_rows_backward(gpsi, psi, v[0], res[0]);
    if (need[1]) out[1] = source_grad(res[2], beta_src, v[3]);
    if (need[4]) out[4] = res[3];
    if (need[5]) out[5] = res[4];
    return out;
  }
};

at::Tensor exp_matrix_rows_node(const at::Tensor& t, const at::Tensor& beta_src, const at::Tensor& k1,
                                const c10::optional<at::Tensor>& k2, const c10::optional<at::Tensor>& gamma,
                                const c10::optional<at::Tensor>& bias, std::vector<double> numbers) {
  TORCH_CHECK(numbers.size() == (k2.has_value() ? 7u : 5u),
              "exp_matrix_rows_node: numbers are α, p, r, β's bound, the pedestal (then U's and V's bounds)");
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), "exp_matrix_rows_node: t must be contiguous rows (M, N)");
  return ExpMatrixRowsNode::apply(t, beta_src, k1, k2, gamma, bias, std::move(numbers));
}

at::Tensor exp_rows_node(const at::Tensor& y, const at::Tensor& beta_src, const at::Tensor& c_src,
                         const c10::optional<at::Tensor>& gamma, const c10::optional<at::Tensor>& bias,
                         std::vector<double> numbers) {
  TORCH_CHECK(numbers.size() == 10, "exp_rows_node: numbers are kind, center, α, p, r, before, after, β's bound, "
                                    "c's bound, the pedestal");
  auto wants = [](const c10::optional<at::Tensor>& t) { return t.has_value() && t->requires_grad(); };
  const bool grad = at::GradMode::is_enabled() && (y.requires_grad() || beta_src.requires_grad() ||
                                                   c_src.requires_grad() || wants(gamma) || wants(bias));
  numbers.push_back(grad ? 1.0 : 0.0);  // keep ψ and the row numbers only where a gradient can be asked for
  return ExpRowsLayerNode::apply(y, beta_src, c_src, gamma, bias, numbers);
}

}  // namespace

void register_exp_rows(pybind11::module_& m) {
  m.def("exp_rows_forward", &exp_rows_forward, "γ e^{p(t−s)} (β e^{−αs} + c pool(e^{α(t−s)}))^{−r} e^{(p−αr)s} + b");
  m.def("exp_rows_backward", &exp_rows_backward, "(gy, gβ, gc, gγ, gb) of exp_rows_forward, from its kept plane");
  m.def("exp_rows_node", &exp_rows_node, "the O(N) layer through one C++ autograd node (β, c as the layer holds them)");
  m.def("exp_matrix_rows_node", &exp_matrix_rows_node,
        "a matrix κ's exp-family layer (ψ, the low-rank products or the linear map by κ, the output) as one node");
  m.def("exp_psi_rows", &exp_psi_rows, "(ψ, s): s = max t a row, ψ = e^{α(t − s)}");
  m.def("exp_psi_rows_backward", &exp_psi_rows_backward, "α g ψ, added into a given tensor in place");
  m.def("exp_given_rows", &exp_given_rows, "γ e^{p(t−s)} (β e^{−αs} + W)^{−r} e^{(p−αr)s} + b for a given pool W");
  m.def("exp_given_rows_backward", &exp_given_rows_backward, "(gt, gW, gβ, gγ, gb) of exp_given_rows");
}

