"""PyTorch peer of bench_cpu_suite: the same cases, LoRA done the PEFT way (real PEFT when it
imports, else an equivalent hand-written LoRA linear), PoolFormer from timm when it imports.
One case per process (for max RSS):  python cpu_suite_torch.py CASE  (threads: OMP_NUM_THREADS)."""
import json, os, resource, sys, time
import torch
from torch import nn

def run(name, repeats, warmup, flops, step, impl):
    for _ in range(warmup):
        step()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    med = ms[len(ms) // 2]
    print(json.dumps({"impl": impl, "case": name, "threads": torch.get_num_threads(), "median_ms": round(med, 3),
                      "min_ms": round(ms[0], 3), "gflops": round(flops / (med * 1e6), 1) if flops else 0.0,
                      "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "repeats": repeats}), flush=True)

def main():
    case = sys.argv[1]
    repeats = int(os.environ.get("REPEATS", "20"))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    try:
        import peft
        impl = f"pytorch-{torch.__version__}+peft-{peft.__version__}"
    except Exception:
        peft = None
        impl = f"pytorch-{torch.__version__}"
    # The runner marks a peer it starts with a different BLAS (e.g. "+generic-blas").
    impl += os.environ.get("PEFT_BENCH_IMPL_SUFFIX", "")
    if case == "gemm":
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        run("gemm_2048", repeats, 2, 2.0 * 2048 ** 3, lambda: a @ b, impl)
    elif case == "lora_linear":
        N, i, o, r = 2048, 1024, 1024, 16
        x = torch.randn(N, i, requires_grad=True)
        base = nn.Linear(i, o).requires_grad_(False)
        A = nn.Linear(i, r, bias=False)
        B = nn.Linear(r, o, bias=False)
        g = torch.randn(N, o)
        def step():
            x.grad = None; A.weight.grad = None; B.weight.grad = None
            y = base(x) + B(A(x)) * 2.0  # PEFT's lora.Linear forward (dropout off)
            y.backward(g)
        flops = 2.0 * N * i * o + 2.0 * N * r * (i + o) + 2.0 * N * i * o + 4.0 * N * r * (i + o)
        run("lora_linear_fwd_bwd", repeats, 3, flops, step, impl)
    elif case in ("mlp_lora_64", "mlp_lora_1024"):
        batch = 64 if case == "mlp_lora_64" else 1024
        h = 2000
        class MLP(nn.Module):
            def __init__(s):
                super().__init__()
                s.seq = nn.Sequential(nn.Linear(20, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2), nn.LogSoftmax(dim=-1))
            def forward(s, x): return s.seq(x)
        if peft is None:
            sys.exit("mlp_lora needs PEFT (see tests/golden/golden_peft.py for the venv recipe)")
        model = peft.get_peft_model(MLP(), peft.LoraConfig(target_modules=["seq.0", "seq.2"], modules_to_save=["seq.4"]))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
        x, y = torch.rand(batch, 20), torch.arange(batch) % 2
        def step():
            loss = nn.functional.nll_loss(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
        run(case, repeats, 3, 2.0 * batch * (20 * h + h * h + 2 * h) * 2, step, impl)
    elif case == "poolformer":
        import timm
        model = timm.create_model("poolformer_m36", num_classes=3)
        model = peft.get_peft_model(model, peft.LoraConfig(target_modules=r".*\.mlp\.fc\d", modules_to_save=["head.fc"]))
        x = torch.randn(2, 3, 224, 224)
        def step():
            model.zero_grad(); model(x).sum().backward()
        run("poolformer_m36_fwd_bwd_b2", min(repeats, 5), 1, 0, step, impl)
    else:
        sys.exit(f"unknown case {case}")

if __name__ == "__main__":
    main()
