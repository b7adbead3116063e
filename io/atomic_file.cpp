#include "io/atomic_file.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "core/error.h"

namespace peft::io {

namespace {
constexpr size_t kBufferCap = size_t(1) << 20;
}

AtomicFileWriter::AtomicFileWriter(const std::string& path, const std::string& what) : path_(path), what_(what) {
  const size_t slash = path.rfind('/');
  dir_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  PEFT_CHECK(!base.empty(), what_, ": '", path, "' names a directory, not a file");
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0; fd_ < 0; ++attempt) {
    tmp_ = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "." + base + ".tmp." +
           std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
    // O_EXCL with 0666 (not mkstemp's 0600) so the result gets the usual umask permissions.
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && (errno != EEXIST || attempt > 100)) {
      const int err = errno;
      tmp_.clear();  // nothing of ours to remove
      PEFT_ERROR(what_, " '", path, "': cannot create a temporary file in '", dir_, "': ", std::strerror(err));
    }
  }
  buf_.reserve(kBufferCap);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!renamed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

// Writes everything or throws; a short write (full disk) is an error, EINTR is retried.
void AtomicFileWriter::write_all(const unsigned char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) PEFT_ERROR(what_, ": writing '", tmp_, "' failed: ", std::strerror(w < 0 ? errno : EIO));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFileWriter::flush() {
  write_all(buf_.data(), buf_.size());
  buf_.clear();
}

void AtomicFileWriter::write(const void* data, size_t n) {
  PEFT_CHECK(fd_ >= 0 && !renamed_, what_, ": write after commit");
  const auto* b = static_cast<const unsigned char*>(data);
  if (buf_.size() + n > kBufferCap) flush();
  if (n >= kBufferCap) write_all(b, n);
  else buf_.insert(buf_.end(), b, b + n);
}

void AtomicFileWriter::commit() {
  PEFT_CHECK(fd_ >= 0 && !renamed_, what_, ": commit called twice");
  flush();
  PEFT_CHECK(::fsync(fd_) == 0, what_, " '", path_, "': fsync of '", tmp_, "' failed: ", std::strerror(errno));
  const int fd = std::exchange(fd_, -1);
  PEFT_CHECK(::close(fd) == 0, what_, " '", path_, "': close of '", tmp_, "' failed: ", std::strerror(errno));
  PEFT_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, what_, ": renaming '", tmp_, "' to '", path_,
             "' failed: ", std::strerror(errno));
  renamed_ = true;
  // Makes the rename itself durable; filesystems that cannot fsync a directory say EINVAL.
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    PEFT_CHECK(rc == 0 || err == EINVAL, what_, " '", path_, "': written and renamed, but fsync of directory '", dir_,
               "' failed: ", std::strerror(err));
  }
}

void write_file_atomic(const std::string& path, const std::string& contents, const std::string& what) {
  AtomicFileWriter w(path, what);
  w.write(contents.data(), contents.size());
  w.commit();
}

}  // namespace peft::io
