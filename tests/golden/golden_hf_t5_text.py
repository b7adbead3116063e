"""A tiny random mT5 with a real Unigram tokenizer, for hf_lora generate / train on T5 folders.

    PYTHONHASHSEED=0 /tmp/venv/bin/python tests/golden/golden_hf_t5_text.py   # torch, transformers, peft

Nothing comes from the hub: the tokenizer is the committed
tests/golden/data/tokenizers/mt5_bytefallback/tokenizer.json (golden_tokenizers_unigram.py).
Writes tests/golden/data/hf_t5_text/mt5_sp/:
  model/        MT5ForConditionalGeneration save_pretrained (own lm_head, tie_word_embeddings false
                as mt0's config) + tokenizer.json + generation_config.json (eos 1, pad 0,
                decoder_start 0)
  adapter/      PEFT LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, init_lora_weights=False)
  train.tsv     PAIRS as "source<TAB>target" lines
  expected.json prompt; generate / generate_adapter: greedy model.generate(max_new_tokens=8) ids and
                their decode (skip_special_tokens); train: per-pair source / target ids (tokenizer
                with special tokens, as run_translation.py), mean_loss = the mean over pairs of
                model(input_ids, labels).loss for each pair alone (eval mode); versions
"""
import json
import os
import shutil
import zlib

import peft
import torch
import transformers
from transformers import MT5Config, MT5ForConditionalGeneration, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "hf_t5_text")
TOKENIZER = os.path.join(HERE, "data", "tokenizers", "mt5_bytefallback", "tokenizer.json")
PAIRS = [
    ("translate English to German: The house is wonderful.", "Das Haus ist wunderbar."),
    ("translate English to German: I like green tea.", "Ich mag grünen Tee."),
    ("summarize: The meeting was moved from Monday to Friday because the room was booked.", "Meeting moved to Friday."),
    ("translate English to French: Where is the station?", "Où est la gare ?"),
    ("question: What is 2 + 3? context: Two plus three is five.", "five"),
    ("translate English to German: Thank you very much!", "Vielen Dank!"),
    ("summarize: Rain is expected all week, with some sun on Sunday afternoon.", "Rainy week, sunny Sunday."),
    ("translate English to French: The cat sleeps.", "Le chat dort."),
]
PROMPT = "translate English to German: The cat is small."


def main():
    name = "mt5_sp"
    torch.manual_seed(zlib.crc32(name.encode()))
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    V = len(tok)
    config = MT5Config(d_model=32, d_kv=8, d_ff=48, num_heads=4, num_layers=2, num_decoder_layers=2, vocab_size=V,
                       relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
                       feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = MT5ForConditionalGeneration(config)
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (1.0 if "relative_attention_bias" in pname else 0.25))
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir)
    with open(os.path.join(mdir, "config.json")) as f:
        saved = json.load(f)
    saved["tie_word_embeddings"] = False
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copy(TOKENIZER, os.path.join(mdir, "tokenizer.json"))
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(mdir).eval()
    assert model.lm_head.weight is not model.shared.weight

    def generate(m):
        ids = tok(PROMPT, return_tensors="pt").input_ids
        with torch.no_grad():
            out = m.generate(input_ids=ids, max_new_tokens=8, do_sample=False)
        return {"output_ids": out[0].tolist(), "text": tok.decode(out[0], skip_special_tokens=True)}

    expected = {"prompt": PROMPT, "prompt_ids": tok(PROMPT).input_ids, "generate": generate(model)}
    pairs = [{"source_ids": tok(s).input_ids, "target_ids": tok(t).input_ids} for s, t in PAIRS]
    losses = []
    for p in pairs:
        with torch.no_grad():
            losses.append(float(model(input_ids=torch.tensor([p["source_ids"]]),
                                      labels=torch.tensor([p["target_ids"]])).loss))
    expected["train"] = {"pairs": pairs, "mean_loss": sum(losses) / len(losses)}

    pm = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8,
                                                    init_lora_weights=False))
    pm.save_pretrained(os.path.join(d, "adapter"))
    base = transformers.AutoModelForSeq2SeqLM.from_pretrained(mdir).eval()
    with_adapter = peft.PeftModel.from_pretrained(base, os.path.join(d, "adapter")).eval()
    expected["generate_adapter"] = generate(with_adapter)
    expected["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "peft": peft.__version__}
    with open(os.path.join(d, "train.tsv"), "w", encoding="utf-8") as f:
        for s, t in PAIRS:
            f.write(s + "\t" + t + "\n")
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for sub in ("model", "adapter"):
        readme = os.path.join(d, sub, "README.md")
        if os.path.exists(readme):
            os.remove(readme)
    print(name, "mean_loss", expected["train"]["mean_loss"], "generate", expected["generate"]["text"][:40], "|",
          expected["generate_adapter"]["text"][:40])


if __name__ == "__main__":
    main()
