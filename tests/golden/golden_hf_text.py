"""Tiny random transformers checkpoints with real tokenizers, for text-in / text-out C++ tests
(tokenize a prompt, greedy generate, decode; turn a .txt file into training blocks and a loss).

    PYTHONHASHSEED=0 /tmp/venv/bin/python tests/golden/golden_hf_text.py   # torch, transformers, peft

(PEFT writes target_modules in set order; a fixed hash seed keeps adapter_config.json stable.)
Nothing comes from the hub: the tokenizers are the committed tests/golden/data/tokenizers/
<tok>/tokenizer.json files (built by golden_tokenizers.py), reused as they are.

For each case writes tests/golden/data/hf_text/<case>/:
  model/      save_pretrained of the model (config.json, generation_config.json with bos/eos/pad,
              model.safetensors, F32) and of PreTrainedTokenizerFast(tokenizer_file=...)
              (tokenizer.json, asserted byte-identical to the source, and tokenizer_config.json)
  adapter/    PEFT save_pretrained of LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
              init_lora_weights=False), PEFT's default target modules
  train.txt   TRAIN_TEXT (the same for every case)
  expected.json
    prompt, prompt_ids (tokenizer(prompt).input_ids, special tokens added)
    generate / generate_adapter: output_ids (prompt + greedy model.generate(max_new_tokens=8,
      do_sample=False), eos stopping from generation_config), text (decode, skip_special_tokens);
      the base model and PeftModel.from_pretrained(base reloaded from model/, adapter/), eval mode
    train: run_clm.py's text-file pipeline with --keep_linebreaks False, which is also what the
      `datasets` "text" loader does by default: one example per line of train.txt, the "\n"
      removed, blank lines kept as "" (so they add only the special tokens), each tokenized with
      add_special_tokens=True, all ids concatenated, cut into blocks of block_size (the remainder
      dropped); num_blocks, blocks, and mean_loss / mean_loss_adapter =
      model(input_ids=blocks, labels=blocks).loss in eval mode
    train_keep_linebreaks: the same for run_clm.py's default (--keep_linebreaks True): every line
      keeps its trailing "\n" (a blank line is "\n")
    versions
  (run_clm.py also holds out the first validation_split_percentage=5% of the lines as a validation
  set when no validation file is given; that split is not modelled here: every line is used.)
Deterministic: torch is seeded from crc32(case name), every weight is re-drawn so nothing is zero
or identity; two runs give byte-identical files.
"""
import json
import os
import shutil
import sys
import zlib

import peft
import tokenizers
import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, OPTConfig,
                          OPTForCausalLM, PreTrainedTokenizerFast)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep tests/golden free of __pycache__
from golden_hf import redraw  # noqa: E402  (the same weight re-draw as the logits goldens)
OUT = os.path.join(HERE, "data", "hf_text")
TOK = os.path.join(HERE, "data", "tokenizers")
PROMPT = "The quick brown fox"
BLOCK_SIZE = 32
MAX_NEW_TOKENS = 8

TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog.
A small model can still learn a few patterns from a short text.
This file is used to check how training blocks are built.

Every line becomes one example, and each example is tokenized on its own.
The token ids of all examples are joined together,
then cut into blocks of the same length.
Whatever is left at the end is simply dropped.
Rivers run to the sea, yet the sea is never full.
The morning was cold, so she made a pot of tea in the caf\u00e9.
He read the letter twice before he put it away.
On Tuesday, 14 March 2023, at 09:45, the price rose by 3.5% (from $1,200.00 to $1,242.00)!
Is this a question? Yes; it is -- and a "quoted" answer, too.

