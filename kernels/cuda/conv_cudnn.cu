// kernels/cuda/conv_cudnn.cu — conv2d's three products through cuDNN's legacy convolution API
// (cudnnConvolutionForward / BackwardData / BackwardFilter). When these return false the caller
// runs the direct kernels instead (conv.cuh says when).
//
// Algorithm choice: the cudnnGet*Algorithm_v7 heuristics, not Find: Find times every algorithm
// on first use of a shape, which allocates each one's workspace and costs more than a short
// fine-tuning step. Of the heuristics' list we keep the algorithms reported as
// CUDNN_STATUS_SUCCESS, deterministic ones first (the rest of the engine reduces without
// atomics, so a training run repeats bit for bit; cuDNN's fastest weight-gradient algorithms
// accumulate with atomics), and ask cudnnGet*WorkspaceSize for each rather than trust the perf
// struct's `memory`. That list, and which entry last ran, are cached per shape key (device,
// direction, dtype, math mode, every size), so a training loop pays for the heuristics once.
//
// BF16: BFLOAT16 tensor and filter descriptors, a FLOAT convolution descriptor (compute type),
// float alpha / beta, the default math mode (tensor cores allowed).
//
// Math mode: F32 uses CUDNN_FMA_MATH unless TF32 is allowed (then CUDNN_DEFAULT_MATH, which lets
// Ampere+ use TF32 tensor cores); candidates whose mathType is a tensor-op mode are dropped
// under FMA, and the ..._ALLOW_CONVERSION mode (down-conversion to FP16) is never used. The
// descriptor takes each candidate's own mathType before its workspace query and its run, as
// cuDNN >= 7.4 requires algorithm and math type to agree.
//
// Running: candidates are tried from the one that last ran. A workspace the caching allocator
// cannot give moves on to the next (they need less, often none); a NOT_SUPPORTED status moves
// on; any other failure throws. If every candidate is refused, the shape is remembered as
// refused and false is returned. If workspace allocation was what failed, its out-of-memory
// error is rethrown: silently swapping in a far slower kernel would hide it. The workspace is
// freed right after queuing: the allocator may hand the block out again at once because the
// engine queues everything of a device on one stream (core/allocator.h).
#include "kernels/cuda/conv.cuh"

#ifdef PEFT_WITH_CUDNN
#include <algorithm>
#include <array>
#include <climits>
#include <exception>
#include <map>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/cuda_api.h"
#include "core/error.h"
#include "kernels/cuda/cudnn_utils.cuh"

