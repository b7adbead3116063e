#include "core/random.h"

#include <cmath>

namespace peft {

double Generator::normal() {
  if (has_spare_) { has_spare_ = false; return spare_; }
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
  spare_ = r * std::sin(th);
  has_spare_ = true;
  return r * std::cos(th);
}

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

}  // namespace peft
