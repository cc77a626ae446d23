// Divisive normalization with an O(N) pool (κ self, uniform or band) on CPU: a few fused sweeps per row.
//
// Per row of y (features last), t = y − m (m = the row mean when centered, else 0):
//   ψ = ψ(t),  W = pool(ψ),  D = β + c ⊙ W,  z = φ(t) D^{−r},  out = γ z + b
// pool: self W_i = ψ_i;  uniform W_i = S = Σ_j ψ_j;  band W_i = Σ_{j=i−before}^{i+after} ψ_j.
// φ, ψ: signed  φ = sign(t)|t|^p, ψ = |t|^α;  rect  φ = relu(t)^p, ψ = relu(t)^α.
// Backward (t, ψ, W, D recomputed from y; the forward keeps m and S per row, and when asked one (M, N) tensor
// where a recompute costs most: the band pool's window sums, and for an exp/log policy one value per element —
// a^(α−1), a^(p−1) or a^p (√a where p = 1/2 or 3/2), or ln a (kKeepsPowers) — with ln a beside a power for a
// learned α, and for the general exponents on the self and uniform pools their two exps instead of ln a; see
// keeps_rowwise, keeps_two_planes):
//   gz = g γ;  v = gz D^{−r} φ'(t);  q = gz z / D;  gψ = poolᵀ(−r c q);  gt = v + gψ ψ'(t);
//   gy = gt − mean(gt) when centered.  Column sums for the parameters: Σ g z (γ), Σ g (b), Σ q (β),
//   Σ q W (c); the caller multiplies by −r and applies the reparametrization's chain rule.
// With a uniform pool the row needs two sweeps in each direction: mean(gt) = (Σ v + gψ Σ ψ') / N.
//
// The element functions are template policies (LayerNorm-like t², the default rect², or general powers),
// so every sweep is one branch-free loop the compiler vectorizes (-O3 -fno-math-errno -fno-trapping-math).
// Row sums accumulate in double over 8 lanes; the mean is taken in double and subtracted as m_T + δ.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <cmath>
#include <limits>
#include <cstring>
#include <vector>

// exp and log for the general exponents (a^e = exp(e·ln a)): glibc's vectorized exp/log where linked (vec_math.h),
// instead of one std::pow per element.
#ifdef LATERALNORM_LIBMVEC
#ifdef __AVX512F__
// A rectified row's exps and logs only where a = relu(t) > 0 (pm_of_row): glibc's 16-lane calls themselves, the
// ones GCC's vectorized loops call for every full group of 16 (the same function per element, so the same bits).
#include <immintrin.h>
#define LATERALNORM_COMPACT_POWERS 1
extern "C" {
__m512 _ZGVeN16v_logf(__m512) noexcept;
__m512 _ZGVeN16v_expf(__m512) noexcept;
}
#endif
#endif
#include "autograd_node.h"  // the nodes' shared bookkeeping
#include "vec_math.h"  // vexp, vlog

namespace {

enum Kind : int64_t { SELF = 0, UNIFORM = 1, BAND = 2 };
constexpr int64_t BLOCK = 64;  // rows per block of column partial sums (fixed: results ignore thread count)

template <typename T>
inline double lane_sum(const T* __restrict__ x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

#ifdef LATERALNORM_COMPACT_POWERS
// A float vector's two groups of 8 in double (exact), and lane_sum's (lane_dot's) adds of a group of 16 into its
// eight lanes: the group at i, then the one at i + 8
inline __m512d low8_pd(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
inline __m512d high8_pd(__m512 v) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
inline __m512d add16(__m512d acc, __m512 v) { return _mm512_add_pd(_mm512_add_pd(acc, low8_pd(v)), high8_pd(v)); }
inline __m512d dot16(__m512d acc, __m512 a, __m512 b) {  // the products in double are exact: fused, the same sums
  return _mm512_fmadd_pd(high8_pd(a), high8_pd(b), _mm512_fmadd_pd(low8_pd(a), low8_pd(b), acc));
}

// lane_sum's (lane_dot's) last steps for a row whose first i elements (a multiple of 16) are summed in acc's
// lanes: the one more group of 8 its tail can hold, the tail's elements in order, then lanes 0 … 7 in order,
// taken from the register (eight loads of a stored vector stalled ~30 ns a row on store forwarding)
inline double finish_lanes(__m512d acc, double s) {
  const __m256d lo = _mm512_castpd512_pd256(acc), hi = _mm512_extractf64x4_pd(acc, 1);
  const __m128d q[4] = {_mm256_castpd256_pd128(lo), _mm256_extractf128_pd(lo, 1), _mm256_castpd256_pd128(hi),
                        _mm256_extractf128_pd(hi, 1)};
  for (int j = 0; j < 4; ++j) {
    s += _mm_cvtsd_f64(q[j]);
    s += _mm_cvtsd_f64(_mm_unpackhi_pd(q[j], q[j]));
  }
  return s;
}
inline double lane_sum_tail(const float* __restrict__ x, int64_t n, int64_t i, __m512d acc) {
  if (i + 8 <= n) {
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_loadu_ps(x + i)));
    i += 8;
  }
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  return finish_lanes(acc, s);
}
inline double lane_dot_tail(const float* __restrict__ x, const float* __restrict__ y, int64_t n, int64_t i,
                            __m512d acc) {  // the products in double are exact: fused or not, the same sums
  if (i + 8 <= n) {
    acc = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), _mm512_cvtps_pd(_mm256_loadu_ps(y + i)), acc);
    i += 8;
  }
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(y[i]);
  return finish_lanes(acc, s);
}

// lane_sum and lane_dot of a float row with AVX-512: the same lanes, in the same order (so the same bits), kept in
// one register to the end (GCC's own loop, where not inlined, stored its lanes and read them back one by one);
// lane_sum always inlined, as GCC inlined the plain one into the forward's row loop before that loop grew
template <>
__attribute__((always_inline)) inline double lane_sum<float>(const float* __restrict__ x, int64_t n) {
  const int64_t n16 = n & ~int64_t(15);
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < n16; i += 16) acc = add16(acc, _mm512_loadu_ps(x + i));
  return lane_sum_tail(x, n, n16, acc);
}
#endif

// ---------------------------------------------------------------------------------------------- policies
// φ, ψ and their derivatives in t (dpsi includes ψ's sign for signed ψ).
template <typename T>
struct SignedSq {  // ψ = t², φ = t (LayerNorm, RMSNorm, LRN)
  T psi(T t) const { return t * t; }
  T dpsi(T t) const { return T(2) * t; }
  T phi(T t) const { return t; }
  T dphi(T) const { return T(1); }
};

template <typename T>
struct RectSq {  // ψ = φ = relu(t)² (the default dn: rect, α = 2, p = α·r = 2)
  T psi(T t) const { const T a = t > T(0) ? t : T(0); return a * a; }
  T dpsi(T t) const { return t > T(0) ? T(2) * t : T(0); }
  T phi(T t) const { return psi(t); }
  T dphi(T t) const { return dpsi(t); }
};

template <typename T>
struct RectSqP1 {  // ψ = relu(t)², φ = relu(t)
  T psi(T t) const { const T a = t > T(0) ? t : T(0); return a * a; }
  T dpsi(T t) const { return t > T(0) ? T(2) * t : T(0); }
  T phi(T t) const { return t > T(0) ? t : T(0); }
  T dphi(T t) const { return t > T(0) ? T(1) : T(0); }
};

template <typename T>
struct RectLin {  // ψ = φ = relu(t) (rect, α = p = 1: the "α = 1" neural DN of the recurrent study)
  T psi(T t) const { return t > T(0) ? t : T(0); }
  T dpsi(T t) const { return t > T(0) ? T(1) : T(0); }
  T phi(T t) const { return psi(t); }
  T dphi(T t) const { return dpsi(t); }
};

// a^E and E·a^(E−1) for E = 1 or 2 (0 where a ≤ 0): also VecPowFn's ψ, ψ' for α = 1 or 2 with a general p.
template <int E, typename T>
inline T int_pw(T a) {
  static_assert(E == 1 || E == 2, "int_pw: exponent 1 or 2");
  return a > T(0) ? (E == 1 ? a : a * a) : T(0);
}
template <int E, typename T>
inline T int_dpw(T a) {
  static_assert(E == 1 || E == 2, "int_dpw: exponent 1 or 2");
  return a > T(0) ? (E == 1 ? T(1) : T(2) * a) : T(0);
}

// Exponents 1 or 2 outside the named policies above (signed (1, 1), (1, 2), (2, 2) — `dn:fn=signed` is
// (2, 2) — and rect (1, 2)): exact products, no exp or log, the exponents fixed at compile time. These pairs
// used to share a scalar fallback that branched on the exponents and on `rect` per element and called
// std::pow otherwise (GeneralFn, removed): its branches on each element's sign mispredicted on real data,
// 10–20 ns an element in the backward (20–25× LayerNorm at 1024×512). The same expressions here, every
// condition a select on the value, and the loops vectorize. Inlined, a product can now fuse into a following
// sum (FMA), so signed (2, 2)'s input gradient can differ from the fallback's in the last bits (measured: by
// < 0.7 ε of the gradient's largest element, in a quarter of the elements); no stored study uses these pairs.
template <typename T, bool RECT, int A, int P>
struct IntPowFn {
  static T mag(T t) { return RECT ? (t > T(0) ? t : T(0)) : std::abs(t); }
  static T sgn(T t) { return RECT ? T(1) : (t < T(0) ? T(-1) : T(1)); }
  T psi(T t) const { return int_pw<A>(mag(t)); }
  T dpsi(T t) const { return RECT ? int_dpw<A>(mag(t)) : (t < T(0) ? -int_dpw<A>(-t) : int_dpw<A>(t)); }
  T phi(T t) const { return sgn(t) * int_pw<P>(mag(t)); }
  T dphi(T t) const {
    if (!RECT && P == 1) return T(1);
    return int_dpw<P>(mag(t));
  }
};

// ln a where a > 0, else 0. The log is taken of a + 1 = 1 where a = 0: written as a sum, not as
// `a > 0 ? a : 1`, which GCC turns into ln a for every lane, and ln 0 = −∞ sends the whole vector down
// libmvec's slow special-value path (10× slower with relu's zeros).
template <typename T>
inline T ln_pos(T a) { return vlog(a + T(a <= T(0))); }

// The values of one element that the sweeps use: ψ, φ and their derivatives, and L = ln a (a = |t| or
// relu(t); 0 where a = 0), which a learned α's gradient needs. The simple policies evaluate each on its own
// (the compiler drops what a loop does not read); the general exponents share one log among them.
template <typename T>
struct Elem {
  T psi, phi, dpsi, dphi, L;
};

// How p relates to α for the general exponents: p = 1, p = α > 1 (the default p = α·r with r = 1), or else.
// P_A1, P_A2, P_A1K, P_A2K: α = 1 or 2 exactly with a general p: ψ and ψ' are IntPowFn's exact products
// (int_pw), and φ, φ' come from one kept power per element (one log and one exp), which the forward keeps for
// the backward as P_SAME keeps a^(α−1). With p > 1 (the K kinds; `dn:r=0.75` is α = 2, p = 1.5) it is a^(p−1):
// φ = sign·a·a^(p−1), φ' = p·a^(p−1). With p < 1 a^(p−1) grows without bound as a → 0 (it would overflow for
// subnormal a and small p where a^p does not), so it is a^p: φ = sign·a^p, φ' = p·a^p / a (a > 0; 0 at a = 0).
// P_SAME_LOW: p = α < 1 (a learned α that drifts below 1; `dn:alpha=0.7`): the general policy's own formulas, but
// with p known to equal α the compiler sees φ = sign·ψ and φ' = |ψ'|, so each takes no exp of its own (the same
// values to the bit: exp(p ln a) with p = α is exp(α ln a)). The forward keeps ln a, and the backward takes its
// values from it by the same expressions (eval_from_log): no log there, and the stored runs' bits.
// P_GENERAL: any other pair (α ∉ {1, 2}, p ∉ {1, α}: a general α with r ≠ 1). One log per element, kept by the
// forward; from ln a, one exp per exponent e gives everything: E = a^(e−1) where e > 1 (value a·E, derivative
// e·E) and E = a^e where e < 1 (value E, derivative e·E/a), chosen by loop-invariant numbers (u = 1 or 0), so
// neither side can overflow or lose precision where the true value does not.
// P_A1H, P_A2H, P_A1KH, P_A2KH: those kinds with p = 1/2 (kept a^p) or p = 3/2 (kept a^(p−1)): the kept power is
// √a, one square root per element and no log or exp (`dn:r=0.75` is α = 2, p = 3/2).
enum PKind : int {
  P_GENERAL = 0,
  P_ONE = 1,
  P_SAME = 2,
  P_A1 = 3,
  P_A2 = 4,
  P_A1K = 5,
  P_A2K = 6,
  P_SAME_LOW = 7,
  P_A1H = 8,
  P_A2H = 9,
  P_A1KH = 10,
  P_A2KH = 11
};

// a^e = exp(e·ln a) for the general exponents (any pair but the integer ones above; p by PK): with the
// vector exp/log of LATERALNORM_LIBMVEC each sweep is one vector loop. Every call is unconditional and the
// exponent's kind a template parameter: a call under a condition, or a branch on e that GCC can hoist, is control flow, and
// the loop stays scalar. eval() takes ln a once per element, and with p = α > 1 one exp in all:
// a^(α−1) = exp((α−1) ln a) gives the derivatives, and ψ = φ = a·a^(α−1) (safe from overflow and
// underflow where a^α is: for α > 1, a^(α−1) lies between 1 and a^α). Otherwise the same formulas as
// psi() … dphi().
template <typename T, int PK>
struct VecPowFn {
  bool rect;
  T alpha, p;
  // Signed or rectified enters the element functions only through loop-invariant numbers, never as a
  // condition on `rect`: GCC cannot vectorize a select on a scalar bool, and the whole loop would stay scalar.
  T ka, kb;  // a = ka·t + kb·|t|: relu(t) = (t + |t|)/2 (rect), |t| (signed)
  T sneg;    // sign(t) where t < 0: 1 (rect: a = 0 there anyway), −1 (signed)
  T dneg;    // φ'(t) where t ≤ 0 when p = 1: 0 (rect), 1 (signed)
  T ua, ea, up, ep;  // P_GENERAL: u = 1 where the exponent e > 1 (else 0), and the exp's factor e − u
  VecPowFn(bool rect_, T alpha_, T p_)
      : rect(rect_), alpha(alpha_), p(p_), ka(rect_ ? T(0.5) : T(0)), kb(rect_ ? T(0.5) : T(1)),
        sneg(rect_ ? T(1) : T(-1)), dneg(rect_ ? T(0) : T(1)), ua(alpha_ > T(1) ? T(1) : T(0)),
        ea(alpha_ - ua), up(p_ > T(1) ? T(1) : T(0)), ep(p_ - up) {}
  // relu(t) as (t + |t|)/2, not `t > 0 ? t : 0`: from the comparison GCC would again take the log of t
  // itself in every lane (NaN for t < 0: the slow path). Exact for every finite t.
  T mag(T t) const { return ka * t + kb * std::abs(t); }
  T sgn(T t) const { return t < T(0) ? sneg : T(1); }
  static T pw(T a, T e) {
    const T g = vexp(e * ln_pos(a));
    return a > T(0) ? g : T(0);
  }
  static T dpw(T a, T e) {  // e·a^(e−1), 0 at a = 0
    const T g = e * vexp((e - T(1)) * ln_pos(a));
    return a > T(0) ? g : T(0);
  }
  static constexpr bool kKeepP = PK == P_A1K || PK == P_A2K || PK == P_A1KH || PK == P_A2KH;  // α = 1 or 2, p > 1:
                                                                                             // a^(p−1) kept
  static constexpr bool kPowLow = PK == P_A1 || PK == P_A2 || PK == P_A1H || PK == P_A2H;  // α = 1 or 2, p < 1: a^p
  static constexpr bool kIntAlpha = kPowLow || kKeepP;
  static constexpr bool kHalf = PK == P_A1H || PK == P_A2H || PK == P_A1KH || PK == P_A2KH;  // the kept power is √a
  static constexpr int kA = PK == P_A2 || PK == P_A2K || PK == P_A2H || PK == P_A2KH ? 2 : 1;  // α when kIntAlpha
  // The power the forward may keep for the backward (`keeps_rowwise`): a^(e−1) with e = α (P_SAME: p = α > 1)
  // or e = p (kKeepP), or a^p (kPowLow); everything else of the element is a product with it (see eval).
  T kept_exponent() const { return kIntAlpha ? p : alpha; }
  T kept_factor() const { return kPowLow ? p : kept_exponent() - T(1); }  // the kept power = exp(factor·ln a)
  static constexpr bool kKeptLog = PK == P_GENERAL || PK == P_SAME_LOW;  // the kept value is ln a itself
  T kept_from_log(T a, T l) const {  // the kept value of an element from a and l = ln_pos(a) (unread where kHalf)
    if (kKeptLog) return l;
    if (kHalf) return std::sqrt(a);  // a ≥ 0: √0 = 0
    const T g = vexp(kept_factor() * l);
    return a > T(0) ? g : T(0);
  }
  T pm(T t) const {
    const T a = mag(t);
    if (kHalf) return std::sqrt(a);
    return kept_from_log(a, ln_pos(a));
  }
  // P_GENERAL: (value, derivative) of a^e from ln a (l) for one exponent: E = exp(f·l), f = e − u;
  // value = E·(u·a + 1 − u); derivative = e·(u·E + (1 − u)·E/a), the quotient clamped below infinity so that
  // u = 1 multiplies a finite number by 0. 0 where a = 0.
  struct VD {
    T v, d;
  };
  static VD gen_pow(T a, T l, T e, T u, T f) { return gen_from_exp(a, vexp(f * l), e, u); }
  static VD gen_from_exp(T a, T E, T e, T u) {  // the same from E = exp(f·l) itself
    const bool pos = a > T(0);
    const T q = std::min(E / (a + T(a <= T(0))), std::numeric_limits<T>::max());
    const T v = E * (u * a + (T(1) - u)), d = e * (u * E + (T(1) - u) * q);
    return {pos ? v : T(0), pos ? d : T(0)};
  }
  // P_GENERAL with its two exps kept (kKeepsPair): E_α = exp((α − u_α) ln a) and E_p = exp((p − u_p) ln a), the
  // exps the forward took, so the backward's table takes no exp (gen_pow's own expressions: the same bits)
  T exp_alpha(T l) const { return vexp(ea * l); }
  T exp_p(T l) const { return vexp(ep * l); }
  Elem<T> from_pair(T t, T Ea, T Ep) const {
    const T a = mag(t), s = sgn(t);
    const VD va = gen_from_exp(a, Ea, alpha, ua), vp = gen_from_exp(a, Ep, p, up);
    return {va.v, s * vp.v, s * va.d, vp.d, T(0)};
  }
  T psi_from_pm(T t, T pmv) const {  // ψ: a·a^(α−1) (P_SAME), else the exact a or a² (kIntAlpha)
    if (PK == P_SAME_LOW) return eval_from_log(t, pmv).psi;
    if (kKeptLog) return gen_pow(mag(t), pmv, alpha, ua, ea).v;
    if (kIntAlpha) return int_pw<kA>(mag(t));
    return mag(t) * pmv;
  }
  T dpsi_from_pm(T t, T pmv) const {  // ψ' = sign·α·a^(α−1) (P_SAME), sign·int_dpw (kIntAlpha)
    if (PK == P_SAME_LOW) return eval_from_log(t, pmv).dpsi;
    if (kKeptLog) return sgn(t) * gen_pow(mag(t), pmv, alpha, ua, ea).d;
    if (kIntAlpha) return sgn(t) * int_dpw<kA>(mag(t));
    return sgn(t) * (alpha * pmv);
  }
  T phi_from_pm(T t, T psi_v, T pmv) const {  // φ = sign·ψ (P_SAME: p = α), sign·a·a^(p−1), sign·a^p
    if (PK == P_SAME_LOW) return sgn(t) * psi_v;
    if (kKeptLog) return sgn(t) * gen_pow(mag(t), pmv, p, up, ep).v;
    if (kPowLow) return sgn(t) * pmv;
    if (kKeepP) return sgn(t) * (mag(t) * pmv);
    return sgn(t) * psi_v;
  }
  T dphi_from_pm(T t, T pmv) const {  // φ' = e·a^(e−1); p·a^p / a (kPowLow; 0 at a = 0)
    if (PK == P_SAME_LOW) return eval_from_log(t, pmv).dphi;
    if (kKeptLog) return gen_pow(mag(t), pmv, p, up, ep).d;
    if (kPowLow) {
      const T a = mag(t), q = p * (pmv / (a + T(a <= T(0))));  // no 0/0 where a = 0 (as ln_pos)
      return a > T(0) ? q : T(0);
    }
    return kept_exponent() * pmv;
  }
  Elem<T> from_pm(T t, T pmv) const {  // (ψ, φ, ψ', φ') from the kept power; L is ln a, dropped where unused
    if (PK == P_SAME_LOW) return eval_from_log(t, pmv);
    if (kKeptLog) {
      const T a = mag(t), s = sgn(t);
      const VD va = gen_pow(a, pmv, alpha, ua, ea), vp = gen_pow(a, pmv, p, up, ep);
      return {va.v, s * vp.v, s * va.d, vp.d, pmv};
    }
    const T psi_v = psi_from_pm(t, pmv);
    return {psi_v, phi_from_pm(t, psi_v, pmv), dpsi_from_pm(t, pmv), dphi_from_pm(t, pmv), ln_pos(mag(t))};
  }
  T psi(T t) const {
    if (kKeptLog) return psi_from_pm(t, pm(t));
    if (kIntAlpha) return int_pw<kA>(mag(t));
    return PK == P_SAME ? mag(t) * pm(t) : pw(mag(t), alpha);
  }
  T dpsi(T t) const {  // signed: sign(t)·α|t|^(α−1)
    if (kKeptLog) return dpsi_from_pm(t, pm(t));
    if (kIntAlpha) return sgn(t) * int_dpw<kA>(mag(t));
    return sgn(t) * dpw(mag(t), alpha);
  }
  // p = 1: φ = relu(t) (rect) or t (signed), as t·(t > 0 ? 1 : dneg)
  T phi(T t) const {
    if (PK == P_ONE) return t * (t > T(0) ? T(1) : dneg);
    if (PK == P_SAME_LOW) return sgn(t) * psi(t);
    if (kIntAlpha || kKeptLog) return phi_from_pm(t, T(0), pm(t));  // as from_pm
    return PK == P_SAME ? sgn(t) * psi(t) : sgn(t) * pw(mag(t), p);
  }
  T dphi(T t) const {
    if (PK == P_ONE) return t > T(0) ? T(1) : dneg;
    if (kIntAlpha || kKeptLog) return dphi_from_pm(t, pm(t));  // as from_pm
    return dpw(mag(t), p);
  }
  Elem<T> eval(T t) const {
    if (PK == P_SAME || kIntAlpha || kKeptLog) return from_pm(t, pm(t));
    return eval_from_log(t, ln_pos(mag(t)));
  }
  // (ψ, φ, ψ', φ', L) from L = ln a by the general formulas: P_ONE, and P_SAME_LOW (p = α < 1), which keeps L for
  // the backward and there takes its values by these same expressions (the same bits as computed from y)
  Elem<T> eval_from_log(T t, T L) const {
    const T a = mag(t), s = sgn(t);
    const bool pos = a > T(0);
    const T ea = vexp(alpha * L), da = alpha * vexp((alpha - T(1)) * L);
    const T psi_v = pos ? ea : T(0), dpa = pos ? da : T(0);
    Elem<T> e{psi_v, T(0), s * dpa, T(0), L};
    if (PK == P_ONE) {
      e.phi = t * (t > T(0) ? T(1) : dneg);
      e.dphi = t > T(0) ? T(1) : dneg;
    } else if (PK == P_SAME_LOW) {  // p = α: exp(p L) = exp(α L), p·exp((p−1) L) = α·exp((α−1) L)
      e.phi = s * psi_v;
      e.dphi = dpa;
    } else {
      const T ep = vexp(p * L), dp = p * vexp((p - T(1)) * L);
      e.phi = s * (pos ? ep : T(0));
      e.dphi = pos ? dp : T(0);
    }
    return e;
  }
};

// One element's values through the policy: eval() where the policy shares work among them, else one by one.
template <typename T, typename Fn>
inline Elem<T> eval(const Fn& fn, T t) {
  return {fn.psi(t), fn.phi(t), fn.dpsi(t), fn.dphi(t), T(0)};
}
template <typename T, int PK>
inline Elem<T> eval(const VecPowFn<T, PK>& fn, T t) {
  return fn.eval(t);
}
// Policies whose elements cost transcendental calls: their sweeps keep ψ' (and a learned α's ln a and ψ)
// in scratch rather than computing them again; for the others a recompute is cheaper than the memory.
template <typename Fn>
constexpr bool kCostly = false;
template <typename T, int PK>
constexpr bool kCostly<VecPowFn<T, PK>> = true;

// φ(t) for a policy that keeps no power (phi_out's other case): φ(t) itself.
template <typename T, typename Fn>
inline T phi_from_psi(const Fn& fn, T t, T) {
  return fn.phi(t);
}

// A row's element values in scratch (the costly policies): one loop that does only the vector exp/log
// calls and stores, then the sweeps read the table. Fused into the sweeps instead, the calls (which clobber
// every vector register) cost about a quarter more there.
template <typename T>
struct Tab {
  T *psi, *phi, *dpsi, *dphi, *L;  // L may be null (no learned α)
};
// FROM_PM (kKeepsPowers only): from the value the forward kept per element (no log; no exp either where it is a
// power; one log per element only for a learned α's L, WITH_L, where the kept value is not ln a itself).
// FROM_PAIR (kKeepsPair only): from the two exps the forward kept, pm (E_α) and pm2 (E_p): no exp, and no log but a
// learned α's L (WITH_L) where ∂L/∂α is asked of a forward that kept none.
template <typename T, bool WITH_L, bool FROM_PM, typename Fn, bool FROM_PAIR = false>
__attribute__((noinline)) void tabulate(const T* __restrict__ y, T m, T dl, const T* __restrict__ pm, int64_t n,
                                        T* __restrict__ psi, T* __restrict__ phi, T* __restrict__ dpsi,
                                        T* __restrict__ dphi, T* __restrict__ L, const Fn fn,
                                        const T* __restrict__ pm2 = nullptr) {
  for (int64_t i = 0; i < n; ++i) {
    Elem<T> e;
    if constexpr (FROM_PAIR) {
      const T t = (y[i] - m) - dl;
      e = fn.from_pair(t, pm[i], pm2[i]);
      if (WITH_L) e.L = ln_pos(fn.mag(t));
    } else if constexpr (FROM_PM)
      e = fn.from_pm((y[i] - m) - dl, pm[i]);
    else
      e = eval(fn, (y[i] - m) - dl);
    psi[i] = e.psi;
    phi[i] = e.phi;
    dpsi[i] = e.dpsi;
    dphi[i] = e.dphi;
    if (WITH_L) L[i] = e.L;
  }
}

