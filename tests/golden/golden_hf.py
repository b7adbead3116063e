"""Tiny random transformers decoder checkpoints for tests/test_hf_models.cpp.

    PYTHONHASHSEED=0 python tests/golden/golden_hf.py   # needs torch, transformers, peft, safetensors

(PEFT writes target_modules in set order; a fixed hash seed keeps adapter_config.json stable.)

For each case writes tests/golden/data/hf/<case>/:
  model/          transformers' save_pretrained (config.json, model.safetensors), F32
  adapter/        PEFT's save_pretrained of LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                  init_lora_weights=False) with no target_modules (PEFT's default mapping)
  io.safetensors  input_ids / attention_mask (I64 [2, 7], row 1 left-padded by 2), logits (with
                  the mask), logits_nomask, logits_lora (adapter on, with the mask); labels (-100
                  where ignored), generated (greedy generate, 6 new tokens, no eos), loss of PEFT's model in train mode with those labels and
                  grad.<PEFT parameter name> of every trainable parameter
  meta.json       PEFT's print_trainable_parameters() line and counts, the targets, versions
Deterministic: torch is seeded from crc32(case name); every weight is re-drawn so a wrong
layout or a skipped bias changes the logits.
"""
import contextlib
import io
import json
import os
import shutil
import zlib

import peft
import safetensors.torch
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, OPTConfig,
                          OPTForCausalLM, Qwen2Config, Qwen2ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "hf")
COMMON = dict(hidden_size=32, num_hidden_layers=2, vocab_size=96, max_position_embeddings=64, num_attention_heads=4)

CASES = {
    "llama_gqa": lambda: LlamaForCausalLM(LlamaConfig(
        **COMMON, num_key_value_heads=2, intermediate_size=48, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False)),
    "llama3_rope_tied": lambda: LlamaForCausalLM(LlamaConfig(
        **COMMON, num_key_value_heads=4, intermediate_size=48, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16},
        tie_word_embeddings=True)),
    "mistral": lambda: MistralForCausalLM(MistralConfig(
        **COMMON, num_key_value_heads=2, intermediate_size=48, sliding_window=None, tie_word_embeddings=False)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(
        **COMMON, num_key_value_heads=2, intermediate_size=48, tie_word_embeddings=True)),
    "opt": lambda: OPTForCausalLM(OPTConfig(
        **COMMON, ffn_dim=48, word_embed_proj_dim=32, do_layer_norm_before=True, pad_token_id=1, dropout=0.0,
        attention_dropout=0.0)),
    "opt_350m_style": lambda: OPTForCausalLM(OPTConfig(
        **COMMON, ffn_dim=48, word_embed_proj_dim=16, do_layer_norm_before=False, pad_token_id=1, dropout=0.0,
        attention_dropout=0.0)),
}


def redraw(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))


def build(name):
    torch.manual_seed(zlib.crc32(name.encode("utf-8")))
    model = CASES[name]().float()
    redraw(model)
    model.eval()
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
    V = model.config.vocab_size
    ids = torch.randint(3, V, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.int64)
    mask[1, :2] = 0
    ids[1, :2] = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        nomask = model(ids).logits
    eager = CASES[name]().float()
    eager.load_state_dict(model.state_dict())
    eager.config._attn_implementation = "eager"
    eager.eval()
    with torch.no_grad():
        le = eager(ids, attention_mask=mask).logits
    keep = mask.bool()
    assert torch.allclose(logits[keep], le[keep], atol=1e-5), name
    # Greedy generate with the KV cache, no eos (so every row runs the full length).
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        generated = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)

    cfg = peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights=False)
    pm = peft.get_peft_model(model, cfg)
    pm.eval()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    trainable, total = pm.get_nb_trainable_parameters()
    with torch.no_grad():
        lora = pm(input_ids=ids, attention_mask=mask).logits
    pm.save_pretrained(os.path.join(d, "adapter"))
    # One training forward/backward: next-token loss on the unpadded tokens whose previous token
    # is unpadded too (a padded position's logits attend to nothing and mean nothing).
    labels = ids.clone()
    prev_pad = torch.zeros_like(mask)
    prev_pad[:, 1:] = mask[:, :-1] == 0
    labels[(mask == 0) | (prev_pad == 1)] = -100
    pm.train()
    loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    grads = {"grad." + n: p.grad.contiguous() for n, p in pm.named_parameters() if p.requires_grad}
    safetensors.torch.save_file({"input_ids": ids, "attention_mask": mask, "logits": logits.contiguous(),
                                 "logits_nomask": nomask.contiguous(), "logits_lora": lora.contiguous(),
                                 "labels": labels, "loss": loss.detach().reshape(1), "generated": generated, **grads},
                                os.path.join(d, "io.safetensors"))
    with open(os.path.join(d, "adapter", "adapter_config.json")) as f:
        targets = sorted(json.load(f)["target_modules"])
    meta = {"model_type": model.config.model_type, "trainable_params": trainable, "all_params": total,
            "print_trainable_parameters": buf.getvalue().rstrip("\n"), "target_modules": targets,
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    # README.md files PEFT / transformers write are not needed.
    for sub in ("model", "adapter"):
        readme = os.path.join(d, sub, "README.md")
        if os.path.exists(readme):
            os.remove(readme)


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for name in CASES:
        build(name)
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Written by tests/golden/golden_hf.py with torch %s, transformers %s, peft %s; %d bytes.\n"
                % (torch.__version__, transformers.__version__, peft.__version__, total))
    print("wrote %d cases, %d bytes" % (len(CASES), total))


if __name__ == "__main__":
    main()
