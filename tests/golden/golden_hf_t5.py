"""Tiny random T5 / mT5 checkpoints for tests/test_hf_t5.cpp.

    PYTHONHASHSEED=0 python tests/golden/golden_hf_t5.py   # needs torch, transformers, peft, safetensors

For each case writes tests/golden/data/hf_t5/<case>/:
  model/          transformers' save_pretrained (config.json, model.safetensors), F32
  adapter/        PEFT's save_pretrained of LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8,
                  init_lora_weights=False) with no target_modules (PEFT's default: q, v)
  io.safetensors  input_ids / attention_mask (I64 [2, 12], row 1 right-padded by 3, as T5
                  tokenizers pad), decoder_input_ids (I64 [2, 9]), logits (eval, with the mask),
                  logits_lora (adapter on), labels (-100 at row 1's last 2), loss of PEFT's model in
                  train mode with those labels (dropout_rate 0) and grad.<PEFT name> of every
                  trainable parameter, generated (greedy generate, 6 new tokens, no eos)
  meta.json       PEFT's print_trainable_parameters() line, counts, targets, versions
The untied cases are saved as the published v1.1 / mT5 / mt0 checkpoints are: their own
lm_head.weight and "tie_word_embeddings": false in config.json (transformers 5 forces the flag
to true in the config class and unties on loading); the reference outputs come from the model
reloaded with from_pretrained, i.e. what users of such a checkpoint get.
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
from transformers import AutoModelForSeq2SeqLM, MT5Config, MT5ForConditionalGeneration, T5Config, \
    T5ForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "hf_t5")
# 8 buckets, max distance 20: relative positions up to 11 reach the logarithmic buckets. 3 encoder
# and 2 decoder blocks (transformers 5.25 sizes the generate cache by num_layers, so not fewer).
COMMON = dict(d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=3, num_decoder_layers=2, vocab_size=96,
              relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)

CASES = {
    # T5 v1.0: ReLU feed-forward, lm_head = shared, output scaled by d_model^-0.5.
    "t5_tied": (T5ForConditionalGeneration, T5Config(**COMMON, feed_forward_proj="relu"), False),
    # T5 v1.1 / flan-t5: gated-GELU, own lm_head, no scaling.
    "t5_v1_1": (T5ForConditionalGeneration, T5Config(**COMMON, feed_forward_proj="gated-gelu"), True),
    # mT5 / mt0: gated-GELU, own lm_head.
    "mt5": (MT5ForConditionalGeneration, MT5Config(**COMMON, feed_forward_proj="gated-gelu"), True),
}


def redraw(model):
    """Every weight from N(0, 0.25) (relative bias N(0, 1)): a wrong layout or a missing scale shows, and
    the unscaled attention scores stay in a range where F32 sums of different order agree."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (1.0 if "relative_attention_bias" in name else 0.25))


def build(name):
    cls, config, untie = CASES[name]
    torch.manual_seed(zlib.crc32(name.encode()))
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model = cls(config)
    if untie:
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    redraw(model)
    model.save_pretrained(os.path.join(d, "model"))
    cfg_path = os.path.join(d, "model", "config.json")
    with open(cfg_path) as f:
        saved = json.load(f)
    saved["tie_word_embeddings"] = not untie
    if untie:  # as published v1.1 configs: no scale_decoder_outputs key, so the false flag turns scaling off
        saved.pop("scale_decoder_outputs", None)
    with open(cfg_path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")
    model = AutoModelForSeq2SeqLM.from_pretrained(os.path.join(d, "model"))
    assert (model.lm_head.weight is model.shared.weight) == (not untie), name
    model.eval()

    B, S, T = 2, 12, 9
    ids = torch.randint(2, 96, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, -3:] = 0
    ids[1, -3:] = 0  # T5 tokenizers pad on the right with pad_token_id
    dec = torch.randint(2, 96, (B, T))
    dec[:, 0] = 0  # decoder_start_token_id
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        model.generation_config.eos_token_id = None
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)

    cfg = peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, init_lora_weights=False)
    pm = peft.get_peft_model(model, cfg)
    pm.eval()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    trainable, total = pm.get_nb_trainable_parameters()
    with torch.no_grad():
        lora = pm(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    pm.save_pretrained(os.path.join(d, "adapter"))
    labels = torch.randint(2, 96, (B, T))
    labels[1, -2:] = -100
    pm.train()
    loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    grads = {"grad." + n: p.grad.contiguous() for n, p in pm.named_parameters() if p.requires_grad}
    safetensors.torch.save_file({"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec,
                                 "logits": logits.contiguous(), "logits_lora": lora.contiguous(), "labels": labels,
                                 "loss": loss.detach().reshape(1), "generated": generated, **grads},
                                os.path.join(d, "io.safetensors"))
    with open(os.path.join(d, "adapter", "adapter_config.json")) as f:
        targets = sorted(json.load(f)["target_modules"])
    meta = {"model_type": model.config.model_type, "trainable_params": trainable, "all_params": total,
            "print_trainable_parameters": buf.getvalue().rstrip("\n"), "target_modules": targets,
            "tied": not untie, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for sub in ("model", "adapter"):
        readme = os.path.join(d, sub, "README.md")
        if os.path.exists(readme):
            os.remove(readme)
    print(name, meta["print_trainable_parameters"], "loss", float(loss))


def main():
    for name in CASES:
        build(name)


if __name__ == "__main__":
    main()
