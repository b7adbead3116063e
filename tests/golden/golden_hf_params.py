"""PEFT's print_trainable_parameters() line for full-size transformers configs, for `hf_lora params`.

    python tests/golden/golden_hf_params.py   # needs torch, transformers, peft (no hub access)

The configs are written here with the published models' sizes (Llama 2 7B, Mistral 7B, Llama 3 8B,
Qwen2 0.5B with tied embeddings, OPT-350m with its project_in / project_out quirk, mt0-large);
each model is built by transformers on torch's meta device (no weights) and wrapped by PEFT with
the task type's default target modules. Writes tests/golden/data/hf_params/<case>/config.json
(transformers' save_pretrained of the config) and expected.json (the LoRA arguments, the line
and the two counts).
"""
import contextlib
import io
import json
import os

import peft
import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaConfig, MistralConfig, MT5Config,
                          OPTConfig, Qwen2Config)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "hf_params")

CASES = {
    "llama2_7b": (LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                              num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096,
                              rms_norm_eps=1e-5, tie_word_embeddings=False),
                  dict(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.05)),
    "llama3_8b": (LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                              num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                              rope_theta=500000.0, tie_word_embeddings=False),
                  dict(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0)),
    "mistral_7b": (MistralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                 num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                                 sliding_window=4096, tie_word_embeddings=False),
                   dict(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.1)),
    "qwen2_0_5b": (Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
                   dict(task_type="CAUSAL_LM", r=8, lora_alpha=32, lora_dropout=0.0)),
    "opt_350m": (OPTConfig(hidden_size=1024, ffn_dim=4096, num_hidden_layers=24, num_attention_heads=16,
                           vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=512,
                           do_layer_norm_before=False, pad_token_id=1),
                 dict(task_type="CAUSAL_LM", r=8, lora_alpha=32, lora_dropout=0.1)),
    # The seeds' PEFT README: bigscience/mt0-large (an mT5-large) with these arguments.
    "mt0_large": (MT5Config(d_model=1024, d_ff=2816, d_kv=64, num_heads=16, num_layers=24, num_decoder_layers=24,
                            vocab_size=250112, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                            relative_attention_num_buckets=32, relative_attention_max_distance=128,
                            decoder_start_token_id=0, pad_token_id=0, eos_token_id=1),
                  dict(task_type="SEQ_2_SEQ_LM", r=8, lora_alpha=32, lora_dropout=0.1)),
}


def untie_lm_head(name, model):
    """transformers 5 builds every T5 / MT5 from a config with lm_head tied to `shared` (it forces
    tie_word_embeddings=True) and unties it on from_pretrained when the checkpoint holds its own
    lm_head.weight — as mt0-large's does (its config.json says tie_word_embeddings: false). The
    count of the model users load is the untied one (the seeds' 1,231,940,608), so the head is
    given its own parameter here, as loading the real checkpoint does."""
    if name != "mt0_large":
        return False
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
    return True


def main():
    for name, (config, lora) in CASES.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        config.save_pretrained(d)
        if name == "mt0_large":  # as the published config.json (save_pretrained writes the forced True)
            with open(os.path.join(d, "config.json")) as f:
                saved = json.load(f)
            saved["tie_word_embeddings"] = False
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(saved, f, indent=2, sort_keys=True)
                f.write("\n")
        auto = AutoModelForSeq2SeqLM if lora["task_type"] == "SEQ_2_SEQ_LM" else AutoModelForCausalLM
        with torch.device("meta"):
            model = auto.from_config(config)
            if untie_lm_head(name, model):
                model.config.tie_word_embeddings = False
            pm = peft.get_peft_model(model, peft.LoraConfig(**lora))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            pm.print_trainable_parameters()
        trainable, total = pm.get_nb_trainable_parameters()
        expected = {"lora": lora, "print_trainable_parameters": buf.getvalue().rstrip("\n"),
                    "trainable_params": trainable, "all_params": total, "torch": torch.__version__,
                    "transformers": transformers.__version__, "peft": peft.__version__}
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        print(name, expected["print_trainable_parameters"])


if __name__ == "__main__":
    main()
