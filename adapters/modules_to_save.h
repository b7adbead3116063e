// PEFT's ModulesToSaveWrapper: a module trained in full. The original stays frozen under
// "original_module"; each adapter gets a trainable deep copy under "modules_to_save.<adapter>";
// forward runs the active adapter's copy (or the original when disabled / none active).
#pragma once
#include <string>

#include "layers/container.h"

namespace peft {

class ModulesToSaveWrapper : public nn::Module {
 public:
  ModulesToSaveWrapper(nn::ModulePtr original, const std::string& adapter_name);
  std::string type_name() const override { return "ModulesToSaveWrapper"; }
  Tensor forward(const Tensor& x) override;

  nn::ModulePtr original_module() const { return child("original_module"); }
  nn::ModuleDict& copies() const;
  bool has_adapter(const std::string& name) const;
  // Adds a trainable copy of the original for `name` (no-op if present).
  void update(const std::string& name);
  // Activates one adapter's copy (trainable) and freezes the others; unknown names leave
  // the original active, as PEFT.
  void set_adapter(const std::vector<std::string>& names);
  const std::string& active_adapter() const { return active_; }
  void enable_adapters(bool enabled) { disabled_ = !enabled; }
  bool disabled() const { return disabled_; }
  void delete_adapter(const std::string& name);

 private:
  std::string active_;
  bool disabled_ = false;
};

}  // namespace peft
