// The seed MLP (../shared/seeds/custom_models.md): Linear(20, H) → ReLU → Linear(H, H) → ReLU →
// Linear(H, 2) → LogSoftmax, held in a child "seq" so its names are PyTorch's ("seq.0", ...).
// Also the PEFT notebook's toy task: X ~ U(0,1)^(1000×20), y = (row sum > 10).
#pragma once
#include <peft/peft.h>

#include <functional>

namespace peft::samples {

class MLP : public nn::Module {
 public:
  explicit MLP(int64_t num_units_hidden = 2000) {
    register_module("seq", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                               std::make_shared<nn::Linear>(20, num_units_hidden), std::make_shared<nn::ReLU>(),
                               std::make_shared<nn::Linear>(num_units_hidden, num_units_hidden),
                               std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(num_units_hidden, 2),
                               std::make_shared<nn::LogSoftmax>(-1)}));
  }
  std::string type_name() const override { return "MLP"; }
  // Looked up through the children table, so an injected replacement of "seq" runs.
  Tensor forward(const Tensor& x) override { return child("seq")->forward(x); }
};

struct ToyTask {
  Tensor X, y;  // (1000, 20) F32, (1000) I64
};

// The notebook's data: X = rand(1000, 20); y = (X.sum(1) > 10). Drawn from `gen`.
inline ToyTask make_toy_task(Generator& gen, int64_t n = 1000) {
  ToyTask t;
  t.X = Tensor::rand({n, 20}, DType::F32, &gen);
  std::vector<int64_t> labels;
  for (double s : sum(t.X, {1}).to_vector<double>()) labels.push_back(s > 10 ? 1 : 0);
  t.y = Tensor::from_vector(labels, {n});
  return t;
}

// A random permutation of [0, n) as an I64 tensor (Fisher–Yates on `gen`).
inline Tensor randperm(int64_t n, Generator& gen) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[static_cast<int64_t>(gen.uniform() * static_cast<double>(i + 1))]);
  return Tensor::from_vector(p, {n});
}

struct EpochResult {
  double train_loss = 0, eval_loss = 0;
};

// Called after each optimizer step: step (1-based), steps in the epoch, the batch's loss and size.
using StepCallback = std::function<void(int64_t step, int64_t steps, double loss, int64_t batch)>;

// One epoch of the notebook's loop: shuffled mini-batches of the first `n_train` rows, then
// the eval loss on the rest. `on_step` (optional) sees every step, e.g. for a ProgressLine.
// With `dp` (data-parallel, every rank drawing the same permutation from the same seed) each
// rank runs its shard of every batch (dist::shard) and the gradients and the reported losses are
// the global batch's.
inline EpochResult run_epoch(nn::Module& model, optim::Optimizer& opt, const ToyTask& task, int64_t n_train,
                             int64_t batch, Generator& gen, const StepCallback& on_step = nullptr,
                             DataParallel* dp = nullptr) {
  EpochResult r;
  model.train();
  Tensor order = randperm(n_train, gen);
  int64_t batches = 0;
  const int64_t steps = (n_train + batch - 1) / batch;
  for (int64_t i = 0; i < n_train; i += batch) {
    const int64_t global = std::min(i + batch, n_train) - i;
    auto [b, e] = dp ? dist::shard(global, dp->comm().rank(), dp->comm().size()) : std::pair<int64_t, int64_t>{0, global};
    Tensor idx = order.slice(0, i + b, i + e);
    if (idx.device() != task.X.device()) idx = idx.to(task.X.device());  // data on the GPU: gather there
    opt.zero_grad();
    double l = 0;
    if (e > b) {
      Tensor loss = nll_loss(model.forward(index_select(task.X, 0, idx)), index_select(task.y, 0, idx));
      loss.backward();
      l = loss.item();
    }
    if (dp) {
      dp->sync_gradients(e - b, global);
      l = dp->reduce_mean(l, e - b, global);
    }
    opt.step();
    r.train_loss += l;
    ++batches;
    if (on_step) on_step(batches, steps, l, global);
  }
  r.train_loss /= static_cast<double>(std::max<int64_t>(batches, 1));
  model.eval();
  NoGradGuard no_grad;
  const int64_t n = task.X.size(0);
  r.eval_loss = nll_loss(model.forward(task.X.slice(0, n_train, n)), task.y.slice(0, n_train, n)).item();
  return r;
}

}  // namespace peft::samples
