// The low-rank κ's pool on CPU: W = (ψ V) Uᵀ with U, V ≥ 0 of shape (N, K) and K small (κ = U Vᵀ).
//
//   forward:   t = ψ V (M × K),  W = t Uᵀ (M × N)
//   backward:  gt = gW U,  gψ = gt Vᵀ,  gU = gWᵀ t,  gV = ψᵀ gt
//
// torch runs these K-thin products through MKL's general GEMM, which first copies (packs) the (M, N) operand
// and scales its output: at (1024, 512, K = 16) perf put more of a product's time in that packing than in its
// arithmetic. Here the (M, N) operands are read where they lie, as register blocks of rank-1 updates (K padded
// to whole vectors, kp): t = ψ V and gt = gW U up to 16 rows × the kp lanes at a time, summed over the row in
// order; W = t Uᵀ and gψ = gt Vᵀ 8 rows × 2 column vectors, summed over k in order; gU and gV 16 columns × the
// kp lanes, summed over a block of 64 rows, the blocks added in block order in double. No sum depends on the
// thread count: a row's products are one thread's, and the blocks are fixed. Floating-point sums in another
// order than MKL's: the products agree with torch's to rounding (tests), not to the bit.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#else
constexpr int kVecBytes = 32;
#endif
constexpr int64_t kRowsPerBlock = 64;  // rows per block of the gradients' partial sums (fixed: thread-free bits)

template <typename T>
struct Lanes {
  typedef T vec __attribute__((vector_size(kVecBytes)));
  static constexpr int L = kVecBytes / static_cast<int>(sizeof(T));
};

