// Crash-safe file writes: data goes to a temporary file beside the target (same filesystem),
// is fsynced, then renamed over the target, and the directory is fsynced. A crash or a full
// disk leaves either the old file or the new one, never a mix; on failure the temporary
// file is removed.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace peft::io {

class AtomicFileWriter {
 public:
  // Creates the temporary file; `what` prefixes error messages (e.g. "write_safetensors").
  AtomicFileWriter(const std::string& path, const std::string& what);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Buffered; small pieces are coalesced into 1 MiB writes.
  void write(const void* data, size_t n);
  // Flushes, fsyncs, renames over the target and fsyncs the directory.
  void commit();
  const std::string& temp_path() const { return tmp_; }

 private:
  void write_all(const unsigned char* p, size_t n);
  void flush();
  std::string path_, what_, dir_, tmp_;
  int fd_ = -1;
  bool renamed_ = false;
  std::vector<unsigned char> buf_;
};

// Writes `contents` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& contents, const std::string& what = "write_file");

}  // namespace peft::io
