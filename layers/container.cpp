#include "layers/container.h"

namespace peft::nn {

Sequential::Sequential(std::initializer_list<ModulePtr> modules) {
  for (auto& m : modules) push_back(m);
}
Sequential::Sequential(const std::vector<ModulePtr>& modules) {
  for (auto& m : modules) push_back(m);
}

void Sequential::push_back(ModulePtr m) { register_module(std::to_string(size()), std::move(m)); }

ModulePtr Sequential::operator[](size_t i) const {
  PEFT_CHECK(i < size(), "Sequential: index ", i, " is out of range (size ", size(), ")");
  return child(std::to_string(i));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& kv : child_table()) {
    ModuleCallScope scope(*kv.second, kv.first);
    h = kv.second->forward(h);
  }
  return h;
}

ModuleList::ModuleList(std::initializer_list<ModulePtr> modules) {
  for (auto& m : modules) push_back(m);
}

void ModuleList::push_back(ModulePtr m) { register_module(std::to_string(size()), std::move(m)); }

ModulePtr ModuleList::operator[](size_t i) const {
  PEFT_CHECK(i < size(), "ModuleList: index ", i, " is out of range (size ", size(), ")");
  return child(std::to_string(i));
}

}  // namespace peft::nn