template <typename T>
inline typename Lanes<T>::vec load(const T* p) {
  typename Lanes<T>::vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
inline void store(T* p, const typename Lanes<T>::vec& v) {
  std::memcpy(p, &v, sizeof v);
}

// Each product is a register block of rank-1 updates: R rows (or columns) × G vectors of k (or of columns),
// kAcc accumulators in all, over an operand that stays in L1 (a tile of Uᵀ or Vᵀ, a block's t or gt).
constexpr int kAcc = kVecBytes == 64 ? 16 : 8;  // AVX-512 has 32 vector registers, AVX2 16

// out[r, g0 L + j] = Σ_i a[r, i] b[i, g0 L + j] for r < R, j < G L: rows of a (lda) times the padded thin b
// (n × kp); out has row stride kp. The sum over i runs in order.
template <typename T, int G, int R>
inline void thin_block(const T* __restrict__ a, int64_t lda, const T* __restrict__ b, int64_t kp, int64_t n,
                       int64_t g0, T* __restrict__ out) {
  using V = typename Lanes<T>::vec;
  constexpr int L = Lanes<T>::L;
  V acc[R][G];
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < G; ++g) acc[r][g] = V{};
  for (int64_t i = 0; i < n; ++i) {
    V bv[G];
    for (int g = 0; g < G; ++g) bv[g] = load(b + i * kp + (g0 + g) * L);
    for (int r = 0; r < R; ++r) {
      const T x = a[r * lda + i];
      for (int g = 0; g < G; ++g) acc[r][g] += x * bv[g];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < G; ++g) store(out + r * kp + (g0 + g) * L, acc[r][g]);
}

template <typename T, int G>
void thin_rows_g(const T* a, int64_t lda, int64_t rows, const T* b, int64_t kp, int64_t n, int64_t g0, T* out) {
  constexpr int R = kAcc / G;
  int64_t r = 0;
  for (; r + R <= rows; r += R) thin_block<T, G, R>(a + r * lda, lda, b, kp, n, g0, out + r * kp);
  for (; r < rows; ++r) thin_block<T, G, 1>(a + r * lda, lda, b, kp, n, g0, out + r * kp);
}

// Calls f with std::integral_constant<int, G> for each group of G <= 4 of a row's `vecs` vectors of k (from g0).
template <typename F>
inline void by_vector_groups(int64_t vecs, F&& f) {
  for (int64_t g0 = 0; g0 < vecs; g0 += 4) {
    switch (std::min<int64_t>(4, vecs - g0)) {
      case 4: f(std::integral_constant<int, 4>{}, g0); break;
      case 3: f(std::integral_constant<int, 3>{}, g0); break;
      case 2: f(std::integral_constant<int, 2>{}, g0); break;
      default: f(std::integral_constant<int, 1>{}, g0); break;
    }
  }
}

// out (rows × kp) = a (rows × n, row stride lda) · b (n × kp): every row's kp/L vectors, four at a time.
template <typename T>
void thin_rows(const T* a, int64_t lda, int64_t rows, const T* b, int64_t kp, int64_t n, T* out) {
  by_vector_groups(kp / Lanes<T>::L, [&](auto group, int64_t g0) {
    thin_rows_g<T, decltype(group)::value>(a, lda, rows, b, kp, n, g0, out);
  });
}

// part[i, j] (row stride kp) = Σ_r x[r, i] s[r, j] over `rows` rows: sᵀ x's columns i0 … i0 + R, transposed.
template <typename T, int G, int R>
inline void outer_block(const T* __restrict__ x, int64_t n, const T* __restrict__ s, int64_t kp, int64_t rows,
                        int64_t i0, int64_t g0, T* __restrict__ part) {
  using V = typename Lanes<T>::vec;
  constexpr int L = Lanes<T>::L;
  V acc[R][G];
  for (int c = 0; c < R; ++c)
    for (int g = 0; g < G; ++g) acc[c][g] = V{};
  for (int64_t r = 0; r < rows; ++r) {
    V sv[G];
    for (int g = 0; g < G; ++g) sv[g] = load(s + r * kp + (g0 + g) * L);
    for (int c = 0; c < R; ++c) {
      const T xv = x[r * n + i0 + c];
      for (int g = 0; g < G; ++g) acc[c][g] += xv * sv[g];
    }
  }
  for (int c = 0; c < R; ++c)
    for (int g = 0; g < G; ++g) store(part + (i0 + c) * kp + (g0 + g) * L, acc[c][g]);
}

template <typename T, int G>
void outer_g(const T* x, int64_t n, const T* s, int64_t kp, int64_t rows, int64_t g0, T* part) {
  constexpr int R = kAcc / G;
  int64_t i = 0;
  for (; i + R <= n; i += R) outer_block<T, G, R>(x, n, s, kp, rows, i, g0, part);
  for (; i < n; ++i) outer_block<T, G, 1>(x, n, s, kp, rows, i, g0, part);
}

// part (n × kp) = xᵀ s over `rows` rows of x (rows × n) and s (rows × kp).
template <typename T>
void block_outer(const T* x, int64_t n, const T* s, int64_t kp, int64_t rows, T* part) {
  by_vector_groups(kp / Lanes<T>::L, [&](auto group, int64_t g0) {
    outer_g<T, decltype(group)::value>(x, n, s, kp, rows, g0, part);
  });
}

// out[r, i] = Σ_k s[r, k] bT[k, i] (k < K, in order) for R rows and C vectors of columns from i0.
template <typename T, int R, int C>
inline void wide_block(const T* __restrict__ s, int64_t kp, const T* __restrict__ bT, int64_t K, int64_t n,
                       int64_t i0, T* __restrict__ out) {
  using V = typename Lanes<T>::vec;
  constexpr int L = Lanes<T>::L;
  V acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V bv[C];
    for (int c = 0; c < C; ++c) bv[c] = load(bT + k * n + i0 + c * L);
    for (int r = 0; r < R; ++r) {
      const T sk = s[r * kp + k];
      for (int c = 0; c < C; ++c) acc[r][c] += sk * bv[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) store(out + r * n + i0 + c * L, acc[r][c]);
}

// out (rows × n) = s (rows × kp, its first K columns) · bT (K × n): column tiles of 2 vectors, each tile of bT
// read by every row of the block while it is in L1, kAcc / 2 rows at a time (8 rows × 2 vectors took 12 % less
// time than 4 × 4 at K = 16, AVX-512: GCC folds each load of bT into every FMA that reads it, so fewer column
// vectors mean fewer loads); the columns past the last whole vector one at a time.
template <typename T>
void wide_rows(const T* s, int64_t kp, int64_t rows, const T* bT, int64_t K, int64_t n, T* out) {
  constexpr int L = Lanes<T>::L, C = 2, R = kAcc / C;
  int64_t i = 0;
  for (; i + C * L <= n; i += C * L) {
    int64_t r = 0;
    for (; r + R <= rows; r += R) wide_block<T, R, C>(s + r * kp, kp, bT, K, n, i, out + r * n);
    for (; r < rows; ++r) wide_block<T, 1, C>(s + r * kp, kp, bT, K, n, i, out + r * n);
  }
  for (; i + L <= n; i += L)
    for (int64_t r = 0; r < rows; ++r) wide_block<T, 1, 1>(s + r * kp, kp, bT, K, n, i, out + r * n);
  for (; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      T a = 0;
      for (int64_t k = 0; k < K; ++k) a += s[r * kp + k] * bT[k * n + i];
      out[r * n + i] = a;
    }
}

// The blocks' partial (n × kp) sums, part (blocks, n, kp), added in block order in double: an (n, K) tensor.
template <typename T>
void blocks_to_gradient(const T* part, int64_t blocks, int64_t n, int64_t kp, int64_t K, T* out) {
  std::vector<double> acc(static_cast<size_t>(n * K));
  for (int64_t b = 0; b < blocks; ++b) {
    const T* p = part + b * n * kp;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < K; ++k) acc[i * K + k] += static_cast<double>(p[i * kp + k]);
  }
  for (int64_t j = 0; j < n * K; ++j) out[j] = static_cast<T>(acc[j]);
}

// Asks for a block of rows ahead of its use (into L2: prefetcht1), one request per cache line.
inline void prefetch_block(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 2);
}

