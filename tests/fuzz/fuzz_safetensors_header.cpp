// libFuzzer target: arbitrary bytes as a whole .safetensors file. SafetensorsFile::open must
// either refuse with peft::Error or return a file whose every entry lies inside the mapping
// (each byte is read, so ASan catches an offset that validation let through).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"

namespace {

// One memory-backed file for the whole run, rewritten per input; opened by its /proc path so
// the library's own open + mmap path is what runs.
int memory_file() {
  static const int fd = [] {
    const int f = ::memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (f < 0) std::abort();
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memory_file();
  if (::ftruncate(fd, 0) != 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t w = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (w <= 0) std::abort();
    done += static_cast<size_t>(w);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const auto file = peft::io::SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const auto& e : file.entries()) {
      if (file.find(e.name) != &e) std::abort();  // the index must agree with the list
      const uint8_t* p = file.data(e);
      for (uint64_t i = 0; i < e.end - e.begin; ++i) sink = static_cast<uint8_t>(sink ^ p[i]);
      (void)peft::io::safetensors_dtype_size(e.dtype);  // validated dtypes are known ones
    }
    for (const auto& kv : file.metadata()) sink = static_cast<uint8_t>(sink ^ kv.first.size() ^ kv.second.size());
    (void)sink;
  } catch (const peft::Error&) {
  }
  return 0;
}