namespace peft::kernels::cuda {

namespace {

enum class Dir { Forward = 0, BackwardData = 1, BackwardFilter = 2 };

const char* dir_name(Dir d) {
  switch (d) {
    case Dir::Forward: return "cudnnConvolutionForward";
    case Dir::BackwardData: return "cudnnConvolutionBackwardData";
    case Dir::BackwardFilter: return "cudnnConvolutionBackwardFilter";
  }
  return "cudnnConvolution";
}

template <class T> struct DataType;
template <> struct DataType<float> { static constexpr cudnnDataType_t value = CUDNN_DATA_FLOAT; };
template <> struct DataType<double> { static constexpr cudnnDataType_t value = CUDNN_DATA_DOUBLE; };
#if CUDNN_VERSION >= 8100  // BFLOAT16 arrived in cuDNN 8.1; older ones leave BF16 to the direct kernels
template <> struct DataType<Bf16> { static constexpr cudnnDataType_t value = CUDNN_DATA_BFLOAT16; };
constexpr bool kCudnnBf16 = true;
#else
template <> struct DataType<Bf16> { static constexpr cudnnDataType_t value = CUDNN_DATA_FLOAT; };  // never used
constexpr bool kCudnnBf16 = false;
#endif

struct Candidate {
  int algo;  // the direction's cudnnConvolution*Algo_t
  cudnnMathType_t math;
  size_t workspace;
};

struct Plan {
  bool ranked = false, refused = false;
  std::vector<Candidate> candidates;
  size_t last = 0;  // index of the candidate that last ran
};

using Key = std::array<int64_t, 18>;

// Guarded by cudnn_mutex(); never destroyed (see cudnn_utils.cu).
std::map<Key, Plan>& plans() {
  static auto* const m = new std::map<Key, Plan>;
  return *m;
}

// Success: true. A NOT_SUPPORTED status: false. Anything else throws with the expression.
bool supported(cudnnStatus_t st, const char* expr, const char* file, int line) {
  if (st == CUDNN_STATUS_SUCCESS) return true;
  if (peft::cuda::cudnn_not_supported(st)) return false;
  peft::cuda::detail::throw_cudnn_error(file, line, expr, st);
}
#define PEFT_CUDNN_OR_REFUSE(expr)                                  \
  do {                                                              \
    if (!supported((expr), #expr, __FILE__, __LINE__)) return false; \
  } while (0)

// cuDNN's legacy descriptors take int sizes; larger tensors go to the direct kernels.
bool fits_int(const Conv2dShape& s) {
  const int64_t counts[] = {s.N * s.C * s.H * s.W, s.N * s.O * s.Ho * s.Wo, s.O * (s.C / s.groups) * s.kh * s.kw,
                            s.ph, s.pw, s.sh, s.sw, s.dh, s.dw};
  for (int64_t v : counts)
    if (v > INT_MAX) return false;
  return true;
}

struct Descs {
  peft::cuda::TensorDesc x, y;  // y: the forward output (dy in backward)
  peft::cuda::FilterDesc w;
  peft::cuda::ConvDesc conv;
};

// dt: the tensors' storage type; compute: the convolution's (F32 for BF16 data).
bool set_descs(Descs& d, const Conv2dShape& s, cudnnDataType_t dt, cudnnDataType_t compute, cudnnMathType_t math) {
  auto i = [](int64_t v) { return static_cast<int>(v); };
  PEFT_CUDNN_OR_REFUSE(cudnnSetTensor4dDescriptor(d.x.get(), CUDNN_TENSOR_NCHW, dt, i(s.N), i(s.C), i(s.H), i(s.W)));
  PEFT_CUDNN_OR_REFUSE(cudnnSetTensor4dDescriptor(d.y.get(), CUDNN_TENSOR_NCHW, dt, i(s.N), i(s.O), i(s.Ho), i(s.Wo)));
  PEFT_CUDNN_OR_REFUSE(
      cudnnSetFilter4dDescriptor(d.w.get(), dt, CUDNN_TENSOR_NCHW, i(s.O), i(s.C / s.groups), i(s.kh), i(s.kw)));
  PEFT_CUDNN_OR_REFUSE(cudnnSetConvolution2dDescriptor(d.conv.get(), i(s.ph), i(s.pw), i(s.sh), i(s.sw), i(s.dh),
                                                       i(s.dw), CUDNN_CROSS_CORRELATION, compute));
  PEFT_CUDNN_OR_REFUSE(cudnnSetConvolutionGroupCount(d.conv.get(), i(s.groups)));
  PEFT_CUDNN_OR_REFUSE(cudnnSetConvolutionMathType(d.conv.get(), math));
  int n = 0, c = 0, h = 0, w = 0;
  PEFT_CUDNN_OR_REFUSE(cudnnGetConvolution2dForwardOutputDim(d.conv.get(), d.x.get(), d.w.get(), &n, &c, &h, &w));
  PEFT_CHECK(n == s.N && c == s.O && h == s.Ho && w == s.Wo, "cuDNN conv2d: cuDNN's output size (", n, ", ", c, ", ",
             h, ", ", w, ") differs from conv2d_shape's (", s.N, ", ", s.O, ", ", s.Ho, ", ", s.Wo, ")");
  return true;
}

// Filters and orders one direction's heuristics results (see the file comment), querying each
// kept candidate's workspace with its own math type set on the descriptor.
template <class Perf, class WorkspaceOf>
std::vector<Candidate> keep(const std::vector<Perf>& perf, int got, cudnnMathType_t want, const Descs& d,
                            WorkspaceOf workspace_of) {
  std::vector<Perf> ok;
  for (int k = 0; k < got && k < static_cast<int>(perf.size()); ++k) {
    const Perf& p = perf[static_cast<size_t>(k)];
    if (p.status != CUDNN_STATUS_SUCCESS || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (want == CUDNN_FMA_MATH && p.mathType == CUDNN_TENSOR_OP_MATH) continue;
    ok.push_back(p);
  }
  std::stable_partition(ok.begin(), ok.end(), [](const Perf& p) { return p.determinism == CUDNN_DETERMINISTIC; });
  std::vector<Candidate> out;
  for (const Perf& p : ok) {
    const cudnnMathType_t math = want == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : p.mathType;
    if (cudnnSetConvolutionMathType(d.conv.get(), math) != CUDNN_STATUS_SUCCESS) continue;
    size_t bytes = 0;
    if (workspace_of(p.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    out.push_back({static_cast<int>(p.algo), math, bytes});
  }
  return out;
}

// Heuristics for one direction; an empty list when cuDNN proposes nothing it can run.
bool rank(cudnnHandle_t h, Dir dir, const Descs& d, cudnnMathType_t want, std::vector<Candidate>& out) {
  int max = 0, got = 0;
  switch (dir) {
    case Dir::Forward: {
      PEFT_CUDNN_OR_REFUSE(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(max, 1)));
      PEFT_CUDNN_OR_REFUSE(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                                  static_cast<int>(perf.size()), &got, perf.data()));
      out = keep(perf, got, want, d, [&](cudnnConvolutionFwdAlgo_t a, size_t* b) {
        return cudnnGetConvolutionForwardWorkspaceSize(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(), a, b);
      });
      return true;
    }
    case Dir::BackwardData: {
      PEFT_CUDNN_OR_REFUSE(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(max, 1)));
      PEFT_CUDNN_OR_REFUSE(cudnnGetConvolutionBackwardDataAlgorithm_v7(
          h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<int>(perf.size()), &got, perf.data()));
      out = keep(perf, got, want, d, [&](cudnnConvolutionBwdDataAlgo_t a, size_t* b) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), a, b);
      });
      return true;
    }
    case Dir::BackwardFilter: {
      PEFT_CUDNN_OR_REFUSE(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(std::max(max, 1)));
      PEFT_CUDNN_OR_REFUSE(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), static_cast<int>(perf.size()), &got, perf.data()));
      out = keep(perf, got, want, d, [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* b) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), a, b);
      });
      return true;
    }
  }
  return false;
}

