// `peft combine`: add_weighted_adapter on adapter folders (no model is built).
#pragma once
#include "cli_args.h"

namespace peft_cli {

extern const char* const kCombineHelp;
int cmd_combine(const Args& a);

}  // namespace peft_cli
