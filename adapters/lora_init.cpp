// The decompositions run in double with Eigen on the CPU whatever the base weight's dtype and
// device: PEFT computes them in float32 with LAPACK, and double keeps our side the more accurate
// one, so the only differences left against PEFT are its float32 rounding and the sign freedom of
// singular vectors. A and B are rounded to float32 before the residual is formed, as PEFT forms it
// from its float32 A and B, so W_res + scaling·B·A reproduces W to float32 rounding.
#include "adapters/lora_init.h"

// GCC 12-13's false -Wmaybe-uninitialized under Eigen's AVX-512 code: see kernels/cpu/eigen.h.
#include "kernels/cpu/eigen.h"
#include <Eigen/QR>
#include <Eigen/SVD>
#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/ops.h"

namespace peft {

namespace {

using Mat = Eigen::MatrixXd;

Mat to_eigen(const Tensor& t) {
  std::vector<double> v = t.detach().to(Device::cpu()).to_vector<double>();
  Mat m(t.size(0), t.size(1));
  for (int64_t i = 0; i < t.size(0); ++i)
    for (int64_t j = 0; j < t.size(1); ++j) m(i, j) = v[static_cast<size_t>(i * t.size(1) + j)];
  return m;
}

Tensor from_eigen(const Mat& m, DType dt, Device dev) {
  std::vector<double> v(static_cast<size_t>(m.rows() * m.cols()));
  for (int64_t i = 0; i < m.rows(); ++i)
    for (int64_t j = 0; j < m.cols(); ++j) v[static_cast<size_t>(i * m.cols() + j)] = m(i, j);
  return Tensor::from_vector(v, {m.rows(), m.cols()}).to(dt).to(dev);
}

// float32 rounding: the values PEFT's float32 A and B hold.
Mat round_f32(const Mat& m) { return m.cast<float>().cast<double>(); }

Mat randn(int64_t rows, int64_t cols) { return to_eigen(Tensor::randn({rows, cols}, DType::F64)); }

// Householder QR (LAPACK geqrf's sign convention, which Eigen's makeHouseholder shares:
// R(k,k) = -sign(x_k)·‖x‖), reduced to k = min(rows, cols) columns of Q and rows of R.
void reduced_qr(const Mat& X, Mat& Q, Mat* R) {
  const Eigen::Index k = std::min(X.rows(), X.cols());
  Eigen::HouseholderQR<Mat> qr(X);
  Q = qr.householderQ() * Mat::Identity(X.rows(), k);
  if (R) *R = qr.matrixQR().topRows(k).triangularView<Eigen::Upper>();
}

// torch.svd_lowrank(W, q, niter) without its random stream: a Gaussian range finder refined by
// niter subspace iterations (re-orthonormalised each half step), then the exact SVD of the small
// projected matrix. Works on W^T when W is wide, as torch does. Returns U (m, q), S (q), V (n, q).
void svd_lowrank(const Mat& W, int64_t q, int64_t niter, Mat& U, Eigen::VectorXd& S, Mat& V) {
  const bool wide = W.rows() < W.cols();
  const Mat A = wide ? Mat(W.transpose()) : W;
  Mat Q;
  reduced_qr(A * randn(A.cols(), q), Q, nullptr);
  for (int64_t i = 0; i < niter; ++i) {
    reduced_qr(A.transpose() * Q, Q, nullptr);
    reduced_qr(A * Q, Q, nullptr);
  }
  Eigen::BDCSVD<Mat> svd(Q.transpose() * A, Eigen::ComputeThinU | Eigen::ComputeThinV);
  Mat u = Q * svd.matrixU();
  S = svd.singularValues();
  if (wide) {
    U = svd.matrixV();
    V = u;
  } else {
    U = u;
    V = svd.matrixV();
  }
}

std::string torch_dtype_name(DType dt) {
  switch (dt) {
    case DType::F64: return "torch.float64";
    case DType::F32: return "torch.float32";
    case DType::BF16: return "torch.bfloat16";
    case DType::F16: return "torch.float16";
    default: return dtype_name(dt);
  }
}

thread_local BaseWeightGuard* active_guard = nullptr;

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

}  // namespace

// ---------------------------------------------------------------- spelling

std::string init_lora_weights_name(LoraInit init, int64_t pissa_niter) {
  switch (init) {
    case LoraInit::Default: return "True";
    case LoraInit::Random: return "False";
    case LoraInit::Gaussian: return "gaussian";
    case LoraInit::Pissa: return "pissa";
    case LoraInit::PissaNiter: return "pissa_niter_" + std::to_string(pissa_niter);
    case LoraInit::Olora: return "olora";
    case LoraInit::Orthogonal: return "orthogonal";
  }
  return "?";
}

nlohmann::json init_lora_weights_json(LoraInit init, int64_t pissa_niter) {
  if (init == LoraInit::Default) return true;
  if (init == LoraInit::Random) return false;
  return init_lora_weights_name(init, pissa_niter);
}

void parse_init_lora_weights(const nlohmann::json& v, LoraInit& init, int64_t& pissa_niter) {
  pissa_niter = 0;
  if (v.is_boolean()) {
    init = v.get<bool>() ? LoraInit::Default : LoraInit::Random;
    return;
  }
  PEFT_CHECK(v.is_string(), "adapter_config.json: 'init_lora_weights' must be a boolean or a string, got ", v.dump());
  const std::string s = v.get<std::string>();
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  // Inits that need data or a quantiser this engine does not have: refused by name, never
  // silently replaced by another init (the adapter would compute something else).
  for (const char* name : {"loftq", "eva", "corda", "lora_ga", "mica"})
    if (lower == name || (std::string(name) == "corda" && starts_with(s, "corda")))
      PEFT_ERROR("adapter_config.json: init_lora_weights ", v.dump(), " is not supported (", name,
                 " initialisation is not implemented in peft.cpp; implemented: true, false, \"gaussian\", \"pissa\", "
                 "\"pissa_niter_[number of iters]\", \"olora\", \"orthogonal\")");
  if (s == "gaussian") init = LoraInit::Gaussian;
  else if (s == "pissa") init = LoraInit::Pissa;
  else if (lower == "olora") init = LoraInit::Olora;  // PEFT's layer compares .lower()
  else if (s == "orthogonal") init = LoraInit::Orthogonal;
  else if (starts_with(s, "pissa")) {
    const std::string prefix = "pissa_niter_";
    PEFT_CHECK(starts_with(s, prefix) && s.find("_niter_", prefix.size()) == std::string::npos,
               "init_lora_weights should be 'pissa' or 'pissa_niter_[number of iters]', got ", s, " instead.");
    const std::string n = s.substr(prefix.size());
    // Python's int(): an optional sign and decimal digits (a negative count runs no iteration).
    const size_t digits = (!n.empty() && (n[0] == '-' || n[0] == '+')) ? 1 : 0;
    const bool ok = n.size() > digits && n.size() <= digits + 9 &&
                    std::all_of(n.begin() + static_cast<std::ptrdiff_t>(digits), n.end(),
                                [](unsigned char c) { return std::isdigit(c) != 0; });
    PEFT_CHECK(ok, "invalid literal for int() with base 10: '", n, "' (init_lora_weights ", v.dump(), ")");
    init = LoraInit::PissaNiter;
    pissa_niter = std::max<int64_t>(0, std::stoll(n));
  } else {
    PEFT_ERROR("Unknown initialization init_lora_weights='", s, "'");
  }
}

bool init_mutates_base_weight(LoraInit init) {
  return init == LoraInit::Pissa || init == LoraInit::PissaNiter || init == LoraInit::Olora;
}

// ---------------------------------------------------------------- lora.Linear

LinearInit lora_linear_init(const Tensor& W, const LoraLayerSettings& s) {
  PEFT_CHECK(W.dim() == 2, "lora_linear_init: expected a 2-D base weight, got ", shape_str(W.shape()));
  const DType dt = W.dtype();
  const Device dev = W.device();
  const int64_t out = W.size(0), in = W.size(1), r = s.r;
  const double scaling = s.scaling();
  LinearInit res;
  if (s.init == LoraInit::Orthogonal) {
    // PEFT's orthogonal_init: the rows of one random orthogonal r×r matrix split into odd and even
    // halves; A is built on one half, B on the other, so B·A = 0 and the base weight stays.
    PEFT_CHECK(r % 2 == 0, "Orthogonal initialization requires the LoRA rank to be even, got ", r, " instead.");
    Mat Q;
    reduced_qr(randn(r, r), Q, nullptr);
    Mat q_odd(r / 2, r), q_even(r / 2, r);
    for (int64_t i = 0; i < r / 2; ++i) {
      q_odd.row(i) = Q.row(2 * i);
      q_even.row(i) = Q.row(2 * i + 1);
    }
    res.A = from_eigen((randn(in, r / 2) * q_odd).transpose() / 10.0, dt, dev);
    res.B = from_eigen(randn(r / 2, out).transpose() * q_even / 10.0, dt, dev);
    return res;
  }
  PEFT_CHECK(init_mutates_base_weight(s.init), "lora_linear_init: init_lora_weights=",
             init_lora_weights_name(s.init, s.pissa_niter), " is not a data-driven init");
  const bool pissa = s.init != LoraInit::Olora;
  if (pissa)
    PEFT_CHECK(dt == DType::F32 || dt == DType::F16 || dt == DType::BF16,
               "Please initialize PiSSA under float32, float16, or bfloat16. Subsequently, re-quantize the residual "
               "model to help minimize quantization errors.");
  else
    PEFT_CHECK(dt == DType::F32 || dt == DType::F16 || dt == DType::BF16,
               "Unsupported data type for the base layer. Got ", torch_dtype_name(dt), ".");
  PEFT_CHECK(r <= std::min(out, in), "init_lora_weights=", init_lora_weights_name(s.init, s.pissa_niter),
             " needs r <= min(out_features, in_features), got r=", r, " for a weight of shape ", shape_str(W.shape()),
             " (PEFT would silently build a rank-", std::min(out, in), " adapter that its config calls rank ", r, ")");
  // PEFT decomposes the float32 copy of the weight: round F16 / BF16 bases the same way first.
  const Mat w = round_f32(to_eigen(W));
  Mat A, B;
  if (pissa) {
    // W = V·diag(S)·Uh: the top-r triplets, their singular values divided by the scaling and split
    // evenly between A = diag(√S)·Uh_r and B = V_r·diag(√S), so scaling·B·A is the best rank-r part of W.
    Mat V, Uh_t;
    Eigen::VectorXd S;
    if (s.init == LoraInit::Pissa) {
      Eigen::BDCSVD<Mat> svd(w, Eigen::ComputeThinU | Eigen::ComputeThinV);
      V = svd.matrixU().leftCols(r);
      Uh_t = svd.matrixV().leftCols(r);
      S = svd.singularValues().head(r);
    } else {
      svd_lowrank(w, r, s.pissa_niter, V, S, Uh_t);
    }
    // PEFT divides the float32 singular values and takes float32 square roots.
    const Eigen::VectorXd root = (S.cast<float>() / static_cast<float>(scaling)).cwiseSqrt().cast<double>();
    A = round_f32(root.asDiagonal() * Uh_t.transpose());
    B = round_f32(V * root.asDiagonal());
  } else {
    // OLoRA: W = Q·R; B = Q[:, :r] (orthonormal columns), A = R[:r] — no rescaling by the scaling.
    Mat Q, R;
    reduced_qr(w, Q, &R);
    B = round_f32(Q.leftCols(r));
    A = round_f32(R.topRows(r));
  }
  res.A = from_eigen(A, dt, dev);
  res.B = from_eigen(B, dt, dev);
  res.residual = from_eigen(w - scaling * B * A, dt, dev);
  return res;
}

// ---------------------------------------------------------------- base weight journal

BaseWeightGuard::BaseWeightGuard() : outer_(active_guard) { active_guard = this; }

BaseWeightGuard::~BaseWeightGuard() {
  active_guard = outer_;
  if (committed_) {
    // An enclosing scope may still fail: it inherits what this one saved.
    if (outer_)
      for (auto& kv : saved_) outer_->saved_.push_back(std::move(kv));
    return;
  }
  NoGradGuard g;
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
    try {
      it->first.copy_(it->second);
    } catch (...) {  // a destructor must not throw; copying back a same-shape tensor does not fail
    }
  }
}