// (n, K) → its transpose (K, n), contiguous: a plain loop (the factor is a few KiB; torch's u.t().contiguous() took
// ~9 µs at (512, 16), a third of a 4-row layer's product)
at::Tensor transposed(const at::Tensor& m_in) {
  const at::Tensor m = m_in.contiguous();
  const int64_t n = m.size(0), K = m.size(1);
  at::Tensor out = at::empty({K, n}, m.options());
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "lowrank_transposed", [&] {
    const scalar_t* src = m.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < K; ++k) dst[k * n + i] = src[i * K + k];
  });
  return out;
}

// (n, K) → (n, kp) with zero columns past K: the thin operand padded to whole vectors.
at::Tensor padded(const at::Tensor& m, int64_t kp) {
  const int64_t K = m.size(1);
  if (K == kp) return m.contiguous();
  at::Tensor out = at::zeros({m.size(0), kp}, m.options());
  out.narrow(1, 0, K).copy_(m);
  return out;
}

int64_t padded_rank(const at::Tensor& psi, int64_t K) {
  const int64_t L = kVecBytes / static_cast<int64_t>(psi.element_size());
  return (K + L - 1) / L * L;
}

void check_operands(const at::Tensor& psi, const at::Tensor& u, const at::Tensor& v) {
  TORCH_CHECK(psi.device().is_cpu() && psi.dim() == 2, "lowrank_product: ψ must be a 2-D CPU tensor (M, N)");
  TORCH_CHECK(psi.scalar_type() == at::kFloat || psi.scalar_type() == at::kDouble,
              "lowrank_product: ψ must be float32 or float64");
  TORCH_CHECK(u.dim() == 2 && v.sizes() == u.sizes() && u.size(0) == psi.size(1) && u.size(1) >= 1,
              "lowrank_product: U and V must both be (N, K) with N = ψ's columns");
  TORCH_CHECK(u.scalar_type() == psi.scalar_type() && v.scalar_type() == psi.scalar_type() &&
                  u.device().is_cpu() && v.device().is_cpu(),
              "lowrank_product: U and V must be CPU tensors of ψ's dtype");
}

