// The bookkeeping the kernels' C++ autograd nodes share (dn_rows.cpp, exp_rows.cpp): optional tensors in and out of
// a node's saved variables, which inputs ask for a gradient, and the Python function a double backward calls.
#pragma once

#include <torch/csrc/autograd/custom_function.h>
#include <torch/extension.h>

#include <array>
#include <cstddef>

namespace lateralnorm_node {

// An optional input as a saved variable (undefined where left out), and back
inline at::Tensor or_undefined(const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }
inline c10::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

// A Python function's result item as a gradient (None: undefined)
inline at::Tensor tensor_or_undefined(const pybind11::handle& h) {
  return h.is_none() ? at::Tensor() : h.cast<at::Tensor>();
}

// A Python function a node's double backward calls (under the GIL).
inline pybind11::object python_fallback(const char* module, const char* name) {
  return pybind11::module_::import(module).attr(name);
}

// Whether each variable input of a node asks for a gradient: `given` marks the inputs present (an optional one left
// out has no edge), in the forward's argument order.
template <size_t K>
std::array<bool, K> needs_of(torch::autograd::AutogradContext* ctx, const std::array<bool, K>& given) {
  std::array<bool, K> need{};
  for (size_t i = 0, edge = 0; i < K; ++i)
    if (given[i]) need[i] = ctx->needs_input_grad(edge++);
  return need;
}

}  // namespace lateralnorm_node
