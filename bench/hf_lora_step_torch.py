"""PyTorch + PEFT peer of bench_hf_lora_step: the same configs (random weights), LoraConfig r 16,
alpha 32, task CAUSAL_LM (PEFT's default q_proj / v_proj), AdamW lr 1e-4 on the adapters, one step =
forward, next-token cross-entropy, backward, optimizer step. Same JSON fields.
Environment: MODELS (opt125m,llama125m), BATCH (2), SEQ (128), REPEATS (5), DEVICE (cpu), BF16 (0),
OMP_NUM_THREADS."""
import json
import os
import time

import peft
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

CONFIGS = {
    "opt125m": lambda: OPTForCausalLM(OPTConfig(
        hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12, vocab_size=50272,
        max_position_embeddings=2048, word_embed_proj_dim=768, do_layer_norm_before=True, pad_token_id=1,
        dropout=0.0)),
    "llama125m": lambda: LlamaForCausalLM(LlamaConfig(
        hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
        vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)),
}


def main():
    models = os.environ.get("MODELS", "opt125m,llama125m").split(",")
    batch, seq = int(os.environ.get("BATCH", "2")), int(os.environ.get("SEQ", "128"))
    repeats, device = int(os.environ.get("REPEATS", "5")), os.environ.get("DEVICE", "cpu")
    bf16 = os.environ.get("BF16", "0") == "1"
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for name in models:
        torch.manual_seed(0)
        model = CONFIGS[name]().to(device)
        if bf16:
            model = model.to(torch.bfloat16)
        pm = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32))
        pm.train()
        opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
        ids = torch.randint(3, model.config.vocab_size, (batch, seq), device=device)

        def step():
            logits = pm(input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                                     ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        for _ in range(2):
            step()
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1e3)
        ms.sort()
        trainable, total = pm.get_nb_trainable_parameters()
        med = ms[len(ms) // 2]
        print(json.dumps({"impl": "pytorch-%s+peft-%s+transformers-%s" % (torch.__version__, peft.__version__,
                                                                        transformers.__version__),
                          "case": "hf_lora_step", "model": name, "device": device, "dtype": "bf16" if bf16 else "f32",
                          "batch": batch, "seq": seq, "threads": torch.get_num_threads(), "params": total,
                          "trainable": trainable, "median_ms": round(med, 3), "min_ms": round(ms[0], 3),
                          "tokens_per_s": round(batch * seq / (med / 1e3), 1), "repeats": repeats}), flush=True)


if __name__ == "__main__":
    main()