// The kept value of a row (kept_from_log: a^(α−1), a^(p−1), a^p or ln a), which the forward keeps for the
// backward when asked, and with WITH_PSI ψ in the same loop, with WITH_L ln a (a learned α's backward reads it:
// no log there). For the kept-power policies only (VecPowFn); with √a kept (kHalf) no log unless WITH_L.
// With WITH_L and p = α > 1 (P_SAME: a learned α's a^(α−1)), two loops over the row: ln a into L, then the exp
// from L. In one loop each exp waits for its log; in two, the core overlaps one loop's independent calls (a
// learned α's step 3–6 % less time at (1024, 512) float32, A/B in one process). Same loop lengths, the same
// calls on the same values: the same bits. Not for α = 1 or 2 with another p (kIntAlpha): there ψ's select
// keeps GCC from vectorizing the second loop for targets without AVX (x86-64-v2), where the old loop called the
// vector exp, so the bits would change (found by a review). Without WITH_L, where the log would go to scratch
// first, it did not pay (measured), so one loop as before.
template <typename T, typename Fn>
__attribute__((noinline)) void ln_of_row(const T* __restrict__ y, T m, T dl, int64_t n, T* __restrict__ l,
                                         const Fn fn) {
  for (int64_t i = 0; i < n; ++i) l[i] = ln_pos(fn.mag((y[i] - m) - dl));
}
template <typename T, bool WITH_PSI, typename Fn>
__attribute__((noinline)) void pm_from_ln(const T* __restrict__ y, T m, T dl, int64_t n,
                                          const T* __restrict__ l, T* __restrict__ pm, T* __restrict__ psi,
                                          const Fn fn) {
  for (int64_t i = 0; i < n; ++i) {
    const T t = (y[i] - m) - dl, v = fn.kept_from_log(fn.mag(t), l[i]);
    pm[i] = v;
    if (WITH_PSI) psi[i] = fn.psi_from_pm(t, v);
  }
}
#ifdef LATERALNORM_COMPACT_POWERS
// pm_of_row's a^(α−1) (P_SAME, float) for a rectified row, with WITH_PSI ψ = a·a^(α−1) and with WITH_L ln a;
// with WITH_SUM (and WITH_PSI) it returns the lane sums of ψ's full groups of 16 as lane_sum takes them (lane k:
// the elements i ≡ k mod 8, in order):
// the elements with a > 0 (or NaN) gathered into scratch, their logs and exps in 16-lane calls, and the results
// put back; a ≤ 0 gets ln a = 0 and a^(α−1) = 0 as ln_pos and kept_from_log give it (log 1 = +0, the exp masked
// out). About half of a rectified row is zero, so the row takes about half the calls. Each element goes through
// the same 16-lane function as in pm_of_row's own loop (its full groups of 16; the tail is left to that loop),
// and those calls compute each lane from that lane alone: the same bits (tests compare the two paths).
// A compacted pass's scratch of `need` floats: the caller's stack array (`cap` floats) where it fits, else a
// thread-local vector (its lookup cost ~10 % of a 100-unit row's forward, so the stack first). The two compacted
// passes (compact_powers, alpha_log_row_compacted) never run inside each other, so they can share it.
inline float* compact_scratch(float* local, int64_t cap, int64_t need) {
  if (need <= cap) return local;
  thread_local std::vector<float> wide;
  if (wide.size() < static_cast<size_t>(need)) wide.resize(static_cast<size_t>(need));
  return wide.data();
}

// The gathered values at p put back under `take` (_mm512_maskz_expand_ps), loaded first as a plain vector: GCC
// folds the load into a memory-form vexpandps, which Zen 4 runs slower (an alpha_log_row_compacted row 5–6 %
// slower in a C++ harness); the empty asm keeps the load a register's. The same lanes either way.
__attribute__((always_inline)) inline __m512 expand_from(__mmask16 take, const float* p) {
  __m512 v = _mm512_loadu_ps(p);
  asm("" : "+v"(v));
  return _mm512_maskz_expand_ps(take, v);
}

// The gathering both compacted passes share: the a > 0 (or NaN: where ln_pos takes the log of a itself) among a
// row's whole groups of 16 (a(i): the group at i) put in order into lc (a register compress, then a plain store),
// the last group padded with 1, and their logs taken in place by the 16-lane call. lc holds n16 + 16 floats;
// returns the padded count (a multiple of 16). Put back with _mm512_maskz_expand_ps under the same mask.
template <typename A>
__attribute__((always_inline)) inline int64_t gathered_logs(int64_t n16, float* __restrict__ lc, A a) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t k = 0;
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 v = a(i);
    const __mmask16 take = _mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ);
    _mm512_storeu_ps(lc + k, _mm512_maskz_compress_ps(take, v));
    k += __builtin_popcount(static_cast<unsigned>(take));
  }
  const int64_t kp = (k + 15) & ~int64_t(15);
  for (int64_t j = k; j < kp; ++j) lc[j] = 1.0f;  // padding: a whole last group
  for (int64_t j = 0; j < kp; j += 16) _mm512_storeu_ps(lc + j, _ZGVeN16v_logf(_mm512_loadu_ps(lc + j)));
  return kp;
}

template <typename T, bool WITH_PSI, bool WITH_L, typename Fn>  // below: compact_powers hands it a row's tail
__attribute__((noinline)) void pm_of_row(const T* y, T m, T dl, int64_t n, T* pm, T* psi, T* L, const Fn fn);
template <bool WITH_PSI, bool WITH_L, bool WITH_SUM = false>
__attribute__((noinline)) __m512d compact_powers(const float* __restrict__ y, float m, float dl, int64_t n,
                                                 float* __restrict__ pm, float* __restrict__ psi,
                                                 float* __restrict__ L, const VecPowFn<float, P_SAME>& fn) {
  const int64_t n16 = n & ~int64_t(15);
  constexpr int64_t kStackUnits = 1024;  // scratch on the stack up to 1024 units (compact_scratch)
  alignas(64) float local[3 * kStackUnits + 32];
  float* const base = compact_scratch(local, 3 * kStackUnits + 32, 3 * n16 + 32);
  float* __restrict__ a = base;              // a = mag(t) (exact: t or 0, whichever way GCC contracts it)
  float* __restrict__ lc = a + n16;          // the gathered a, then their logs
  float* __restrict__ ec = lc + n16 + 16;    // their exps
  for (int64_t i = 0; i < n16; ++i) a[i] = fn.mag((y[i] - m) - dl);
  const __m512 zero = _mm512_setzero_ps();
  const int64_t kp = gathered_logs(n16, lc, [&](int64_t i) { return _mm512_loadu_ps(a + i); });
  const __m512 f = _mm512_set1_ps(fn.kept_factor());
  for (int64_t j = 0; j < kp; j += 16)
    _mm512_storeu_ps(ec + j, _ZGVeN16v_expf(_mm512_mul_ps(f, _mm512_loadu_ps(lc + j))));
  int64_t k = 0;
  __m512d sum = _mm512_setzero_pd();
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 v = _mm512_loadu_ps(a + i);
    const __mmask16 take = _mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ), pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
    if (WITH_L) _mm512_storeu_ps(L + i, expand_from(take, lc + k));
    // kept_from_log: the exp where a > 0, else 0 (a NaN's exp too); ψ = a·a^(α−1), as psi_from_pm
    const __m512 e = _mm512_maskz_mov_ps(pos, expand_from(take, ec + k));
    _mm512_storeu_ps(pm + i, e);
    if (WITH_PSI) {
      const __m512 ps = _mm512_mul_ps(v, e);
      _mm512_storeu_ps(psi + i, ps);
      if (WITH_SUM) sum = add16(sum, ps);
    }
    k += __builtin_popcount(static_cast<unsigned>(take));
  }
  if (n16 < n)  // the tail by pm_of_row's plain loops, as before
    pm_of_row<float, WITH_PSI, WITH_L>(y + n16, m, dl, n - n16, pm + n16, WITH_PSI ? psi + n16 : psi,
                                       WITH_L ? L + n16 : L, fn);
  return sum;
}
// The narrowest row that is compacted: the gathering and putting back cost about what half the calls save at
// ~100 units, and more at 128 (a raw forward 1.10× and 1.17× the plain loops'; 0.94× at 256, ~0.88× at 512).
constexpr int64_t kCompactFrom = 256;
template <typename T, typename Fn>
constexpr bool kCompacts = false;
template <>
constexpr bool kCompacts<float, VecPowFn<float, P_SAME>> = true;
#endif

template <typename T, bool WITH_PSI, bool WITH_L, typename Fn>
__attribute__((noinline)) void pm_of_row(const T* __restrict__ y, T m, T dl, int64_t n, T* __restrict__ pm,
                                         T* __restrict__ psi, T* __restrict__ L, const Fn fn) {
#ifdef LATERALNORM_COMPACT_POWERS
  if constexpr (kCompacts<T, Fn>) {
    if (fn.rect && n >= kCompactFrom) {  // the full groups of 16 compacted; the tail by the loops below
      compact_powers<WITH_PSI, WITH_L>(y, m, dl, n, pm, psi, L, fn);
      return;
    }
  }
#endif
  if constexpr (WITH_L && !Fn::kHalf && !Fn::kKeptLog && !Fn::kIntAlpha) {  // P_SAME: a log and an exp, ln a kept
    ln_of_row(y, m, dl, n, L, fn);
    pm_from_ln<T, WITH_PSI>(y, m, dl, n, L, pm, psi, fn);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T t = (y[i] - m) - dl, a = fn.mag(t), l = WITH_L || !Fn::kHalf ? ln_pos(a) : T(0),
            v = fn.kept_from_log(a, l);
    pm[i] = v;
    if (WITH_PSI) psi[i] = fn.psi_from_pm(t, v);
    if (WITH_L) L[i] = l;
  }
}
#ifdef LATERALNORM_COMPACT_POWERS
// pm_of_row_sum's compacted row: S's lanes added in compact_powers' loop as it makes ψ (the same adds in the same
// order: the same bits), not in a loop of their own after it, which waits on each add before the next
template <bool WITH_L>
__attribute__((noinline)) double compact_row_sum(const float* __restrict__ y, float m, float dl, int64_t n,
                                                 float* __restrict__ pm, float* __restrict__ psi,
                                                 float* __restrict__ L, const VecPowFn<float, P_SAME>& fn) {
  const __m512d acc = compact_powers<true, WITH_L, true>(y, m, dl, n, pm, psi, L, fn);
  return lane_sum_tail(psi, n, n & ~int64_t(15), acc);
}
#endif

// pm_of_row with ψ, and lane_sum of that ψ (the uniform pool's S). Inlined, so that the plain rows' sum is compiled
// in the caller's loop as before (out of line, GCC kept its lanes in memory: a narrow row's forward ~10 % slower)
template <typename T, bool WITH_L, typename Fn>
__attribute__((always_inline)) inline double pm_of_row_sum(const T* __restrict__ y, T m, T dl, int64_t n,
                                                          T* __restrict__ pm, T* __restrict__ psi,
                                                          T* __restrict__ L, const Fn fn) {
#ifdef LATERALNORM_COMPACT_POWERS
  if constexpr (kCompacts<T, Fn>) {
    if (fn.rect && n >= kCompactFrom) return compact_row_sum<WITH_L>(y, m, dl, n, pm, psi, L, fn);
  }
#endif
  pm_of_row<T, true, WITH_L>(y, m, dl, n, pm, psi, L, fn);
  return lane_sum(psi, n);
}

// the policies whose forward keeps one value per element for the backward (`keeps_powers` reads this):
// every exp/log policy but p = 1 (φ is exact)
template <typename Fn>
constexpr bool kKeepsPowers = false;
template <typename T, int PK>
constexpr bool kKeepsPowers<VecPowFn<T, PK>> = PK != P_ONE;
// the kept value is ln a (P_GENERAL): the backward takes its row table from it (two exps), not the sweeps
template <typename Fn>
constexpr bool kKeepsLog = false;
template <typename T, int PK>
constexpr bool kKeepsLog<VecPowFn<T, PK>> = VecPowFn<T, PK>::kKeptLog;
// the general policy on the self and uniform pools, no learned α (`keeps_pair`): the forward keeps its two exps
// per element, E_α and E_p, as (2, M, N) instead of ln a, and the backward's table takes no exp
template <typename Fn>
constexpr bool kKeepsPair = false;
template <typename T, int PK>
constexpr bool kKeepsPair<VecPowFn<T, PK>> = PK == P_GENERAL;

// The uniform pool's first loop with the pair kept: ln a into l, E_α into ea and ψ from it, where pm_of_row takes
// ln a and ψ without the pair (the same expressions; its E_p is taken in the output loop, as phi_out takes it)
template <typename T, typename Fn>
__attribute__((noinline)) void pair_first_of_row(const T* __restrict__ y, T m, T dl, int64_t n, T* __restrict__ l,
                                                 T* __restrict__ ea, T* __restrict__ psi, const Fn fn) {
  for (int64_t i = 0; i < n; ++i) {
    const T t = (y[i] - m) - dl, li = ln_pos(fn.mag(t)), E = fn.exp_alpha(li);
    l[i] = li;
    ea[i] = E;
    psi[i] = Fn::gen_from_exp(fn.mag(t), E, fn.alpha, fn.ua).v;
  }
}

// φ(t) where ψ(t) is at hand and, for a policy that keeps a power, that power (kept[i]; else unread)
template <typename T, typename Fn>
inline T phi_out(const Fn& fn, T t, T psi, const T* __restrict__ kept, int64_t i) {
  if constexpr (kKeepsPowers<Fn>)
    return fn.phi_from_pm(t, psi, kept[i]);
  else
    return phi_from_psi(fn, t, psi);
}

// D^{−r} (operator()), and both(D) = (D^{−r}, 1/D) with one division: sqrt and division are the costly
// vector instructions here, so the backward asks for both at once.
template <typename T>
struct Both {
  T dr, inv;
};
template <typename T>
struct RHalf {
  T operator()(T d) const { return T(1) / std::sqrt(d); }
  Both<T> both(T d) const {  // i = D^{−3/2}: D^{−1/2} = i·D, 1/D = i·√D
    const T s = std::sqrt(d), i = T(1) / (d * s);
    return {i * d, i * s};
  }
};
template <typename T>
struct ROne {
  T operator()(T d) const { return T(1) / d; }
  Both<T> both(T d) const {
    const T i = T(1) / d;
    return {i, i};
  }
};
template <typename T>
struct RThreeQuarters {  // LRN's default β = 0.75
  T operator()(T d) const {
    const T s = std::sqrt(d);
    return T(1) / (s * std::sqrt(s));
  }
  Both<T> both(T d) const {  // i = D^{−5/4}: D^{−3/4} = i·D^{1/2}, 1/D = i·D^{1/4}
    const T s = std::sqrt(d), q = std::sqrt(s), i = T(1) / (d * q);
    return {i * s, i * q};
  }
};
template <typename T>
struct RGeneral {  // D^{−r} = exp(−r ln D) (D > 0: β > 0 or a positive pool)
  T mr;
  T operator()(T d) const { return vexp(mr * vlog(d)); }
  Both<T> both(T d) const { return {vexp(mr * vlog(d)), T(1) / d}; }
};

// ---------------------------------------------------------------------------------------------- helpers
template <typename T>
struct Params {
  const T* beta;  // (N) or (1)
  const T* c;     // (N) or (1)
  bool per_unit;  // β and c have N entries; else one each (only with a uniform pool: D is one number per row)
  const T* gamma;  // (N)
  const T* bias;   // (N)
  int64_t n, before, after;
  T r;
  bool center;
  bool rect;  // a = relu(t) (else |t|): read by the learned α's gradient
};

// w_i = Σ_{j=i−lo}^{i+hi} v_j, where padded[lo + j] = v_j and the lo / hi margins are zero.
// Four vectors of outputs are summed in registers (GCC/Clang vector extensions: one unaligned load and one add
// per tap and vector), so a window of K taps costs K loads per output vector, not K passes. The vectors are
// the machine's own width (-march=native): a 64-byte vector type on a CPU without AVX-512 is split by GCC
// through general registers and the stack, and the band pool's step ran 2.5× slower on such a CPU (AMD Zen 3).
// Each lane adds its taps in the same order at any width: the same bits.
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
template <typename T>
__attribute__((noinline)) void window_sum(const T* __restrict__ p, T* __restrict__ w, int64_t n, int64_t size) {
  if (size > 64) {  // wide windows: a running sum in double
    double s = 0;
    for (int64_t k = 0; k < size - 1; ++k) s += static_cast<double>(p[k]);
    for (int64_t i = 0; i < n; ++i) {
      s += static_cast<double>(p[i + size - 1]);
      w[i] = static_cast<T>(s);
      s -= static_cast<double>(p[i]);
    }
    return;
  }
  typedef T V __attribute__((vector_size(kVecBytes)));
  constexpr int64_t L = kVecBytes / sizeof(T);
  auto ld = [](const T* q) {
    V v;
    std::memcpy(&v, q, sizeof(V));
    return v;
  };
  auto st = [](T* q, V v) { std::memcpy(q, &v, sizeof(V)); };
  int64_t i0 = 0;
  for (; i0 + 4 * L <= n; i0 += 4 * L) {
    const T* q = p + i0;
    V a0 = ld(q), a1 = ld(q + L), a2 = ld(q + 2 * L), a3 = ld(q + 3 * L);
    for (int64_t k = 1; k < size; ++k) {
      a0 += ld(q + k);
      a1 += ld(q + k + L);
      a2 += ld(q + k + 2 * L);
      a3 += ld(q + k + 3 * L);
    }
    st(w + i0, a0);
    st(w + i0 + L, a1);
    st(w + i0 + 2 * L, a2);
    st(w + i0 + 3 * L, a3);
  }
  for (; i0 + L <= n; i0 += L) {
    V a0 = ld(p + i0);
    for (int64_t k = 1; k < size; ++k) a0 += ld(p + i0 + k);
    st(w + i0, a0);
  }
  for (int64_t i = i0; i < n; ++i) {
    T a = p[i];
    for (int64_t k = 1; k < size; ++k) a += p[i + k];
    w[i] = a;
  }
}

// Small element loops kept out of line with restrict arguments (inlined, GCC gives up on their alias checks).
template <typename T, typename Fn>
__attribute__((noinline)) void psi_of_row(const T* __restrict__ y, T m, T dl, int64_t n, T* __restrict__ out,
                                          const Fn fn) {
  for (int64_t i = 0; i < n; ++i) out[i] = fn.psi((y[i] - m) - dl);
}

template <typename T>
__attribute__((noinline)) void scaled_product(const T* __restrict__ a, const T* __restrict__ b, T k, int64_t n,
                                              T* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) out[i] = k * a[i] * b[i];
}

// gy = v + gψ ψ'(t)
template <typename T, typename Fn>
__attribute__((noinline)) void input_grad(const T* __restrict__ v, const T* __restrict__ gpsi,
                                          const T* __restrict__ y, T m, T dl, int64_t n, T* __restrict__ gy,
                                          const Fn fn) {
  for (int64_t i = 0; i < n; ++i) gy[i] = v[i] + gpsi[i] * fn.dpsi((y[i] - m) - dl);
}

// acc += x − mean (the share x − mean rounded on its own, as if it were a tensor added to acc afterwards)
template <typename T>
__attribute__((noinline)) void add_centered(const T* __restrict__ x, T mean, int64_t n, T* __restrict__ acc) {
  for (int64_t i = 0; i < n; ++i) {
    const T share = x[i] - mean;
    acc[i] += share;
  }
}

// A matrix pool's element values. FROM_PM (kMatrixKeeps only): from the power psi_rows kept per element (`kept`),
// no log and, but for the general policy's kept ln a, no exp: eval is from_pm(t, pm(t)) for those policies, and
// ψ', φ the same expressions of that power, so the same bits as from t alone.
template <typename T, bool FROM_PM, typename Fn>
inline Elem<T> eval_kept(const Fn& fn, T t, const T* __restrict__ kept, int64_t i) {
  if constexpr (FROM_PM)
    return fn.from_pm(t, kept[i]);
  else
    return eval(fn, t);
}
template <typename T, bool FROM_PM, typename Fn>
inline T dpsi_kept(const Fn& fn, T t, const T* __restrict__ kept, int64_t i) {
  if constexpr (FROM_PM)
    return fn.dpsi_from_pm(t, kept[i]);
  else
    return fn.dpsi(t);
}
template <typename T, bool FROM_PM, typename Fn>
inline T phi_kept(const Fn& fn, T t, const T* __restrict__ kept, int64_t i) {
  if constexpr (FROM_PM)
    return fn.phi_from_pm(t, fn.psi_from_pm(t, kept[i]), kept[i]);
  else
    return fn.phi(t);
}
// The policies whose matrix element work keeps its power: α ≠ 1, 2 (P_SAME, P_SAME_LOW, the general pair: a learned
// α's). Not α = 1 or 2 with another p (kIntAlpha): there ψ's select in pm_of_row's loop kept GCC from vectorizing
// it, so its scalar exp and log gave other bits than the vector calls of the loops that take them again (measured
// in float32 for α = 2, p = 0.7 and α = 1, p = 2.5).
template <typename Fn>
constexpr bool kMatrixKeeps = false;
template <typename T, int PK>
constexpr bool kMatrixKeeps<VecPowFn<T, PK>> = PK != P_ONE && !VecPowFn<T, PK>::kIntAlpha;

// Calls f(std::bool_constant<FROM_PM>) for a policy and a kept tensor's pointer (null: none kept).
template <typename Fn, typename F>
void with_kept(const Fn&, const void* kept, F&& f) {
  if constexpr (kMatrixKeeps<Fn>) {
    if (kept != nullptr) return f(std::true_type{});
  }
  f(std::false_type{});
}

// gy = gψ ψ'(t) (a matrix pool's ψ rows)
template <typename T, bool FROM_PM, typename Fn>
__attribute__((noinline)) void psi_grad_of_row(const T* __restrict__ gpsi, const T* __restrict__ y, T m, T dl,
                                               int64_t n, T* __restrict__ gy, const Fn fn,
                                               const T* __restrict__ kept) {
  for (int64_t i = 0; i < n; ++i) gy[i] = gpsi[i] * dpsi_kept<T, FROM_PM>(fn, (y[i] - m) - dl, kept, i);
}

// The row's terms of ∂L/∂α for a learned α: ln(a_i) (gψ_i ψ_i + dp gz_i z_i), a = |t| or relu(t), with
// ψ = a^α, z = φ D^{−r}, gz = g γ, and dp = ∂p/∂α (r when p = α·r, else 0); 0 where a = 0 (ψ = φ = 0 there).
// ROWGP: gψ is one number for the row (uniform pool).
template <typename T, bool ROWGP, typename Fn>
__attribute__((noinline)) void alpha_terms(const T* __restrict__ y, T m, T dl, const T* __restrict__ gpsi, T gp,
                                           const T* __restrict__ g, const T* __restrict__ gamma,
                                           const T* __restrict__ z, T dp, int64_t n, T* __restrict__ out,
                                           const Fn fn, bool rect) {
  const T ka = rect ? T(0.5) : T(0), kb = rect ? T(0.5) : T(1);  // a = ka·t + kb·|t| (no select on `rect`)
  for (int64_t i = 0; i < n; ++i) {
    const T t = (y[i] - m) - dl;
    const T a = ka * t + kb * std::abs(t);
    const T L = ln_pos(a);
    out[i] = L * ((ROWGP ? gp : gpsi[i]) * fn.psi(t) + dp * (g[i] * gamma[i]) * z[i]);
  }
}

// The row mean as m_T + δ (m_T the mean rounded to T, δ the rest), so t = (y − m_T) − δ loses nothing.
template <typename T>
struct Mean {
  T m, delta;
};
template <typename T>
inline double lane_dot(const T* __restrict__ x, const T* __restrict__ y, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]) * static_cast<double>(y[i + k]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(y[i]);
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}
#ifdef LATERALNORM_COMPACT_POWERS
template <>  // as lane_sum<float>
inline double lane_dot<float>(const float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  const int64_t n16 = n & ~int64_t(15);
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < n16; i += 16) acc = dot16(acc, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
  return lane_dot_tail(x, y, n, n16, acc);
}
#endif

template <typename T>
inline Mean<T> row_mean(const T* y, int64_t n, bool center) {
  if (!center) return {T(0), T(0)};
  const double m = lane_sum(y, n) / static_cast<double>(n);
  const T mt = static_cast<T>(m);
  return {mt, static_cast<T>(m - static_cast<double>(mt))};
}

template <typename T>
struct Scratch {
  std::vector<T> a, b, c, pad, pad2;
  Scratch(int64_t n, int64_t extra) : a(n), b(n), c(n), pad(n + extra, T(0)), pad2(n + extra, T(0)) {}
};

