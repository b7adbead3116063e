"""PyTorch peer of bench_mlp_step: one training step (forward, NLL, backward, AdamW) of the
seed MLP, all parameters trainable, batch 64 and 1024. Same JSON fields as the C++ program.
Threads: OMP_NUM_THREADS (set by bench/run_mlp_step.sh for both)."""
import json, os, sys, time
import torch
from torch import nn

def main():
    repeats = int(os.environ.get("REPEATS", "20"))
    batches = [int(b) for b in os.environ.get("BATCHES", "64,1024").split(",")]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    for batch in batches:
        h = 2000
        model = nn.Sequential(nn.Linear(20, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2), nn.LogSoftmax(dim=-1))
        opt = torch.optim.AdamW(model.parameters())
        x = torch.rand(batch, 20)
        y = torch.arange(batch) % 2
        def step():
            loss = nn.functional.nll_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for _ in range(3):
            step()
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1e3)
        ms.sort()
        flops = 3 * 2.0 * batch * (20 * h + h * h + 2 * h)
        print(json.dumps({"impl": "pytorch-" + torch.__version__, "case": "mlp_step", "batch": batch,
                          "threads": torch.get_num_threads(), "median_ms": round(ms[len(ms) // 2], 3),
                          "min_ms": round(ms[0], 3), "gflops": round(flops / (ms[len(ms) // 2] * 1e6), 1),
                          "repeats": repeats}), flush=True)

if __name__ == "__main__":
    main()