// (W, t): W = t Uᵀ, t = ψ V; t is kept padded to whole vectors, (M, kp), for the backward.
std::tuple<at::Tensor, at::Tensor> lowrank_forward(const at::Tensor& psi_in, const at::Tensor& u,
                                                   const at::Tensor& v) {
  check_operands(psi_in, u, v);
  const at::Tensor psi = psi_in.contiguous();
  const int64_t M = psi.size(0), N = psi.size(1), K = u.size(1), kp = padded_rank(psi, K);
  const at::Tensor uT = transposed(u), vp = padded(v, kp);
  at::Tensor t = at::empty({M, kp}, psi.options()), w = at::empty({M, N}, psi.options());
  const int64_t blocks = (M + kRowsPerBlock - 1) / kRowsPerBlock;
  AT_DISPATCH_FLOATING_TYPES(psi.scalar_type(), "lowrank_forward", [&] {
    using T = scalar_t;
    const T *p = psi.data_ptr<T>(), *ut = uT.data_ptr<T>(), *vv = vp.data_ptr<T>();
    T *tp = t.data_ptr<T>(), *wp = w.data_ptr<T>();
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * kRowsPerBlock, rows = std::min(kRowsPerBlock, M - r0);
        thin_rows<T>(p + r0 * N, N, rows, vv, kp, N, tp + r0 * kp);
        wide_rows<T>(tp + r0 * kp, kp, rows, ut, K, N, wp + r0 * N);
      }
    });
  });
  return {w, t};
}

