// Define-by-run autograd. Each differentiable op records a Node holding its backward
// closure and edges to the producers of its inputs; Tensor::backward runs the graph in
// reverse topological order (by creation sequence, like PyTorch), accumulating into leaf
// .grad. After backward the closures are dropped (their saved tensors freed) unless
// retain_graph; running through a freed node is a clear error.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft {
namespace autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: that input needs no gradient
  uint32_t input_nr = 0;     // which output of fn the gradient flows to
};

// Metadata of one forward output, used to materialise zeros for unused outputs.
struct OutputMeta {
  Shape shape;
  DType dtype = DType::F32;
  Device device;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  // Releases the graph below iteratively: dropping the last tensor of a long chain (an RNN over
  // many steps, 1e6 ops) would otherwise recurse once per node and overflow the stack.
  virtual ~Node();
  // grads[i] is the gradient w.r.t. output i (always defined: zeros are filled in).
  // Returns one gradient per next edge (undefined where not needed).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grads) = 0;
  virtual std::string name() const = 0;
  virtual void release() {}
  virtual bool released() const { return false; }

  std::vector<Edge> next_edges;
  std::vector<OutputMeta> outputs;
  uint64_t sequence_nr = 0;
  // The module that was running when the node was recorded ("seq.2 (Linear)"); filled only
  // in anomaly mode, so a backward anomaly can name it.
  std::string module_path;
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads)>;

// A node whose backward is a closure; the closure's captures are the saved tensors.
class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  std::string name() const override { return name_; }
  void release() override { fn_ = nullptr; released_ = true; }
  bool released() const override { return released_; }

 private:
  std::string name_;
  BackwardFn fn_;
  bool released_ = false;
};

// Leaf sink: sums incoming gradients into the tensor's .grad.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::weak_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  std::string name() const override { return "AccumulateGrad"; }
 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// True when recording is on and some input requires grad.
bool needs_grad(const std::vector<Tensor>& inputs);
Edge gradient_edge(const Tensor& t);

// Records `outputs` as produced by a node named `name` from `inputs`, when needs_grad(inputs).
// `backward` receives one gradient per output and returns one per input (undefined = none).
// The outputs are marked requires_grad. Call after computing the outputs without history.
void record(const std::string& name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, BackwardFn backward);

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots, bool retain_graph);

// ---- module path (for anomaly messages)
// A thread-local stack of the modules being run. Each frame holds the module's dotted name
// relative to the frame below it ("" when unknown, e.g. the root) and its type name; layers/
// pushes frames (Module::operator(), containers) only while anomaly mode is on, so the stack
// costs nothing otherwise. Core knows names only, never modules.
class ModulePathScope {
 public:
  ModulePathScope(std::string name, std::string type_name);
  ~ModulePathScope();
  ModulePathScope(const ModulePathScope&) = delete;
  ModulePathScope& operator=(const ModulePathScope&) = delete;
};
// "seq.2 (Linear)": the frames' non-empty names joined with "." and the innermost type;
// just the type when no name is known; "" outside any module.
std::string current_module_path();

// True when the tensor holds a NaN or an Inf (floating dtypes only; any device).
bool has_nonfinite(const Tensor& t);

}  // namespace autograd

// ---- anomaly mode (torch.autograd.detect_anomaly)
// When enabled (process-wide), the first op whose output holds NaN/Inf in forward, and the
// first backward node that returns a NaN/Inf gradient, throw peft::Error naming the op and the
// innermost module being run. Every output is scanned (a device-to-host copy on the GPU), so
// it is a debugging mode, off by default.
struct AnomalyMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};
// RAII: sets anomaly mode in its scope and restores the previous state on exit.
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool enabled = true) : prev_(AnomalyMode::is_enabled()) { AnomalyMode::set_enabled(enabled); }
  ~DetectAnomalyGuard() { AnomalyMode::set_enabled(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;
 private:
  bool prev_;
};
}  // namespace peft