// ---------------------------------------------------------------------------------------------- forward
// out rows [r0, r1); stats: (m_T, δ, S) per row in double (S: the uniform pool's Σψ, else 0); w_all (see
// `keeps_rowwise`; may be null): the band pool's window sums or the elements' a^(α−1), kept for the backward;
// l_all (may be null; self or uniform pool: the elements' ln a beside a power, for a learned α's gradient, or the
// general policy's E_p beside E_α, kKeepsPair; band pool: the kept value beside the window sums)
template <typename T, int64_t KIND, typename Fn, typename R>
void forward_rows(const T* __restrict__ y_all, T* __restrict__ out_all, double* __restrict__ stats,
                  T* __restrict__ w_all, T* __restrict__ l_all, int64_t r0, int64_t r1, const Params<T>& P,
                  const Fn fn, const R dr) {
  const int64_t n = P.n, size = P.before + 1 + P.after;
  Scratch<T> s(n, size - 1);
  const T* __restrict__ beta = P.beta;
  const T* __restrict__ c = P.c;
  const T* __restrict__ gamma = P.gamma;
  const T* __restrict__ bias = P.bias;
  const bool bv = P.per_unit;
  for (int64_t row = r0; row < r1; ++row) {
    const T* __restrict__ y = y_all + row * n;
    T* __restrict__ out = out_all + row * n;
    const Mean<T> mu = row_mean(y, n, P.center);
    const T m = mu.m, dl = mu.delta;
    stats[3 * row] = static_cast<double>(m);
    stats[3 * row + 1] = static_cast<double>(dl);  // and the uniform pool's S once summed (else 0)
    double S = 0;
    // the general policy's two exps kept (kKeepsPair): E_α in w_all's row, E_p in l_all's, ln a in scratch
    bool pair = false;
    if constexpr (kKeepsPair<Fn>) pair = KIND != BAND && l_all != nullptr;
    if (KIND == UNIFORM) {
      const T* kept = nullptr;  // the kept power's row (kKeepsPowers)
      if constexpr (kKeepsPowers<Fn>) {  // ψ, the kept power (and ln a) kept for the backward when asked
        T* __restrict__ pmr = w_all != nullptr ? w_all + row * n : s.b.data();
        kept = pmr;
        if (pair) {
          pair_first_of_row(y, m, dl, n, s.b.data(), pmr, s.a.data(), fn);
          kept = s.b.data();
          S = lane_sum(s.a.data(), n);
        } else if (l_all != nullptr) {
          S = pm_of_row_sum<T, true>(y, m, dl, n, pmr, s.a.data(), l_all + row * n, fn);
        } else {
          S = pm_of_row_sum<T, false>(y, m, dl, n, pmr, s.a.data(), static_cast<T*>(nullptr), fn);
        }
      } else if constexpr (kCostly<Fn>) {  // ψ into scratch, then summed in the same order as below: the
        // element loop vectorizes on its own, where inside the 8-lane double accumulation it stays scalar
        psi_of_row(y, m, dl, n, s.a.data(), fn);
        S = lane_sum(s.a.data(), n);
      } else {  // the cheap policies: summed as they are computed (no scratch traffic)
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
          for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(fn.psi((y[i + k] - m) - dl));
        for (; i < n; ++i) S += static_cast<double>(fn.psi((y[i] - m) - dl));
        for (int k = 0; k < 8; ++k) S += acc[k];
      }
      stats[3 * row + 2] = S;
      const T St = static_cast<T>(S);
      const T* __restrict__ ps = s.a.data();
      if constexpr (kKeepsPair<Fn>) {
        if (pair) {  // φ from E_p, taken here as phi_out takes it from ln a, and kept
          const T* __restrict__ lr = s.b.data();
          T* __restrict__ epr = l_all + row * n;
          auto phi_kept = [&](int64_t i, T t) {
            const T E = fn.exp_p(lr[i]);
            epr[i] = E;
            return fn.sgn(t) * Fn::gen_from_exp(fn.mag(t), E, fn.p, fn.up).v;
          };
          if (!bv) {
            const T k = dr(beta[0] + c[0] * St);
            for (int64_t i = 0; i < n; ++i) {
              const T t = (y[i] - m) - dl;
              out[i] = gamma[i] * (phi_kept(i, t) * k) + bias[i];
            }
          } else {
            for (int64_t i = 0; i < n; ++i) {
              const T t = (y[i] - m) - dl;
              out[i] = gamma[i] * (phi_kept(i, t) * dr(beta[i] + c[i] * St)) + bias[i];
            }
          }
          continue;
        }
      }
      if (!bv) {
        const T k = dr(beta[0] + c[0] * St);
        for (int64_t i = 0; i < n; ++i) out[i] = gamma[i] * (phi_out(fn, (y[i] - m) - dl, ps[i], kept, i) * k) + bias[i];
      } else {
        bool done = false;
        if constexpr (std::is_same_v<Fn, VecPowFn<T, P_SAME>>) {
          if (fn.rect) {  // p = α, rectified: φ = sgn(t)·ψ with sgn ≡ 1 (rect's sneg), so φ is ψ itself (1·ψ = ψ,
            // the same bits) and the loop reads no y
            for (int64_t i = 0; i < n; ++i) out[i] = gamma[i] * (ps[i] * dr(beta[i] + c[i] * St)) + bias[i];
            done = true;
          }
        }
        if (!done) {
          for (int64_t i = 0; i < n; ++i) {
            const T t = (y[i] - m) - dl;
            out[i] = gamma[i] * (phi_out(fn, t, ps[i], kept, i) * dr(beta[i] + c[i] * St)) + bias[i];
          }
        }
      }
    } else if (KIND == SELF) {
      if constexpr (kKeepsPair<Fn>) {
        if (pair) {  // ln a in scratch (the policy's kept value), then the two exps where from_pm takes them, kept
          T* __restrict__ lr = s.c.data();
          T* __restrict__ ear = w_all + row * n;
          T* __restrict__ epr = l_all + row * n;
          pm_of_row<T, false, false>(y, m, dl, n, lr, static_cast<T*>(nullptr), static_cast<T*>(nullptr), fn);
          for (int64_t i = 0; i < n; ++i) {
            const T Ea = fn.exp_alpha(lr[i]), Ep = fn.exp_p(lr[i]);
            ear[i] = Ea;
            epr[i] = Ep;
            const Elem<T> e = fn.from_pair((y[i] - m) - dl, Ea, Ep);
            out[i] = gamma[i] * (e.phi * dr(beta[i] + c[i] * e.psi)) + bias[i];
          }
          continue;
        }
      }
      if constexpr (kKeepsPowers<Fn>) {  // from a^(α−1), kept for the backward when asked
        T* __restrict__ pmr = w_all != nullptr ? w_all + row * n : s.c.data();
        if (l_all != nullptr)
          pm_of_row<T, false, true>(y, m, dl, n, pmr, static_cast<T*>(nullptr), l_all + row * n, fn);
        else
          pm_of_row<T, false, false>(y, m, dl, n, pmr, static_cast<T*>(nullptr), static_cast<T*>(nullptr), fn);
        for (int64_t i = 0; i < n; ++i) {
          const Elem<T> e = fn.from_pm((y[i] - m) - dl, pmr[i]);
          out[i] = gamma[i] * (e.phi * dr(beta[i] + c[i] * e.psi)) + bias[i];
        }
      } else if constexpr (kCostly<Fn>) {  // ψ and φ tabulated first (see Tab)
        T* __restrict__ tp = s.a.data();
        T* __restrict__ tf = s.b.data();
        tabulate<T, false, false>(y, m, dl, static_cast<const T*>(nullptr), n, tp, tf, s.c.data(), s.pad.data(),
                                  static_cast<T*>(nullptr), fn);
        for (int64_t i = 0; i < n; ++i) out[i] = gamma[i] * (tf[i] * dr(beta[i] + c[i] * tp[i])) + bias[i];
      } else {
        for (int64_t i = 0; i < n; ++i) {
          const Elem<T> e = eval(fn, (y[i] - m) - dl);
          out[i] = gamma[i] * (e.phi * dr(beta[i] + c[i] * e.psi)) + bias[i];
        }
      }
    } else {
      T* __restrict__ pad = s.pad.data();
      T* __restrict__ w = w_all != nullptr ? w_all + row * n : s.a.data();
      const T* kept = nullptr;  // the kept power's row (kKeepsPowers)
      if constexpr (kKeepsPowers<Fn>) {  // ψ, and the kept value: the second plane when asked, else scratch
        T* __restrict__ pmr = l_all != nullptr ? l_all + row * n : s.b.data();
        kept = pmr;
        pm_of_row<T, true, false>(y, m, dl, n, pmr, pad + P.before, static_cast<T*>(nullptr), fn);
      } else {
        psi_of_row(y, m, dl, n, pad + P.before, fn);
      }
      window_sum(pad, w, n, size);
      for (int64_t i = 0; i < n; ++i) {
        const T t = (y[i] - m) - dl;
        out[i] = gamma[i] * (phi_out(fn, t, pad[P.before + i], kept, i) * dr(beta[i] + c[i] * w[i])) + bias[i];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- backward
// Where a sweep takes each element's ψ, φ, φ': from the policy, from the row's table (the costly policies),
// or from the forward's a^(α−1) (p = α > 1: each is a product with it, so no table is written).
enum Src : int { SRC_EVAL = 0, SRC_TAB = 1, SRC_PM = 2 };

// One row's z, q = gz z / D and v = gz D^{−r} φ'(t) (gz = g γ), and (COLS) its share of the column sums
// Σ g z, Σ g, Σ q and Σ q W; elements by SRC (SRC_PM: tpsi is the row's a^(α−1)). Out of line with restrict
// arguments, so GCC vectorizes it without alias checks.
template <typename T, int64_t KIND, bool ROWCONST, bool COLS, int SRC, typename Fn, typename R>
__attribute__((noinline)) void sweep_units(const T* __restrict__ y, const T* __restrict__ g,
                                           const T* __restrict__ beta, const T* __restrict__ c,
                                           const T* __restrict__ gamma, const T* __restrict__ wrow, T St, T m,
                                           T dl, int64_t n, T* __restrict__ zb, T* __restrict__ qb,
                                           T* __restrict__ vb, T* __restrict__ cg, T* __restrict__ cb,
                                           T* __restrict__ cq, T* __restrict__ cw, const T* __restrict__ tpsi,
                                           const T* __restrict__ tphi, const T* __restrict__ tdphi, const Fn fn,
                                           const R dr) {
  const T D0 = beta[0] + c[0] * St;
  const T k0 = dr(D0), inv0 = T(1) / D0;
  for (int64_t i = 0; i < n; ++i) {
    Elem<T> e;
    if constexpr (SRC == SRC_PM) {
      const T t = (y[i] - m) - dl, psi_v = fn.psi_from_pm(t, tpsi[i]);
      e = Elem<T>{psi_v, fn.phi_from_pm(t, psi_v, tpsi[i]), T(0), fn.dphi_from_pm(t, tpsi[i]), T(0)};  // as from_pm
    } else if constexpr (SRC == SRC_TAB) {
      e = Elem<T>{tpsi[i], tphi[i], T(0), tdphi[i], T(0)};
    } else {
      e = eval(fn, (y[i] - m) - dl);
    }
    const T W = KIND == UNIFORM ? St : (KIND == SELF ? e.psi : wrow[i]);
    const T D = ROWCONST ? D0 : beta[i] + c[i] * W;
    const Both<T> kd = ROWCONST ? Both<T>{k0, inv0} : dr.both(D);
    const T k = kd.dr;
    const T z = e.phi * k;
    const T gz = g[i] * gamma[i];
    const T q = gz * z * kd.inv;
    zb[i] = z;
    qb[i] = q;
    vb[i] = gz * k * e.dphi;
    if (COLS) {
      cg[i] += g[i] * z;
      cb[i] += g[i];
      cq[i] += q;
      cw[i] += q * W;
    }
  }
}

// One row of a given pool's backward (D = β + W): the values of sweep_units (c = 1) written straight to the
// outputs, gW = −r q and (WITH_GY) gy = v, with the column sums Σ g z, Σ g and Σ q (no Σ q W: no c here).
// A parameter that holds one value for a whole row (a channel plane's), read as the rows' per-unit arrays are.
template <typename T>
struct Splat {
  T v;
  T operator[](int64_t) const { return v; }
};

// (PB: `const T*` per unit, or a Splat for a channel plane's row)
template <typename T, bool WITH_GY, bool FROM_PM, typename Fn, typename R, typename PB = const T* __restrict__>
__attribute__((noinline)) void given_pool_row(const T* __restrict__ y, const T* __restrict__ g, const PB beta,
                                              const PB gamma, const T* __restrict__ w, T m, T dl, int64_t n, T mr,
                                              T* __restrict__ gw, T* __restrict__ gy, T* __restrict__ cg,
                                              T* __restrict__ cb, T* __restrict__ cq, const Fn fn, const R dr,
                                              const T* __restrict__ kept) {
  for (int64_t i = 0; i < n; ++i) {
    const Elem<T> e = eval_kept<T, FROM_PM>(fn, (y[i] - m) - dl, kept, i);
    const Both<T> kd = dr.both(beta[i] + w[i]);
    const T k = kd.dr;
    const T z = e.phi * k;
    const T gz = g[i] * gamma[i];
    const T q = gz * z * kd.inv;
    gw[i] = mr * q;
    if (WITH_GY) gy[i] = gz * k * e.dphi;
    cg[i] += g[i] * z;
    cb[i] += g[i];
    cq[i] += q;
  }
}

// gy = v + gψ ψ' with ψ' kept by the sweep
template <typename T>
__attribute__((noinline)) void input_grad_kept(const T* __restrict__ v, const T* __restrict__ gpsi,
                                               const T* __restrict__ dps, int64_t n, T* __restrict__ gy) {
  for (int64_t i = 0; i < n; ++i) gy[i] = v[i] + gpsi[i] * dps[i];
}

// From the forward's a^(α−1) (ψ = a·a^(α−1), ψ' = sign·α·a^(α−1)) and, for a learned α, its ln a, in one loop:
// (WITH_GY) gy = (v + gψ ψ') − mean, and (WITH_A) α's row terms as alpha_terms. ROWGP: gψ one number (gp).
template <typename T, bool ROWGP, bool WITH_GY, bool WITH_A, typename Fn>
__attribute__((noinline)) void grads_from_pm(const T* __restrict__ v, const T* __restrict__ gpsi, T gp,
                                             const T* __restrict__ y, T m, T dl, const T* __restrict__ pm,
                                             const T* __restrict__ lb, const T* __restrict__ g,
                                             const T* __restrict__ gamma, const T* __restrict__ z, T dp, T mean,
                                             int64_t n, T* __restrict__ gy, T* __restrict__ out, const Fn fn) {
  for (int64_t i = 0; i < n; ++i) {
    const T t = (y[i] - m) - dl, gpi = ROWGP ? gp : gpsi[i];
    if (WITH_GY) gy[i] = (v[i] + gpi * fn.dpsi_from_pm(t, pm[i])) - mean;
    if (WITH_A) out[i] = lb[i] * (gpi * fn.psi_from_pm(t, pm[i]) + dp * (g[i] * gamma[i]) * z[i]);
  }
}

// Σ ψ' over a row in the order of lane_sum, ψ' from the forward's a^(α−1)
template <typename T, typename Fn>
__attribute__((noinline)) double dpsi_sum_pm(const T* __restrict__ y, T m, T dl, const T* __restrict__ pm,
                                             int64_t n, const Fn fn) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(fn.dpsi_from_pm((y[i + k] - m) - dl, pm[i + k]));
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(fn.dpsi_from_pm((y[i] - m) - dl, pm[i]));
  for (int k = 0; k < 8; ++k) s += acc[k];
  return s;
}

// A learned α's row terms (as alpha_terms) from the ln a and ψ kept by the sweep.
template <typename T, bool ROWGP>
__attribute__((noinline)) void alpha_terms_kept(const T* __restrict__ lb, const T* __restrict__ pb,
                                                const T* __restrict__ gpsi, T gp, const T* __restrict__ g,
                                                const T* __restrict__ gamma, const T* __restrict__ z, T dp,
                                                int64_t n, T* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) out[i] = lb[i] * ((ROWGP ? gp : gpsi[i]) * pb[i] + dp * (g[i] * gamma[i]) * z[i]);
}

#ifdef LATERALNORM_COMPACT_POWERS
// The learned α's two backward loops on the uniform pool (float, a^(α−1) kept, β and c per unit, r = 1) with the
// row sum that follows each added in the loop itself: sweep_units with lane_dot(c, q) (gψ's sum), grads_from_pm
// with lane_sum of α's terms. Each such sum waits on its previous add (~60 ns a row at N = 512); here its adds run
// beside the loop's other work. The element arithmetic is the plain loops' as GCC compiles them (the same
// products, quotient and fused multiply-adds, in the same order: the multiply-adds are where GCC forms them, and
// the products in double of two floats are exact, so a fused one rounds as the plain one), and each sum's lanes
// take the elements in lane_sum's order: the same bits (tests and the old/new build comparison). The full groups of
// 16 only; a tail goes to the plain loops, and its sums continue in order (lane_sum_tail, lane_dot_tail).
template <typename Fn, typename R>
constexpr bool kFusedSums = false;
template <>
constexpr bool kFusedSums<VecPowFn<float, P_SAME>, ROne<float>> = true;

// t and mag(t) of 16 elements, as the plain loops compute them (mag: one fused multiply-add, as GCC forms it)
inline __m512 t16(const float* y, __m512 m, __m512 dl) {
  return _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(y), m), dl);
}
inline __m512 mag16(__m512 t, __m512 ka, __m512 kb) {
  return _mm512_fmadd_ps(ka, t, _mm512_mul_ps(_mm512_abs_ps(t), kb));
}

// One element group's φ and φ' for the fused sweep below
// One element group's ψ, φ and φ' for the fused sweeps below
struct GroupVals {
  __m512 psi, phi, dphi;
};

// sweep_units<float, UNIFORM, false, true, SRC> (r = 1) and lane_dot(c, q) of the row, ψ, φ and φ' of each group of
// 16 from elem(i, t): the loop of the element policies with a fused sweep (P_SAME from the kept power, RectSq from
// t). STORE_ZQ: z and q stored for the whole row (else only for its tail, which the plain loop takes);
// group(i, e, gz, z) sees each group's values (sweep_units_alpha's sums).
template <int SRC, bool STORE_ZQ, typename Fn, typename Elem, typename Group>
__attribute__((always_inline)) inline double sweep_dot_of(
    const float* __restrict__ y, const float* __restrict__ g, const float* __restrict__ beta,
    const float* __restrict__ c, const float* __restrict__ gamma, float St, float m, float dl, int64_t n,
    float* __restrict__ zb, float* __restrict__ qb, float* __restrict__ vb, float* __restrict__ cg,
    float* __restrict__ cb, float* __restrict__ cq, float* __restrict__ cw, const float* __restrict__ pm,
    const Fn& fn, const ROne<float>& dr, Elem elem, Group group) {
  const int64_t n16 = n & ~int64_t(15);
  const __m512 vm = _mm512_set1_ps(m), vdl = _mm512_set1_ps(dl), vS = _mm512_set1_ps(St), one = _mm512_set1_ps(1.0f);
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 gv = _mm512_loadu_ps(g + i), cv = _mm512_loadu_ps(c + i);
    const GroupVals e = elem(i, t16(y + i, vm, vdl));
    const __m512 gz = _mm512_mul_ps(gv, _mm512_loadu_ps(gamma + i));
    const __m512 k = _mm512_div_ps(one, _mm512_fmadd_ps(cv, vS, _mm512_loadu_ps(beta + i)));  // 1 / (β + c W)
    const __m512 z = _mm512_mul_ps(e.phi, k);
    const __m512 q = _mm512_mul_ps(_mm512_mul_ps(gz, z), k);
    if (STORE_ZQ) {
      _mm512_storeu_ps(zb + i, z);
      _mm512_storeu_ps(qb + i, q);
    }
    _mm512_storeu_ps(vb + i, _mm512_mul_ps(_mm512_mul_ps(gz, k), e.dphi));
    _mm512_storeu_ps(cg + i, _mm512_fmadd_ps(gv, z, _mm512_loadu_ps(cg + i)));
    _mm512_storeu_ps(cb + i, _mm512_add_ps(_mm512_loadu_ps(cb + i), gv));
    _mm512_storeu_ps(cq + i, _mm512_add_ps(_mm512_loadu_ps(cq + i), q));
    _mm512_storeu_ps(cw + i, _mm512_fmadd_ps(q, vS, _mm512_loadu_ps(cw + i)));
    acc = dot16(acc, cv, q);
    group(i, e, gz, z);
  }
  if (n16 < n)
    sweep_units<float, UNIFORM, false, true, SRC>(y + n16, g + n16, beta + n16, c + n16, gamma + n16, nullptr, St, m,
                                                  dl, n - n16, zb + n16, qb + n16, vb + n16, cg + n16, cb + n16,
                                                  cq + n16, cw + n16, SRC == SRC_PM ? pm + n16 : nullptr, nullptr,
                                                  nullptr, fn, dr);
  return lane_dot_tail(c, qb, n, n16, acc);
}
constexpr auto kNoGroupWork = [](int64_t, const GroupVals&, __m512, __m512) {};

// P_SAME's values of a group from the kept a^(α−1), as psi_from_pm, phi_from_pm and dphi_from_pm compute them
inline auto pm_group_values(const float* __restrict__ pm, const VecPowFn<float, P_SAME>& fn) {
  const __m512 ka = _mm512_set1_ps(fn.ka), kb = _mm512_set1_ps(fn.kb), sneg = _mm512_set1_ps(fn.sneg),
               ex = _mm512_set1_ps(fn.kept_exponent()), zero = _mm512_setzero_ps();
  return [=](int64_t i, __m512 t) {
    const __m512 pmv = _mm512_loadu_ps(pm + i);
    const __mmask16 neg = _mm512_cmp_ps_mask(t, zero, _CMP_LT_OS);
    const __m512 psi = _mm512_mul_ps(mag16(t, ka, kb), pmv);
    return GroupVals{psi, _mm512_mask_mul_ps(psi, neg, psi, sneg), _mm512_mul_ps(ex, pmv)};  // sgn(t)·ψ, α·pm
  };
}

// sweep_units<float, UNIFORM, false, true, SRC_PM> (P_SAME, r = 1) and lane_dot(c, q) of the row
__attribute__((noinline)) double sweep_units_dot(const float* __restrict__ y, const float* __restrict__ g,
                                                 const float* __restrict__ beta, const float* __restrict__ c,
                                                 const float* __restrict__ gamma, float St, float m, float dl,
                                                 int64_t n, float* __restrict__ zb, float* __restrict__ qb,
                                                 float* __restrict__ vb, float* __restrict__ cg,
                                                 float* __restrict__ cb, float* __restrict__ cq,
                                                 float* __restrict__ cw, const float* __restrict__ pm,
                                                 const VecPowFn<float, P_SAME>& fn, const ROne<float>& dr) {
  return sweep_dot_of<SRC_PM, true>(y, g, beta, c, gamma, St, m, dl, n, zb, qb, vb, cg, cb, cq, cw, pm, fn, dr,
                                    pm_group_values(pm, fn), kNoGroupWork);
}

// The same for the default `dn` (RectSq: φ = relu(t)², φ' = 2 relu(t); r = 1), whose lane_dot(c, q) after the
// sweep was ~5 % of its step at (1024, 512); each value as RectSq's scalar expressions (t > 0 ? … : 0)
__attribute__((noinline)) double sweep_units_dot_sq(const float* __restrict__ y, const float* __restrict__ g,
                                                    const float* __restrict__ beta, const float* __restrict__ c,
                                                    const float* __restrict__ gamma, float St, float m, float dl,
                                                    int64_t n, float* __restrict__ zb, float* __restrict__ qb,
                                                    float* __restrict__ vb, float* __restrict__ cg,
                                                    float* __restrict__ cb, float* __restrict__ cq,
                                                    float* __restrict__ cw, const RectSq<float>& fn,
                                                    const ROne<float>& dr) {
  const __m512 two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
  return sweep_dot_of<SRC_EVAL, true>(
      y, g, beta, c, gamma, St, m, dl, n, zb, qb, vb, cg, cb, cq, cw, nullptr, fn, dr,
      [&](int64_t, __m512 t) {
        const __mmask16 pos = _mm512_cmp_ps_mask(t, zero, _CMP_GT_OQ);
        const __m512 a = _mm512_maskz_mov_ps(pos, t), psi = _mm512_mul_ps(a, a);
        return GroupVals{psi, psi, _mm512_maskz_mul_ps(pos, two, t)};  // φ = ψ, φ' = 2 relu(t)
      },
      kNoGroupWork);
}

// grads_from_pm<float, true, true, true> (P_SAME): gy and α's row terms, and lane_sum of those terms
__attribute__((noinline)) double grads_from_pm_sum(const float* __restrict__ v, float gp,
                                                   const float* __restrict__ y, float m, float dl,
                                                   const float* __restrict__ pm, const float* __restrict__ lb,
                                                   const float* __restrict__ g, const float* __restrict__ gamma,
                                                   const float* __restrict__ z, float dp, float mean, int64_t n,
                                                   float* __restrict__ gy, float* __restrict__ out,
                                                   const VecPowFn<float, P_SAME>& fn) {
  const int64_t n16 = n & ~int64_t(15);
  const __m512 vm = _mm512_set1_ps(m), vdl = _mm512_set1_ps(dl), ka = _mm512_set1_ps(fn.ka),
               kb = _mm512_set1_ps(fn.kb), sneg = _mm512_set1_ps(fn.sneg), al = _mm512_set1_ps(fn.alpha),
               vgp = _mm512_set1_ps(gp), vdp = _mm512_set1_ps(dp), vmean = _mm512_set1_ps(mean),
               one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 pmv = _mm512_loadu_ps(pm + i);
    const __m512 t = t16(y + i, vm, vdl);
    const __mmask16 neg = _mm512_cmp_ps_mask(t, zero, _CMP_LT_OS);
    const __m512 dpsi = _mm512_mul_ps(_mm512_mask_blend_ps(neg, one, sneg), _mm512_mul_ps(al, pmv));
    _mm512_storeu_ps(gy + i, _mm512_sub_ps(_mm512_fmadd_ps(vgp, dpsi, _mm512_loadu_ps(v + i)), vmean));
    const __m512 psi = _mm512_mul_ps(mag16(t, ka, kb), pmv);
    const __m512 gg = _mm512_mul_ps(vdp, _mm512_mul_ps(_mm512_loadu_ps(g + i), _mm512_loadu_ps(gamma + i)));
    const __m512 o = _mm512_mul_ps(_mm512_loadu_ps(lb + i),
                                   _mm512_fmadd_ps(vgp, psi, _mm512_mul_ps(gg, _mm512_loadu_ps(z + i))));
    _mm512_storeu_ps(out + i, o);
    acc = add16(acc, o);
  }
  if (n16 < n)
    grads_from_pm<float, true, true, true>(v + n16, nullptr, gp, y + n16, m, dl, pm + n16, lb + n16, g + n16,
                                           gamma + n16, z + n16, dp, mean, n - n16, gy + n16, out + n16, fn);
  return lane_sum_tail(out, n, n16, acc);
}