// (gψ, gU, gV) from gW and the forward's padded t; each undefined (None) where not asked for.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lowrank_backward(const at::Tensor& gw_in, const at::Tensor& psi_in,
                                                                const at::Tensor& t_in, const at::Tensor& u,
                                                                const at::Tensor& v, bool need_psi, bool need_u,
                                                                bool need_v) {
  check_operands(psi_in, u, v);
  TORCH_CHECK(gw_in.sizes() == psi_in.sizes() && gw_in.scalar_type() == psi_in.scalar_type() &&
                  gw_in.device().is_cpu(),
              "lowrank_backward: gW must be a CPU tensor of ψ's shape and dtype");
  const int64_t M = psi_in.size(0), N = psi_in.size(1), K = u.size(1), kp = padded_rank(psi_in, K);
  TORCH_CHECK(t_in.dim() == 2 && t_in.size(0) == M && t_in.size(1) == kp && t_in.scalar_type() == psi_in.scalar_type(),
              "lowrank_backward: t must be the forward's padded (M, kp)");
  const at::Tensor gw = gw_in.contiguous(), psi = psi_in.contiguous(), t = t_in.contiguous();
  const at::Tensor up = padded(u, kp), vT = transposed(v);
  const bool need_gt = need_psi || need_v;
  const int64_t blocks = (M + kRowsPerBlock - 1) / kRowsPerBlock;
  at::Tensor gt = need_gt ? at::empty({M, kp}, psi.options()) : at::Tensor();
  at::Tensor gpsi = need_psi ? at::empty({M, N}, psi.options()) : at::Tensor();
  at::Tensor part_u = need_u ? at::empty({blocks, N, kp}, psi.options()) : at::Tensor();
  at::Tensor part_v = need_v ? at::empty({blocks, N, kp}, psi.options()) : at::Tensor();
  at::Tensor gu = need_u ? at::empty({N, K}, psi.options()) : at::Tensor();
  at::Tensor gv = need_v ? at::empty({N, K}, psi.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(psi.scalar_type(), "lowrank_backward", [&] {
    using T = scalar_t;
    const T *g = gw.data_ptr<T>(), *p = psi.data_ptr<T>(), *tp = t.data_ptr<T>();
    const T *uu = up.data_ptr<T>(), *vt = vT.data_ptr<T>();
    T* gtp = need_gt ? gt.data_ptr<T>() : nullptr;
    T* gpp = need_psi ? gpsi.data_ptr<T>() : nullptr;
    T* pu = need_u ? part_u.data_ptr<T>() : nullptr;
    T* pv = need_v ? part_v.data_ptr<T>() : nullptr;
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * kRowsPerBlock, rows = std::min(kRowsPerBlock, M - r0);
        // gV's sums read the block's ψ a column strip at a time (a 2 KiB stride), last: asked for now, it is in
        // L2 by then (a step's ψ comes from memory; 10–19 % less time for the backward, ψ and gW out of cache)
        if (need_v) prefetch_block(p + r0 * N, rows * N * sizeof(T));
        if (need_gt) thin_rows<T>(g + r0 * N, N, rows, uu, kp, N, gtp + r0 * kp);
        if (need_psi) wide_rows<T>(gtp + r0 * kp, kp, rows, vt, K, N, gpp + r0 * N);
        if (need_u) block_outer<T>(g + r0 * N, N, tp + r0 * kp, kp, rows, pu + b * N * kp);
        if (need_v) block_outer<T>(p + r0 * N, N, gtp + r0 * kp, kp, rows, pv + b * N * kp);
      }
    });
    if (need_u) blocks_to_gradient<T>(pu, blocks, N, kp, K, gu.data_ptr<T>());
    if (need_v) blocks_to_gradient<T>(pv, blocks, N, kp, K, gv.data_ptr<T>());
  });
  return {gpsi, gu, gv};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The product as one C++ autograd node (a Python autograd.Function costs about as much as the products at the
// studies' widths). It saves ψ, U, V and the padded t; a double backward (create_graph) differentiates the
// plain formula in Python (`dn_kernel._lowrank_formula_backward`).
struct LowRankNode : public torch::autograd::Function<LowRankNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& psi, const at::Tensor& u, const at::Tensor& v) {
    auto res = lowrank_forward(psi, u, v);
    ctx->save_for_backward({psi, u, v, std::get<1>(res)});
    return std::get<0>(res);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const bool need[3] = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    variable_list out(3);
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the plain formula in Python
      pybind11::gil_scoped_acquire gil;
      pybind11::sequence got = pybind11::module_::import("lateralnorm.norms.dn_kernel")
                                   .attr("_lowrank_formula_backward")(
                                       grads[0], s[0], s[1], s[2], pybind11::make_tuple(need[0], need[1], need[2]));
      for (size_t i = 0; i < 3 && i < got.size(); ++i)
        if (!got[i].is_none()) out[i] = got[i].cast<at::Tensor>();
      return out;
    }
    auto res = lowrank_backward(grads[0], s[0], s[3], s[1], s[2], need[0], need[1], need[2]);
    out[0] = std::get<0>(res);
    out[1] = std::get<1>(res);
    out[2] = std::get<2>(res);
    return out;
  }
};

}  // namespace

// The products for dn_rows.cpp's low-rank layer node (ψ, the pool and the output in one node): these functions.
std::tuple<at::Tensor, at::Tensor> lowrank_product_forward(const at::Tensor& psi, const at::Tensor& u,
                                                           const at::Tensor& v) {
  return lowrank_forward(psi, u, v);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lowrank_product_backward(const at::Tensor& gw, const at::Tensor& psi,
                                                                        const at::Tensor& t, const at::Tensor& u,
                                                                        const at::Tensor& v, bool need_psi,
                                                                        bool need_u, bool need_v) {
  return lowrank_backward(gw, psi, t, u, v, need_psi, need_u, need_v);
}

void register_lowrank_product(pybind11::module_& m) {
  m.def("lowrank_forward", &lowrank_forward, "(W, t): t = ψ V, W = t Uᵀ (the low-rank κ's pool, K-thin rows)");
  m.def("lowrank_backward", &lowrank_backward,
        "(gψ, gU, gV) of W = (ψ V) Uᵀ from gW and the forward's t; None where not asked for");
  m.def(
      "lowrank_node", [](const at::Tensor& psi, const at::Tensor& u, const at::Tensor& v) {
        return LowRankNode::apply(psi, u, v);
      },
      "W = (ψ V) Uᵀ as an autograd node");
}
