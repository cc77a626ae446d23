// The exp family of divisive normalization (fn=exp, a fixed α) with an O(N) pool (κ self, uniform or band) on
// CPU, one sweep a row each way (norms/exp_rows.py has the formula and the Python nodes for the other pools).
//
// Per row of y (features last), t = y (or y centered in two passes, as the composite centers), s = max_j t_j:
//   ψ = e^{α(t − s)},  P = pool(ψ) (self ψ_i; uniform Σ_j ψ_j; band Σ_{j=i−before}^{i+after} ψ_j),
//   e = e^{min(−α s, 80)},  D = β e + c P,  z = e^{p(t − s)} D^{−r} e^{(p − α r) s},  out = γ z + b
// (e^{p(t − s)} is ψ where p = α). Backward from the forward's ψ and each row's s and S = Σ ψ (kept when a
// gradient is to come: one plane; the band pool keeps them only where p = α), else everything recomputed from y:
//   gz = g γ,  h = gz z,  gD = −r h / D,  gψ = poolᵀ(c gD),  gt = p h + α ψ gψ,  gy = gt − mean(gt) when centered;
//   column sums Σ g z (γ), Σ g (b), Σ gD e (β), Σ gD P (c), per block of 64 rows in T, the blocks added in order in
//   double (no result depends on the thread count). s is a constant to the gradient, as the composite's
//   detached maximum: the output's true derivative through it is zero.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "vec_math.h"  // vexp, vlog