// From kCompactFrom units (no committed run has a learned α that wide; the studies' rows are 100 units, and
// they keep the two loops above and their bits): ∂L/∂α's row share as gψ·Σ ln a·ψ + ∂p/∂α·Σ ln a·gz z, both
// sums taken in the first loop, which has ψ, gz and z at hand. The second loop is then gy alone (two loads and
// a store an element), and z and q are not stored for the row's full groups. The same gy, column sums and
// Σ c q as sweep_units_dot and grads_from_pm_sum (the same expressions); only α's gradient differs from theirs
// in its last bits (it sums the two products in 16 float lanes, then in double, where those loops rounded each
// element's L·(gψ ψ + ∂p/∂α gz z) to float and summed in double; both within ~1e-7–2e-6 of a float64 run on
// random rows, the lanes' error growing with n/16 and with cancellation, as ln a changes sign at a = 1; where a
// term overflows float, or gψ is not finite, the two can differ beyond rounding: one inf or NaN where the other is
// finite or NaN): at
// (1024, 512) float32 the raw backward 0.551 → 0.444 ms (A/B in one process; benchmarks/RESULTS.md, stop 42).
struct AlphaRowSums {
  double sq, lpsi, lgzz;  // lane_dot(c, q), Σ ln a·ψ, Σ ln a·gz z
};
__attribute__((noinline)) AlphaRowSums sweep_units_alpha(
    const float* __restrict__ y, const float* __restrict__ g, const float* __restrict__ beta,
    const float* __restrict__ c, const float* __restrict__ gamma, float St, float m, float dl, int64_t n,
    float* __restrict__ zb, float* __restrict__ qb, float* __restrict__ vb, float* __restrict__ cg,
    float* __restrict__ cb, float* __restrict__ cq, float* __restrict__ cw, const float* __restrict__ pm,
    const float* __restrict__ lb, const VecPowFn<float, P_SAME>& fn, const ROne<float>& dr) {
  __m512 apsi = _mm512_setzero_ps(), agzz = _mm512_setzero_ps();
  AlphaRowSums out{0, 0, 0};
  // sweep_units_dot's loop without z and q's stores for the whole groups, and ln a's sums beside it
  out.sq = sweep_dot_of<SRC_PM, false>(y, g, beta, c, gamma, St, m, dl, n, zb, qb, vb, cg, cb, cq, cw, pm, fn, dr,
                                       pm_group_values(pm, fn), [&](int64_t i, const GroupVals& e, __m512 gz, __m512 z) {
                                         const __m512 lv = _mm512_loadu_ps(lb + i);
                                         apsi = _mm512_fmadd_ps(lv, e.psi, apsi);
                                         agzz = _mm512_fmadd_ps(lv, _mm512_mul_ps(gz, z), agzz);
                                       });
  out.lpsi = finish_lanes(add16(_mm512_setzero_pd(), apsi), 0.0);
  out.lgzz = finish_lanes(add16(_mm512_setzero_pd(), agzz), 0.0);
  for (int64_t i = n & ~int64_t(15); i < n; ++i) {  // the tail (z stored there by the plain loop), in double
    const double l = lb[i];
    out.lpsi += l * fn.psi_from_pm((y[i] - m) - dl, pm[i]);
    out.lgzz += l * (g[i] * gamma[i] * zb[i]);
  }
  return out;
}

// grads_from_pm_sum's gy alone (sweep_units_alpha took α's sums): (v + gψ ψ') − mean. A rectified row's ψ' is
// α·a^(α−1) itself (its sign factor is 1 everywhere: the same product, 1·x = x), so RECT reads no y.
template <bool RECT>
__attribute__((noinline)) void gy_from_pm(const float* __restrict__ v, float gp, const float* __restrict__ y,
                                          float m, float dl, const float* __restrict__ pm, float mean, int64_t n,
                                          float* __restrict__ gy, const VecPowFn<float, P_SAME>& fn) {
  const int64_t n16 = n & ~int64_t(15);
  const __m512 vm = _mm512_set1_ps(m), vdl = _mm512_set1_ps(dl), sneg = _mm512_set1_ps(fn.sneg),
               al = _mm512_set1_ps(fn.alpha), vgp = _mm512_set1_ps(gp), vmean = _mm512_set1_ps(mean),
               one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n16; i += 16) {
    __m512 dpsi = _mm512_mul_ps(al, _mm512_loadu_ps(pm + i));
    if (!RECT) {
      const __mmask16 neg = _mm512_cmp_ps_mask(t16(y + i, vm, vdl), zero, _CMP_LT_OS);
      dpsi = _mm512_mul_ps(_mm512_mask_blend_ps(neg, one, sneg), dpsi);
    }
    _mm512_storeu_ps(gy + i, _mm512_sub_ps(_mm512_fmadd_ps(vgp, dpsi, _mm512_loadu_ps(v + i)), vmean));
  }
  if (n16 < n)
    grads_from_pm<float, true, true, false>(v + n16, nullptr, gp, y + n16, m, dl, pm + n16, nullptr, nullptr,
                                            nullptr, nullptr, 0.0f, mean, n - n16, gy + n16, nullptr, fn);
}
#endif

// gy rows [r0, r1) (gy_all may be null: parameters only); col: 4 × N partial column sums of this block;
// w_all (may be null: then recomputed): the forward's window sums or a^(α−1); l_all (may be null): the
// forward's ln a (with a^(α−1)); ga_all (may be null): each row's share of ∂L/∂α (a learned α; dp = ∂p/∂α)
template <typename T, int64_t KIND, typename Fn, typename R>
void backward_rows(const T* __restrict__ g_all, const T* __restrict__ y_all, const double* __restrict__ stats,
                   const T* __restrict__ w_all, const T* __restrict__ l_all, T* __restrict__ gy_all,
                   T* __restrict__ col, double* __restrict__ ga_all, T dp, int64_t r0, int64_t r1,
                   const Params<T>& P, const Fn fn, const R dr) {
  const int64_t n = P.n, size = P.before + 1 + P.after;
  Scratch<T> s(n, size - 1);
  const T* __restrict__ beta = P.beta;
  const T* __restrict__ c = P.c;
  const T* __restrict__ gamma = P.gamma;
  const bool bv = P.per_unit;
  const T mr = -P.r;
  T* __restrict__ zb = s.a.data();  // z
  T* __restrict__ qb = s.b.data();  // q
  T* __restrict__ vb = s.c.data();  // v = gz D^{−r} φ'(t)
  std::vector<T> wbuf(KIND == BAND ? n : 0), gpsi(KIND == UNIFORM ? 0 : n), abuf(ga_all != nullptr ? n : 0);
  // the kept power's (or ln a's) plane: the first (self, uniform) or, beside the band pool's window sums, the
  // second; and a learned α's ln a (the second plane beside a power; never with the band pool)
  const T* const pm_all = KIND == BAND ? l_all : w_all;
  const T* const la_all = KIND == BAND ? nullptr : l_all;
  // a kept power (and a learned α's ln a): the sweeps read it (SRC_PM), no table; a kept ln a: a table from it
  const bool from_pm = kKeepsPowers<Fn> && !kKeepsLog<Fn> && pm_all != nullptr &&
                       (ga_all == nullptr || la_all != nullptr);
  constexpr bool costly = kCostly<Fn>;  // else: tabulate each row's element values first
  const bool alpha_kept = costly && ga_all != nullptr;
#ifdef LATERALNORM_COMPACT_POWERS
  // a learned α's row sums in the first loop (sweep_units_alpha): uniform pool, β and c per unit, its ln a kept
  const bool alpha_sums_first = KIND == UNIFORM && bv && from_pm && la_all != nullptr && ga_all != nullptr &&
                                n >= kCompactFrom;
#endif
  std::vector<T> tb(costly && !from_pm ? 5 * n : 0);
  T* const t0 = tb.data();
  const Tab<T> tab = costly && !from_pm ? Tab<T>{t0, t0 + n, t0 + 2 * n, t0 + 3 * n, t0 + 4 * n} : Tab<T>{};
  for (int64_t row = r0; row < r1; ++row) {
    const T* __restrict__ y = y_all + row * n;
    const T* __restrict__ g = g_all + row * n;
    const T m = static_cast<T>(stats[3 * row]), dl = static_cast<T>(stats[3 * row + 1]);
    const T St = static_cast<T>(stats[3 * row + 2]);
    const T* wrow = nullptr;  // W per unit (band); uniform: St; self: ψ
    const T* __restrict__ pmr = from_pm ? pm_all + row * n : nullptr;
    const T* __restrict__ lrow = from_pm && la_all != nullptr ? la_all + row * n : nullptr;
    if (KIND == BAND) {
      if (w_all != nullptr) {
        wrow = w_all + row * n;
      } else {
        psi_of_row(y, m, dl, n, s.pad.data() + P.before, fn);
        window_sum(s.pad.data(), wbuf.data(), n, size);
        wrow = wbuf.data();
      }
    }
    // sweep 1: z, q and v per unit, and this block's column sums
    T* cg = col;
    T* cb = col == nullptr ? nullptr : col + n;
    T* cq = col == nullptr ? nullptr : col + 2 * n;
    T* cw = col == nullptr ? nullptr : col + 3 * n;
    if (costly && !from_pm) {  // the row's table: from the forward's a^(α−1) where it kept them (a learned α
      // without its ln a), else computed
      auto fill = [&](auto from_kept, const T* pmk) {
        constexpr bool F = decltype(from_kept)::value;
        if (alpha_kept)
          tabulate<T, true, F>(y, m, dl, pmk, n, tab.psi, tab.phi, tab.dpsi, tab.dphi, tab.L, fn);
        else
          tabulate<T, false, F>(y, m, dl, pmk, n, tab.psi, tab.phi, tab.dpsi, tab.dphi, nullptr, fn);
      };
      if constexpr (kKeepsPair<Fn>) {  // the general policy's two exps (E_α, E_p)
        if (la_all != nullptr && alpha_kept)  // ∂L/∂α asked of a forward that kept no ln a: one log again
          tabulate<T, true, false, Fn, true>(y, m, dl, pm_all + row * n, n, tab.psi, tab.phi, tab.dpsi, tab.dphi,
                                             tab.L, fn, la_all + row * n);
        else if (la_all != nullptr)
          tabulate<T, false, false, Fn, true>(y, m, dl, pm_all + row * n, n, tab.psi, tab.phi, tab.dpsi, tab.dphi,
                                              nullptr, fn, la_all + row * n);
        else if (pm_all != nullptr)
          fill(std::true_type{}, pm_all + row * n);
        else
          fill(std::false_type{}, nullptr);
      } else if constexpr (kKeepsPowers<Fn>) {
        if (pm_all != nullptr)
          fill(std::true_type{}, pm_all + row * n);
        else
          fill(std::false_type{}, nullptr);
      } else if constexpr (costly) {
        fill(std::false_type{}, nullptr);
      }
    }
    auto sweep = [&](auto rowconst, auto cols) {
      constexpr bool RC = decltype(rowconst)::value, CO = decltype(cols)::value;
      if constexpr (kKeepsPowers<Fn>) {
        if (from_pm) {
          sweep_units<T, KIND, RC, CO, SRC_PM>(y, g, beta, c, gamma, wrow, St, m, dl, n, zb, qb, vb, cg, cb, cq,
                                               cw, pmr, nullptr, nullptr, fn, dr);
          return;
        }
      }
      sweep_units<T, KIND, RC, CO, costly ? SRC_TAB : SRC_EVAL>(y, g, beta, c, gamma, wrow, St, m, dl, n, zb, qb,
                                                                vb, cg, cb, cq, cw, tab.psi, tab.phi, tab.dphi,
                                                                fn, dr);
    };
    using yes = std::true_type;
    using no = std::false_type;
    double sq_fused = 0;  // lane_dot(c, q) where sweep_units_dot (sweep_units_alpha) took it
    bool fused_sq = false;
    double lpsi = 0, lgzz = 0;  // sweep_units_alpha's sums for α's row share
    if constexpr (KIND == UNIFORM) {
      if (!bv) {
        col != nullptr ? sweep(yes{}, yes{}) : sweep(yes{}, no{});
      } else {
#ifdef LATERALNORM_COMPACT_POWERS
        if constexpr (std::is_same_v<T, float> && kFusedSums<Fn, R>) {
          if (from_pm && col != nullptr && alpha_sums_first) {
            const AlphaRowSums a =
                sweep_units_alpha(y, g, beta, c, gamma, St, m, dl, n, zb, qb, vb, cg, cb, cq, cw, pmr, lrow, fn, dr);
            sq_fused = a.sq;
            lpsi = a.lpsi;
            lgzz = a.lgzz;
            fused_sq = true;
          } else if (from_pm && col != nullptr) {
            sq_fused = sweep_units_dot(y, g, beta, c, gamma, St, m, dl, n, zb, qb, vb, cg, cb, cq, cw, pmr, fn, dr);
            fused_sq = true;
          }
        }
        if constexpr (std::is_same_v<T, float> && std::is_same_v<Fn, RectSq<float>> && std::is_same_v<R, ROne<float>>) {
          if (col != nullptr) {
            sq_fused = sweep_units_dot_sq(y, g, beta, c, gamma, St, m, dl, n, zb, qb, vb, cg, cb, cq, cw, fn, dr);
            fused_sq = true;
          }
        }
#endif
        if (!fused_sq) col != nullptr ? sweep(no{}, yes{}) : sweep(no{}, no{});
      }
    } else {
      col != nullptr ? sweep(no{}, yes{}) : sweep(no{}, no{});
    }
    if (gy_all == nullptr && ga_all == nullptr) continue;
    T* __restrict__ gy = gy_all == nullptr ? nullptr : gy_all + row * n;
    // gψ: one number for the row (uniform pool), else per unit
    T gp_row = T(0);
    const T* gp = nullptr;
    if (KIND == UNIFORM) {
      const double sq = fused_sq ? sq_fused : bv ? lane_dot(c, qb, n) : static_cast<double>(c[0]) * lane_sum(qb, n);
      gp_row = static_cast<T>(static_cast<double>(mr) * sq);
    } else if (KIND == SELF) {  // gψ = −r c q
      scaled_product(c, qb, mr, n, gpsi.data());
      gp = gpsi.data();
    } else {  // gψ = the mirrored window over gW = −r c q
      scaled_product(c, qb, mr, n, s.pad2.data() + P.after);
      window_sum(s.pad2.data(), gpsi.data(), n, size);
      gp = gpsi.data();
    }
    constexpr bool ROWGP = KIND == UNIFORM;
    if constexpr (kKeepsPowers<Fn>) {
      if (from_pm) {  // ψ' and ψ from the forward's a^(α−1): gy and α's terms in one loop
        // uniform pool: mean(gt) = (Σ v + gψ Σ ψ') / N before the loop; else the mean of gy after it
        T mean = T(0);
        if (ROWGP && gy != nullptr && P.center) {
          const double sd = dpsi_sum_pm(y, m, dl, pmr, n, fn);
          mean = static_cast<T>((lane_sum(vb, n) + static_cast<double>(gp_row) * sd) / static_cast<double>(n));
        }
        T* ab = ga_all != nullptr ? abuf.data() : nullptr;
#ifdef LATERALNORM_COMPACT_POWERS
        if constexpr (std::is_same_v<T, float> && ROWGP && kFusedSums<Fn, R>) {
          if (fused_sq && alpha_sums_first) {
            ga_all[row] = static_cast<double>(gp_row) * lpsi + static_cast<double>(dp) * lgzz;
            if (gy != nullptr)
              fn.rect ? gy_from_pm<true>(vb, gp_row, y, m, dl, pmr, mean, n, gy, fn)
                      : gy_from_pm<false>(vb, gp_row, y, m, dl, pmr, mean, n, gy, fn);
            continue;
          }
          if (gy != nullptr && ab != nullptr) {
            ga_all[row] = grads_from_pm_sum(vb, gp_row, y, m, dl, pmr, lrow, g, gamma, zb, dp, mean, n, gy, ab, fn);
            continue;  // no center term here: the uniform pool's mean came before the loop
          }
        }
#endif
        if (gy != nullptr && ab != nullptr)
          grads_from_pm<T, ROWGP, true, true>(vb, gp, gp_row, y, m, dl, pmr, lrow, g, gamma, zb, dp, mean, n, gy, ab, fn);
        else if (gy != nullptr)
          grads_from_pm<T, ROWGP, true, false>(vb, gp, gp_row, y, m, dl, pmr, lrow, g, gamma, zb, dp, mean, n, gy, ab, fn);
        else
          grads_from_pm<T, ROWGP, false, true>(vb, gp, gp_row, y, m, dl, pmr, lrow, g, gamma, zb, dp, mean, n, gy, ab, fn);
        if (ab != nullptr) ga_all[row] = lane_sum(ab, n);
        if (!ROWGP && gy != nullptr && P.center) {
          const T mg = static_cast<T>(lane_sum(gy, n) / static_cast<double>(n));
          for (int64_t i = 0; i < n; ++i) gy[i] -= mg;
        }
        continue;
      }
    }
    if (ga_all != nullptr) {
      if (alpha_kept)
        alpha_terms_kept<T, ROWGP>(tab.L, tab.psi, gp, gp_row, g, gamma, zb, dp, n, abuf.data());
      else
        alpha_terms<T, ROWGP>(y, m, dl, gp, gp_row, g, gamma, zb, dp, n, abuf.data(), fn, P.rect);
      ga_all[row] = lane_sum(abuf.data(), n);
    }
    if (gy == nullptr) continue;
    if (KIND == UNIFORM) {  // mean(gt) = (Σ v + gψ Σ ψ') / N
      T mean = T(0);
      if constexpr (costly) {  // ψ'(t) from the row's table, for the mean and for gy
        const T* __restrict__ dpsr = tab.dpsi;
        if (P.center) {
          const double sd = lane_sum(dpsr, n);
          mean = static_cast<T>((lane_sum(vb, n) + static_cast<double>(gp_row) * sd) / static_cast<double>(n));
        }
        for (int64_t i = 0; i < n; ++i) gy[i] = (vb[i] + gp_row * dpsr[i]) - mean;
      } else {  // the cheap policies: ψ'(t) computed where it is used (no scratch traffic), same sums
        if (P.center) {
          double ad[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sd = 0;
          int64_t i = 0;
          for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; ++k) ad[k] += static_cast<double>(fn.dpsi((y[i + k] - m) - dl));
          for (; i < n; ++i) sd += static_cast<double>(fn.dpsi((y[i] - m) - dl));
          for (int k = 0; k < 8; ++k) sd += ad[k];
          mean = static_cast<T>((lane_sum(vb, n) + static_cast<double>(gp_row) * sd) / static_cast<double>(n));
        }
        for (int64_t i = 0; i < n; ++i) gy[i] = (vb[i] + gp_row * fn.dpsi((y[i] - m) - dl)) - mean;
      }
      continue;
    }
    if (costly)
      input_grad_kept(vb, gp, tab.dpsi, n, gy);
    else
      input_grad(vb, gp, y, m, dl, n, gy, fn);
    if (P.center) {
      const T mean = static_cast<T>(lane_sum(gy, n) / static_cast<double>(n));
      for (int64_t i = 0; i < n; ++i) gy[i] -= mean;
    }
  }
}

// The blocks' partial column sums, part (blocks, 4, N), added in block order in double (no dependence on
// threads, and no (blocks, 4, N) double temporary): four (N,) tensors in part's dtype, each only where asked
// (`want`, else undefined), each its own tensor (a parameter's gradient as it is, no copy).
std::array<at::Tensor, 4> block_column_sums(const at::Tensor& part, const std::array<bool, 4>& want) {
  const int64_t blocks = part.size(0), n = part.size(2);
  std::array<at::Tensor, 4> sums;
  AT_DISPATCH_FLOATING_TYPES(part.scalar_type(), "dn_block_column_sums", [&] {
    using T = scalar_t;
    const T* pp = part.data_ptr<T>();
    std::vector<double> acc(static_cast<size_t>(n));
    for (int64_t w = 0; w < 4; ++w) {
      if (!want[w]) continue;
      sums[w] = at::empty({n}, part.options());
      T* o = sums[w].data_ptr<T>();
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t b = 0; b < blocks; ++b) {
        const T* row = pp + (b * 4 + w) * n;
        for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<double>(row[i]);
      }
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(acc[i]);
    }
  });
  return sums;
}

// ---------------------------------------------------------------------------------------------- dispatch
struct Cfg {
  int64_t kind;
  bool center, rect;
  double alpha, p, r;
  int64_t before, after;
};

// p = α > 1 with α ≠ 2: the policy that computes everything from a^(α−1) (VecPowFn<T, P_SAME>)
bool p_same(const Cfg& cfg) { return cfg.alpha > 1.0 && cfg.alpha != 2.0 && cfg.p == cfg.alpha; }

// α = 1 or 2 with p > 1, p ≠ 2: ψ exact, φ and φ' from a^(p−1) (VecPowFn<T, P_A1K / P_A2K>)
bool int_alpha_p_above_one(const Cfg& cfg) {
  return (cfg.alpha == 1.0 || cfg.alpha == 2.0) && cfg.p > 1.0 && cfg.p != 2.0;
}

