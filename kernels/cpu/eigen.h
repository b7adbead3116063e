// kernels/cpu/eigen.h — where Eigen's dense headers come into the CPU kernels.
//
// GCC 12 and 13 report -Wmaybe-uninitialized ("'__Y' may be used uninitialized") inside their own
// avx512fintrin.h when Eigen's AVX-512 packet code is inlined into our loops (-march=native on an
// AVX-512 CPU, or -march=x86-64-v4); under -fsanitize=address,undefined (.ci/sanitize) the same
// spot is reported as -Wuninitialized ("'__Y' is used uninitialized", Eigen's ptranspose). It is a
// known false positive of those GCC versions in the intrinsics' _mm512_undefined_* idiom (the
// self-initialised `__m512d __Y = __Y;`), not a bug of ours or of Eigen's, and with -Werror it
// fails the build. Silenced here only: for GCC 12-13, only with AVX-512 on, and only for the headers
// included below (GCC applies a diagnostic pragma by source location, so it covers the intrinsic
// headers when Eigen pulls them in first here; everything after the pop keeps the warning).
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && (__GNUC__ == 12 || __GNUC__ == 13) && defined(__AVX512F__)
#define PEFT_EIGEN_AVX512_PRAGMA 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // first here, so the pragma above spans the intrinsic headers
#endif
#include <Eigen/Core>

#ifdef PEFT_EIGEN_AVX512_PRAGMA
#pragma GCC diagnostic pop
#undef PEFT_EIGEN_AVX512_PRAGMA
#endif
