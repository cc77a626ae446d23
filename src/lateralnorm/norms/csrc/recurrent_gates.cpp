// The gate arithmetic of one LSTM or GRU step on CPU, fused: what follows the norm, as one autograd node
// each (torch's step written op by op makes about a dozen nodes per step, and at H = 128 their per-op and
// per-node costs outweigh the arithmetic). The transcendental functions run on ATen's vectorized kernels
// (at::sigmoid, at::tanh: the values torch's own ops give); the products and sums run in one loop per step.
//
// LSTM (a: the normed pre-activations [i f g o], B × 4H; b: the per-gate bias):
//   i, f, o = σ(a_· + b_·),  g = tanh(a_g + b_g),  c = f c₋ + i g,  h = o tanh(c)
//   backward: ĝc = gc + gh o (1 − tanh²c);  ga_i = ĝc g i(1−i),  ga_f = ĝc c₋ f(1−f),  ga_g = ĝc i (1−g²),
//             ga_o = gh tanh(c) o(1−o);  gc₋ = ĝc f;  gb = Σ_batch ga
// GRU, split where its second norm sits (n's pre-activation is normed between the two halves):
//   reset:  r, z = σ(a_rz + b_rz),  p = x_n + r ⊙ u   (u = U_n h₋)      → (z, p)
//           backward: ga_r = gp u r(1−r),  ga_z = gz z(1−z),  gu = gp r,  gx_n = gp,  gb = Σ_batch ga
//   update: n = tanh(a_n + b_n),  h = (1 − z) n + z h₋                 → h
//           backward: ga_n = gh (1 − z)(1 − n²),  gz = gh (h₋ − n),  gh₋ = gh z,  gb = Σ_batch ga_n

#include <torch/extension.h>

#include <cstdint>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The backward loops are not differentiable themselves: a double backward (create_graph) must say so.
void check_first_order() {
  TORCH_CHECK(!at::GradMode::is_enabled(),
              "lateralnorm: double backward (create_graph=True) through the compiled recurrent gates is not "
              "supported; set LATERALNORM_CPU_KERNEL=torch to run the cells in torch ops");
}

at::Tensor or_zeros(const at::Tensor& g, const at::Tensor& like) {
  return g.defined() ? g.contiguous() : at::zeros_like(like);
}

void check_rows(const at::Tensor& t, int64_t rows, int64_t cols, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, name,
              " must be a CPU tensor of shape (", rows, ", ", cols, ")");
}

// ------------------------------------------------------------------------------------------------ LSTM
template <typename T>
void lstm_state(const T* __restrict__ s, const T* __restrict__ cp, T* __restrict__ c, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* i = s + b * 4 * H;
    const T* f = i + H;
    const T* g = i + 2 * H;
    const T* cpb = cp + b * H;
    T* cb = c + b * H;
    for (int64_t j = 0; j < H; ++j) cb[j] = f[j] * cpb[j] + i[j] * g[j];
  }
}

template <typename T>
void lstm_backward_rows(const T* __restrict__ s, const T* __restrict__ tc, const T* __restrict__ cp,
                        const T* __restrict__ gh, const T* __restrict__ gc, T* __restrict__ ga,
                        T* __restrict__ gcp, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* i = s + b * 4 * H;
    const T* f = i + H;
    const T* g = i + 2 * H;
    const T* o = i + 3 * H;
    const T* t = tc + b * H;
    const T* c0 = cp + b * H;
    const T* dh = gh + b * H;
    const T* dc = gc + b * H;
    T* da = ga + b * 4 * H;
    T* dc0 = gcp + b * H;
    for (int64_t j = 0; j < H; ++j) {
      const T ct = dc[j] + dh[j] * o[j] * (T(1) - t[j] * t[j]);
      da[j] = ct * g[j] * i[j] * (T(1) - i[j]);
      da[H + j] = ct * c0[j] * f[j] * (T(1) - f[j]);
      da[2 * H + j] = ct * i[j] * (T(1) - g[j] * g[j]);
      da[3 * H + j] = dh[j] * t[j] * o[j] * (T(1) - o[j]);
      dc0[j] = ct * f[j];
    }
  }
}