Low-rank adapters add two thin matrices next to a frozen weight.
Only the small matrices are trained, which saves a lot of memory.
After training, the adapter can be merged back into the weight.
Greedy decoding always picks the most likely next token.
A tiny random model will not say anything sensible,
but it will say the same thing every time.
Birds sing in the trees while the wind moves the leaves.
The library opens at nine and closes at five.
Please bring a pencil, a notebook and a calculator.
She counted the stars until she fell asleep.
Old maps show roads that no longer exist.
Two trains left the station at the same time, one going north and one going south.
The cat ignored the dog, as cats usually do.
We planted tomatoes, beans and a row of sunflowers along the fence.
A good test checks one thing and says clearly what went wrong.
The last line of the file ends with a newline.
"""

CASES = {
    "llama_sp": dict(
        tokenizer="llama2_sentencepiece", special=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
        model=lambda vocab: LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=48, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0))),
    # facebook/opt's tokenizer files name "</s>" as bos, eos and unk, "<pad>" as pad.
    "opt_bl": dict(
        tokenizer="opt_bytelevel",
        special=dict(bos_token="</s>", eos_token="</s>", unk_token="</s>", pad_token="<pad>"),
        model=lambda vocab: OPTForCausalLM(OPTConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=48,
            max_position_embeddings=128, word_embed_proj_dim=32, do_layer_norm_before=True, dropout=0.0,
            attention_dropout=0.0, bos_token_id=2, eos_token_id=2, pad_token_id=1))),
}


def generate(model, tok, prompt_ids):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    ids = out[0].tolist()
    return {"output_ids": ids, "text": tok.decode(ids, skip_special_tokens=True)}


def lines_of(text, keep_linebreaks):
    # = datasets' text loader: StringIO(text).readlines(), then rstrip("\n") unless keep_linebreaks.
    lines = text.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    return [line + "\n" for line in lines] if keep_linebreaks else lines


def blocks_of(tok, text, keep_linebreaks):
    ids = [i for row in tok(lines_of(text, keep_linebreaks)).input_ids for i in row]  # add_special_tokens=True
    n = len(ids) // BLOCK_SIZE
    return [ids[k * BLOCK_SIZE:(k + 1) * BLOCK_SIZE] for k in range(n)], len(ids)


def mean_loss(model, blocks):
    x = torch.tensor(blocks)
    with torch.no_grad():
        return model(input_ids=x, labels=x).loss.item()


def build(name):
    case = CASES[name]
    d = os.path.join(OUT, name)
    model_dir, adapter_dir = os.path.join(d, "model"), os.path.join(d, "adapter")
    shutil.rmtree(d, ignore_errors=True)
    src = os.path.join(TOK, case["tokenizer"], "tokenizer.json")
    raw = tokenizers.Tokenizer.from_file(src)
    vocab = raw.get_vocab_size(with_added_tokens=True)

    torch.manual_seed(zlib.crc32(name.encode("utf-8")))
    model = case["model"](vocab).float()
    redraw(model)
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)
    tok = PreTrainedTokenizerFast(tokenizer_file=src, **case["special"])
    tok.save_pretrained(model_dir)
    with open(src, "rb") as a, open(os.path.join(model_dir, "tokenizer.json"), "rb") as b:
        assert a.read() == b.read(), "save_pretrained rewrote tokenizer.json"
    gen_cfg = json.load(open(os.path.join(model_dir, "generation_config.json")))
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert gen_cfg.get(k) == getattr(model.config, k), (k, gen_cfg)

    cfg = peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, init_lora_weights=False)
    pm = peft.get_peft_model(model, cfg)
    pm.save_pretrained(adapter_dir)
    for sub in (model_dir, adapter_dir):  # README.md written by PEFT / transformers is not needed.
        if os.path.exists(os.path.join(sub, "README.md")):
            os.remove(os.path.join(sub, "README.md"))
    with open(os.path.join(d, "train.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(TRAIN_TEXT)

    # Everything below reads the saved folders back, as a user of the checkpoint would.
    tok = AutoTokenizer.from_pretrained(model_dir)
    saved = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(d, "train.txt"), encoding="utf-8") as f:
        text = f.read()
    assert text == TRAIN_TEXT
    for s in [PROMPT, text] + lines_of(text, False) + lines_of(text, True):
        ids = raw.encode(s).ids
        assert saved.encode(s).ids == ids and tok(s).input_ids == ids, s
    prompt_ids = tok(PROMPT).input_ids

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with_adapter = peft.PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter_dir).eval()
    expected = {"case": name, "model_type": base.config.model_type, "tokenizer_source": case["tokenizer"],
                "vocab_size": vocab, "prompt": PROMPT, "prompt_ids": prompt_ids, "max_new_tokens": MAX_NEW_TOKENS,
                "generate": generate(base, tok, prompt_ids),
                "generate_adapter": generate(with_adapter, tok, prompt_ids)}
    for key, keep in (("train", False), ("train_keep_linebreaks", True)):
        blocks, total = blocks_of(tok, text, keep)
        expected[key] = {"keep_linebreaks": keep, "num_lines": len(lines_of(text, keep)), "num_tokens": total,
                         "block_size": BLOCK_SIZE, "num_blocks": len(blocks), "mean_loss": mean_loss(base, blocks),
                         "mean_loss_adapter": mean_loss(with_adapter, blocks), "blocks": blocks}
    expected["target_modules"] = sorted(json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
                                        ["target_modules"])
    expected["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "peft": peft.__version__, "tokenizers": tokenizers.__version__}
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        f.write(dumps(expected) + "\n")
    return expected


def dumps(o, ind=0):
    """JSON with one line per list of numbers (blocks stay readable), ASCII-escaped."""
    pad = " " * (ind + 1)
    if isinstance(o, dict):
        return "{\n" + ",\n".join(pad + json.dumps(k) + ": " + dumps(v, ind + 1) for k, v in o.items()) + "\n" + \
            " " * ind + "}"
    if isinstance(o, list) and any(isinstance(v, list) for v in o):
        return "[\n" + ",\n".join(pad + dumps(v, ind + 1) for v in o) + "\n" + " " * ind + "]"
    return json.dumps(o)


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for name in CASES:
        e = build(name)
        print(name, "prompt_ids", e["prompt_ids"])
        for k in ("generate", "generate_adapter"):
            print("  %s %s %r" % (k, e[k]["output_ids"], e[k]["text"]))
        for k in ("train", "train_keep_linebreaks"):
            t = e[k]
            print("  %s: %d tokens, %d blocks, loss %.6f, adapter %.6f"
                  % (k, t["num_tokens"], t["num_blocks"], t["mean_loss"], t["mean_loss_adapter"]))
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f != "README.md")
    print("wrote %d cases, %d bytes" % (len(CASES), total))


if __name__ == "__main__":
    main()