// Operands per direction: forward (x, w) -> y; backward data (w, dy) -> dx; backward filter
// (x, dy) -> dw.
cudnnStatus_t execute(cudnnHandle_t h, Dir dir, const Descs& d, int algo, void* ws, size_t ws_bytes,
                      const void* alpha, const void* beta, const void* a, const void* b, void* out) {
  switch (dir) {
    case Dir::Forward:
      return cudnnConvolutionForward(h, alpha, d.x.get(), a, d.w.get(), b, d.conv.get(),
                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws, ws_bytes, beta, d.y.get(), out);
    case Dir::BackwardData:
      return cudnnConvolutionBackwardData(h, alpha, d.w.get(), a, d.y.get(), b, d.conv.get(),
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws, ws_bytes, beta,
                                          d.x.get(), out);
    case Dir::BackwardFilter:
      return cudnnConvolutionBackwardFilter(h, alpha, d.x.get(), a, d.y.get(), b, d.conv.get(),
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), ws, ws_bytes, beta,
                                            d.w.get(), out);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// A workspace block from the device's caching allocator, returned when the call is queued.
class Workspace {
 public:
  Workspace(int device, size_t bytes)
      : dev_(Device::cuda(device)), p_(bytes > 0 ? peft::cuda::device_alloc(dev_, bytes) : nullptr) {}
  ~Workspace() {
    if (p_ != nullptr) peft::cuda::device_free(dev_, p_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* get() const { return p_; }

 private:
  Device dev_;
  void* p_;
};

template <class T>
bool run(Dir dir, int device, bool tf32, const Conv2dShape& s, const void* a, const void* b, void* out,
         cudaStream_t stream) {
  check_conv2d_shape(dir_name(dir), s);
  // Empty tensors: the direct kernels write the zeros (cuDNN refuses zero-sized descriptors).
  if (s.N == 0 || s.C == 0 || s.O == 0 || s.H == 0 || s.W == 0 || !fits_int(s)) return false;
  if (std::is_same<T, Bf16>::value && !kCudnnBf16) return false;
  // BF16 data computes in F32 (cuDNN's PSEUDO_BFLOAT16 configuration) and may use tensor cores,
  // whose BF16 products are exact in F32: nothing to switch off as TF32 is for F32 data.
  const cudnnDataType_t dt = DataType<T>::value, compute = DataType<acc_t<T>>::value;
  const cudnnMathType_t want = (std::is_same<T, float>::value && !tf32) ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  const Key key{device, static_cast<int64_t>(dir), static_cast<int64_t>(dt), static_cast<int64_t>(want),
                s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.groups};

  std::lock_guard<std::mutex> lock(peft::cuda::cudnn_mutex());
  Plan& plan = plans()[key];
  if (plan.refused) return false;
  cudnnHandle_t h = peft::cuda::cudnn(device);
  PEFT_CUDNN_CHECK(cudnnSetStream(h, stream));
  Descs d;
  if (!set_descs(d, s, dt, compute, want) || (!plan.ranked && !rank(h, dir, d, want, plan.candidates))) {
    plan.refused = true;
    return false;
  }
  plan.ranked = true;

  const acc_t<T> one = 1, zero = 0;  // cuDNN reads alpha / beta in the compute type (double only for F64)
  std::exception_ptr oom;
  const size_t n = plan.candidates.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = k == 0 ? plan.last : (k <= plan.last ? k - 1 : k);  // the last one to run, then in rank order
    const Candidate& c = plan.candidates[i];
    std::unique_ptr<Workspace> ws;
    try {
      ws = std::make_unique<Workspace>(device, c.workspace);
    } catch (const Error&) {
      if (!oom) oom = std::current_exception();
      continue;
    }
    PEFT_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), c.math));
    const cudnnStatus_t st = execute(h, dir, d, c.algo, ws->get(), c.workspace, &one, &zero, a, b, out);
    if (st == CUDNN_STATUS_SUCCESS) {
      plan.last = i;
      return true;
    }
    if (!peft::cuda::cudnn_not_supported(st))
      peft::cuda::detail::throw_cudnn_error(__FILE__, __LINE__, dir_name(dir), st);
  }
  if (oom) std::rethrow_exception(oom);
  plan.refused = true;
  return false;
}

}  // namespace