// Calls f(fn) with the element policy that fits cfg (φ, ψ from the exponents).
template <typename T, typename F>
void with_fn(const Cfg& cfg, F&& f) {
  if (!cfg.rect && cfg.alpha == 2.0 && cfg.p == 1.0)
    f(SignedSq<T>{});
  else if (cfg.rect && cfg.alpha == 2.0 && cfg.p == 2.0)
    f(RectSq<T>{});
  else if (cfg.rect && cfg.alpha == 2.0 && cfg.p == 1.0)
    f(RectSqP1<T>{});
  else if (cfg.rect && cfg.alpha == 1.0 && cfg.p == 1.0)
    f(RectLin<T>{});
  else if (cfg.alpha != 1.0 && cfg.alpha != 2.0 && cfg.p == 1.0)
    f(VecPowFn<T, P_ONE>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (p_same(cfg))
    f(VecPowFn<T, P_SAME>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (!cfg.rect && cfg.alpha == 1.0 && cfg.p == 1.0)
    f(IntPowFn<T, false, 1, 1>{});
  else if (!cfg.rect && cfg.alpha == 1.0 && cfg.p == 2.0)
    f(IntPowFn<T, false, 1, 2>{});
  else if (!cfg.rect && cfg.alpha == 2.0 && cfg.p == 2.0)
    f(IntPowFn<T, false, 2, 2>{});
  else if (cfg.rect && cfg.alpha == 1.0 && cfg.p == 2.0)
    f(IntPowFn<T, true, 1, 2>{});
  else if (int_alpha_p_above_one(cfg) && cfg.alpha == 2.0 && cfg.p == 1.5)
    f(VecPowFn<T, P_A2KH>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (int_alpha_p_above_one(cfg) && cfg.alpha == 2.0)
    f(VecPowFn<T, P_A2K>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (int_alpha_p_above_one(cfg) && cfg.p == 1.5)
    f(VecPowFn<T, P_A1KH>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (int_alpha_p_above_one(cfg))
    f(VecPowFn<T, P_A1K>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (cfg.alpha == 2.0 && cfg.p == 0.5)
    f(VecPowFn<T, P_A2H>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (cfg.alpha == 2.0)  // p < 1 here
    f(VecPowFn<T, P_A2>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (cfg.alpha == 1.0 && cfg.p == 0.5)
    f(VecPowFn<T, P_A1H>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (cfg.alpha == 1.0)
    f(VecPowFn<T, P_A1>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else if (cfg.p == cfg.alpha)  // α < 1 here (p = α > 1 is p_same)
    f(VecPowFn<T, P_SAME_LOW>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
  else  // every other pair (p = 2 with a general α included)
    f(VecPowFn<T, P_GENERAL>{cfg.rect, static_cast<T>(cfg.alpha), static_cast<T>(cfg.p)});
}

// What the policy with_fn picks for cfg keeps per element: one value (kKeepsPowers), that value being ln a itself
// (kKeepsLog), the general policy's two exps instead (kKeepsPair): read off the dispatch, so the rules below
// cannot drift from it.
struct Keeps {
  bool powers, log, pair;
};
Keeps policy_keeps(const Cfg& cfg) {
  Keeps k{false, false, false};
  with_fn<float>(cfg, [&](auto fn) {
    using F = decltype(fn);
    k = Keeps{kKeepsPowers<F>, kKeepsLog<F>, kKeepsPair<F>};
  });
  return k;
}
bool keeps_powers(const Cfg& cfg) { return policy_keeps(cfg).powers; }

// Whether the forward keeps a second (M, N) tensor for the backward when asked (save_w): the band pool's
// window sums, or an exp/log policy's value per element (the backward then needs no log, and no exp where the
// value is a power).
bool keeps_rowwise(const Cfg& cfg) { return cfg.kind == BAND || keeps_powers(cfg); }

// Whether that tensor also holds the elements' ln a, as (2, M, N) = (power, ln a), when asked (save_log: a
// learned α, whose gradient needs ln a): with a power kept (self or uniform pool), so the backward takes no log.
bool keeps_log(const Cfg& cfg, bool save_log) {
  const Keeps k = policy_keeps(cfg);
  return save_log && cfg.kind != BAND && k.powers && !k.log;
}

// Whether the general policy keeps its two exps (E_α, E_p) as (2, M, N) instead of ln a: the self and uniform
// pools without a learned α (whose gradient reads ln a), so that the backward takes no exp.
bool keeps_pair(const Cfg& cfg) { return cfg.kind != BAND && policy_keeps(cfg).pair; }

// Whether the kept tensor is (2, M, N): ln a beside a power (keeps_log), the general policy's two exps
// (keeps_pair), or with the band pool and an exp/log policy the elements' kept power (or ln a) beside the window
// sums, so that its backward takes no log either; not for a learned α (save_log: its backward takes ψ and ln a
// again, as the stored runs did).
bool keeps_two_planes(const Cfg& cfg, bool save_log) {
  if (cfg.kind == BAND) return !save_log && keeps_powers(cfg);
  return keeps_log(cfg, save_log) || (!save_log && keeps_pair(cfg));
}

// Calls f(fn, dr) with the element and D^{−r} policies that fit cfg.
template <typename T, typename F>
void with_fn_r(const Cfg& cfg, F&& f) {
  with_fn<T>(cfg, [&](auto fn) {
    if (cfg.r == 0.5)
      f(fn, RHalf<T>{});
    else if (cfg.r == 1.0)
      f(fn, ROne<T>{});
    else if (cfg.r == 0.75)
      f(fn, RThreeQuarters<T>{});
    else
      f(fn, RGeneral<T>{static_cast<T>(-cfg.r)});
  });
}

// Calls f(kind_tag, fn, dr) with the pool kind and the policies that fit cfg.
template <typename T, typename F>
void with_policies(const Cfg& cfg, F&& f) {
  with_fn_r<T>(cfg, [&](auto fn, auto dr) {
    if (cfg.kind == SELF)
      f(std::integral_constant<int64_t, SELF>{}, fn, dr);
    else if (cfg.kind == UNIFORM)
      f(std::integral_constant<int64_t, UNIFORM>{}, fn, dr);
    else
      f(std::integral_constant<int64_t, BAND>{}, fn, dr);
  });
}

Cfg make_cfg(int64_t kind, bool center, bool rect, double alpha, double p, double r, int64_t before,
             int64_t after) {
  TORCH_CHECK(kind >= 0 && kind <= 2, "dn kernel: kind must be 0 (self), 1 (uniform) or 2 (band)");
  TORCH_CHECK(alpha > 0 && p > 0 && r > 0, "dn kernel: exponents must be positive");
  TORCH_CHECK(before >= 0 && after >= 0, "dn kernel: window sizes must be non-negative");
  return Cfg{kind, center, rect, alpha, p, r, before, after};
}

void check_vec(const at::Tensor& v, const at::Tensor& y, int64_t n, const char* name, bool allow_one) {
  TORCH_CHECK(v.dim() == 1 && v.is_contiguous() && (v.size(0) == n || (allow_one && v.size(0) == 1)),
              "dn kernel: ", name, " must be contiguous with shape (", n, ")", allow_one ? " or (1)" : "",
              ", got ", v.sizes());
  TORCH_CHECK(v.scalar_type() == y.scalar_type() && v.device() == y.device(), "dn kernel: ", name,
              " must match the input's dtype and device");
}

template <typename T>
Params<T> make_params(const at::Tensor& beta, const at::Tensor& c, const at::Tensor& gamma,
                      const at::Tensor& bias, const Cfg& cfg, int64_t n) {
  TORCH_CHECK(beta.size(0) == c.size(0), "dn kernel: beta and c must both be per unit or both shared");
  TORCH_CHECK(beta.size(0) == n || cfg.kind == UNIFORM, "dn kernel: shared beta and c need the uniform pool");
  return Params<T>{beta.data_ptr<T>(), c.data_ptr<T>(), beta.size(0) > 1, gamma.data_ptr<T>(),
                   bias.data_ptr<T>(), n, cfg.before, cfg.after, static_cast<T>(cfg.r), cfg.center, cfg.rect};
}

// All rows of the O(N) pool forward / backward for one dtype (the bulk of this file's compile time: every pool ×
// element policy × D^{−r} policy). Called with float here; with double through rows_forward_f64 /
// rows_backward_f64, defined in dn_rows_f64.cpp (this file compiled again with LN_DN_ROWS_F64 defined), so that
// the two halves compile in parallel.
template <typename T>
void forward_all(const Cfg& cfg, const T* yp, T* op, double* sp, T* wp, T* lp, int64_t m, const Params<T>& P) {
  const int64_t grain = std::max<int64_t>(1, 16384 / P.n);
  with_policies<T>(cfg, [&](auto kind_tag, auto fn, auto dr) {
    constexpr int64_t K = decltype(kind_tag)::value;
    at::parallel_for(0, m, grain, [&](int64_t r0, int64_t r1) {
      forward_rows<T, K>(yp, op, sp, wp, lp, r0, r1, P, fn, dr);
    });
  });
}
template <typename T>
void backward_all(const Cfg& cfg, const T* gp, const T* yp, const double* sp, const T* wp, const T* lp, T* gyp,
                  T* pp, double* gap, T dp, int64_t m, const Params<T>& P) {
  const int64_t n = P.n, blocks = (m + BLOCK - 1) / BLOCK;
  with_policies<T>(cfg, [&](auto kind_tag, auto fn, auto dr) {
    constexpr int64_t K = decltype(kind_tag)::value;
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        backward_rows<T, K>(gp, yp, sp, wp, lp, gyp, pp == nullptr ? nullptr : pp + b * 4 * n, gap, dp,
                            b * BLOCK, std::min<int64_t>(m, (b + 1) * BLOCK), P, fn, dr);
    });
  });
}
// Params<double> from plain arguments (the f64 entry points take only builtin types: no type of this file's
// unnamed namespace crosses between the two translation units)
inline Params<double> params_f64(const double* beta, const double* c, bool per_unit, const double* gamma,
                                 const double* bias, int64_t n, const Cfg& cfg) {
  return Params<double>{beta, c, per_unit, gamma, bias, n, cfg.before, cfg.after, cfg.r, cfg.center, cfg.rect};
}

}  // namespace

#define LN_CFG_ARGS int64_t kind, bool center, bool rect, double alpha, double p, double r, int64_t before, int64_t after
#define LN_PARAM_ARGS const double *beta, const double *c, bool per_unit, const double *gamma, const double *bias, int64_t n
void rows_forward_f64(LN_CFG_ARGS, LN_PARAM_ARGS, const double* yp, double* op, double* sp, double* wp,
                      double* lp, int64_t m);
void rows_backward_f64(LN_CFG_ARGS, LN_PARAM_ARGS, const double* gp, const double* yp, const double* sp,
                       const double* wp, const double* lp, double* gyp, double* pp, double* gap, double dp,
                       int64_t m);

#ifdef LN_DN_ROWS_F64
void rows_forward_f64(LN_CFG_ARGS, LN_PARAM_ARGS, const double* yp, double* op, double* sp, double* wp,
                      double* lp, int64_t m) {
  const Cfg cfg{kind, center, rect, alpha, p, r, before, after};
  forward_all<double>(cfg, yp, op, sp, wp, lp, m, params_f64(beta, c, per_unit, gamma, bias, n, cfg));
}
void rows_backward_f64(LN_CFG_ARGS, LN_PARAM_ARGS, const double* gp, const double* yp, const double* sp,
                       const double* wp, const double* lp, double* gyp, double* pp, double* gap, double dp,
                       int64_t m) {
  const Cfg cfg{kind, center, rect, alpha, p, r, before, after};
  backward_all<double>(cfg, gp, yp, sp, wp, lp, gyp, pp, gap, dp, m,
                       params_f64(beta, c, per_unit, gamma, bias, n, cfg));
}
#else  // the rest of the kernel: its entry points, compiled once

// a matrix layer node's source value and gradient (defined below, after the NonNeg arithmetic; exp_rows.cpp's too)
at::Tensor source_value(const at::Tensor& src, double bound, double pedestal);
at::Tensor source_grad(const at::Tensor& g, const at::Tensor& src, double bound);
// lowrank_product.cpp's K-thin products: (W, t) = ((ψ V) Uᵀ, ψ V) and (gψ, gU, gV) (LowRankRowsNode below)
std::tuple<at::Tensor, at::Tensor> lowrank_product_forward(const at::Tensor& psi, const at::Tensor& u,
                                                           const at::Tensor& v);
std::tuple<at::Tensor, at::Tensor, at::Tensor> lowrank_product_backward(const at::Tensor& gw, const at::Tensor& psi,
                                                                        const at::Tensor& t, const at::Tensor& u,
                                                                        const at::Tensor& v, bool need_psi,
                                                                        bool need_u, bool need_v);

namespace {

// forward_all / backward_all for T: float here, double in dn_rows_f64.cpp
template <typename T>
void run_forward(const Cfg& cfg, const T* yp, T* op, double* sp, T* wp, T* lp, int64_t m, const Params<T>& P) {
  if constexpr (std::is_same_v<T, double>)
    rows_forward_f64(cfg.kind, cfg.center, cfg.rect, cfg.alpha, cfg.p, cfg.r, cfg.before, cfg.after, P.beta, P.c,
                     P.per_unit, P.gamma, P.bias, P.n, yp, op, sp, wp, lp, m);
  else
    forward_all<T>(cfg, yp, op, sp, wp, lp, m, P);
}
template <typename T>
void run_backward(const Cfg& cfg, const T* gp, const T* yp, const double* sp, const T* wp, const T* lp, T* gyp,
                  T* pp, double* gap, T dp, int64_t m, const Params<T>& P) {
  if constexpr (std::is_same_v<T, double>)
    rows_backward_f64(cfg.kind, cfg.center, cfg.rect, cfg.alpha, cfg.p, cfg.r, cfg.before, cfg.after, P.beta,
                      P.c, P.per_unit, P.gamma, P.bias, P.n, gp, yp, sp, wp, lp, gyp, pp, gap, dp, m);
  else
    backward_all<T>(cfg, gp, yp, sp, wp, lp, gyp, pp, gap, dp, m, P);
}

// Returns (out, stats, w): stats (M, 3) float64 = (row mean rounded to T, the rest δ, uniform pool's Σψ);
// w (M, N) when save_w and `keeps_rowwise`: the band pool's window sums (they cost a full recompute in the
// backward), or an exp/log policy's value per element; (2, M, N) with a second plane (`keeps_two_planes`): ln a
// beside a power, the general policy's (E_α, E_p), or the band pool's window sums and the elements' kept value;
// else empty.
std::vector<at::Tensor> forward(const at::Tensor& y, const at::Tensor& beta, const at::Tensor& c,
                                const at::Tensor& gamma, const at::Tensor& bias, int64_t kind, bool center,
                                bool rect, double alpha, double p, double r, int64_t before, int64_t after,
                                bool save_w, bool save_log) {
  TORCH_CHECK(y.dim() == 2 && y.device().is_cpu() && y.is_contiguous(),
              "dn kernel: y must be a contiguous 2-D CPU tensor");
  const Cfg cfg = make_cfg(kind, center, rect, alpha, p, r, before, after);
  const int64_t m = y.size(0), n = y.size(1);
  check_vec(beta, y, n, "beta", true);
  check_vec(c, y, n, "c", true);
  check_vec(gamma, y, n, "gamma", false);
  check_vec(bias, y, n, "bias", false);
  at::Tensor out = at::empty_like(y);
  at::Tensor stats = at::zeros({m, 3}, y.options().dtype(at::kDouble));
  at::Tensor w = !(save_w && keeps_rowwise(cfg)) ? at::Tensor()
                 : keeps_two_planes(cfg, save_log) ? at::empty({2, m, n}, y.options())
                                                  : at::empty_like(y);
  if (m == 0 || n == 0) return {out, stats, w};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dn_rows_forward", [&] {
    using T = scalar_t;
    const Params<T> P = make_params<T>(beta, c, gamma, bias, cfg, n);
    const T* yp = y.data_ptr<T>();
    T* op = out.data_ptr<T>();
    double* sp = stats.data_ptr<double>();
    T* wp = w.defined() ? w.data_ptr<T>() : nullptr;
    T* lp = w.defined() && w.dim() == 3 ? wp + m * n : nullptr;
    run_forward<T>(cfg, yp, op, sp, wp, lp, m, P);
  });
  return {out, stats, w};
}

// Returns (gy, Σ g z, Σ g, Σ q, Σ q W, ∂L/∂α): the sums are (N,), ∂L/∂α a (1,) float64 tensor (a learned α;
// dp = ∂p/∂α), each filled only when asked (else empty tensors).
std::vector<at::Tensor> backward(const at::Tensor& g_in, const at::Tensor& y, const at::Tensor& stats,
                                 const c10::optional<at::Tensor>& w_saved, const at::Tensor& beta, const at::Tensor& c, const at::Tensor& gamma,
                                 int64_t kind, bool center, bool rect, double alpha, double p, double r,
                                 int64_t before, int64_t after, bool need_y, bool need_gamma, bool need_bias,
                                 bool need_beta, bool need_c, bool need_alpha, double dp) {
  TORCH_CHECK(y.dim() == 2 && y.device().is_cpu() && y.is_contiguous(),
              "dn kernel: y must be a contiguous 2-D CPU tensor");
  TORCH_CHECK(g_in.sizes() == y.sizes(), "dn kernel: grad and input shapes differ");
  const Cfg cfg = make_cfg(kind, center, rect, alpha, p, r, before, after);
  const int64_t m = y.size(0), n = y.size(1);
  TORCH_CHECK(stats.dim() == 2 && stats.size(0) == m && stats.size(1) == 3 &&
                  stats.scalar_type() == at::kDouble && stats.is_contiguous(),
              "dn kernel: stats must be the forward's (M, 3) float64 tensor");
  at::Tensor g = g_in.contiguous().to(y.scalar_type());
  const bool has_w = w_saved.has_value() && w_saved->defined() && w_saved->numel() > 0;
  // (a power, ln a), the general policy's (E_α, E_p), or the band pool's (W, a power)
  const bool has_log = has_w && w_saved->dim() == 3;
  TORCH_CHECK(!has_w || ((has_log ? w_saved->numel() == 2 * y.numel() && w_saved->size(0) == 2 &&
                                        w_saved->size(1) == y.size(0) && w_saved->size(2) == y.size(1) &&
                                        (cfg.kind == BAND ? keeps_two_planes(cfg, false)
                                                          : keeps_log(cfg, true) || keeps_pair(cfg))
                                  : w_saved->sizes() == y.sizes()) &&
                         w_saved->is_contiguous() && w_saved->scalar_type() == y.scalar_type()),
              "dn kernel: w must be the forward's kept tensor for this configuration");
  check_vec(beta, y, n, "beta", true);
  check_vec(c, y, n, "c", true);
  check_vec(gamma, y, n, "gamma", false);
  at::Tensor gy = need_y ? at::empty_like(y) : at::Tensor();
  const bool need_col[4] = {need_gamma, need_bias, need_beta, need_c};
  const bool any_col = need_gamma || need_bias || need_beta || need_c;
  const int64_t blocks = (m + BLOCK - 1) / BLOCK;
  at::Tensor part = any_col ? at::zeros({std::max<int64_t>(blocks, 1), 4, n}, y.options()) : at::Tensor();  // (blocks, 4, N)
  at::Tensor ga_rows = need_alpha ? at::zeros({m}, y.options().dtype(at::kDouble)) : at::Tensor();  // (M,)
  std::vector<at::Tensor> res(6);
  res[0] = gy;
  if (m == 0 || n == 0) {
    for (int w = 0; w < 4; ++w) res[w + 1] = need_col[w] ? at::zeros({n}, y.options()) : at::Tensor();
    if (need_alpha) res[5] = at::zeros({1}, y.options().dtype(at::kDouble));
    return res;
  }
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dn_rows_backward", [&] {
    using T = scalar_t;
    const Params<T> P = make_params<T>(beta, c, gamma, gamma, cfg, n);
    const T* yp = y.data_ptr<T>();
    const T* gp = g.data_ptr<T>();
    const double* sp = stats.data_ptr<double>();
    T* gyp = need_y ? gy.data_ptr<T>() : nullptr;
    T* pp = any_col ? part.data_ptr<T>() : nullptr;
    const T* wp = has_w ? w_saved->data_ptr<T>() : nullptr;
    const T* lp = has_log ? wp + m * n : nullptr;
    double* gap = need_alpha ? ga_rows.data_ptr<double>() : nullptr;
    run_backward<T>(cfg, gp, yp, sp, wp, lp, gyp, pp, gap, static_cast<T>(dp), m, P);
  });
  if (need_alpha) {  // the rows' shares added in row order, in double (no dependence on threads)
    const double* ga = ga_rows.data_ptr<double>();
    double total = 0;
    for (int64_t i = 0; i < m; ++i) total += ga[i];
    res[5] = at::full({1}, total, y.options().dtype(at::kDouble));
  }
  if (any_col) {
    const std::array<at::Tensor, 4> sums = block_column_sums(part, {need_col[0], need_col[1], need_col[2], need_col[3]});
    for (int w = 0; w < 4; ++w) res[w + 1] = sums[w];
  }
  return res;
}

// ------------------------------------------------------------------------------ a pool given as a matrix
// κ gaussian, low-rank or full: the pool W = κ ψ is a matrix product, which torch's GEMM does best, so the
// kernel does the element work on either side of it (no autograd temporaries for the dozen element ops):
//   psi_rows:           ψ = ψ(t) and the rows' means            (backward: gy = gψ ψ'(t), centered)
//   given_pool_forward: out = γ φ(t) (β + W)^{−r} + b         (backward: v (centered), gW = −r q, Σ g z, Σ g, Σ q)
// Autograd joins them through the pool's own ops (its matmuls and κ's parametrization).
// (ψ, stats, kept): with `keep` and an exp/log policy of a general α (kMatrixKeeps), also the power each
// element's ψ came from (pm_of_row's, the O(N) forward's kept value: a^(α−1), or ln a), which the element work
// after the pool and both backwards read instead of taking the log and exp again (the same bits); else an empty
// tensor.
std::vector<at::Tensor> psi_rows_kept(const at::Tensor& y_in, bool center, bool rect, double alpha, double p,
                                      bool keep) {
  at::Tensor y = y_in.contiguous();
  TORCH_CHECK(y.dim() == 2 && y.device().is_cpu(), "dn kernel: y must be a 2-D CPU tensor");
  const Cfg cfg = make_cfg(UNIFORM, center, rect, alpha, p, 1.0, 0, 0);
  const int64_t m = y.size(0), n = y.size(1);
  at::Tensor psi = at::empty_like(y);
  at::Tensor stats = at::zeros({m, 3}, y.options().dtype(at::kDouble));
  bool keeps = false;
  with_fn<float>(cfg, [&](auto fn) { keeps = keep && kMatrixKeeps<decltype(fn)>; });
  at::Tensor kept = keeps ? at::empty_like(y) : at::empty({0}, y.options());
  if (m == 0 || n == 0) return {psi, stats, kept};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dn_psi_rows", [&] {
    using T = scalar_t;
    const T* yp = y.data_ptr<T>();
    T* pp = psi.data_ptr<T>();
    T* kp = kept.numel() > 0 ? kept.data_ptr<T>() : nullptr;
    double* sp = stats.data_ptr<double>();
    with_fn<T>(cfg, [&](auto fn) {
      with_kept(fn, kp, [&](auto from_pm) {
        constexpr bool KEEP = decltype(from_pm)::value;
        at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
          for (int64_t row = r0; row < r1; ++row) {
            const Mean<T> mu = row_mean(yp + row * n, n, center);
            if constexpr (KEEP)
              pm_of_row<T, true, false>(yp + row * n, mu.m, mu.delta, n, kp + row * n, pp + row * n, nullptr, fn);
            else
              psi_of_row(yp + row * n, mu.m, mu.delta, n, pp + row * n, fn);
            sp[3 * row] = static_cast<double>(mu.m);
            sp[3 * row + 1] = static_cast<double>(mu.delta);
          }
        });
      });
    });
  });
  return {psi, stats, kept};
}

std::vector<at::Tensor> psi_rows(const at::Tensor& y_in, bool center, bool rect, double alpha, double p) {
  std::vector<at::Tensor> res = psi_rows_kept(y_in, center, rect, alpha, p, false);
  return {res[0], res[1]};
}

// A kept power's pointer (psi_rows_kept's; null where none was kept), checked against the input.
template <typename T>
const T* kept_ptr(const c10::optional<at::Tensor>& kept, const at::Tensor& y) {
  if (!kept.has_value() || !kept->defined() || kept->numel() == 0) return nullptr;
  TORCH_CHECK(kept->sizes() == y.sizes() && kept->is_contiguous() && kept->scalar_type() == y.scalar_type(),
              "dn kernel: a kept power must be psi_rows' own, like the input");
  return kept->data_ptr<T>();
}

// A learned α's gradient for a matrix pool's element work, one row at a time:
//   Σ ln a · (gψ ψ + dp · g (out − b))
// over the elements. a = |t| or relu(t), t from y and psi_rows' stats as the kernel takes it. ln a is taken as 0 at
// a = 0, where ψ = φ = 0. ψ's node gives gψ and ψ; the output node gives g, out and b (dp = ∂p/∂α, 0: no such
// term, and then g, out and b may be undefined). One log per element. Each row's sum is taken in double, and the
// rows are added in row order, so the result does not depend on the thread count. Returns a (1,) float64 tensor.
template <typename T, bool OUT_TERM, bool CENTER, bool RECT>
__attribute__((noinline)) double alpha_log_row(const T* __restrict__ y, T m, T dl,
                                               const T* __restrict__ gpsi, const T* __restrict__ psi,
                                               const T* __restrict__ g, const T* __restrict__ out,
                                               const T* __restrict__ b, T dp, int64_t n, T* __restrict__ buf) {
  for (int64_t i = 0; i < n; ++i) {
    const T t = CENTER ? (y[i] - m) - dl : y[i];
    // relu(t) as (t + |t|)/2 (exact): a select here kept GCC from vectorizing the loop (a scalar log, 10× the time)
    const T a = RECT ? T(0.5) * (t + std::abs(t)) : std::abs(t);
    T v = gpsi[i] * psi[i];
    if (OUT_TERM) v += dp * (g[i] * (out[i] - b[i]));
    buf[i] = ln_pos(a) * v;
  }
  return lane_sum(buf, n);
}

#ifdef LATERALNORM_COMPACT_POWERS
// alpha_log_row for a rectified float row of kCompactFrom units or more (AVX-512): the logs only where a > 0 (or
// NaN), gathered into glibc's 16-lane calls as compact_powers gathers them (a ≤ 0 gets ln_pos's log 1 = +0, put
// back as the expand's zero), and the row's lane_sum taken in the loop that makes each term. Each element's log
// is the same 16-lane function's (the full groups of 16; the tail stays with alpha_log_row's own loop), v the
// expression GCC made of the plain loop's (fma(gψ, ψ, dp·(g·(out − b)))), and the sum's lanes in lane_sum's
// order: the same bits (kernel_bits.py). About half a rectified row is zero: half the calls, and no second pass
// over the terms for their sum.
template <bool OUT_TERM, bool CENTER>
__attribute__((noinline)) double alpha_log_row_compacted(const float* __restrict__ y, float m, float dl,
                                                         const float* __restrict__ gpsi, const float* __restrict__ psi,
                                                         const float* __restrict__ g, const float* __restrict__ out,
                                                         const float* __restrict__ b, float dp, int64_t n,
                                                         float* __restrict__ buf) {
  const int64_t n16 = n & ~int64_t(15);
  constexpr int64_t kStackUnits = 1024;  // as compact_powers: stack scratch up to 1024 units
  alignas(64) float local[kStackUnits + 16];
  float* __restrict__ lc = compact_scratch(local, kStackUnits + 16, n16 + 16);
  const __m512 vm = _mm512_set1_ps(m), vdl = _mm512_set1_ps(dl), half = _mm512_set1_ps(0.5f),
               vdp = _mm512_set1_ps(dp), zero = _mm512_setzero_ps();
  auto mag = [&](int64_t i) {  // a = 0.5·(t + |t|), t as alpha_log_row takes it
    const __m512 t = CENTER ? t16(y + i, vm, vdl) : _mm512_loadu_ps(y + i);
    return _mm512_mul_ps(half, _mm512_add_ps(t, _mm512_abs_ps(t)));
  };
  gathered_logs(n16, lc, mag);
  __m512d acc = _mm512_setzero_pd();
  int64_t k = 0;
  for (int64_t i = 0; i < n16; i += 16) {
    const __mmask16 take = _mm512_cmp_ps_mask(mag(i), zero, _CMP_NLE_UQ);
    const __m512 gv = _mm512_loadu_ps(gpsi + i), pv = _mm512_loadu_ps(psi + i);
    __m512 v;
    if constexpr (OUT_TERM) {
      const __m512 w = _mm512_mul_ps(_mm512_loadu_ps(g + i),
                                     _mm512_sub_ps(_mm512_loadu_ps(out + i), _mm512_loadu_ps(b + i)));
      v = _mm512_fmadd_ps(gv, pv, _mm512_mul_ps(vdp, w));
    } else {
      v = _mm512_mul_ps(gv, pv);
    }
    acc = add16(acc, _mm512_mul_ps(expand_from(take, lc + k), v));
    k += __builtin_popcount(static_cast<unsigned>(take));
  }
  if (n16 < n)  // the tail by the plain loop, its sum continued in order
    alpha_log_row<float, OUT_TERM, CENTER, true>(y + n16, m, dl, gpsi + n16, psi + n16, OUT_TERM ? g + n16 : nullptr,
                                                 OUT_TERM ? out + n16 : nullptr, b == nullptr ? b : b + n16, dp,
                                                 n - n16, buf + n16);
  return lane_sum_tail(buf, n, n16, acc);
}
#endif

// One row of alpha_log_terms by the function its form takes (the compacted loop for a rectified float row of
// kCompactFrom units or more), and that function chosen once a call: alpha_log_terms and psi_rows_backward's α
// rows run the same row functions, so the same bits.
template <typename T>
using AlphaRow = double (*)(const T*, T, T, const T*, const T*, const T*, const T*, const T*, T, int64_t, T*);

template <typename T, bool OT, bool CE, bool RE>
double alpha_row_entry(const T* y, T m, T dl, const T* gpsi, const T* psi, const T* g, const T* out, const T* b, T dp,
                       int64_t n, T* buf) {
#ifdef LATERALNORM_COMPACT_POWERS
  if constexpr (std::is_same_v<T, float> && RE) {
    if (n >= kCompactFrom) return alpha_log_row_compacted<OT, CE>(y, m, dl, gpsi, psi, g, out, b, dp, n, buf);
  }
#endif
  return alpha_log_row<T, OT, CE, RE>(y, m, dl, gpsi, psi, g, out, b, dp, n, buf);
}

template <typename T>
AlphaRow<T> alpha_row_for(bool with_out, bool center, bool rect) {
  if (with_out) {
    if (center) return rect ? &alpha_row_entry<T, true, true, true> : &alpha_row_entry<T, true, true, false>;
    return rect ? &alpha_row_entry<T, true, false, true> : &alpha_row_entry<T, true, false, false>;
  }
  if (center) return rect ? &alpha_row_entry<T, false, true, true> : &alpha_row_entry<T, false, true, false>;
  return rect ? &alpha_row_entry<T, false, false, true> : &alpha_row_entry<T, false, false, false>;
}

// alpha_log_terms' operands, checked and in the input's type: ψ, and where dp != 0 the output node's g, out and b
// (b: N values, zeros where the layer has none), with the (M,) float64 row sums to fill.
struct AlphaOperands {
  at::Tensor psi, g, out, b, rows;
  double dp;
};

AlphaOperands alpha_operands(const at::Tensor& y, const at::Tensor& stats, const at::Tensor& gpsi,
                             const at::Tensor& psi_in, const c10::optional<at::Tensor>& g_in,
                             const c10::optional<at::Tensor>& out_in, const c10::optional<at::Tensor>& bias_in,
                             double dp) {
  const int64_t m = y.size(0), n = y.size(1);
  AlphaOperands a;
  a.dp = dp;
  a.psi = psi_in.contiguous().to(y.scalar_type());
  TORCH_CHECK(gpsi.sizes() == y.sizes() && a.psi.sizes() == y.sizes(), "alpha_log_terms: ψ and its gradient must have the input's shape");
  TORCH_CHECK(stats.dim() == 2 && stats.size(0) == m && stats.scalar_type() == at::kDouble && stats.is_contiguous(),
              "alpha_log_terms: stats must be psi_rows' (M, 3) float64 tensor");
  if (dp != 0.0) {
    TORCH_CHECK(g_in.has_value() && out_in.has_value(), "alpha_log_terms: dp != 0 needs g and out");
    a.g = g_in->contiguous().to(y.scalar_type());
    a.out = out_in->contiguous().to(y.scalar_type());
    a.b = bias_in.has_value() ? bias_in->contiguous().to(y.scalar_type()) : at::zeros({n}, y.options());
    TORCH_CHECK(a.g.sizes() == y.sizes() && a.out.sizes() == y.sizes() && a.b.numel() == n,
                "alpha_log_terms: g and out must have the input's shape, b N values");
  }
  a.rows = at::zeros({m}, y.options().dtype(at::kDouble));  // rows of no units: 0 (their loops do not run)
  return a;
}

// The rows' sums added in row order (the result does not depend on the thread count), as a (1,) float64 tensor.
at::Tensor alpha_total(const AlphaOperands& a, const at::Tensor& y) {
  const double* rp = a.rows.data_ptr<double>();
  double total = 0;
  for (int64_t i = 0; i < a.rows.numel(); ++i) total += rp[i];
  return at::full({1}, total, y.options().dtype(at::kDouble));
}

// The pointers one α row reads (the row's offset added by `row`), for a row loop of type T.
template <typename T>
struct AlphaJob {
  AlphaRow<T> fn;
  const T *psi, *g, *out, *b;
  T dp;
  double* rows;

  AlphaJob(const AlphaOperands& a, bool center, bool rect)
      : fn(alpha_row_for<T>(a.dp != 0.0, center, rect)),
        psi(a.psi.data_ptr<T>()),
        g(a.dp != 0.0 ? a.g.data_ptr<T>() : nullptr),
        out(a.dp != 0.0 ? a.out.data_ptr<T>() : nullptr),
        b(a.dp != 0.0 ? a.b.data_ptr<T>() : nullptr),
        dp(static_cast<T>(a.dp)),
        rows(a.rows.data_ptr<double>()) {}

  void row(int64_t r, const T* y, T m, T dl, const T* gpsi, int64_t n, T* buf) const {
    const int64_t o = r * n;
    rows[r] = fn(y + o, m, dl, gpsi + o, psi + o, g == nullptr ? g : g + o, out == nullptr ? out : out + o, b, dp,
                 n, buf);
  }
};

// Every row's α terms into a.rows (y and gψ contiguous, in a's type).
void alpha_rows(const AlphaOperands& a, const at::Tensor& y, const at::Tensor& stats, const at::Tensor& gpsi,
                bool center, bool rect) {
  const int64_t m = y.size(0), n = y.size(1);
  if (m == 0 || n == 0) return;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dn_alpha_log_terms", [&] {
    using T = scalar_t;
    const T* yp = y.data_ptr<T>();
    const T* gpp = gpsi.data_ptr<T>();
    const double* sp = stats.data_ptr<double>();
    const AlphaJob<T> job(a, center, rect);
    at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      std::vector<T> buf(n);
      for (int64_t row = r0; row < r1; ++row)
        job.row(row, yp, static_cast<T>(sp[3 * row]), static_cast<T>(sp[3 * row + 1]), gpp, n, buf.data());
    });
  });
}

