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
  virtual ~Node() = default;
  // grads[i] is the gradient w.r.t. output i (always defined: zeros are filled in).
  // Returns one gradient per next edge (undefined where not needed).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grads) = 0;
  virtual std::string name() const = 0;
  virtual void release() {}
  virtual bool released() const { return false; }

  std::vector<Edge> next_edges;
  std::vector<OutputMeta> outputs;
  uint64_t sequence_nr = 0;
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

}  // namespace autograd
}  // namespace peft