void BaseWeightGuard::commit() { committed_ = true; }

void overwrite_base_weight(Tensor& w, const Tensor& value) {
  PEFT_CHECK(w.shape() == value.shape(), "overwrite_base_weight: shape ", shape_str(value.shape()), " for a weight of ",
             shape_str(w.shape()));
  NoGradGuard g;
  if (active_guard) active_guard->saved_.emplace_back(w, w.detach().clone());
  w.copy_(value);
}

void check_init_for_conv(const LoraLayerSettings& s) {
  if (s.init == LoraInit::Default || s.init == LoraInit::Random || s.init == LoraInit::Gaussian) return;
  PEFT_ERROR("Unknown initialization init_lora_weights='", init_lora_weights_name(s.init, s.pissa_niter), "'");
}

// ---------------------------------------------------------------- conversion to plain LoRA

NamedTensors subtract_mutated_init(const NamedTensors& trained, const NamedTensors& initial) {
  auto find = [&](const std::string& key) -> const Tensor& {
    for (const auto& kv : initial)
      if (kv.first == key) return kv.second;
    PEFT_ERROR("path_initial_model_for_weight_conversion: the initial adapter has no tensor '", key,
               "' (was it saved from this model right after get_peft_model?)");
  };
  // Checked in full first, so a mismatch writes nothing.
  for (const auto& [k, t] : trained) {
    const bool a = k.find("lora_A") != std::string::npos, b = k.find("lora_B") != std::string::npos;
    if (!a && !b) continue;
    const Tensor& t0 = find(k);
    PEFT_CHECK(t0.dim() == t.dim() && t.dim() == 2, "path_initial_model_for_weight_conversion: '", k, "' has shape ",
               shape_str(t0.shape()), " in the initial adapter and ", shape_str(t.shape()), " in the trained one");
    PEFT_CHECK(t0.size(a ? 1 : 0) == t.size(a ? 1 : 0), "path_initial_model_for_weight_conversion: '", k,
               "' has shape ", shape_str(t0.shape()), " in the initial adapter and ", shape_str(t.shape()),
               " in the trained one");
    PEFT_CHECK(is_floating(t0.dtype()), "path_initial_model_for_weight_conversion: '", k, "' has dtype ",
               dtype_name(t0.dtype()));
  }
  NamedTensors out;
  NoGradGuard g;
  for (const auto& [k, t] : trained) {
    const bool a = k.find("lora_A") != std::string::npos, b = k.find("lora_B") != std::string::npos;
    if (!a && !b) {
      out.emplace_back(k, t);
      continue;
    }
    // torch.cat promotes mixed dtypes; the file's tensor is brought to the trained one's device.
    const Tensor& t0 = find(k);
    const DType pt = promote_float_types(t.dtype(), t0.dtype());
    Tensor x = t.detach().to(pt), x0 = t0.to(pt).to(t.device());
    // ΔW = B·A - B0·A0 = [B, -B0]·[A; A0].
    out.emplace_back(k, a ? cat({x, x0}, 0) : cat({x, neg(x0)}, 1));
  }
  return out;
}

LoraConfig converted_lora_config(const LoraConfig& c) {
  PEFT_CHECK(!(c.use_rslora && (!c.rank_pattern.empty() || !c.alpha_pattern.empty())),
             "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported when using "
             "`rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`.");
  LoraConfig out = c;
  out.init_lora_weights = LoraInit::Default;
  out.pissa_niter = 0;
  out.r = 2 * c.r;
  // The rank doubles; alpha follows so that the scaling (alpha / r, or alpha / √r) is unchanged.
  out.lora_alpha = c.use_rslora ? c.lora_alpha * std::sqrt(2.0) : 2 * c.lora_alpha;
  for (auto& kv : out.rank_pattern) kv.second *= 2;
  for (auto& kv : out.alpha_pattern) kv.second *= 2;
  return out;
}

}  // namespace peft