at::Tensor alpha_log_terms(const at::Tensor& y_in, const at::Tensor& stats, bool center, bool rect,
                           const at::Tensor& gpsi_in, const at::Tensor& psi_in, const c10::optional<at::Tensor>& g_in,
                           const c10::optional<at::Tensor>& out_in, const c10::optional<at::Tensor>& bias_in,
                           double dp) {
  const at::Tensor y = y_in.contiguous();
  TORCH_CHECK(y.dim() == 2 && y.device().is_cpu(), "dn kernel: y must be a 2-D CPU tensor");
  const at::Tensor gpsi = gpsi_in.contiguous().to(y.scalar_type());
  const AlphaOperands a = alpha_operands(y, stats, gpsi, psi_in, g_in, out_in, bias_in, dp);
  alpha_rows(a, y, stats, gpsi, center, rect);
  return alpha_total(a, y);
}

// gψ ψ'(t) for a matrix pool's ψ rows (centered where the layer centers); added to acc in place where given. With
// `alpha` (a learned α's operands, alpha_operands), each row's α terms too, right after the row's gy while its y
// and gψ are in cache: the same row function as alpha_log_terms (the same bits), without a second pass over y
// and gψ.
at::Tensor psi_rows_backward_in(const at::Tensor& gpsi, const at::Tensor& y, const at::Tensor& stats, bool center,
                                bool rect, double alpha, double p, const c10::optional<at::Tensor>& acc,
                                const c10::optional<at::Tensor>& kept, const AlphaOperands* alpha_ops) {
  TORCH_CHECK(gpsi.sizes() == y.sizes(), "dn kernel: grad and input shapes differ");
  const bool into = acc.has_value() && acc->defined();
  TORCH_CHECK(!into || (acc->sizes() == y.sizes() && acc->is_contiguous() && acc->scalar_type() == y.scalar_type()),
              "dn kernel: acc must be a contiguous tensor like the input");
  const Cfg cfg = make_cfg(UNIFORM, center, rect, alpha, p, 1.0, 0, 0);
  const int64_t m = y.size(0), n = y.size(1);
  at::Tensor gy = into ? *acc : at::empty_like(y);
  if (m == 0 || n == 0) return gy;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dn_psi_rows_backward", [&] {
    using T = scalar_t;
    const T* yp = y.data_ptr<T>();
    const T* gp = gpsi.data_ptr<T>();
    const double* sp = stats.data_ptr<double>();
    T* op = gy.data_ptr<T>();
    const T* kp = kept_ptr<T>(kept, y);
    const c10::optional<AlphaJob<T>> job =
        alpha_ops == nullptr ? c10::nullopt : c10::optional<AlphaJob<T>>(AlphaJob<T>(*alpha_ops, center, rect));
    with_fn<T>(cfg, [&](auto fn) {
      with_kept(fn, kp, [&](auto from_pm) {
        constexpr bool FROM_PM = decltype(from_pm)::value;
        at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
          std::vector<T> tmp(into ? n : 0), buf(job.has_value() ? n : 0);
          for (int64_t row = r0; row < r1; ++row) {
            const T mm = static_cast<T>(sp[3 * row]), dl = static_cast<T>(sp[3 * row + 1]);
            T* out = op + row * n;
            T* gr = into ? tmp.data() : out;  // this share: in place, or in scratch and then added to acc
            psi_grad_of_row<T, FROM_PM>(gp + row * n, yp + row * n, mm, dl, n, gr, fn,
                                        FROM_PM ? kp + row * n : nullptr);
            const T mean = center ? static_cast<T>(lane_sum(gr, n) / static_cast<double>(n)) : T(0);
            if (into)
              add_centered(gr, mean, n, out);
            else if (center)
              for (int64_t i = 0; i < n; ++i) gr[i] -= mean;
            if (job.has_value()) job->row(row, yp, mm, dl, gp, n, buf.data());
          }
        });
      });
    });
  });
  return gy;
}

at::Tensor psi_rows_backward(const at::Tensor& gpsi_in, const at::Tensor& y_in, const at::Tensor& stats,
                             bool center, bool rect, double alpha, double p,
                             const c10::optional<at::Tensor>& acc, const c10::optional<at::Tensor>& kept = c10::nullopt) {
  const at::Tensor y = y_in.contiguous();
  return psi_rows_backward_in(gpsi_in.contiguous().to(y.scalar_type()), y, stats, center, rect, alpha, p, acc, kept,
                              nullptr);
}

// A given pool's parameters, one value per unit (n); or, for channel planes (`channels` C > 0: the rows are the
// (B·C, P) planes of a channels-first (B, C, P) tensor), one per channel, the row r reading value r mod C for
// all its elements (a Splat). β: (1), (N) or (C); γ and b: (N) or (C).
at::Tensor param_values(const at::Tensor& v, int64_t n, int64_t channels, at::ScalarType dt) {
  return v.reshape({-1}).to(dt).expand({channels > 0 ? channels : n}).contiguous();
}

// out = γ φ(t) (β + W)^{−r} + b with t from y and psi_rows' stats; β (N) or (1); channels: see param_values
at::Tensor given_pool_forward_in(const at::Tensor& y_in, const at::Tensor& stats, const at::Tensor& w_in,
                                 const at::Tensor& beta_in, const c10::optional<at::Tensor>& gamma,
                                 const c10::optional<at::Tensor>& bias, bool center, bool rect, double alpha,
                                 double p, double r, const c10::optional<at::Tensor>& kept, int64_t channels) {
  at::Tensor y = y_in.contiguous();
  const at::ScalarType dt = y.scalar_type();
  at::Tensor w = w_in.contiguous().to(dt);
  TORCH_CHECK(w.sizes() == y.sizes(), "dn kernel: the pool must have the input's shape");
  const Cfg cfg = make_cfg(BAND, center, rect, alpha, p, r, 0, 0);
  const int64_t m = y.size(0), n = y.size(1);
  TORCH_CHECK(channels == 0 || (channels > 0 && m % channels == 0 && !center),
              "dn kernel: channel planes need a row count that is a multiple of the channels, and no centering");
  const int64_t k = channels > 0 ? channels : n;
  at::Tensor beta = param_values(beta_in, n, channels, dt);
  at::Tensor gam = param_values(gamma.has_value() ? *gamma : at::ones({k}, y.options()), n, channels, dt);
  at::Tensor bia = param_values(bias.has_value() ? *bias : at::zeros({k}, y.options()), n, channels, dt);
  at::Tensor out = at::empty_like(y);
  if (m == 0 || n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(dt, "dn_given_pool_forward", [&] {
    using T = scalar_t;
    const T *yp = y.data_ptr<T>(), *wp = w.data_ptr<T>(), *bp = beta.data_ptr<T>(), *gp = gam.data_ptr<T>(),
            *bb = bia.data_ptr<T>();
    const double* sp = stats.data_ptr<double>();
    T* op = out.data_ptr<T>();
    const T* kp = kept_ptr<T>(kept, y);
    with_fn_r<T>(cfg, [&](auto fn, auto dr) {
      with_kept(fn, kp, [&](auto from_pm) {
        constexpr bool FROM_PM = decltype(from_pm)::value;
        at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
          for (int64_t row = r0; row < r1; ++row) {
            const T mm = static_cast<T>(sp[3 * row]), dl = static_cast<T>(sp[3 * row + 1]);
            const T* __restrict__ yr = yp + row * n;
            const T* __restrict__ wr = wp + row * n;
            const T* __restrict__ kr = FROM_PM ? kp + row * n : nullptr;
            T* __restrict__ o = op + row * n;
            auto out_row = [&](const auto br, const auto gr, const auto cr) {
              for (int64_t i = 0; i < n; ++i)
                o[i] = gr[i] * (phi_kept<T, FROM_PM>(fn, (yr[i] - mm) - dl, kr, i) * dr(br[i] + wr[i])) + cr[i];
            };
            if (channels > 0) {
              const int64_t c = row % channels;
              out_row(Splat<T>{bp[c]}, Splat<T>{gp[c]}, Splat<T>{bb[c]});
            } else {
              out_row(bp, gp, bb);
            }
          }
        });
      });
    });
  });
  return out;
}

at::Tensor given_pool_forward(const at::Tensor& y, const at::Tensor& stats, const at::Tensor& w,
                              const at::Tensor& beta, const c10::optional<at::Tensor>& gamma,
                              const c10::optional<at::Tensor>& bias, bool center, bool rect, double alpha,
                              double p, double r, const c10::optional<at::Tensor>& kept = c10::nullopt) {
  return given_pool_forward_in(y, stats, w, beta, gamma, bias, center, rect, alpha, p, r, kept, 0);
}

// The sum of a row of scratch in 16 lanes of T, then in double, leaving it zero (the next row adds into it).
template <typename T>
inline double take_sum(T* __restrict__ x, int64_t n) {
  T acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) {
      acc[k] += x[i + k];
      x[i + k] = T(0);
    }
  double s = 0;
  for (; i < n; ++i) {
    s += static_cast<double>(x[i]);
    x[i] = T(0);
  }
  for (int k = 0; k < 16; ++k) s += static_cast<double>(acc[k]);
  return s;
}

// Channel planes' parameter sums: each plane's three sums (Σ g z, Σ g, Σ q over its P elements, take_sum's
// order), rows (M, 3), added per channel in plane order: three (C,) tensors, each only where asked (`want`).
std::array<at::Tensor, 4> channel_sums(const at::Tensor& rows, int64_t channels, at::ScalarType dt,
                                       const std::array<bool, 4>& want) {
  const int64_t m = rows.size(0);
  const double* rp = rows.data_ptr<double>();
  std::array<at::Tensor, 4> sums;
  for (int64_t w = 0; w < 3; ++w) {
    if (!want[w]) continue;
    at::Tensor acc = at::zeros({channels}, rows.options());
    double* ap = acc.data_ptr<double>();
    for (int64_t row = 0; row < m; ++row) ap[row % channels] += rp[3 * row + w];
    sums[w] = acc.to(dt);
  }
  return sums;
}

// (gy: v centered, gW = −r q, Σ g z (γ), Σ g (b), −r Σ q (β, summed to one number when β is shared)); channels:
// see param_values (the sums are then per channel: see channel_sums)
std::vector<at::Tensor> given_pool_backward_in(const at::Tensor& g_in, const at::Tensor& y_in,
                                               const at::Tensor& stats, const at::Tensor& w_in,
                                               const at::Tensor& beta_in, const c10::optional<at::Tensor>& gamma,
                                               bool center, bool rect, double alpha, double p, double r,
                                               bool need_y, bool need_gamma, bool need_bias, bool need_beta,
                                               const c10::optional<at::Tensor>& kept, int64_t channels) {
  at::Tensor y = y_in.contiguous();
  const at::ScalarType dt = y.scalar_type();
  at::Tensor g = g_in.contiguous().to(dt);
  at::Tensor w = w_in.contiguous().to(dt);
  const Cfg cfg = make_cfg(BAND, center, rect, alpha, p, r, 0, 0);
  const int64_t m = y.size(0), n = y.size(1);
  TORCH_CHECK(channels == 0 || (channels > 0 && m % channels == 0 && !center),
              "dn kernel: channel planes need a row count that is a multiple of the channels, and no centering");
  const int64_t k = channels > 0 ? channels : n;
  at::Tensor beta = param_values(beta_in, n, channels, dt);
  at::Tensor gam = param_values(gamma.has_value() ? *gamma : at::ones({k}, y.options()), n, channels, dt);
  at::Tensor gy = need_y ? at::empty_like(y) : at::Tensor();
  at::Tensor gw = at::empty_like(y);
  // the column sums' partial rows, per block of BLOCK rows; channel planes: each plane's own three sums
  const int64_t blocks = channels > 0 ? 0 : std::max<int64_t>((m + BLOCK - 1) / BLOCK, 1);
  at::Tensor part = at::zeros({blocks, 4, n}, y.options());
  at::Tensor plane_sums = at::zeros({channels > 0 ? m : 0, 3}, y.options().dtype(at::kDouble));
  if (m > 0 && n > 0) {
    AT_DISPATCH_FLOATING_TYPES(dt, "dn_given_pool_backward", [&] {
      using T = scalar_t;
      const T *yp = y.data_ptr<T>(), *gp = g.data_ptr<T>(), *wp = w.data_ptr<T>(), *bp = beta.data_ptr<T>(),
              *ga = gam.data_ptr<T>();
      const double* sp = stats.data_ptr<double>();
      T* gyp = need_y ? gy.data_ptr<T>() : nullptr;
      T* gwp = gw.data_ptr<T>();
      T* pp = part.data_ptr<T>();
      const T* kp = kept_ptr<T>(kept, y);
      const T mr = static_cast<T>(-r);
      with_fn_r<T>(cfg, [&](auto fn, auto dr) {
        with_kept(fn, kp, [&](auto from_pm) {
          constexpr bool FROM_PM = decltype(from_pm)::value;
          auto one_row = [&](int64_t row, T* col) {
            const T mm = static_cast<T>(sp[3 * row]), dl = static_cast<T>(sp[3 * row + 1]);
            T* gr = gyp != nullptr ? gyp + row * n : nullptr;
            const T* kr = FROM_PM ? kp + row * n : nullptr;
            auto with_params = [&](const auto pb, const auto pg) {
              if (gr != nullptr)
                given_pool_row<T, true, FROM_PM>(yp + row * n, gp + row * n, pb, pg, wp + row * n, mm, dl, n, mr,
                                                 gwp + row * n, gr, col, col + n, col + 2 * n, fn, dr, kr);
              else
                given_pool_row<T, false, FROM_PM>(yp + row * n, gp + row * n, pb, pg, wp + row * n, mm, dl, n, mr,
                                                  gwp + row * n, gr, col, col + n, col + 2 * n, fn, dr, kr);
            };
            if (channels > 0)
              with_params(Splat<T>{bp[row % channels]}, Splat<T>{ga[row % channels]});
            else
              with_params(bp, ga);
            if (gr != nullptr && center) {
              const T mean = static_cast<T>(lane_sum(gr, n) / static_cast<double>(n));
              for (int64_t i = 0; i < n; ++i) gr[i] -= mean;
            }
          };
          if (channels > 0) {  // in memory order: each plane's sums from a scratch of 3 P, zeroed as it is read
            double* ps = plane_sums.data_ptr<double>();
            at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
              std::vector<T> col(3 * n, T(0));
              for (int64_t row = r0; row < r1; ++row) {
                one_row(row, col.data());
                for (int64_t w = 0; w < 3; ++w) ps[3 * row + w] = take_sum(col.data() + w * n, n);
              }
            });
            return;
          }
          at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
            for (int64_t b = b0; b < b1; ++b) {
              T* col = pp + b * 4 * n;
              for (int64_t row = b * BLOCK; row < std::min<int64_t>(m, (b + 1) * BLOCK); ++row) one_row(row, col);
            }
          });
        });
      });
    });
  }
  const std::array<bool, 4> want = {need_gamma, need_bias, need_beta, false};
  const std::array<at::Tensor, 4> sums =  // Σ g z, Σ g, Σ q (Σ q W: not read here)
      channels > 0 ? channel_sums(plane_sums, channels, dt, want) : block_column_sums(part, want);
  at::Tensor g_beta;
  if (need_beta) {
    g_beta = sums[2] * (-r);
    if (beta_in.numel() == 1) g_beta = g_beta.sum().reshape(beta_in.sizes());
    else g_beta = g_beta.reshape(beta_in.sizes());
    g_beta = g_beta.to(beta_in.scalar_type());
  }
  return {gy, gw, sums[0], sums[1], g_beta};
}

std::vector<at::Tensor> given_pool_backward(const at::Tensor& g, const at::Tensor& y, const at::Tensor& stats,
                                            const at::Tensor& w, const at::Tensor& beta,
                                            const c10::optional<at::Tensor>& gamma, bool center, bool rect,
                                            double alpha, double p, double r, bool need_y, bool need_gamma,
                                            bool need_bias, bool need_beta,
                                            const c10::optional<at::Tensor>& kept = c10::nullopt) {
  return given_pool_backward_in(g, y, stats, w, beta, gamma, center, rect, alpha, p, r, need_y, need_gamma,
                                need_bias, need_beta, kept, 0);
}

// The non-negative reparametrization (`NonNegative`: value = max(raw, bound)² − pedestal) and its gradient
// with the lower bound's rule (the gradient passes where raw ≥ bound, or where it pushes raw up): one call
// each instead of a handful of small PyTorch ops per step. They give torch's bits, element for element: the
// same IEEE operations in the same order (max with NaN passed through as clamp_min does, x·x, then − pedestal;
// g·(2·v), then × 1 or × 0 as torch's mask multiply), so the square and the subtraction must stay two
// roundings: no fused multiply-add here (the rest of the file lets GCC contract freely).
#if defined(__clang__)
#define LN_NO_CONTRACT
#elif defined(__GNUC__)
#define LN_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define LN_NO_CONTRACT
#endif
constexpr int64_t NONNEG_GRAIN = 32768;

template <typename T>
LN_NO_CONTRACT void nonneg_value_impl(const T* __restrict__ r, T* __restrict__ o, int64_t n, T b, T ped) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  for (int64_t i = 0; i < n; ++i) {
    const T v = r[i] < b ? b : r[i];  // NaN stays NaN (clamp_min's rule)
    const T sq = v * v;
    o[i] = sq - ped;
  }
}

template <typename T>
LN_NO_CONTRACT void nonneg_grad_impl(const T* __restrict__ r, const T* __restrict__ g, T* __restrict__ o,
                                     int64_t n, T b) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  for (int64_t i = 0; i < n; ++i) {
    const T v = r[i] < b ? b : r[i];
    const T gr = g[i] * (T(2) * v);
    o[i] = gr * ((r[i] >= b || gr < T(0)) ? T(1) : T(0));
  }
}

at::Tensor nonneg_value(const at::Tensor& raw_in, double bound, double pedestal) {
  at::Tensor raw = raw_in.contiguous();
  at::Tensor out = at::empty_like(raw, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "nonneg_value", [&] {
    const scalar_t* r = raw.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t b = static_cast<scalar_t>(bound), ped = static_cast<scalar_t>(pedestal);
    at::parallel_for(0, raw.numel(), NONNEG_GRAIN, [&](int64_t i0, int64_t i1) {
      nonneg_value_impl<scalar_t>(r + i0, o + i0, i1 - i0, b, ped);
    });
  });
  return out;
}

at::Tensor nonneg_grad(const at::Tensor& g_in, const at::Tensor& raw_in, double bound) {
  at::Tensor raw = raw_in.contiguous();
  at::Tensor g = g_in.to(raw.scalar_type()).contiguous();
  TORCH_CHECK(g.numel() == raw.numel(), "nonneg_grad: gradient and parameter sizes differ");
  at::Tensor out = at::empty_like(raw, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "nonneg_grad", [&] {
    const scalar_t* r = raw.data_ptr<scalar_t>();
    const scalar_t* gv = g.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t b = static_cast<scalar_t>(bound);
    at::parallel_for(0, raw.numel(), NONNEG_GRAIN, [&](int64_t i0, int64_t i1) {
      nonneg_grad_impl<scalar_t>(r + i0, gv + i0, o + i0, i1 - i0, b);
    });
  });
  return out;
}

// ------------------------------------------------------------------------------ module-level entry points
// The layer's eager path in one call each way: the parameters' values from their sources (a NonNegative
// raw parameter with its bound, or a fixed buffer: bound < 0), the kernel, and the gradients of the sources
// (−r times the column sums, summed for a shared source, through the reparametrization). This keeps the
// per-call Python work, which dominates at the small widths of the studies, to a minimum.
struct Prepared {
  at::Tensor beta, c, gamma, bias;
};

// The module path's own NonNegative arithmetic, kept as it was when the committed answer set ran: the value
// max(raw, bound)² − pedestal in one rounding (a fused multiply-add: std::fma, what GCC made of `v * v − ped`
// here), NaN replaced by the bound; the gradient (g·2)·max(raw, bound) under the bound's rule. One rounding
// fewer than torch's ops (nonneg_value above), so β and c can differ from the torch path's in the last bit;
// the O(N) layers' eager path (`dn_rows_node`) has always used these, and their committed runs depend on it.
template <typename T>
void nonneg_value_module_impl(const T* __restrict__ r, T* __restrict__ o, int64_t n, T b, T ped) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = r[i] > b ? r[i] : b;
    o[i] = std::fma(v, v, -ped);
  }
}

at::Tensor nonneg_value_module(const at::Tensor& raw_in, double bound, double pedestal) {
  at::Tensor raw = raw_in.contiguous();
  at::Tensor out = at::empty_like(raw, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "nonneg_value_module", [&] {
    nonneg_value_module_impl<scalar_t>(raw.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), raw.numel(),
                                       static_cast<scalar_t>(bound), static_cast<scalar_t>(pedestal));
  });
  return out;
}

// The gradient rule of nonneg_value_module on (colsum · scale): the product in the type with the scale cast to it
// (as ATen's tensor-times-double multiplies a float tensor; exact for scale 1), then (g·2)·max(raw, bound), passed
// where raw ≥ bound or where it is negative. The layer's β and c take it with scale −r straight from their column
// sums (no product tensor: two allocations and two ops a step fewer, the same bits).
at::Tensor scaled_nonneg_grad(const at::Tensor& colsum_in, const at::Tensor& raw_in, double bound, double scale) {
  const at::Tensor raw = raw_in.contiguous(), colsum = colsum_in.contiguous().to(raw.scalar_type());
  TORCH_CHECK(colsum.numel() == raw.numel(), "scaled_nonneg_grad: gradient and parameter sizes differ");
  at::Tensor out = at::empty(raw_in.sizes(), raw.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "scaled_nonneg_grad", [&] {
    const scalar_t* r = raw.data_ptr<scalar_t>();
    const scalar_t* cs = colsum.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t b = static_cast<scalar_t>(bound), k = static_cast<scalar_t>(scale);
    for (int64_t i = 0; i < raw.numel(); ++i) {
      const scalar_t gv = cs[i] * k;
      const scalar_t gr = gv * scalar_t(2) * (r[i] > b ? r[i] : b);
      o[i] = (r[i] >= b || gr < scalar_t(0)) ? gr : scalar_t(0);
    }
  });
  return out;
}

at::Tensor nonneg_grad_module(const at::Tensor& g_in, const at::Tensor& raw_in, double bound) {
  return scaled_nonneg_grad(g_in, raw_in, bound, 1.0);
}

at::Tensor param_value(const at::Tensor& src, double bound, double pedestal, at::ScalarType dt) {
  at::Tensor v = bound < 0 ? src : nonneg_value_module(src, bound, pedestal);
  return (v.scalar_type() == dt ? v : v.to(dt)).contiguous();
}

Prepared prepare(const at::Tensor& y, const at::Tensor& beta_src, double beta_bound, const at::Tensor& c_src,
                 double c_bound, const c10::optional<at::Tensor>& gamma, const c10::optional<at::Tensor>& bias,
                 double pedestal, int64_t kind, bool with_bias = true) {
  const at::ScalarType dt = y.scalar_type();
  const int64_t n = y.size(1);
  Prepared P{param_value(beta_src.reshape({-1}), beta_bound, pedestal, dt),
             param_value(c_src.reshape({-1}), c_bound, pedestal, dt), at::Tensor(), at::Tensor()};
  if (P.beta.numel() != P.c.numel() || (kind != UNIFORM && P.beta.numel() != n)) {
    P.beta = P.beta.expand({n}).contiguous();  // both per unit (the kernel takes both or neither shared)
    P.c = P.c.expand({n}).contiguous();
  }
  P.gamma = gamma.has_value() ? param_value(*gamma, -1, 0, dt) : at::ones({n}, y.options());
  if (with_bias) P.bias = bias.has_value() ? param_value(*bias, -1, 0, dt) : at::zeros({n}, y.options());
  return P;
}

