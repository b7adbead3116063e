// A training progress line for the samples: "epoch E/N  step S/T  loss L  samples/s X  ETA mm:ss".
// On a terminal it is rewritten in place with '\r' after every step and erased at the end of
// the epoch (the sample's own epoch summary takes its place). When stdout is not a terminal
// (a log file, a pipe, a test) it degrades to plain lines: one every `every` steps and one at
// the epoch's last step, so logs stay short and readable.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace peft::samples {

class ProgressLine {
 public:
  // `steps_per_epoch` optimizer steps in each of `epochs` epochs; `every` ≥ 1 is the plain-line
  // interval. `interactive` defaults to isatty(STDOUT_FILENO).
  ProgressLine(int64_t epochs, int64_t steps_per_epoch, int64_t every = 10, std::FILE* out = stdout)
      : ProgressLine(epochs, steps_per_epoch, every, out, ::isatty(STDOUT_FILENO) != 0) {}
  ProgressLine(int64_t epochs, int64_t steps_per_epoch, int64_t every, std::FILE* out, bool interactive)
      : epochs_(std::max<int64_t>(epochs, 1)), steps_(std::max<int64_t>(steps_per_epoch, 1)),
        every_(std::max<int64_t>(every, 1)), out_(out), tty_(interactive), start_(Clock::now()) {}

  // Call before the epoch's first step; `epoch` counts from 0.
  void start_epoch(int64_t epoch) {
    epoch_ = epoch;
    epoch_samples_ = 0;
    epoch_start_ = Clock::now();
  }

  // After step `step` (1-based within the epoch) on `batch` samples with loss `loss`.
  void step(int64_t step, double loss, int64_t batch) {
    epoch_samples_ += batch;
    ++done_steps_;
    const bool last = step >= steps_;
    if (!tty_ && step % every_ != 0 && !last) return;
    std::string line = format(step, loss);
    if (tty_) {
      // Pad to the previous line's width so a shorter line leaves no stale characters.
      std::fprintf(out_, "\r%s%*s", line.c_str(), static_cast<int>(std::max<size_t>(width_, line.size()) - line.size()), "");
      width_ = line.size();
    } else {
      std::fprintf(out_, "%s\n", line.c_str());
    }
    std::fflush(out_);
  }

  // Erases the in-place line (terminal only), so what the program prints next starts clean.
  void end_epoch() {
    if (!tty_ || width_ == 0) return;
    std::fprintf(out_, "\r%*s\r", static_cast<int>(width_), "");
    std::fflush(out_);
    width_ = 0;
  }

  bool interactive() const { return tty_; }

 private:
  using Clock = std::chrono::steady_clock;

  std::string format(int64_t step, double loss) const {
    const double epoch_s = std::chrono::duration<double>(Clock::now() - epoch_start_).count();
    const double total_s = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = epoch_s > 0 ? static_cast<double>(epoch_samples_) / epoch_s : 0;
    const int64_t remaining = std::max<int64_t>(epochs_ * steps_ - done_steps_, 0);
    const double eta = done_steps_ > 0 ? total_s / static_cast<double>(done_steps_) * static_cast<double>(remaining) : 0;
    const long long eta_s = static_cast<long long>(eta + 0.5);
    char buf[160];
    std::snprintf(buf, sizeof buf, "epoch %lld/%lld  step %lld/%lld  loss %.4f  samples/s %.0f  ETA %02lld:%02lld",
                  static_cast<long long>(epoch_ + 1), static_cast<long long>(epochs_), static_cast<long long>(step),
                  static_cast<long long>(steps_), loss, rate, eta_s / 60, eta_s % 60);
    return buf;
  }

  int64_t epochs_, steps_, every_;
  std::FILE* out_;
  bool tty_;
  Clock::time_point start_, epoch_start_;
  int64_t epoch_ = 0, epoch_samples_ = 0, done_steps_ = 0;
  size_t width_ = 0;
};

}  // namespace peft::samples