struct LstmGates : public torch::autograd::Function<LstmGates> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& bias,
                               const at::Tensor& c_prev) {
    const int64_t B = a.size(0), H = c_prev.size(1);
    check_rows(a, B, 4 * H, "a");
    check_rows(c_prev, B, H, "c_prev");
    at::Tensor pre = a + bias;
    at::Tensor s = at::sigmoid(pre);
    at::Tensor s_g = s.narrow(1, 2 * H, H);
    at::tanh_out(s_g, pre.narrow(1, 2 * H, H));
    at::Tensor cp = c_prev.contiguous();
    at::Tensor c = at::empty_like(cp);
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lstm_gates", [&] {
      lstm_state<scalar_t>(s.const_data_ptr<scalar_t>(), cp.const_data_ptr<scalar_t>(),
                           c.mutable_data_ptr<scalar_t>(), B, H);
    });
    at::Tensor tc = at::tanh(c);
    at::Tensor h = s.narrow(1, 3 * H, H) * tc;
    ctx->save_for_backward({s, tc, cp});
    return {h, c};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_first_order();
    auto saved = ctx->get_saved_variables();
    const at::Tensor &s = saved[0], &tc = saved[1], &cp = saved[2];
    const int64_t B = tc.size(0), H = tc.size(1);
    at::Tensor gh = or_zeros(grads[0], tc), gc = or_zeros(grads[1], tc);
    at::Tensor ga = at::empty_like(s), gcp = at::empty_like(cp);
    AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "lstm_gates_backward", [&] {
      lstm_backward_rows<scalar_t>(s.const_data_ptr<scalar_t>(), tc.const_data_ptr<scalar_t>(),
                                   cp.const_data_ptr<scalar_t>(), gh.const_data_ptr<scalar_t>(),
                                   gc.const_data_ptr<scalar_t>(), ga.mutable_data_ptr<scalar_t>(),
                                   gcp.mutable_data_ptr<scalar_t>(), B, H);
    });
    return {ga, ga.sum(0), gcp};
  }
};

// ----------------------------------------------------------------------------------------------- GRU
template <typename T>
void gru_reset_rows(const T* __restrict__ s, const T* __restrict__ u, const T* __restrict__ xn, T* __restrict__ z,
                    T* __restrict__ p, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* r = s + b * 2 * H;
    const T* zs = r + H;
    const T* ub = u + b * H;
    const T* xb = xn + b * H;
    T* zb = z + b * H;
    T* pb = p + b * H;
    for (int64_t j = 0; j < H; ++j) {
      zb[j] = zs[j];
      pb[j] = xb[j] + r[j] * ub[j];
    }
  }
}

template <typename T>
void gru_reset_backward_rows(const T* __restrict__ s, const T* __restrict__ u, const T* __restrict__ gz,
                             const T* __restrict__ gp, T* __restrict__ ga, T* __restrict__ gu, int64_t B,
                             int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* r = s + b * 2 * H;
    const T* z = r + H;
    const T* ub = u + b * H;
    const T* dz = gz + b * H;
    const T* dp = gp + b * H;
    T* da = ga + b * 2 * H;
    T* du = gu + b * H;
    for (int64_t j = 0; j < H; ++j) {
      da[j] = dp[j] * ub[j] * r[j] * (T(1) - r[j]);
      da[H + j] = dz[j] * z[j] * (T(1) - z[j]);
      du[j] = dp[j] * r[j];
    }
  }
}

struct GruReset : public torch::autograd::Function<GruReset> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a_rz, const at::Tensor& b_rz,
                               const at::Tensor& u, const at::Tensor& x_n) {
    const int64_t B = u.size(0), H = u.size(1);
    check_rows(a_rz, B, 2 * H, "a_rz");
    check_rows(x_n, B, H, "x_n");
    at::Tensor s = at::sigmoid(a_rz + b_rz);
    at::Tensor uc = u.contiguous(), xc = x_n.contiguous();
    at::Tensor z = at::empty_like(uc), p = at::empty_like(uc);
    AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gru_reset", [&] {
      gru_reset_rows<scalar_t>(s.const_data_ptr<scalar_t>(), uc.const_data_ptr<scalar_t>(),
                               xc.const_data_ptr<scalar_t>(), z.mutable_data_ptr<scalar_t>(),
                               p.mutable_data_ptr<scalar_t>(), B, H);
    });
    ctx->save_for_backward({s, uc});
    return {z, p};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_first_order();
    auto saved = ctx->get_saved_variables();
    const at::Tensor &s = saved[0], &u = saved[1];
    const int64_t B = u.size(0), H = u.size(1);
    at::Tensor gz = or_zeros(grads[0], u), gp = or_zeros(grads[1], u);
    at::Tensor ga = at::empty_like(s), gu = at::empty_like(u);
    AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gru_reset_backward", [&] {
      gru_reset_backward_rows<scalar_t>(s.const_data_ptr<scalar_t>(), u.const_data_ptr<scalar_t>(),
                                        gz.const_data_ptr<scalar_t>(), gp.const_data_ptr<scalar_t>(),
                                        ga.mutable_data_ptr<scalar_t>(), gu.mutable_data_ptr<scalar_t>(), B, H);
    });
    return {ga, ga.sum(0), gu, gp};
  }
};