std::vector<at::Tensor> forward_module(const at::Tensor& y_in, const at::Tensor& beta_src, double beta_bound,
                                       const at::Tensor& c_src, double c_bound,
                                       const c10::optional<at::Tensor>& gamma,
                                       const c10::optional<at::Tensor>& bias, double pedestal, int64_t kind,
                                       bool center, bool rect, double alpha, double p, double r,
                                       int64_t before, int64_t after, bool save_w, bool save_log) {
  at::Tensor y = y_in.contiguous();
  TORCH_CHECK(y.dim() == 2, "dn kernel: y must be 2-D");
  const Prepared P = prepare(y, beta_src, beta_bound, c_src, c_bound, gamma, bias, pedestal, kind);
  return forward(y, P.beta, P.c, P.gamma, P.bias, kind, center, rect, alpha, p, r, before, after, save_w,
                 save_log);
}

// backward_module with β, c and γ's values as prepare gave them (the node keeps them from its forward: the same
// values, not taken again)
std::vector<at::Tensor> backward_prepared(const at::Tensor& g, const at::Tensor& y, const at::Tensor& stats,
                                          const c10::optional<at::Tensor>& w, const Prepared& P,
                                          const at::Tensor& beta_src, double beta_bound, const at::Tensor& c_src,
                                          double c_bound, const c10::optional<at::Tensor>& gamma,
                                          const c10::optional<at::Tensor>& bias, int64_t kind, bool center,
                                          bool rect, double alpha, double p, double r, int64_t before,
                                          int64_t after, bool need_y, bool need_beta, bool need_c,
                                          bool need_gamma, bool need_bias, bool need_alpha, double dp) {
  const bool ng = need_gamma && gamma.has_value(), nb = need_bias && bias.has_value();
  std::vector<at::Tensor> res = backward(g, y, stats, w, P.beta, P.c, P.gamma, kind, center, rect, alpha, p,
                                         r, before, after, need_y, ng, nb, need_beta, need_c, need_alpha, dp);
  auto source_grad = [&](const at::Tensor& colsum, const at::Tensor& src, double bound) {
    if (bound >= 0 && src.numel() == colsum.numel() && src.scalar_type() == colsum.scalar_type())
      return scaled_nonneg_grad(colsum, src, bound, -r);  // the same arithmetic in one loop, one tensor
    at::Tensor gv = colsum * (-r);
    gv = (src.numel() == gv.numel() ? gv.reshape(src.sizes()) : gv.sum().reshape(src.sizes()));
    gv = gv.to(src.scalar_type());
    return bound < 0 ? gv : nonneg_grad_module(gv, src, bound).reshape(src.sizes());
  };
  std::vector<at::Tensor> out(6);
  out[0] = res[0];
  out[5] = res[5];
  if (need_beta) out[1] = source_grad(res[3], beta_src, beta_bound);
  if (need_c) out[2] = source_grad(res[4], c_src, c_bound);
  if (ng) out[3] = res[1].to(gamma->scalar_type());
  if (nb) out[4] = res[2].to(bias->scalar_type());
  return out;
}

// (gy, g_beta_src, g_c_src, g_gamma, g_bias, g_alpha (1,) float64), each undefined (None) when not asked for.
std::vector<at::Tensor> backward_module(const at::Tensor& g, const at::Tensor& y_in, const at::Tensor& stats,
                                        const c10::optional<at::Tensor>& w, const at::Tensor& beta_src,
                                        double beta_bound, const at::Tensor& c_src, double c_bound,
                                        const c10::optional<at::Tensor>& gamma,
                                        const c10::optional<at::Tensor>& bias, double pedestal, int64_t kind,
                                        bool center, bool rect, double alpha, double p, double r,
                                        int64_t before, int64_t after, bool need_y, bool need_beta,
                                        bool need_c, bool need_gamma, bool need_bias, bool need_alpha,
                                        double dp) {
  at::Tensor y = y_in.contiguous();
  const Prepared P = prepare(y, beta_src, beta_bound, c_src, c_bound, gamma, c10::nullopt, pedestal, kind, false);
  return backward_prepared(g, y, stats, w, P, beta_src, beta_bound, c_src, c_bound, gamma, bias, kind, center,
                           rect, alpha, p, r, before, after, need_y, need_beta, need_c, need_gamma, need_bias,
                           need_alpha, dp);
}

// ------------------------------------------------------------------------------- the layer's autograd node
// forward_module and backward_module as one C++ autograd node: the eager CPU path of a `dn` layer with an O(N)
// pool, fixed or learned α. At the studies' widths (100 × 100) a Python autograd.Function's own work per call
// (its context, saved tensors, the backward run in Python under the GIL) was a third of the layer's time; here
// it is C++, and the arithmetic is the same calls, so the bits are the same. A double backward (create_graph)
// differentiates the plain formula in Python (`dn_kernel._node_formula_backward`), as the Python path did.
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using lateralnorm_node::needs_of;
using lateralnorm_node::optional_of;
using lateralnorm_node::or_undefined;
using lateralnorm_node::python_fallback;
using lateralnorm_node::tensor_or_undefined;

struct NodeCfg {
  double beta_bound, c_bound, pedestal;  // a bound < 0: the source is a fixed buffer (no reparametrization)
  int64_t kind;
  bool center, rect;
  double alpha, p, r;  // with a learned α: α's value is read at the forward (and p = α r when tied)
  int64_t before, after;
  bool tied, save_w, save_log;
  double alpha_bound;  // a learned α's floor: the node takes α's raw parameter and applies it (LowerBoundNode's rule)
};

// A learned α's floor inside the layer's node: α = max(raw, bound) and its gradient by LowerBoundNode's rule
// (passed where raw ≥ bound or where it pushes raw up). On CPU float types a plain read and one multiply in the
// raw parameter's type, which is what clamp_min, ge, lt and mul compute there (the bound cast to that type; a
// NaN stays NaN): the same bits without the half-dozen tensor ops and the second autograd node (~20 µs a step).
double bounded_alpha(const at::Tensor& raw, double bound) {
  if (!raw.device().is_cpu() || !at::isFloatingType(raw.scalar_type()) || raw.scalar_type() == at::kHalf ||
      raw.scalar_type() == at::kBFloat16)
    return raw.clamp_min(bound).item<double>();
  double v = 0;
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "bounded_alpha", [&] {
    const scalar_t x = *raw.data_ptr<scalar_t>(), b = static_cast<scalar_t>(bound);
    v = static_cast<double>(x < b ? b : x);
  });
  return v;
}

// ∂L/∂raw from the kernel's ∂L/∂α (a (1,) float64 tensor), in raw's type and shape.
at::Tensor bounded_grad(const at::Tensor& g_alpha, const at::Tensor& raw, double bound) {
  if (!raw.device().is_cpu() || !at::isFloatingType(raw.scalar_type()) || raw.scalar_type() == at::kHalf ||
      raw.scalar_type() == at::kBFloat16) {
    const at::Tensor g = g_alpha.to(raw.scalar_type()).reshape(raw.sizes());
    return g * raw.ge(bound).bitwise_or(g.lt(0)).to(g.scalar_type());
  }
  at::Tensor out = at::empty(raw.sizes(), raw.options());
  const double total = *g_alpha.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "bounded_grad", [&] {
    const scalar_t g = static_cast<scalar_t>(total), x = *raw.data_ptr<scalar_t>(), b = static_cast<scalar_t>(bound);
    *out.data_ptr<scalar_t>() = g * ((x >= b || g < scalar_t(0)) ? scalar_t(1) : scalar_t(0));
  });
  return out;
}

// The kernel's forward for the node (out of the node, where `forward` names the node's own)
std::vector<at::Tensor> node_rows_forward(const at::Tensor& y, const Prepared& P, const NodeCfg& k) {
  return forward(y, P.beta, P.c, P.gamma, P.bias, k.kind, k.center, k.rect, k.alpha, k.p, k.r, k.before, k.after,
                 k.save_w, k.save_log);
}

struct DnRowsNode : public torch::autograd::Function<DnRowsNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& beta_src,
                            const at::Tensor& c_src, const c10::optional<at::Tensor>& gamma,
                            const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& alpha,
                            NodeCfg k) {
    const at::Tensor yc = y.contiguous();
    TORCH_CHECK(yc.dim() == 2, "dn kernel: y must be 2-D");
    // forward_module's steps, with β, c and γ's values kept for the backward (the same values it would take
    // again there: two allocations, two loops and two reshapes fewer a step)
    const Prepared P = prepare(yc, beta_src, k.beta_bound, c_src, k.c_bound, gamma, bias, k.pedestal, k.kind);
    std::vector<at::Tensor> res = node_rows_forward(yc, P, k);
    ctx->save_for_backward({y, res[1], k.save_w ? res[2] : at::Tensor(), beta_src, c_src, or_undefined(gamma),
                            or_undefined(bias), or_undefined(alpha), P.beta, P.c, P.gamma});
    ctx->saved_data["cfg"] = std::vector<double>{k.beta_bound, k.c_bound, k.pedestal, static_cast<double>(k.kind),
                                                 double(k.center), double(k.rect), k.alpha, k.p, k.r,
                                                 static_cast<double>(k.before), static_cast<double>(k.after),
                                                 double(k.tied), k.alpha_bound};
    return res[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &y = s[0], &stats = s[1], &w = s[2], &beta_src = s[3], &c_src = s[4], &gamma = s[5],
                     &bias = s[6], &alpha = s[7];
    const Prepared P{s[8], s[9], s[10], at::Tensor()};  // the forward's values of β, c and γ
    const std::vector<double> v = ctx->saved_data["cfg"].toDoubleVector();
    const bool tied = v[11] != 0.0;
    // the variable inputs' edges in order: y, β, c, then γ, b and α where given
    bool need[6] = {false, false, false, false, false, false};
    const bool given[6] = {true, true, true, gamma.defined(), bias.defined(), alpha.defined()};
    for (size_t i = 0, edge = 0; i < 6; ++i)
      if (given[i]) need[i] = ctx->needs_input_grad(edge++);
    variable_list out(7);  // one per forward argument (the configuration last, never a gradient)
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::object fb = python_fallback("lateralnorm.norms.dn_kernel", "_node_formula_backward");
      pybind11::tuple numbers = pybind11::make_tuple(v[3], v[4] != 0.0, v[5] != 0.0, v[6], v[7], v[8], v[9],
                                                     v[10], v[0], v[1], v[12]);
      pybind11::tuple wanted = pybind11::make_tuple(need[0], need[1], need[2], need[3], need[4], need[5]);
      pybind11::sequence got = fb(grads[0], y, beta_src, c_src, optional_of(gamma), optional_of(bias),
                                  optional_of(alpha), numbers, wanted, tied);
      for (size_t i = 0; i < 6 && i < got.size(); ++i)
        if (!got[i].is_none()) out[i] = got[i].cast<at::Tensor>();
      return out;
    }
    std::vector<at::Tensor> res = backward_prepared(
        grads[0], y.contiguous(), stats, optional_of(w), P, beta_src, v[0], c_src, v[1], optional_of(gamma),
        optional_of(bias), static_cast<int64_t>(v[3]), v[4] != 0.0, v[5] != 0.0, v[6], v[7], v[8],
        static_cast<int64_t>(v[9]), static_cast<int64_t>(v[10]), need[0], need[1], need[2], need[3], need[4],
        need[5], tied ? v[8] : 0.0);
    for (size_t i = 0; i < 5; ++i)
      if (need[i]) out[i] = res[i];
    if (need[5]) out[5] = bounded_grad(res[5], alpha, v[12]);
    return out;
  }
};

// The layer's output through the node. alpha: a learned α's raw parameter (one number; α = max(raw,
// alpha_bound) is read here, p = α r when tied), or None for the fixed alpha_v. The forward keeps what the backward reads only when a gradient can be
// asked for (grad mode on and an input that requires it), as a Python autograd.Function's needs_input_grad.
at::Tensor dn_rows_node(const at::Tensor& y, const at::Tensor& beta_src, const at::Tensor& c_src,
                        const c10::optional<at::Tensor>& gamma, const c10::optional<at::Tensor>& bias,
                        const c10::optional<at::Tensor>& alpha, double beta_bound, double c_bound,
                        double pedestal, int64_t kind, bool center, bool rect, double alpha_v, double p, double r,
                        int64_t before, int64_t after, bool tied, double alpha_bound) {
  auto wants = [](const c10::optional<at::Tensor>& t) { return t.has_value() && t->requires_grad(); };
  const bool grad = at::GradMode::is_enabled() && (y.requires_grad() || beta_src.requires_grad() ||
                                                   c_src.requires_grad() || wants(gamma) || wants(bias) ||
                                                   wants(alpha));
  NodeCfg k{beta_bound, c_bound, pedestal, kind, center, rect, alpha_v, p, r, before, after, tied, false, false,
            alpha_bound};
  if (alpha.has_value()) {
    TORCH_CHECK(alpha->numel() == 1, "dn kernel: a learned alpha must be one number");
    k.alpha = bounded_alpha(*alpha, alpha_bound);
    if (tied) k.p = k.alpha * r;
  }
  k.save_w = grad && keeps_rowwise(make_cfg(kind, center, rect, k.alpha, k.p, r, before, after));
  k.save_log = grad && wants(alpha);
  return DnRowsNode::apply(y, beta_src, c_src, gamma, bias, alpha, k);
}

// The matrix pools' element work (ψ rows before the pool, the output from it after) and NonNegative's value as
// autograd nodes too, for the same reason: at the studies' widths each Python autograd.Function cost about as
// much as its kernel. Same calls as the Python Functions they replace, so the same bits.
//
// `box`: an empty tensor shared by a layer's two nodes. given_pool_node's backward hands its share of the input
// gradient to ψ's by pointing the box at it; ψ's backward adds its own share in place (the same one rounding
// autograd's sum of the two would make) instead of autograd adding two (M, N) tensors.
// A learned α (`alpha`: its value as a tensor, floored where under its floor; the numbers carry that value, and p =
// α r where tied): ψ's node keeps ψ, and its backward takes ∂L/∂α for both nodes (alpha_log_terms' row function,
// one log per element), each row right after that row's gy (psi_rows_backward_in), or in a pass of its own where
// the input takes no gradient. The output node's term, −Σ ln a · gW (W + β) (g γ z = gW (β + W) / (−r), from what that node
// has, so that its output need not be kept), comes through `terms`: three empty tensors shared by the two nodes,
// which the output node's backward points at gW, W and −β (N values), and ψ's empties after its pass.
struct PsiRowsNode : public torch::autograd::Function<PsiRowsNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& box,
                               const c10::optional<at::Tensor>& alpha, std::vector<at::Tensor> terms, bool center,
                               bool rect, double a, double p) {
    std::vector<at::Tensor> res = psi_rows_kept(y, center, rect, a, p, true);  // (ψ, stats, kept)
    ctx->mark_non_differentiable({res[1], res[2]});
    const bool learned = alpha.has_value() && alpha->requires_grad();  // ∂L/∂α reads ψ
    ctx->save_for_backward({y, res[1], or_undefined(alpha), learned ? res[0] : at::Tensor(), res[2]});
    ctx->saved_data["box"] = box;
    if (alpha.has_value()) ctx->saved_data["terms"] = terms;
    ctx->saved_data["cfg"] = std::vector<double>{double(center), double(rect), a, p};
    return {res[0], res[1], res[2]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &y = s[0], &stats = s[1], &alpha = s[2], &psi = s[3], &kept = s[4];
    const std::vector<double> v = ctx->saved_data["cfg"].toDoubleVector();
    const bool center = v[0] != 0.0, rect = v[1] != 0.0;
    // the variable inputs' edges in order: y, the box, then α where given
    const bool need_y = ctx->needs_input_grad(0), need_a = alpha.defined() && ctx->needs_input_grad(2);
    variable_list out(8);  // y, box, α, terms, then the four numbers
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = python_fallback("lateralnorm.norms.dn_kernel", "_psi_formula_backward")(
          grads[0], y, pybind11::make_tuple(center, rect, v[2], v[3]), optional_of(alpha),
          pybind11::make_tuple(need_y, need_a));
      out[0] = tensor_or_undefined(got[0]);
      out[2] = tensor_or_undefined(got[1]);
      return out;
    }
    const at::Tensor yc = y.contiguous(), g = grads[0].contiguous().to(yc.scalar_type());
    at::Tensor box = ctx->saved_data["box"].toTensor();
    const c10::optional<at::Tensor> acc = box.numel() > 0 ? c10::optional<at::Tensor>(box) : c10::nullopt;
    std::vector<at::Tensor> terms;
    c10::optional<AlphaOperands> alpha_ops;
    if (alpha.defined()) {
      terms = ctx->saved_data["terms"].toTensorVector();
      if (need_a) {  // both nodes' α terms (the output node's, where it left one, in `terms`), one log an element
        const bool term = terms.size() == 3 && terms[0].numel() > 0;
        alpha_ops = alpha_operands(yc, stats, g, psi, term ? optional_of(terms[0]) : c10::nullopt,
                                   term ? optional_of(terms[1]) : c10::nullopt,
                                   term ? optional_of(terms[2]) : c10::nullopt, term ? -1.0 : 0.0);
      }
    }
    if (need_y) {  // α's rows in the same loop, where asked for
      const at::Tensor gy = psi_rows_backward_in(g, yc, stats, center, rect, v[2], v[3], acc, kept,
                                                 alpha_ops.has_value() ? &*alpha_ops : nullptr);
      if (acc.has_value()) {  // gy is the box itself: return its storage under a handle of its own, empty the box
        out[0] = gy.detach();
        box.set_();
      } else {
        out[0] = gy;
      }
    } else if (alpha_ops.has_value()) {  // α's rows alone
      alpha_rows(*alpha_ops, yc, stats, g, center, rect);
    }
    if (!alpha.defined()) return out;
    if (alpha_ops.has_value())
      out[2] = alpha_total(*alpha_ops, yc).to(alpha.scalar_type()).reshape(alpha.sizes());
    for (at::Tensor& t : terms) t.set_();
    return out;
  }
};

struct GivenPoolNode : public torch::autograd::Function<GivenPoolNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& stats, const at::Tensor& w,
                            const at::Tensor& beta, const c10::optional<at::Tensor>& gamma,
                            const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& alpha,
                            const at::Tensor& box, const at::Tensor& kept, std::vector<at::Tensor> terms,
                            bool center, bool rect, double a, double p, double r, bool tied, int64_t channels) {
    TORCH_CHECK(channels == 0 || !alpha.has_value(), "given_pool_node: channel planes take a fixed alpha");
    at::Tensor out = given_pool_forward_in(y, stats, w, beta, gamma, bias, center, rect, a, p, r, kept, channels);
    ctx->save_for_backward(
        {y, stats, w, beta, or_undefined(gamma), or_undefined(bias), or_undefined(alpha), kept});
    ctx->saved_data["box"] = box;
    if (alpha.has_value()) ctx->saved_data["terms"] = terms;
    ctx->saved_data["cfg"] = std::vector<double>{double(center), double(rect), a, p, r, double(tied)};
    ctx->saved_data["channels"] = channels;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &y = s[0], &stats = s[1], &w = s[2], &beta = s[3], &gamma = s[4], &bias = s[5], &alpha = s[6],
                     &kept = s[7];
    const std::vector<double> v = ctx->saved_data["cfg"].toDoubleVector();
    const bool tied = v[5] != 0.0;
    const int64_t channels = ctx->saved_data["channels"].toInt();
    // the variable inputs' edges in order: y, stats, w, β, then γ, b and α where given, then the box and kept
    bool need[7] = {false, false, false, false, false, false, false};
    const bool given[7] = {true, true, true, true, gamma.defined(), bias.defined(), alpha.defined()};
    for (size_t i = 0, edge = 0; i < 7; ++i)
      if (given[i]) need[i] = ctx->needs_input_grad(edge++);
    variable_list out(17);  // y, stats, w, β, γ, b, α, box, kept, terms, then the six numbers and the channels
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = python_fallback("lateralnorm.norms.dn_kernel", "_given_pool_formula_backward")(
          grads[0], y, w, beta, optional_of(gamma), optional_of(bias),
          pybind11::make_tuple(v[0] != 0.0, v[1] != 0.0, v[2], v[3], v[4]),
          pybind11::make_tuple(need[0], need[2], need[3], need[4], need[5], need[6]), pybind11::none(),
          optional_of(alpha), tied, channels);
      const size_t slot[6] = {0, 2, 3, 4, 5, 6};  // (y, w, β, γ, b, α)
      for (size_t i = 0; i < 6; ++i) out[slot[i]] = tensor_or_undefined(got[i]);
      return out;
    }
    std::vector<at::Tensor> res =  // (gy, gW, Σ g z, Σ g, gβ)
        given_pool_backward_in(grads[0], y, stats, w, beta, optional_of(gamma), v[0] != 0.0, v[1] != 0.0, v[2],
                               v[3], v[4], need[0], need[4], need[5], need[3], kept, channels);
    if (need[6] && tied) {  // the α term for ψ's node: −Σ ln a · gW (W + β) (see `terms` above)
      std::vector<at::Tensor> terms = ctx->saved_data["terms"].toTensorVector();
      terms[0].set_(res[1]);
      // W in the rows' type: a pool run under CPU autocast hands a bfloat16 W, whose storage an empty float box
      // set_ to would read as floats (α's gradient from garbage); the same tensor where the types agree
      terms[1].set_(w.to(y.scalar_type()));
      terms[2].set_(beta.reshape(-1).neg().expand({y.size(-1)}).to(y.scalar_type()));
    }
    if (need[0] && need[2]) {  // ψ's backward adds its share to this one (see the box above)
      ctx->saved_data["box"].toTensor().set_(res[0]);
    } else if (need[0]) {
      out[0] = res[0];
    }
    if (need[2]) out[2] = res[1];
    if (need[3]) out[3] = res[4];
    if (need[4]) out[4] = res[2].to(gamma.scalar_type());
    if (need[5]) out[5] = res[3].to(bias.scalar_type());
    return out;
  }
};

// ---- A matrix κ's layer as one node: ψ's element work, the pool, the output's element work and β's (and the
// factors') non-negative values, each way in the same calls and order as the nodes it replaces (PsiRowsNode, the
// pool's own nodes, GivenPoolNode and the NonNeg nodes), so the same bits, without the boundaries between them
// (each a context, saved variables and the engine's bookkeeping: ~170 µs a low-rank step in all, most of a layer
// step at the studies' sizes, B = N = 100). β (and U, V) come as the layer holds them: a raw NonNegative parameter
// and its bound, or a fixed buffer (bound < 0). A learned α comes as its (floored) value, a 0-d tensor, and takes
// its gradient here: both element halves' terms, as PsiRowsNode's with the output node's `terms`. A double backward
// (create_graph) differentiates the plain formula in Python (dn_kernel's `_…_formula_backward`).

// The element numbers of a matrix layer node: center, rect, α, p, r, tied (p = α r), β's bound, the pedestal.
struct MatrixNumbers {
  bool center, rect, tied;
  double a, p, r, beta_bound, pedestal;
  explicit MatrixNumbers(const std::vector<double>& v)
      : center(v[0] != 0.0), rect(v[1] != 0.0), tied(v[5] != 0.0), a(v[2]), p(v[3]), r(v[4]), beta_bound(v[6]),
        pedestal(v[7]) {}
};

// ψ's half of the backward, PsiRowsNode's calls: gy = gψ ψ'(t) added into the output half's share `gy_share` in
// place, and a learned α's gradient (both halves' terms: the output half's −Σ ln a · gW (W + β) where p = α r)
// into *g_alpha where asked for. Returns gy (undefined unless need_y).
at::Tensor psi_half_backward(const at::Tensor& gpsi_in, const at::Tensor& y, const at::Tensor& stats,
                             const at::Tensor& psi, const at::Tensor& kept, const at::Tensor& gy_share,
                             const at::Tensor& gw, const at::Tensor& w, const at::Tensor& beta,
                             const at::Tensor& alpha, const MatrixNumbers& k, bool need_y, bool need_a,
                             at::Tensor* g_alpha) {
  const at::Tensor yc = y.contiguous(), gpsi = gpsi_in.contiguous().to(yc.scalar_type());
  c10::optional<AlphaOperands> alpha_ops;
  if (need_a) {
    const at::Tensor minus_beta =
        k.tied ? beta.reshape(-1).neg().expand({y.size(-1)}).to(y.scalar_type()) : at::Tensor();
    alpha_ops = alpha_operands(yc, stats, gpsi, psi, k.tied ? optional_of(gw) : c10::nullopt,
                               k.tied ? optional_of(w) : c10::nullopt,
                               k.tied ? optional_of(minus_beta) : c10::nullopt, k.tied ? -1.0 : 0.0);
  }
  at::Tensor gy;
  if (need_y) {
    gy = psi_rows_backward_in(gpsi, yc, stats, k.center, k.rect, k.a, k.p, optional_of(gy_share), kept,
                              alpha_ops.has_value() ? &*alpha_ops : nullptr);
  } else if (need_a) {
    alpha_rows(*alpha_ops, yc, stats, gpsi, k.center, k.rect);
  }
  if (need_a) *g_alpha = alpha_total(*alpha_ops, yc).to(alpha.scalar_type()).reshape(alpha.sizes());
  return gy;
}