template <class T>
bool conv2d_forward_cudnn(int device, bool tf32, const Conv2dShape& s, const T* x, const T* w, T* y,
                          cudaStream_t stream) {
  return run<T>(Dir::Forward, device, tf32, s, x, w, y, stream);
}

template <class T>
bool conv2d_backward_input_cudnn(int device, bool tf32, const Conv2dShape& s, const T* w, const T* dy, T* dx,
                                 cudaStream_t stream) {
  return run<T>(Dir::BackwardData, device, tf32, s, w, dy, dx, stream);
}

template <class T>
bool conv2d_backward_weight_cudnn(int device, bool tf32, const Conv2dShape& s, const T* x, const T* dy, T* dw,
                                  cudaStream_t stream) {
  return run<T>(Dir::BackwardFilter, device, tf32, s, x, dy, dw, stream);
}

}  // namespace peft::kernels::cuda

#else  // !PEFT_WITH_CUDNN: every call is served by the direct kernels.

namespace peft::kernels::cuda {

// The shape is still checked, so a bad call fails the same way in every build.
template <class T>
bool conv2d_forward_cudnn(int, bool, const Conv2dShape& s, const T*, const T*, T*, cudaStream_t) {
  check_conv2d_shape("cudnnConvolutionForward", s);
  return false;
}
template <class T>
bool conv2d_backward_input_cudnn(int, bool, const Conv2dShape& s, const T*, const T*, T*, cudaStream_t) {
  check_conv2d_shape("cudnnConvolutionBackwardData", s);
  return false;
}
template <class T>
bool conv2d_backward_weight_cudnn(int, bool, const Conv2dShape& s, const T*, const T*, T*, cudaStream_t) {
  check_conv2d_shape("cudnnConvolutionBackwardFilter", s);
  return false;
}

}  // namespace peft::kernels::cuda

#endif

namespace peft::kernels::cuda {

#define PEFT_INSTANTIATE(T)                                                                                      \
  template bool conv2d_forward_cudnn<T>(int, bool, const Conv2dShape&, const T*, const T*, T*, cudaStream_t);       \
  template bool conv2d_backward_input_cudnn<T>(int, bool, const Conv2dShape&, const T*, const T*, T*, cudaStream_t); \
  template bool conv2d_backward_weight_cudnn<T>(int, bool, const Conv2dShape&, const T*, const T*, T*, cudaStream_t);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
PEFT_INSTANTIATE(Bf16)
#undef PEFT_INSTANTIATE

}  // namespace peft::kernels::cuda