template <typename T>
void gru_update_rows(const T* __restrict__ n, const T* __restrict__ z, const T* __restrict__ hp,
                     T* __restrict__ h, int64_t count) {
  for (int64_t k = 0; k < count; ++k) h[k] = (T(1) - z[k]) * n[k] + z[k] * hp[k];
}

template <typename T>
void gru_update_backward_rows(const T* __restrict__ n, const T* __restrict__ z, const T* __restrict__ hp,
                              const T* __restrict__ gh, T* __restrict__ ga, T* __restrict__ gz,
                              T* __restrict__ ghp, int64_t count) {
  for (int64_t k = 0; k < count; ++k) {
    ga[k] = gh[k] * (T(1) - z[k]) * (T(1) - n[k] * n[k]);
    gz[k] = gh[k] * (hp[k] - n[k]);
    ghp[k] = gh[k] * z[k];
  }
}

struct GruUpdate : public torch::autograd::Function<GruUpdate> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a_n, const at::Tensor& b_n,
                               const at::Tensor& z, const at::Tensor& h_prev) {
    const int64_t B = z.size(0), H = z.size(1);
    check_rows(a_n, B, H, "a_n");
    check_rows(h_prev, B, H, "h_prev");
    at::Tensor n = at::tanh(a_n + b_n);
    at::Tensor zc = z.contiguous(), hp = h_prev.contiguous();
    at::Tensor h = at::empty_like(zc);
    AT_DISPATCH_FLOATING_TYPES(n.scalar_type(), "gru_update", [&] {
      gru_update_rows<scalar_t>(n.const_data_ptr<scalar_t>(), zc.const_data_ptr<scalar_t>(),
                                hp.const_data_ptr<scalar_t>(), h.mutable_data_ptr<scalar_t>(), B * H);
    });
    ctx->save_for_backward({n, zc, hp});
    return {h};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_first_order();
    auto saved = ctx->get_saved_variables();
    const at::Tensor &n = saved[0], &z = saved[1], &hp = saved[2];
    at::Tensor gh = or_zeros(grads[0], n);
    at::Tensor ga = at::empty_like(n), gz = at::empty_like(n), ghp = at::empty_like(n);
    AT_DISPATCH_FLOATING_TYPES(n.scalar_type(), "gru_update_backward", [&] {
      gru_update_backward_rows<scalar_t>(n.const_data_ptr<scalar_t>(), z.const_data_ptr<scalar_t>(),
                                         hp.const_data_ptr<scalar_t>(), gh.const_data_ptr<scalar_t>(),
                                         ga.mutable_data_ptr<scalar_t>(), gz.mutable_data_ptr<scalar_t>(),
                                         ghp.mutable_data_ptr<scalar_t>(), n.numel());
    });
    return {ga, ga.sum(0), gz, ghp};
  }
};

}  // namespace

void register_recurrent_gates(pybind11::module_& m) {
  m.def(
      "lstm_gates",
      [](const at::Tensor& a, const at::Tensor& bias, const at::Tensor& c_prev) {
        auto out = LstmGates::apply(a, bias, c_prev);
        return std::make_tuple(out[0], out[1]);
      },
      "one LSTM step after the norm: (h, c) from the normed pre-activations [i f g o], bias and c₋");
  m.def(
      "gru_reset",
      [](const at::Tensor& a_rz, const at::Tensor& b_rz, const at::Tensor& u, const at::Tensor& x_n) {
        auto out = GruReset::apply(a_rz, b_rz, u, x_n);
        return std::make_tuple(out[0], out[1]);
      },
      "GRU gates r, z = σ(a_rz + b): (z, x_n + r ⊙ u), u = U_n h₋");
  m.def(
      "gru_update",
      [](const at::Tensor& a_n, const at::Tensor& b_n, const at::Tensor& z, const at::Tensor& h_prev) {
        return GruUpdate::apply(a_n, b_n, z, h_prev)[0];
      },
      "GRU output h = (1 − z) tanh(a_n + b_n) + z h₋");
}
