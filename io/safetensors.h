// safetensors read / write on raw bytes, independent of peft::Tensor so that io/ and tests can
// use it before (and without) the tensor type. The format and every refusal are those of
// huggingface/safetensors (see spec/safetensors.md): the reader memory-maps the file and
// validates the whole header on open, so a SafetensorsFile that exists is a good file; the
// writer produces the same layout Python's safetensors does and replaces the target atomically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace peft {
namespace io {

// One tensor as the header describes it. Offsets are relative to the start of the data block
// (byte 8 + header length); end is exclusive.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "F64", "I64", "BF16", "F16", "I32", "I16", "I8", "U8", "BOOL", "U16", "U32", "U64"
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// A read-only, memory-mapped, fully validated safetensors file. Pointers from data() stay valid
// while this object (or the one it was moved into) lives.
class SafetensorsFile {
 public:
  // Maps and validates `path`; throws peft::Error naming the file, the reference's error name in
  // brackets ("[InvalidOffset]", ...) and the offending key and values on any refusal.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // In the order of the header's keys (file order), not sorted by offset or name.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;  // nullptr if absent
  const SafetensorsEntry& at(const std::string& name) const;    // throws naming file and key
  // Pointer to the entry's first byte inside the mapping (unaligned in general: only files
  // written with the sorted, padded layout guarantee dtype alignment).
  const uint8_t* data(const SafetensorsEntry& e) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint64_t header_size() const { return header_len_; }  // N, without the 8-byte length prefix

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;

  std::string path_;
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
  const uint8_t* map_ = nullptr;  // whole file; nullptr when moved from
  uint64_t size_ = 0;
  uint64_t header_len_ = 0;
};

// A tensor to write: `data` points to `nbytes` little-endian, row-major bytes.
struct SafetensorsTensorRef {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  uint64_t nbytes = 0;
};

// Writes atomically: a temporary file in the same directory, written, fsync'ed, renamed over
// `path`, then the directory fsync'ed; on failure the temporary is removed and `path` is left
// as it was. Tensors are laid out by descending dtype size, then name, after a header padded
// with spaces to a multiple of 8, so every tensor is aligned to its dtype. Validates everything
// (known dtype, nbytes == numel * dtype size, unique names, UTF-8 strings) before touching the
// disk, throwing peft::Error otherwise.
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Bytes per element of a safetensors dtype name; throws peft::Error ("unsupported dtype") for
// names outside the list above (including the F8 variants, which we do not support).
size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace io
}  // namespace peft
