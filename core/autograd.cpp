#include "core/autograd.h"

#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"

namespace peft {
namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_sequence{0};
}  // namespace

bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool enabled) { g_grad_enabled = enabled; }

namespace autograd {

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& grads) {
  PEFT_CHECK(!released_, "Trying to backward through the graph a second time (or directly access saved "
             "tensors after they have already been freed) in ", name_,
             ". Saved intermediate values of the graph are freed when you call backward(). "
             "Specify retain_graph=true if you need to backward through the graph a second time.");
  return fn_(grads);
}

std::vector<Tensor> AccumulateGrad::apply(const std::vector<Tensor>& grads) {
  auto leaf = leaf_.lock();
  if (!leaf || !grads[0].defined()) return {};
  const Tensor& in = grads[0];
  // The incoming buffer can become .grad without a copy when nothing else can see it: only
  // the engine's list holds the handle and the storage, it is a plain contiguous tensor of
  // the leaf's shape. Otherwise it may alias a saved tensor, a user's seed or another input's
  // gradient, and is copied.
  const bool exclusive = in.impl_ptr().use_count() == 1 && in.storage().use_count() == 1 && in.is_contiguous() &&
                         in.offset() == 0 && !in.grad_fn() && in.shape() == leaf->shape && in.dtype() == leaf->dtype;
  if (!leaf->grad && exclusive) {
    leaf->grad = in.impl_ptr();
    return {};
  }
  Tensor g = in.shape() == leaf->shape ? in : sum_to(in, leaf->shape);
  if (!leaf->grad) leaf->grad = g.detach().clone().impl_ptr();
  else Tensor(leaf->grad).add_(g);
  return {};
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  TensorImpl* impl = t.unsafe_impl();
  if (impl->grad_fn) return {impl->grad_fn, impl->output_nr};
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    impl->grad_accumulator = acc;
  }
  return {acc, 0};
}

void record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, BackwardFn backward) {
  if (!needs_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->sequence_nr = g_sequence++;
  for (const auto& in : inputs) node->next_edges.push_back(gradient_edge(in));
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    node->outputs.push_back({out.shape(), out.dtype(), out.device()});
    if (!out.defined() || !is_floating(out.dtype())) continue;
    TensorImpl* impl = out.unsafe_impl();
    impl->grad_fn = node;
    impl->output_nr = static_cast<uint32_t>(i);
    impl->requires_grad = true;
  }
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots, bool retain_graph) {
  NoGradGuard no_grad;  // backward formulas are not themselves recorded
  // 1. Dependencies: how many edges point at each node.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  // Held for the whole pass: a leaf root's AccumulateGrad is otherwise owned by nobody (the
  // leaf keeps only a weak_ptr), and asking again would make a different node.
  std::vector<Edge> root_edges;
  for (const auto& r : roots) root_edges.push_back(gradient_edge(r));
  for (const Edge& e : root_edges)
    if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next_edges) {
      if (!e.fn) continue;
      deps[e.fn.get()]++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }
  // 2. Ready queue ordered by creation (latest first), input buffers per node.
  auto later = [](const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) {
    return a->sequence_nr < b->sequence_nr;
  };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, decltype(later)> ready(later);
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto add_to_buffer = [&](const Edge& e, const Tensor& g) {
    auto& buf = buffers[e.fn.get()];
    size_t n_out = std::max<size_t>(e.fn->outputs.size(), 1);
    if (buf.size() < n_out) buf.resize(n_out);
    if (!g.defined()) return;
    if (!buf[e.input_nr].defined()) buf[e.input_nr] = g;
    else buf[e.input_nr] = add(buf[e.input_nr], g);
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    const Edge& e = root_edges[i];
    if (!e.fn) continue;
    add_to_buffer(e, grad_roots[i]);
  }
  for (const Edge& e : root_edges) {
    if (e.fn && deps[e.fn.get()] == 0) {
      deps[e.fn.get()] = -1;  // queued
      ready.push(e.fn);
    }
  }
  // 3. Run.
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    std::vector<Tensor> grads = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    grads.resize(std::max<size_t>(node->outputs.size(), 1));
    for (size_t i = 0; i < node->outputs.size(); ++i)
      if (!grads[i].defined())
        grads[i] = Tensor::zeros(node->outputs[i].shape, node->outputs[i].dtype, node->outputs[i].device);
    std::vector<Tensor> in_grads = node->apply(grads);
    if (!retain_graph) node->release();
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.fn) continue;
      if (i < in_grads.size()) add_to_buffer(e, in_grads[i]);
      if (--deps[e.fn.get()] == 0) {
        deps[e.fn.get()] = -1;
        ready.push(e.fn);
      }
    }
  }
}

}  // namespace autograd
}  // namespace peft