// κ = U Vᵀ (rank <= 16): the kernel's K-thin products. numbers: MatrixNumbers', then U's and V's bounds.
struct LowRankRowsNode : public torch::autograd::Function<LowRankRowsNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& beta_src,
                            const at::Tensor& u_src, const at::Tensor& v_src, const c10::optional<at::Tensor>& gamma,
                            const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& alpha,
                            std::vector<double> v) {
    TORCH_CHECK(v.size() == 10, "lowrank_rows_node: numbers are center, rect, α, p, r, tied, β's bound, the "
                                "pedestal, U's bound, V's bound");
    const MatrixNumbers k(v);
    const at::Tensor beta = source_value(beta_src, k.beta_bound, k.pedestal);
    const at::Tensor u = source_value(u_src, v[8], k.pedestal), vv = source_value(v_src, v[9], k.pedestal);
    const std::vector<at::Tensor> pr = psi_rows_kept(y, k.center, k.rect, k.a, k.p, true);  // (ψ, stats, kept)
    const auto prod = lowrank_product_forward(pr[0], u, vv);                                // (W, t)
    const at::Tensor& w = std::get<0>(prod);
    at::Tensor out = given_pool_forward_in(y, pr[1], w, beta, gamma, bias, k.center, k.rect, k.a, k.p, k.r, pr[2], 0);
    ctx->save_for_backward({y, beta_src, u_src, v_src, or_undefined(gamma), or_undefined(bias), or_undefined(alpha),
                            pr[0], pr[1], pr[2], w, std::get<1>(prod), beta, u, vv});
    ctx->saved_data["numbers"] = v;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &y = s[0], &beta_src = s[1], &u_src = s[2], &v_src = s[3], &gamma = s[4], &bias = s[5],
                     &alpha = s[6], &psi = s[7], &stats = s[8], &kept = s[9], &w = s[10], &t = s[11], &beta = s[12],
                     &u = s[13], &vv = s[14];
    const std::vector<double> v = ctx->saved_data["numbers"].toDoubleVector();
    const MatrixNumbers k(v);
    // the variable inputs' edges in order: y, β, U, V, then γ, b and α where given
    const auto need = needs_of<7>(ctx, {true, true, true, true, gamma.defined(), bias.defined(), alpha.defined()});
    variable_list out(8);  // y, β, U, V, γ, b, α, the numbers
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = python_fallback("lateralnorm.norms.dn_kernel", "_lowrank_rows_formula_backward")(
          grads[0], y, beta_src, u_src, v_src, optional_of(gamma), optional_of(bias), optional_of(alpha), v,
          pybind11::make_tuple(need[0], need[1], need[2], need[3], need[4], need[5], need[6]));
      for (size_t i = 0; i < 7 && i < got.size(); ++i) out[i] = tensor_or_undefined(got[i]);
      return out;
    }
    const bool need_psi = need[0] || need[6];  // ψ's gradient: the input's, and α's through ψ
    // the output half: (gy's share, gW, Σ g z, Σ g, gβ) — GivenPoolNode's call
    std::vector<at::Tensor> res = given_pool_backward_in(grads[0], y, stats, w, beta, optional_of(gamma), k.center,
                                                         k.rect, k.a, k.p, k.r, need[0], need[4], need[5], need[1],
                                                         kept, 0);
    // the pool: (gψ, gU, gV) — the low-rank node's call
    const auto pg = lowrank_product_backward(res[1], psi, t, u, vv, need_psi, need[2], need[3]);
    if (need_psi)
      out[0] = psi_half_backward(std::get<0>(pg), y, stats, psi, kept, res[0], res[1], w, beta, alpha, k, need[0],
                                 need[6], &out[6]);
    if (need[1]) out[1] = source_grad(res[4], beta_src, k.beta_bound);
    if (need[2]) out[2] = source_grad(std::get<1>(pg), u_src, v[8]);
    if (need[3]) out[3] = source_grad(std::get<2>(pg), v_src, v[9]);
    if (need[4]) out[4] = res[2].to(gamma.scalar_type());
    if (need[5]) out[5] = res[3].to(bias.scalar_type());
    return out;
  }
};

// κ a full (N, N) matrix, given as its value (the κ structure's: a full κ's non-negative value, a gaussian κ's
// matrix; its gradient goes back to their own nodes): W = ψ κᵀ as torch's linear map, its gradients as autograd's
// for it (gψ = gW κ, gκ = gWᵀ ψ: the same mm calls, so the same bits). numbers: MatrixNumbers'.
struct MatrixRowsNode : public torch::autograd::Function<MatrixRowsNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& beta_src,
                            const at::Tensor& kappa, const c10::optional<at::Tensor>& gamma,
                            const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& alpha,
                            std::vector<double> v) {
    TORCH_CHECK(v.size() == 8, "matrix_rows_node: numbers are center, rect, α, p, r, tied, β's bound, the pedestal");
    const MatrixNumbers k(v);
    const at::Tensor beta = source_value(beta_src, k.beta_bound, k.pedestal);
    const std::vector<at::Tensor> pr = psi_rows_kept(y, k.center, k.rect, k.a, k.p, true);  // (ψ, stats, kept)
    const at::Tensor w = at::linear(pr[0], kappa);
    at::Tensor out = given_pool_forward_in(y, pr[1], w, beta, gamma, bias, k.center, k.rect, k.a, k.p, k.r, pr[2], 0);
    // ψ only where a gradient reads it (κ's, or a learned α's), as the nodes before kept it (mm saves its first
    // operand only for its second's gradient): a fixed κ's layer keeps no ψ plane
    const bool keep_psi = kappa.requires_grad() || (alpha.has_value() && alpha->requires_grad());
    ctx->save_for_backward({y, beta_src, kappa, or_undefined(gamma), or_undefined(bias), or_undefined(alpha),
                            keep_psi ? pr[0] : at::Tensor(), pr[1], pr[2], w, beta});
    ctx->saved_data["numbers"] = v;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &y = s[0], &beta_src = s[1], &kappa = s[2], &gamma = s[3], &bias = s[4], &alpha = s[5],
                     &psi = s[6], &stats = s[7], &kept = s[8], &w = s[9], &beta = s[10];
    const std::vector<double> v = ctx->saved_data["numbers"].toDoubleVector();
    const MatrixNumbers k(v);
    // the variable inputs' edges in order: y, β, κ, then γ, b and α where given
    const auto need = needs_of<6>(ctx, {true, true, true, gamma.defined(), bias.defined(), alpha.defined()});
    variable_list out(7);  // y, β, κ, γ, b, α, the numbers
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = python_fallback("lateralnorm.norms.dn_kernel", "_matrix_rows_formula_backward")(
          grads[0], y, beta_src, kappa, optional_of(gamma), optional_of(bias), optional_of(alpha), v,
          pybind11::make_tuple(need[0], need[1], need[2], need[3], need[4], need[5]));
      for (size_t i = 0; i < 6 && i < got.size(); ++i) out[i] = tensor_or_undefined(got[i]);
      return out;
    }
    const bool need_psi = need[0] || need[5];
    std::vector<at::Tensor> res = given_pool_backward_in(grads[0], y, stats, w, beta, optional_of(gamma), k.center,
                                                         k.rect, k.a, k.p, k.r, need[0], need[3], need[4], need[1],
                                                         kept, 0);
    // the pool's gradients as autograd's mm backward takes them for ψ (M, N) and κ (N, N) row-major
    if (need[2]) out[2] = at::mm(res[1].t(), psi);
    if (need_psi)
      out[0] = psi_half_backward(at::mm(res[1], kappa), y, stats, psi, kept, res[0], res[1], w, beta, alpha, k,
                                 need[0], need[5], &out[5]);
    if (need[1]) out[1] = source_grad(res[4], beta_src, k.beta_bound);
    if (need[3]) out[3] = res[2].to(gamma.scalar_type());
    if (need[4]) out[4] = res[3].to(bias.scalar_type());
    return out;
  }
};

// max(raw, bound)² − pedestal with the lower bound's gradient rule (`base._NonNegativeValue`), one node.
struct NonNegNode : public torch::autograd::Function<NonNegNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& raw, double bound, double pedestal) {
    ctx->save_for_backward({raw});
    ctx->saved_data["bound"] = bound;
    return nonneg_value(raw, bound, pedestal);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor raw = ctx->get_saved_variables()[0];
    const double bound = ctx->saved_data["bound"].toDouble();
    variable_list out(3);
    if (at::GradMode::is_enabled() || grads[0].scalar_type() != raw.scalar_type()) {
      // create_graph=True (the differentiable chain) or a gradient of another dtype (torch's ops): in Python
      pybind11::gil_scoped_acquire gil;
      out[0] = python_fallback("lateralnorm.norms.base", "_nonneg_backward_in_torch")(grads[0], raw, bound)
                   .cast<at::Tensor>();
      return out;
    }
    out[0] = nonneg_grad(grads[0], raw, bound).view_as(raw);
    return out;
  }
};

// max(x, bound) whose gradient flows where x ≥ bound or where it pushes x back up (`base._LowerBound`: a
// learned α's floor), one node: the same ATen calls as the Python Function in both directions, so the same bits
// and, under create_graph=True, the same differentiable backward (the mask is a constant; the product is
// recorded), without a Python call each way.
struct LowerBoundNode : public torch::autograd::Function<LowerBoundNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double bound) {
    ctx->save_for_backward({x});
    ctx->saved_data["bound"] = bound;
    return x.clamp_min(bound);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const double bound = ctx->saved_data["bound"].toDouble();
    const at::Tensor& g = grads[0];
    const at::Tensor passes = x.ge(bound).bitwise_or(g.lt(0));
    return {g * passes.to(g.scalar_type()), at::Tensor()};
  }
};

// The fixed-α entries take no α and no term boxes (each argument Python passes costs a conversion a call).
variable_list psi_rows_node(const at::Tensor& y, const at::Tensor& box, bool center, bool rect, double a, double p) {
  return PsiRowsNode::apply(y, box, c10::nullopt, std::vector<at::Tensor>(), center, rect, a, p);
}

at::Tensor given_pool_node(const at::Tensor& y, const at::Tensor& stats, const at::Tensor& w,
                           const at::Tensor& beta, const c10::optional<at::Tensor>& gamma,
                           const c10::optional<at::Tensor>& bias, const at::Tensor& box, const at::Tensor& kept,
                           bool center, bool rect, double a, double p, double r) {
  return GivenPoolNode::apply(y, stats, w, beta, gamma, bias, c10::nullopt, box, kept, std::vector<at::Tensor>(),
                              center, rect, a, p, r, false, 0);
}

// given_pool_node on the (B·C, P) planes of a contiguous channels-first (B, C, P) input, not centered, with the
// parameters per channel (β (1) or (C), γ and b (C)): the element work of a matrix κ over the channels without
// the planes' transposes to rows and back (see param_values).
at::Tensor given_pool_planes_node(const at::Tensor& y, const at::Tensor& stats, const at::Tensor& w,
                                  const at::Tensor& beta, const c10::optional<at::Tensor>& gamma,
                                  const c10::optional<at::Tensor>& bias, const at::Tensor& box, const at::Tensor& kept,
                                  int64_t channels, bool rect, double a, double p, double r) {
  TORCH_CHECK(channels > 0, "given_pool_planes_node: channels must be positive");
  return GivenPoolNode::apply(y, stats, w, beta, gamma, bias, c10::nullopt, box, kept, std::vector<at::Tensor>(),
                              false, rect, a, p, r, false, channels);
}

// A learned α (its value as a 0-d tensor; `terms`: three empty tensors, see PsiRowsNode).
variable_list psi_rows_alpha_node(const at::Tensor& y, const at::Tensor& box, const at::Tensor& alpha,
                                  std::vector<at::Tensor> terms, bool center, bool rect, double a, double p) {
  TORCH_CHECK(terms.size() == 3, "psi_rows_alpha_node: a learned alpha needs three term boxes");
  return PsiRowsNode::apply(y, box, alpha, std::move(terms), center, rect, a, p);
}

at::Tensor given_pool_alpha_node(const at::Tensor& y, const at::Tensor& stats, const at::Tensor& w,
                                 const at::Tensor& beta, const c10::optional<at::Tensor>& gamma,
                                 const c10::optional<at::Tensor>& bias, const at::Tensor& alpha,
                                 const at::Tensor& box, const at::Tensor& kept, std::vector<at::Tensor> terms,
                                 bool center, bool rect, double a, double p, double r, bool tied) {
  TORCH_CHECK(terms.size() == 3, "given_pool_alpha_node: a learned alpha needs three term boxes");
  return GivenPoolNode::apply(y, stats, w, beta, gamma, bias, alpha, box, kept, std::move(terms), center, rect, a,
                              p, r, tied, 0);
}

at::Tensor lowrank_rows_node(const at::Tensor& y, const at::Tensor& beta_src, const at::Tensor& u_src,
                             const at::Tensor& v_src, const c10::optional<at::Tensor>& gamma,
                             const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& alpha,
                             std::vector<double> numbers) {
  return LowRankRowsNode::apply(y, beta_src, u_src, v_src, gamma, bias, alpha, std::move(numbers));
}

at::Tensor matrix_rows_node(const at::Tensor& y, const at::Tensor& beta_src, const at::Tensor& kappa,
                            const c10::optional<at::Tensor>& gamma, const c10::optional<at::Tensor>& bias,
                            const c10::optional<at::Tensor>& alpha, std::vector<double> numbers) {
  return MatrixRowsNode::apply(y, beta_src, kappa, gamma, bias, alpha, std::move(numbers));
}

at::Tensor nonneg_node(const at::Tensor& raw, double bound, double pedestal) {
  return NonNegNode::apply(raw, bound, pedestal);
}

at::Tensor lower_bound_node(const at::Tensor& x, double bound) { return LowerBoundNode::apply(x, bound); }

// Whether at::parallel_for can use threads here (it runs serially in an extension built without OpenMP).
bool built_with_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

// For exp_rows.cpp's layer node: the module path's NonNegative value and gradient (param_value, nonneg_grad_module
// above), by name across the two files
at::Tensor module_param_value(const at::Tensor& src, double bound, double pedestal, at::ScalarType dt) {
  return param_value(src, bound, pedestal, dt);
}
at::Tensor module_param_grad(const at::Tensor& g, const at::Tensor& src, double bound) {
  return nonneg_grad_module(g, src, bound);
}
// A matrix layer node's source (here and in exp_rows.cpp), as NonNegNode values it and takes its gradient (the bits
// of the NonNeg nodes the layer nodes replace): a raw NonNegative parameter (bound ≥ 0), or a fixed buffer as it is.
at::Tensor source_value(const at::Tensor& src, double bound, double pedestal) {
  return bound < 0 ? src : nonneg_value(src, bound, pedestal);
}
at::Tensor source_grad(const at::Tensor& g, const at::Tensor& src, double bound) {
  return bound < 0 ? g : nonneg_grad(g, src, bound).view_as(src);
}

// ------------------------------------------------------------------------------------ channels-first LN / RMS
// x (B, C, P) contiguous, normalized over C at each of the P positions, per-channel affine:
//   t = x − m (m = mean over C when centered, else 0),  r = 1/sqrt(mean_C t² + ε),  out = w_c t r + b_c
// Sweeps run along P (contiguous) for each channel, so no permute copies; sums in double per position.
// Backward: ĝ = g w_c,  x̂ = t r,  gx = r (ĝ − mean_C ĝ [centered] − x̂ mean_C(ĝ x̂));  gw_c = Σ g x̂,  gb_c = Σ g.
template <typename T>
void chan_forward_impl(const T* x, const T* w, const T* bias, T* out, T* mean, T* rstd, int64_t B, int64_t C,
                       int64_t P, double eps, bool center) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> s(P), q(P);
    for (int64_t b = b0; b < b1; ++b) {
      const T* xb = x + b * C * P;
      std::fill(s.begin(), s.end(), 0.0);
      std::fill(q.begin(), q.end(), 0.0);
      if (center) {
        for (int64_t c = 0; c < C; ++c) {
          const T* row = xb + c * P;
          for (int64_t i = 0; i < P; ++i) s[i] += static_cast<double>(row[i]);
        }
        for (int64_t i = 0; i < P; ++i) s[i] /= static_cast<double>(C);
      }
      for (int64_t c = 0; c < C; ++c) {
        const T* row = xb + c * P;
        for (int64_t i = 0; i < P; ++i) {
          const double t = static_cast<double>(row[i]) - s[i];
          q[i] += t * t;
        }
      }
      T* mb = mean + b * P;
      T* rb = rstd + b * P;
      for (int64_t i = 0; i < P; ++i) {
        mb[i] = static_cast<T>(s[i]);
        rb[i] = static_cast<T>(1.0 / std::sqrt(q[i] / static_cast<double>(C) + eps));
      }
      T* ob = out + b * C * P;
      for (int64_t c = 0; c < C; ++c) {
        const T* row = xb + c * P;
        T* orow = ob + c * P;
        const T wc = w ? w[c] : T(1), bc = bias ? bias[c] : T(0);
        for (int64_t i = 0; i < P; ++i) orow[i] = (row[i] - mb[i]) * rb[i] * wc + bc;
      }
    }
  });
}

template <typename T>
void chan_backward_impl(const T* g, const T* x, const T* mean, const T* rstd, const T* w, T* gx, double* gw_part,
                        double* gb_part, int64_t B, int64_t C, int64_t P, bool center) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> m1(P), m2(P);
    for (int64_t b = b0; b < b1; ++b) {
      const T* gb = g + b * C * P;
      const T* xb = x + b * C * P;
      const T* mb = mean + b * P;
      const T* rb = rstd + b * P;
      std::fill(m1.begin(), m1.end(), 0.0);
      std::fill(m2.begin(), m2.end(), 0.0);
      double* gwb = gw_part + b * C;
      double* gbb = gb_part + b * C;
      for (int64_t c = 0; c < C; ++c) {
        const T* grow = gb + c * P;
        const T* xrow = xb + c * P;
        const T wc = w ? w[c] : T(1);
        double sw = 0.0, sb = 0.0;
        for (int64_t i = 0; i < P; ++i) {
          const T xh = (xrow[i] - mb[i]) * rb[i];
          const T gh = grow[i] * wc;
          m1[i] += static_cast<double>(gh);
          m2[i] += static_cast<double>(gh * xh);
          sw += static_cast<double>(grow[i] * xh);
          sb += static_cast<double>(grow[i]);
        }
        gwb[c] = sw;
        gbb[c] = sb;
      }
      const double inv_c = 1.0 / static_cast<double>(C);
      T* gxb = gx + b * C * P;
      for (int64_t c = 0; c < C; ++c) {
        const T* grow = gb + c * P;
        const T* xrow = xb + c * P;
        T* orow = gxb + c * P;
        const T wc = w ? w[c] : T(1);
        for (int64_t i = 0; i < P; ++i) {
          const T xh = (xrow[i] - mb[i]) * rb[i];
          const T a = center ? static_cast<T>(m1[i] * inv_c) : T(0);
          orow[i] = rb[i] * (grow[i] * wc - a - xh * static_cast<T>(m2[i] * inv_c));
        }
      }
    }
  });
}

std::vector<at::Tensor> chan_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, double eps,
                                     bool center) {
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous(), "channel norm: x must be contiguous (B, C, P)");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2);
  auto out = at::empty_like(x);
  auto mean = at::zeros({B, P}, x.options());
  auto rstd = at::empty({B, P}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "chan_forward", [&] {
    chan_forward_impl<scalar_t>(x.data_ptr<scalar_t>(), w.numel() ? w.data_ptr<scalar_t>() : nullptr,
                                bias.numel() ? bias.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(),
                                mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), B, C, P, eps, center);
  });
  return {out, mean, rstd};
}

std::vector<at::Tensor> chan_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean,
                                      const at::Tensor& rstd, const at::Tensor& w, bool center) {
  TORCH_CHECK(g.is_contiguous() && x.is_contiguous(), "channel norm: g and x must be contiguous (B, C, P)");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2);
  auto gx = at::empty_like(x);
  auto gw_part = at::empty({B, C}, x.options().dtype(at::kDouble));
  auto gb_part = at::empty({B, C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "chan_backward", [&] {
    chan_backward_impl<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(),
                                 rstd.data_ptr<scalar_t>(), w.numel() ? w.data_ptr<scalar_t>() : nullptr,
                                 gx.data_ptr<scalar_t>(), gw_part.data_ptr<double>(), gb_part.data_ptr<double>(), B,
                                 C, P, center);
  });
  // per-sample partials summed over B in order: the result does not depend on the thread count
  return {gx, gw_part.sum(0).to(x.scalar_type()), gb_part.sum(0).to(x.scalar_type())};
}

// ---------------------------------------------------------------------------------------------- layout
// (B, M, N) → (B, N, M), both contiguous: a channels-first tensor (B, C, P) to the rows (B·P, C) the `dn` layers
// compute on, and a gradient back. torch's strided copy of a permute runs at 3–6× a plain clone here; this
// moves 8×8 (float) or 4×4 (double) tiles through AVX registers, the edges element by element. A copy: the
// same values, so the same bits downstream.
#if defined(__AVX__)
#include <immintrin.h>
#endif
namespace {
#if defined(__AVX__)
inline void tile_transpose(const float* s, int64_t ls, float* d, int64_t ld) {  // 8×8
  const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ls), r2 = _mm256_loadu_ps(s + 2 * ls),
               r3 = _mm256_loadu_ps(s + 3 * ls), r4 = _mm256_loadu_ps(s + 4 * ls), r5 = _mm256_loadu_ps(s + 5 * ls),
               r6 = _mm256_loadu_ps(s + 6 * ls), r7 = _mm256_loadu_ps(s + 7 * ls);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
inline void tile_transpose(const double* s, int64_t ls, double* d, int64_t ld) {  // 4×4
  const __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + ls), r2 = _mm256_loadu_pd(s + 2 * ls),
                r3 = _mm256_loadu_pd(s + 3 * ls);
  const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1), t2 = _mm256_unpacklo_pd(r2, r3),
                t3 = _mm256_unpackhi_pd(r2, r3);
  _mm256_storeu_pd(d, _mm256_permute2f128_pd(t0, t2, 0x20));
  _mm256_storeu_pd(d + ld, _mm256_permute2f128_pd(t1, t3, 0x20));
  _mm256_storeu_pd(d + 2 * ld, _mm256_permute2f128_pd(t0, t2, 0x31));
  _mm256_storeu_pd(d + 3 * ld, _mm256_permute2f128_pd(t1, t3, 0x31));
}
constexpr bool kTileTranspose = true;
#else
template <typename T>
inline void tile_transpose(const T*, int64_t, T*, int64_t) {}
constexpr bool kTileTranspose = false;
#endif

template <typename T>
void transpose_plane(const T* __restrict__ s, T* __restrict__ d, int64_t M, int64_t N) {
  constexpr int64_t K = 32 / sizeof(T);  // one AVX register's elements
  const int64_t Mt = kTileTranspose ? M / K * K : 0, Nt = kTileTranspose ? N / K * K : 0;
  for (int64_t i0 = 0; i0 < Mt; i0 += K)
    for (int64_t j0 = 0; j0 < Nt; j0 += K) tile_transpose(s + i0 * N + j0, N, d + j0 * M + i0, M);
  for (int64_t i = 0; i < M; ++i)  // the edges: rows past the tiles, and the columns past them in tiled rows
    for (int64_t j = i < Mt ? Nt : 0; j < N; ++j) d[j * M + i] = s[i * N + j];
}
}  // namespace

at::Tensor transpose_last2(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3 && x.is_contiguous() && x.device().is_cpu(),
              "transpose_last2: x must be a contiguous 3-D CPU tensor (B, M, N)");
  const int64_t B = x.size(0), M = x.size(1), N = x.size(2);
  at::Tensor out = at::empty({B, N, M}, x.options());
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "transpose_last2", [&] {
    const scalar_t* s = x.data_ptr<scalar_t>();
    scalar_t* d = out.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) transpose_plane(s + b * M * N, d + b * M * N, M, N);
    });
  });
  return out;
}

void register_recurrent_gates(pybind11::module_& m);  // recurrent_gates.cpp
void register_lowrank_product(pybind11::module_& m);  // lowrank_product.cpp
void register_exp_rows(pybind11::module_& m);         // exp_rows.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lateralnorm: fused CPU rows for divisive normalization with an O(N) pool, channels-first LN, "
            "and recurrent gates";
  m.def("forward", &forward, "(out, stats, w): out = γ φ(t) (β + c pool ψ(t))^(−r) + b, row by row");
  m.def("backward", &backward, "(gy, Σ g z, Σ g, Σ q, Σ q W, ∂L/∂α)");
  m.def("forward_module", &forward_module, "the layer's eager forward: (out, stats, w)");
  m.def("backward_module", &backward_module, "the layer's eager backward: (gy, g_beta, g_c, g_gamma, g_bias, g_alpha)");
  m.def("dn_rows_node", &dn_rows_node, "the layer's eager output through one C++ autograd node (fixed or learned α)");
  m.def("psi_rows_node", &psi_rows_node, "psi_rows_kept as an autograd node: (ψ, stats, kept power)");
  m.def("given_pool_node", &given_pool_node, "given_pool_forward as an autograd node");
  m.def("given_pool_planes_node", &given_pool_planes_node,
        "given_pool_node on a channels-first input's (B·C, P) planes, parameters per channel");
  m.def("psi_rows_alpha_node", &psi_rows_alpha_node, "psi_rows_node with a learned α (α's gradient for both nodes)");
  m.def("given_pool_alpha_node", &given_pool_alpha_node, "given_pool_node with a learned α");
  m.def("matrix_rows_node", &matrix_rows_node,
        "a matrix κ's layer (ψ, torch's linear map by the given κ, the output) as one autograd node");
  m.def("lowrank_rows_node", &lowrank_rows_node,
        "a low-rank κ's layer (ψ, the kernel's products, the output) as one autograd node (fixed or learned α)");
  m.def("nonneg_node", &nonneg_node, "nonneg_value as an autograd node (the lower bound's gradient rule)");
  m.def("lower_bound_node", &lower_bound_node, "max(x, bound) as an autograd node (the lower bound's gradient rule)");
  m.def("nonneg_value", &nonneg_value, "max(raw, bound)² − pedestal");
  m.def("built_with_openmp", &built_with_openmp, "whether the rows run on torch's intra-op threads");
  m.def("nonneg_grad", &nonneg_grad, "the gradient of nonneg_value with the lower bound's rule");
  m.def("psi_rows", &psi_rows, "(ψ(t), stats): the element work before a matrix pool");
  m.def("alpha_log_terms", &alpha_log_terms, "Σ ln a (gψ ψ + dp g (out − b)): a learned α's gradient for a matrix pool");
  m.def("psi_rows_kept", &psi_rows_kept, "(ψ(t), stats, kept power): psi_rows keeping each element's power");
  m.def("psi_rows_backward", &psi_rows_backward, "gψ ψ'(t), centered; added to acc in place when given; kept: "
        "psi_rows_kept's power or None");
  m.def("given_pool_forward", &given_pool_forward, "γ φ(t) (β + W)^(−r) + b for a given pool W; kept as above");
  m.def("given_pool_backward", &given_pool_backward, "(gy, gW, Σ g z, Σ g, gβ) for a given pool W; kept as above");
  m.def("transpose_last2", &transpose_last2, "(B, M, N) → (B, N, M), contiguous: channels-first planes ⇄ rows");
  m.def("chan_forward", &chan_forward, "channels-first LN/RMS over C: (out, mean, rstd)");
  m.def("chan_backward", &chan_backward, "channels-first LN/RMS backward: (gx, gw, gb)");
  register_recurrent_gates(m);
  register_lowrank_product(m);
  register_exp_rows(m);
}

#endif  // LN_DN_ROWS_F64
