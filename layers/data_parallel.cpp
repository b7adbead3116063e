#include "layers/data_parallel.h"

#include <chrono>
#include <sstream>

#include "core/ops.h"

namespace peft {

namespace {

// The kind of device, not its index: ranks on cuda:0 and cuda:1 hold the same model.
const char* device_kind(const Tensor& t) {
  return !t.defined() ? "none" : t.device().is_meta() ? "meta" : t.device().is_cuda() ? "cuda" : "cpu";
}

// "name shape dtype device trainable" per parameter, then buffers: what must agree across ranks
// (so every rank then makes the same sequence of broadcasts, and none holds a meta tensor alone).
std::vector<std::string> describe(nn::Module& m) {
  std::vector<std::string> lines;
  for (const auto& [name, p] : m.named_parameters())
    lines.push_back("parameter " + name + " " + shape_str(p.shape()) + " " + dtype_name(p.dtype()) + " " +
                    device_kind(p) + (p.requires_grad() ? " trainable" : " frozen"));
  for (const auto& [name, b] : m.named_buffers())
    lines.push_back("buffer " + name + " " + (b.defined() ? shape_str(b.shape()) + " " + dtype_name(b.dtype()) : "") +
                    " " + device_kind(b));
  return lines;
}

// root's values of t on every rank, whatever t's layout (a strided tensor goes through a copy).
void broadcast_into(dist::Communicator& comm, const Tensor& t) {
  if (t.is_contiguous()) {
    Tensor h = t.detach();
    comm.broadcast_(h, 0);
    return;
  }
  Tensor c = t.detach().contiguous();
  comm.broadcast_(c, 0);
  Tensor dst = t.detach();
  dst.copy_(c);
}

uint64_t fnv1a(const std::vector<std::string>& lines) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& l : lines) {
    for (unsigned char c : l) h = (h ^ c) * 1099511628211ull;
    h = (h ^ '\n') * 1099511628211ull;
  }
  return h;
}

}  // namespace

DataParallel::DataParallel(nn::Module& model, dist::Communicator& comm, int64_t bucket_bytes)
    : model_(model), comm_(comm), bucket_bytes_(bucket_bytes) {
  PEFT_CHECK(bucket_bytes > 0, "DataParallel: bucket_bytes must be positive, got ", bucket_bytes);
  const std::vector<std::string> mine = describe(model);
  const std::vector<uint64_t> hashes = comm.all_gather(fnv1a(mine));
  bool same = true;
  for (uint64_t h : hashes) same = same && h == hashes[0];
  if (!same) {
    // Every rank learns rank 0's list and the first differing rank's, and names the first
    // difference, so whichever rank's error ends the job says what differs; all ranks throw.
    size_t d = 1;
    while (hashes[d] == hashes[0]) ++d;
    std::ostringstream joined;
    for (const auto& l : mine) joined << l << '\n';
    auto lines_of = [](const std::string& text) {
      std::vector<std::string> v;
      std::istringstream in(text);
      for (std::string l; std::getline(in, l);) v.push_back(l);
      return v;
    };
    const std::vector<std::string> ref = lines_of(comm.broadcast_string(joined.str(), 0));
    const std::vector<std::string> other = lines_of(comm.broadcast_string(joined.str(), static_cast<int>(d)));
    std::string diff;
    for (size_t i = 0; i < std::max(ref.size(), other.size()) && diff.empty(); ++i) {
      const std::string a = i < ref.size() ? ref[i] : "(nothing)", b = i < other.size() ? other[i] : "(nothing)";
      if (a != b) diff = "rank 0 has \"" + a + "\" where rank " + std::to_string(d) + " has \"" + b + "\"";
    }
    std::string ranks;
    for (size_t r = 0; r < hashes.size(); ++r)
      if (hashes[r] != hashes[0]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    PEFT_ERROR("DataParallel: the ranks' models differ (ranks ", ranks, " differ from rank 0): ", diff);
  }
  // Refused here, on every rank alike (the descriptions agree), before any broadcast.
  for (const auto& [name, p] : model.named_parameters())
    PEFT_CHECK(!p.device().is_meta(), "DataParallel: parameter ", name, " is a meta tensor (no data to train)");
  NoGradGuard g;
  for (auto& [name, p] : model.named_parameters()) {
    broadcast_into(comm, p);
    if (p.requires_grad()) {
      trainable_.push_back(p);
      bytes_per_step_ += static_cast<int64_t>(p.nbytes());
    }
  }
  for (auto& [name, b] : model.named_buffers())
    if (b.defined() && !b.device().is_meta()) broadcast_into(comm, b);
}

void DataParallel::sync_gradients(int64_t local, int64_t global) {
  PEFT_CHECK(global > 0 && local >= 0 && local <= global, "DataParallel::sync_gradients: ", local, " local of ",
             global, " examples");
  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard g;
  const double weight = static_cast<double>(local) / static_cast<double>(global);
  // Which parameters got a gradient on some rank: those are reduced (a rank without one adds
  // zeros); a parameter no rank touched keeps no gradient, so the optimizer skips it as it would
  // in one process (a zero gradient would still move it through momentum or weight decay).
  std::vector<int64_t> had(trainable_.size());
  for (size_t k = 0; k < trainable_.size(); ++k) had[k] = trainable_[k].grad().defined() ? 1 : 0;
  Tensor flags = Tensor::from_vector(had, {static_cast<int64_t>(had.size())});
  if (!had.empty()) comm_.all_reduce_(flags, dist::ReduceOp::Max);
  const std::vector<int64_t> any = had.empty() ? had : flags.to_vector<int64_t>();
  std::vector<Tensor> active;
  for (size_t k = 0; k < trainable_.size(); ++k)
    if (any[k]) active.push_back(trainable_[k]);
  // Buckets of consecutive parameters of one dtype and device, flattened into one tensor each.
  size_t i = 0;
  while (i < active.size()) {
    const DType dt = active[i].dtype();
    const Device dev = active[i].device();
    size_t j = i;
    int64_t numel = 0, bytes = 0;
    while (j < active.size() && active[j].dtype() == dt && active[j].device() == dev &&
           (j == i || bytes + static_cast<int64_t>(active[j].nbytes()) <= bucket_bytes_)) {
      numel += active[j].numel();
      bytes += static_cast<int64_t>(active[j].nbytes());
      ++j;
    }
    Tensor flat = Tensor::empty({numel}, dt, dev);
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      Tensor& p = active[k];
      Tensor dst = flat.narrow(0, off, p.numel());
      if (p.grad().defined()) dst.copy_(p.grad().reshape({p.numel()}));
      else dst.zero_();
      off += p.numel();
    }
    if (weight != 1.0) flat.mul_(weight);
    comm_.all_reduce_(flat, dist::ReduceOp::Sum);
    ++stats_.all_reduces;
    off = 0;
    for (size_t k = i; k < j; ++k) {
      Tensor& p = active[k];
      p.set_grad(flat.narrow(0, off, p.numel()).reshape(p.shape()).clone());
      off += p.numel();
    }
    i = j;
  }
  ++stats_.steps;
  stats_.bytes += bytes_per_step_;
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double DataParallel::reduce_mean(double value, int64_t local, int64_t global) {
  PEFT_CHECK(global > 0, "DataParallel::reduce_mean: no examples");
  Tensor t = Tensor::from_vector(std::vector<double>{value * static_cast<double>(local) / static_cast<double>(global)}, {1});
  comm_.all_reduce_(t, dist::ReduceOp::Sum);
  return t.item();
}

}  // namespace peft