namespace {

enum Pool : int64_t { SELF = 0, UNIFORM = 1, BAND = 2 };
constexpr int64_t kBlock = 64;   // rows per block of column partial sums
// e^{−α s} capped at e^80 (the composite caps β e^{−α s} instead: the two agree wherever a row's maximum is above
// −80/α, and differ by β's factor below it, where a row is e^{−80} of its own scale or less)
constexpr double kExpCap = 80.0;

struct ExpCfg {
  int64_t kind;
  bool center;
  double alpha, p, r;
  int64_t before, after;
};

// One row's scratch: t (a centered row; else the input is read as it is), ψ where no kept plane takes it, the
// pool's values P (band, self: per element; uniform: the one sum S), 1/D and z.
template <typename T>
struct Row {
  std::vector<T> t, psi, pool, inv, z;
  T e = 0, S = 0;
  const T* tp = nullptr;  // the row's t: w.t or the input row
  explicit Row(int64_t n) : t(n), psi(n), pool(n), inv(n), z(n) {}
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

// win[i] = Σ_{j=i−before}^{i+after} x[j] over the row (zeros outside): up to kShiftedAdds window offsets one
// shifted, vectorized add each, in order from j = i − before (a running sum's add and subtract were one serial
// chain, ~1 ms a step at a window of 5); a wider window by a running sum in double (O(N) however wide)
constexpr int64_t kShiftedAdds = 32;
template <typename T>
void window_sums(const T* __restrict__ x, int64_t n, int64_t before, int64_t after, T* __restrict__ win) {
  if (before + after + 1 > kShiftedAdds) {
    double run = 0;
    for (int64_t j = 0; j < std::min(n, after); ++j) run += static_cast<double>(x[j]);
    for (int64_t i = 0; i < n; ++i) {
      if (i + after < n) run += static_cast<double>(x[i + after]);
      if (i - before - 1 >= 0) run -= static_cast<double>(x[i - before - 1]);
      win[i] = static_cast<T>(run);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) win[i] = T(0);
  for (int64_t o = -before; o <= after; ++o) {
    const int64_t lo = std::max<int64_t>(0, -o), hi = std::min<int64_t>(n, n - o);
    for (int64_t i = lo; i < hi; ++i) win[i] += x[i + o];
  }
}

// max_i x[i] over 16 lanes, then across them (the lanes vectorize; one serial max a row was a chain); NaN if any
// element is NaN, as torch's amax (then the whole row is NaN, as the composite's). Whether to look for a NaN: a
// lane sum of x·0, NaN only where the row has a NaN or an infinity (float ops only: an int flag a lane, or a
// NaN-keeping select, kept the loop from vectorizing: 2x the forward)
template <typename T>
T row_max(const T* __restrict__ x, int64_t n) {
  T lane[16], odd[16];
  for (int k = 0; k < 16; ++k) {
    lane[k] = -std::numeric_limits<T>::infinity();
    odd[k] = T(0);
  }
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) {
      lane[k] = std::max(lane[k], x[i + k]);
      odd[k] += x[i + k] * T(0);
    }
  T m = -std::numeric_limits<T>::infinity(), o = T(0);
  for (; i < n; ++i) {
    m = std::max(m, x[i]);
    o += x[i] * T(0);
  }
  for (int k = 0; k < 16; ++k) {
    m = std::max(m, lane[k]);
    o += odd[k];
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
  if (!center) return w.tp = y;
  T* __restrict__ t = w.t.data();
  const T m1 = static_cast<T>(row_sum(y, n) / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = y[i] - m1;
  const T m2 = static_cast<T>(row_sum(t, n) / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) t[i] -= m2;
  return w.tp = t;
}

template <typename T>
T psi_row(const T* y, int64_t n, const ExpCfg& k, Row<T>& w, T* __restrict__ psi) {
  const T* __restrict__ t = row_t(y, n, k.center, w);
  const T s = row_max(t, n), a = static_cast<T>(k.alpha);
  for (int64_t i = 0; i < n; ++i) psi[i] = vexp((t[i] - s) * a);
  return s;
}

// From a row's ψ and shift s: P (w.pool, or w.S for the uniform pool), e, 1/D and z into w (w.tp read only where
// p ≠ α). The forward and the backward both run it on the same ψ, so they see the same values.
template <typename T>
void finish_row(const T* __restrict__ psi, T s, int64_t n, const ExpCfg& k, const T* __restrict__ beta,
                const T* __restrict__ c, Row<T>& w) {
  const T p = static_cast<T>(k.p), r = static_cast<T>(k.r);
  T* __restrict__ pool = w.pool.data();
  if (k.kind == UNIFORM) {
    w.S = static_cast<T>(row_sum(psi, n));
  } else if (k.kind == BAND) {
    window_sums(psi, n, k.before, k.after, pool);
  }
  const T* __restrict__ P = k.kind == BAND ? pool : psi;  // (self: P = ψ)
  w.e = static_cast<T>(std::exp(std::min(-k.alpha * static_cast<double>(s), kExpCap)));
  const T e = w.e, S = w.S;
  T* __restrict__ inv = w.inv.data();
  T* __restrict__ z = w.z.data();
  if (k.kind == UNIFORM) {
    for (int64_t i = 0; i < n; ++i) inv[i] = T(1) / (beta[i] * e + c[i] * S);
  } else {
    for (int64_t i = 0; i < n; ++i) inv[i] = T(1) / (beta[i] * e + c[i] * P[i]);
  }
  // z = e^{p(t − s)} D^{−r}: the numerator ψ itself where p = α, else its own exp, written to z first
  const bool own = k.p != k.alpha;
  if (own) {
    const T* __restrict__ t = w.tp;
    for (int64_t i = 0; i < n; ++i) z[i] = vexp((t[i] - s) * p);
  }
  const T* __restrict__ num = psi;  // (read beside z where own: both are the row's own memory)
  if (k.r == 1.0) {
    for (int64_t i = 0; i < n; ++i) z[i] = (own ? z[i] : num[i]) * inv[i];
  } else if (k.r == 0.5) {
    for (int64_t i = 0; i < n; ++i) z[i] = (own ? z[i] : num[i]) * std::sqrt(inv[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) z[i] = (own ? z[i] : num[i]) * vexp(r * vlog(inv[i]));
  }
  if (k.p != k.alpha * k.r) {
    const T corr = static_cast<T>(std::exp((k.p - k.alpha * k.r) * static_cast<double>(s)));
    for (int64_t i = 0; i < n; ++i) z[i] *= corr;
  }
}

// ---- the self and uniform pools: each row's element work in as few sweeps as it takes (the band pool's window
// sums take `finish_row`'s). Forward: the row maximum, ψ, (uniform) its sum S, then the output with 1/D, z and the
// affine computed in the sweep instead of three scratch rows. Backward from the forward's ψ, s and S (kept: no exp
// where p = α, one where p ≠ α for the numerator from y): one sweep (self) or two (uniform: ψ's gradient is one
// number a row, the sum of the first sweep's terms).

// D^{−r} from 1/D: R = 1 (r = 1), 2 (r = 1/2), 0 (any r, through exp and log)
template <int R, typename T>
inline T inv_power(T inv, T r) {
  if constexpr (R == 1) return inv;
  else if constexpr (R == 2) return std::sqrt(inv);
  else return vexp(r * vlog(inv));
}

inline int r_kind(double r) { return r == 1.0 ? 1 : (r == 0.5 ? 2 : 0); }

// the numerator e^{p(t − s)}: ψ itself where p = α, else its own exp into w.z (t from y, as the forward's)
template <typename T>
const T* numerator(const T* y, const T* psi, T s, int64_t n, const ExpCfg& k, Row<T>& w) {
  if (k.p == k.alpha) return psi;
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

// one row's output into o; ψ into psi; (s, S) into kept_s where given
template <typename T, bool Uniform, int R>
void forward_row_pooled(const T* y, int64_t n, const ExpCfg& k, const T* __restrict__ beta, const T* __restrict__ c,
                        const T* __restrict__ gm, const T* __restrict__ bi, Row<T>& w, T* __restrict__ psi,
                        T* __restrict__ o, T* kept_s) {
  const T s = psi_row(y, n, k, w, psi);
  const T S = Uniform ? static_cast<T>(row_sum(psi, n)) : T(0);
  const T e = row_scale(s, k), corr = shift_factor(s, k), r = static_cast<T>(k.r);
  const T* __restrict__ num = numerator(y, psi, s, n, k, w);
  for (int64_t i = 0; i < n; ++i) {
    const T inv = T(1) / (beta[i] * e + c[i] * (Uniform ? S : psi[i]));
    o[i] = gm[i] * (num[i] * inv_power<R>(inv, r) * corr) + bi[i];
  }
  if (kept_s) {
    kept_s[0] = s;
    kept_s[1] = S;
  }
}

// one row's input gradient into gyr and its terms of the four column sums (cols: Σ g z, Σ g, Σ gD e, Σ gD P)
template <typename T, bool Uniform, int R>
void backward_row_pooled(const T* __restrict__ gr, const T* y, const T* __restrict__ psi, T s, T S, int64_t n,
                         const ExpCfg& k, const T* __restrict__ beta, const T* __restrict__ c,
                         const T* __restrict__ gm, T* __restrict__ cols, Row<T>& w, T* __restrict__ h,
                         T* __restrict__ gw, T* __restrict__ gyr) {
  const T e = row_scale(s, k), corr = shift_factor(s, k), r = static_cast<T>(k.r);
  const T a = static_cast<T>(k.alpha), pe = static_cast<T>(k.p), mr = static_cast<T>(-k.r);
  const T* __restrict__ num = numerator(y, psi, s, n, k, w);
  T* __restrict__ cz = cols;
  T *__restrict__ cg = cols + n, *__restrict__ ce = cols + 2 * n, *__restrict__ cpool = cols + 3 * n;
  for (int64_t i = 0; i < n; ++i) {
    const T P = Uniform ? S : psi[i];
    const T inv = T(1) / (beta[i] * e + c[i] * P);
    const T gz = gr[i] * (num[i] * inv_power<R>(inv, r) * corr);
    const T hz = gz * gm[i];
    const T gd = mr * hz * inv;
    cz[i] += gz;
    cg[i] += gr[i];
    ce[i] += gd * e;
    cpool[i] += gd * P;
    if constexpr (Uniform) {
      h[i] = hz;
      gw[i] = gd * c[i];
    } else {
      gyr[i] = pe * hz + a * psi[i] * (gd * c[i]);
    }
  }
  if constexpr (Uniform) {
    const T G = static_cast<T>(row_sum(gw, n));
    for (int64_t i = 0; i < n; ++i) gyr[i] = pe * h[i] + a * psi[i] * G;
  }
  if (k.center) {
    const T mean = static_cast<T>(row_sum(gyr, n) / static_cast<double>(n));
    for (int64_t i = 0; i < n; ++i) gyr[i] -= mean;
  }
}

// f(Uniform, R) for the row's pool and r, each as a std::integral_constant (a generic lambda reads their ::value)
template <typename F>
void with_pooled(const ExpCfg& k, F&& f) {
  using U = std::true_type;
  using S = std::false_type;
  const int rk = r_kind(k.r);
  if (k.kind == UNIFORM) {
    if (rk == 1) f(U{}, std::integral_constant<int, 1>{});
    else if (rk == 2) f(U{}, std::integral_constant<int, 2>{});
    else f(U{}, std::integral_constant<int, 0>{});
  } else {
    if (rk == 1) f(S{}, std::integral_constant<int, 1>{});
    else if (rk == 2) f(S{}, std::integral_constant<int, 2>{});
    else f(S{}, std::integral_constant<int, 0>{});
  }
}

ExpCfg cfg_of(int64_t kind, bool center, double alpha, double p, double r, int64_t before, int64_t after) {
  TORCH_CHECK(kind == SELF || kind == UNIFORM || kind == BAND, "exp_rows: kind must be 0 (self), 1 (uniform) or 2 (band)");
  return ExpCfg{kind, center, alpha, p, r, before, after};
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

// (out, ψ, s): out = γ z + b (γ, b: empty where the layer has none); with `keep` (a gradient to come; with the
// band pool only where p = α) each element's ψ and each row's (s, S) (S: the uniform pool's sum, else 0), from which
// the backward starts, else two empties
std::vector<at::Tensor> exp_rows_forward(const at::Tensor& y, const at::Tensor& beta, const at::Tensor& c,
                                         const at::Tensor& gamma, const at::Tensor& bias, int64_t kind, bool center,
                                         double alpha, double p, double r, int64_t before, int64_t after,
                                         bool keep) {
  check_rows(y, beta, c, gamma, bias);
  const ExpCfg k = cfg_of(kind, center, alpha, p, r, before, after);
  const int64_t m = y.size(0), n = y.size(1);
  at::Tensor out = at::empty_like(y);
  keep = keep && (p == alpha || kind != BAND);
  at::Tensor kept = keep ? at::empty_like(y) : at::empty({0}, y.options());
  at::Tensor shift = keep ? at::empty({m, 2}, y.options()) : at::empty({0}, y.options());
  if (m == 0 || n == 0) return {out, kept, shift};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "exp_rows_forward", [&] {
    using T = scalar_t;
    const T *yp = y.data_ptr<T>(), *bp = beta.data_ptr<T>(), *cp = c.data_ptr<T>();
    // a missing γ or b as ones or zeros: a `p ? p[i] : …` in the loop became a masked load from address 0, which
    // the CPU serves by a microcode assist on every vector (a learned-β softmax form ran 2x slower)
    const std::vector<T> ones(gamma.numel() > 0 ? 0 : n, T(1)), zeros(bias.numel() > 0 ? 0 : n, T(0));
    const T* gp = gamma.numel() > 0 ? gamma.data_ptr<T>() : ones.data();
    const T* bi = bias.numel() > 0 ? bias.data_ptr<T>() : zeros.data();
    T* op = out.data_ptr<T>();
    T* kp = keep ? kept.data_ptr<T>() : nullptr;
    T* sp = keep ? shift.data_ptr<T>() : nullptr;
    at::parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
      Row<T> w(n);
      if (k.kind != BAND) {
        with_pooled(k, [&](auto uniform, auto rk) {
          for (int64_t row = r0; row < r1; ++row)  // ψ straight into the kept plane
            forward_row_pooled<T, decltype(uniform)::value, decltype(rk)::value>(
                yp + row * n, n, k, bp, cp, gp, bi, w, keep ? kp + row * n : w.psi.data(), op + row * n,
                keep ? sp + 2 * row : nullptr);
        });
        return;
      }
      for (int64_t row = r0; row < r1; ++row) {
        T* psi = keep ? kp + row * n : w.psi.data();
        const T sh = psi_row(yp + row * n, n, k, w, psi);
        finish_row(psi, sh, n, k, bp, cp, w);
        if (keep) {
          sp[2 * row] = sh;
          sp[2 * row + 1] = T(0);
        }
        T* o = op + row * n;
        const T* z = w.z.data();
        for (int64_t i = 0; i < n; ++i) o[i] = gp[i] * z[i] + bi[i];
      }
    });
  });
  return {out, kept, shift};
}

// (gy, gβ, gc, gγ, gb): gγ and gb empty where the layer has none
// kept, shift: the forward's ψ and (s, S) (then ψ's exp is not taken again), or empty with the band pool where
// p ≠ α (then ψ recomputed from y)
std::vector<at::Tensor> exp_rows_backward(const at::Tensor& g_in, const at::Tensor& y, const at::Tensor& beta,
                                          const at::Tensor& c, const at::Tensor& gamma, const at::Tensor& bias,
                                          int64_t kind, bool center, double alpha, double p, double r,
                                          int64_t before, int64_t after, const at::Tensor& kept,
                                          const at::Tensor& shift) {
  check_rows(y, beta, c, gamma, bias);
  const bool from_kept = kept.numel() > 0;
  TORCH_CHECK(!from_kept || ((p == alpha || kind != BAND) && kept.sizes() == y.sizes() && kept.is_contiguous() &&
                             kept.scalar_type() == y.scalar_type() && shift.numel() == 2 * y.size(0) &&
                             shift.is_contiguous() && shift.scalar_type() == y.scalar_type()),
              "exp_rows: kept ψ and shifts must be the forward's own");
  TORCH_CHECK(from_kept || kind == BAND, "exp_rows: the self and uniform pools' backward starts from the forward's "
                                         "kept ψ and row numbers: run the forward with keep=True");
  const ExpCfg k = cfg_of(kind, center, alpha, p, r, before, after);
  const at::Tensor g = g_in.contiguous().to(y.scalar_type());
  TORCH_CHECK(g.sizes() == y.sizes(), "exp_rows: the gradient must have y's shape");
  const int64_t m = y.size(0), n = y.size(1), blocks = (m + kBlock - 1) / kBlock;
  at::Tensor gy = at::empty_like(y);
  at::Tensor part = at::zeros({std::max<int64_t>(blocks, 1), 4, n}, y.options().dtype(at::kDouble));
  if (m > 0 && n > 0) {
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "exp_rows_backward", [&] {
      using T = scalar_t;
      const T *yp = y.data_ptr<T>(), *gp = g.data_ptr<T>(), *bp = beta.data_ptr<T>(), *cp = c.data_ptr<T>();
      const std::vector<T> ones(gamma.numel() > 0 ? 0 : n, T(1));  // no γ: ones (see the forward)
      const T* gm = gamma.numel() > 0 ? gamma.data_ptr<T>() : ones.data();
      T* gyp = gy.data_ptr<T>();
      double* pp = part.data_ptr<double>();
      const T a = static_cast<T>(alpha), pe = static_cast<T>(p), mr = static_cast<T>(-r);
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        Row<T> w(n);
        std::vector<T> h(n), gw(n), gpsi(n), cols(4 * n);
        for (int64_t b = b0; b < b1; ++b) {
          std::fill(cols.begin(), cols.end(), T(0));  // the block's column sums in T, then to double
          T* cz = cols.data();  // Σ g z, Σ g, Σ gD e, Σ gD P
          T *cg = cz + n, *ce = cz + 2 * n, *cpool = cz + 3 * n;
          const int64_t row_end = std::min(m, (b + 1) * kBlock);
          if (k.kind != BAND) {
            with_pooled(k, [&](auto uniform, auto rk) {
              constexpr bool U = decltype(uniform)::value;
              for (int64_t row = b * kBlock; row < row_end; ++row) {
                const T* sr = shift.data_ptr<T>() + 2 * row;  // (s, S)
                backward_row_pooled<T, U, decltype(rk)::value>(gp + row * n, yp + row * n,
                                                               kept.data_ptr<T>() + row * n, sr[0], sr[1], n, k,
                                                               bp, cp, gm, cz, w, h.data(), gw.data(),
                                                               gyp + row * n);
              }
            });
          }
          for (int64_t row = b * kBlock; k.kind == BAND && row < row_end; ++row) {  // the band pool's window sums
            const T* psi = w.psi.data();
            if (from_kept) {
              psi = kept.data_ptr<T>() + row * n;
              finish_row(psi, shift.data_ptr<T>()[2 * row], n, k, bp, cp, w);
            } else {
              const T sh = psi_row(yp + row * n, n, k, w, w.psi.data());
              finish_row(psi, sh, n, k, bp, cp, w);
            }
            const T* gr = gp + row * n;
            const T *z = w.z.data(), *inv = w.inv.data(), *P = w.pool.data();
            const T e = w.e;
            for (int64_t i = 0; i < n; ++i) {
              const T gz = gr[i] * z[i];
              const T hz = gz * gm[i];
              const T gd = mr * hz * inv[i];
              h[i] = hz;
              gw[i] = gd * cp[i];
              cz[i] += gz;
              cg[i] += gr[i];
              ce[i] += gd * e;
              cpool[i] += gd * P[i];
            }
            window_sums(gw.data(), n, k.after, k.before, gpsi.data());  // the window's transpose
            T* gyr = gyp + row * n;
            for (int64_t i = 0; i < n; ++i) gyr[i] = pe * h[i] + a * psi[i] * gpsi[i];
            if (k.center) {
              const T mean = static_cast<T>(row_sum(gyr, n) / static_cast<double>(n));
              for (int64_t i = 0; i < n; ++i) gyr[i] -= mean;
            }
          }
          double* dst = pp + b * 4 * n;
          for (int64_t j = 0; j < 4 * n; ++j) dst[j] = static_cast<double>(cols[j]);
        }
      });
    });
  }
  at::Tensor sums = at::zeros({4, n}, y.options().dtype(at::kDouble));  // the blocks added in block order
  {
    const double* pp = part.data_ptr<double>();
    double* sp = sums.data_ptr<double>();
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t j = 0; j < 4 * n; ++j) sp[j] += pp[b * 4 * n + j];
  }
  at::Tensor gbeta = sums[2].to(y.scalar_type()), gc = sums[3].to(y.scalar_type());
  at::Tensor ggamma = gamma.numel() > 0 ? sums[0].to(y.scalar_type()) : at::empty({0}, y.options());
  at::Tensor gbias = bias.numel() > 0 ? sums[1].to(y.scalar_type()) : at::empty({0}, y.options());
  return {gy, gbeta, gc, ggamma, gbias};
}

}  // namespace

void register_exp_rows(pybind11::module_& m) {
  m.def("exp_rows_forward", &exp_rows_forward, "γ e^{p(t−s)} (β e^{−αs} + c pool(e^{α(t−s)}))^{−r} e^{(p−αr)s} + b");
  m.def("exp_rows_backward", &exp_rows_backward, "(gy, gβ, gc, gγ, gb) of exp_rows_forward, recomputed from y");
}
