#include "core/autograd.h"

#include <atomic>
#include <cctype>
#include <cmath>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"
#include "core/profiler.h"

namespace peft {
namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_sequence{0};
std::atomic<bool> g_anomaly{false};
// > 0 while forward checks must not run on this thread: inside the scan itself (it converts
// tensors through ops that record) and inside backward formulas (their intermediate ops are
// checked as one node, after apply()).
thread_local int g_anomaly_suppressed = 0;
struct ModuleFrame {
  std::string name, type;
};
thread_local std::vector<ModuleFrame> g_module_stack;

struct SuppressAnomaly {
  SuppressAnomaly() { ++g_anomaly_suppressed; }
  ~SuppressAnomaly() { --g_anomaly_suppressed; }
};

// "LogSoftmaxBackward" → "log_softmax": the forward op a node was recorded for.
std::string forward_op_name(const std::string& node_name) {
  std::string base = node_name;
  const std::string suffix = "Backward";
  if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
    base.resize(base.size() - suffix.size());
  std::string out;
  for (size_t i = 0; i < base.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(base[i]);
    if (std::isupper(c)) {
      if (i > 0 && !std::isupper(static_cast<unsigned char>(base[i - 1]))) out += '_';
      out += static_cast<char>(std::tolower(c));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string module_clause(const std::string& path) {
  return path.empty() ? "outside any module" : "in module " + path;
}
}  // namespace

bool GradMode::is_enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool enabled) { g_grad_enabled = enabled; }
bool AnomalyMode::is_enabled() { return g_anomaly.load(std::memory_order_relaxed); }
void AnomalyMode::set_enabled(bool enabled) { g_anomaly.store(enabled, std::memory_order_relaxed); }

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
  PEFT_CHECK(in.device() == leaf->storage->device(), "backward: gradient on ", in.device().str(),
             " for a leaf tensor on ", leaf->storage->device().str(), " (shape ", shape_str(leaf->shape), ")");
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

ModulePathScope::ModulePathScope(std::string name, std::string type_name) {
  g_module_stack.push_back({std::move(name), std::move(type_name)});
}
ModulePathScope::~ModulePathScope() { g_module_stack.pop_back(); }

std::string current_module_path() {
  if (g_module_stack.empty()) return "";
  std::string path;
  for (const auto& f : g_module_stack) {
    if (f.name.empty()) continue;
    if (!path.empty()) path += '.';
    path += f.name;
  }
  const std::string& type = g_module_stack.back().type;
  return path.empty() ? type : path + " (" + type + ")";
}

bool has_nonfinite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()) || t.numel() == 0) return false;
  SuppressAnomaly suppress;
  NoGradGuard no_grad;
  if (t.dtype() == DType::F32 && t.device().is_cpu() && t.is_contiguous()) {
    const float* p = t.data_ptr<float>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      if (!std::isfinite(p[i])) return true;
    return false;
  }
  for (double v : t.to_vector<double>())
    if (!std::isfinite(v)) return true;
  return false;
}

namespace {
// A view (an output sharing an input's storage) only passes values on, so it is skipped: the
// op that computed them is named instead (e.g. sum, whose result is reshaped by a view).
bool is_view_of_input(const Tensor& out, const std::vector<Tensor>& inputs) {
  for (const auto& in : inputs)
    if (in.defined() && out.defined() && in.storage() == out.storage()) return true;
  return false;
}

void check_forward_outputs(const std::string& name, const std::vector<Tensor>& inputs,
                           const std::vector<Tensor>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (is_view_of_input(outputs[i], inputs) || !has_nonfinite(outputs[i])) continue;
    PEFT_ERROR("anomaly: ", forward_op_name(name), " (", name, ") produced NaN/Inf in its output",
               outputs.size() > 1 ? " " + std::to_string(i) : std::string(), " (shape ",
               shape_str(outputs[i].shape()), ") ", module_clause(current_module_path()));
  }
}
}  // namespace

Node::~Node() {
  // Nodes this one owns alone are moved to a local stack before they can die inside this
  // destructor; each is then emptied of its own edges the same way before it is destroyed, so
  // no destructor ever recurses. (Saved tensors are detached, so edges are the only links.)
  std::vector<std::shared_ptr<Node>> pending;
  auto take = [&pending](std::vector<Edge>& edges) {
    for (Edge& e : edges)
      if (e.fn && e.fn.use_count() == 1) pending.push_back(std::move(e.fn));
    edges.clear();
  };
  take(next_edges);
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    take(n->next_edges);
  }  // n dies here with no edges left
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
  const bool anomaly = AnomalyMode::is_enabled() && g_anomaly_suppressed == 0;
  if (anomaly) check_forward_outputs(name, inputs, outputs);
  if (!needs_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->sequence_nr = g_sequence++;
  if (AnomalyMode::is_enabled() || profiler::is_enabled()) node->module_path = current_module_path();
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
    std::vector<Tensor> in_grads;
    // Timed under the node's name and its forward's module path (a no-op unless profiling).
    profiler::RecordFunction timed(node->name(), node->outputs.empty() ? Device::cpu() : node->outputs[0].device,
                                   node->module_path);
    if (AnomalyMode::is_enabled()) {
      {
        SuppressAnomaly suppress;
        in_grads = node->apply(grads);
      }
      for (size_t i = 0; i < in_grads.size(); ++i)
        PEFT_CHECK(!has_nonfinite(in_grads[i]), "anomaly: ", node->name(), " produced NaN/Inf in a gradient (for input ",
                   i, ", shape ", shape_str(in_grads[i].shape()), ") ", module_clause(node->module_path));
    } else {
      in_grads = node->apply(grads);
    }
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
