"""PyTorch eager peer of bench_gpu_suite (bench/gpu_suite.cpp): the same cases and JSON fields on
the GPU, LoRA done the PEFT way (the `peft` package), PoolFormer-M36 from timm.
    python3 gpu_suite_torch.py [gemm|elementwise|mlp_step|poolformer|lora_linear|lora_sweep|all]   (env REPEATS)
("all" leaves out lora_sweep, spec/performance.md section 1's grid of ~200 shapes: run it by name.)
Timing as in the C++ suite: warm-up, then each repeat between two torch.cuda.Events with the GPU
drained before it; median and min; torch.cuda.max_memory_allocated() after a reset taken once the
case's weights and inputs are resident (alloc_at_start_bytes). F32 runs exact (TF32 off for
matmul and cuDNN, as our engine's default) except the gemm case's "tf32" rows.
Without a CUDA device: one line {"skipped": "no CUDA device"}, exit 0."""
import json, os, sys
import torch
from torch import nn

try:
    import peft
    IMPL = f"pytorch-{torch.__version__}+peft-{peft.__version__}"
except Exception:  # the gemm / elementwise cases need no PEFT
    peft = None
    IMPL = f"pytorch-{torch.__version__}"


def set_tf32(on):
    # PyTorch >= 2.9 spells it fp32_precision and warns on the old flags; older ones have only those.
    m, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(m, "fp32_precision"):
        m.fp32_precision = "tf32" if on else "ieee"
    else:
        m.allow_tf32 = on
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = on


def time_step(step, warmup, repeats):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    at_start = torch.cuda.memory_allocated()
    for _ in range(warmup):
        step()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in ev:
        torch.cuda.synchronize()
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in ev)
    return {"median_ms": round(ms[len(ms) // 2], 4), "min_ms": round(ms[0], 4), "repeats": repeats,
            "alloc_at_start_bytes": at_start, "peak_alloc_bytes": torch.cuda.max_memory_allocated()}


def emit(name, dtype, t, **extra):
    row = {"impl": IMPL, "case": name, "device": torch.cuda.get_device_name(), "dtype": dtype, **t,
           "l2_flush": False, **extra}
    print(json.dumps(row), flush=True)


def guarded(name, body):
    try:
        body()
    except Exception as e:  # e.g. out of memory: report it and go on, as the C++ suite does
        print(json.dumps({"impl": IMPL, "case": name, "device": torch.cuda.get_device_name(),
                          "error": f"{type(e).__name__}: {e}"}), flush=True)
        set_tf32(False)
        torch.cuda.empty_cache()


def case_gemm(repeats):
    for n in (4096, 8192):
        a32, b32 = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
        for mode in ("f32", "tf32", "bf16"):
            def body():
                a, b = (a32.bfloat16(), b32.bfloat16()) if mode == "bf16" else (a32, b32)
                set_tf32(mode == "tf32")
                t = time_step(lambda: a @ b, 3, repeats)
                emit(f"gemm_{mode}_{n}", mode, t, tflops=round(2.0 * n ** 3 / (t["median_ms"] * 1e9), 2))
                set_tf32(False)
            guarded(f"gemm_{mode}_{n}", body)


def case_elementwise(repeats):
    n = 64 << 20
    nbytes = 4.0 * n
    a, b = torch.randn(n, device="cuda"), torch.randn(n, device="cuda")
    dst = torch.empty_like(a)
    # PyTorch's own copy (a cudaMemcpyAsync for contiguous same-dtype tensors) is its ceiling.
    t = time_step(lambda: dst.copy_(a), 5, repeats)
    copy_gbps = 2 * nbytes / (t["median_ms"] * 1e6)
    emit("d2d_copy_64M", "f32", t, gbps=round(copy_gbps, 1))
    ops = [("add", 3, lambda: torch.add(a, b)), ("mul", 3, lambda: torch.mul(a, b)),
           ("gelu", 2, lambda: nn.functional.gelu(a)), ("relu", 2, lambda: torch.relu(a))]
    for name, tensors, f in ops:
        def body():
            t = time_step(f, 5, repeats)
            gbps = tensors * nbytes / (t["median_ms"] * 1e6)
            emit(f"{name}_64M", "f32", t, gbps=round(gbps, 1), copy_gbps=round(copy_gbps, 1),
                 bw_ratio_vs_copy=round(gbps / copy_gbps, 3))
        guarded(f"{name}_64M", body)


class MLP(nn.Module):
    """The seed MLP: Linear(20, H) → ReLU → Linear(H, H) → ReLU → Linear(H, 2) → LogSoftmax."""
    def __init__(self, h=2000):
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(20, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2),
                                 nn.LogSoftmax(dim=-1))

    def forward(self, x):
        return self.seq(x)


def case_mlp_step(repeats):
    if peft is None:
        sys.exit("mlp_step needs the peft package")
    h = 2000
    for batch in (64, 1024):
        def body():
            model = peft.get_peft_model(MLP(h), peft.LoraConfig(target_modules=["seq.0", "seq.2"],
                                                               modules_to_save=["seq.4"])).cuda()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
            x, y = torch.rand(batch, 20, device="cuda"), torch.arange(batch, device="cuda") % 2

            def step():
                loss = nn.functional.nll_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            t = time_step(step, 5, repeats)
            flops = 2.0 * batch * (20 * h + h * h + 2 * h) * 2  # fwd + dX (W frozen), as the C++ suite
            emit(f"mlp_lora_{batch}", "f32", t, batch=batch, tf32=False,
                 tflops=round(flops / (t["median_ms"] * 1e9), 3))
        guarded(f"mlp_lora_{batch}", body)


def case_poolformer(repeats):
    if peft is None:
        sys.exit("poolformer needs the peft package")
    import timm

    def body():
        model = timm.create_model("poolformer_m36", num_classes=3)
        model = peft.get_peft_model(model, peft.LoraConfig(target_modules=r".*\.mlp\.fc\d",
                                                           modules_to_save=["head.fc"])).cuda()
        x = torch.randn(32, 3, 224, 224, device="cuda")

        def step():
            model.zero_grad()
            model(x).sum().backward()
        t = time_step(step, 3, repeats)
        emit("poolformer_m36_fwd_bwd_b32", "f32", t, batch=32, tf32=False,
             images_per_s=round(32.0 / (t["median_ms"] * 1e-3), 1))
    guarded("poolformer_m36_fwd_bwd_b32", body)


def lora_config(base, name, dtype, tf32, n, d_in, d_out, r, p, repeats, adtype=None):
    """PEFT's eager LoRA Linear (separate dropout, A-GEMM, B-GEMM, scale, add) vs a plain F.linear
    at one shape, the passes of the C++ lora_config (bench/gpu_suite_lora.cpp); tax = lora / plain - 1."""
    s = 2.0

    def body():
        set_tf32(tf32)
        g = torch.Generator(device="cuda").manual_seed(3)
        mk = lambda *sh, sc: (torch.randn(*sh, device="cuda", generator=g) * sc).to(dtype)  # noqa: E731
        x, w, b = mk(n, d_in, sc=1.0), mk(d_out, d_in, sc=0.02), mk(d_out, sc=0.1)
        a, bb, gy = mk(r, d_in, sc=0.02), mk(d_out, r, sc=0.02), mk(n, d_out, sc=1.0)
        if adtype is not None:  # PEFT's autocast_adapter_dtype: F32 adapters on a BF16 base
            a, bb = a.to(adtype), bb.to(adtype)
        drop = nn.Dropout(p) if p > 0 else nn.Identity()
        xg, ag, bg = x.clone().requires_grad_(), a.clone().requires_grad_(), bb.clone().requires_grad_()
        F = nn.functional

        def lora(xx, aa, bbb):  # PEFT's lora.Linear.forward: cast to the adapters' dtype, add, cast back
            out = F.linear(xx, w, b) + F.linear(F.linear(drop(xx.to(aa.dtype)), aa), bbb) * s
            return out.to(xx.dtype)

        def plain_bwd():
            xg.grad = None
            F.linear(xg, w, b).backward(gy)

        def lora_bwd():
            xg.grad = ag.grad = bg.grad = None
            lora(xg, ag, bg).backward(gy)
        plain = {}
        for k, (pass_name, step) in enumerate((("plain_fwd", lambda: F.linear(x, w, b)),
                                                ("lora_fwd", lambda: lora(x, a, bb)),
                                                ("plain_fwd_bwd", plain_bwd), ("lora_fwd_bwd", lora_bwd))):
            with torch.no_grad() if pass_name.endswith("fwd") else torch.enable_grad():
                t = time_step(step, 3, repeats)
            extra = {"n": n, "in": d_in, "out": d_out, "r": r, "dropout": p}
            if k % 2 == 0:
                plain[k // 2] = t["median_ms"]
            else:
                extra["tax"] = round(t["median_ms"] / plain[k // 2] - 1.0, 3)
            emit(f"{base}_{pass_name}", name, t, **extra)
        set_tf32(False)
    guarded(base, body)


def case_lora_linear(repeats):
    """spec/performance.md section 1's headline shape: N 8192, 4096 x 4096, r 16."""
    for name, dtype, tf32, adtype in (("f32", torch.float32, False, None), ("tf32", torch.float32, True, None),
                                      ("bf16", torch.bfloat16, False, None),
                                      ("bf16mix", torch.bfloat16, False, torch.float32)):
        for p in (0.0, 0.1):
            base = f"lora_linear_{name}" + ("_dropout0.1" if p > 0 else "")
            lora_config(base, name, dtype, tf32, 8192, 4096, 4096, 16, p, repeats, adtype)


def case_lora_sweep(repeats):
    """Section 1's grid, named as bench/gpu_suite_lora.cpp's case_lora_sweep (not in "all")."""
    for name, dtype, tf32 in (("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
        for n in (2048, 4096, 8192, 16384):
            for d_in, d_out in ((1024, 1024), (4096, 4096), (8192, 8192), (4096, 11008)):
                for r in (8, 16, 64):
                    for p in (0.0, 0.1):
                        base = f"lora_sweep_{name}_n{n}_{d_in}x{d_out}_r{r}" + ("_dropout0.1" if p > 0 else "")
                        lora_config(base, name, dtype, tf32, n, d_in, d_out, r, p, repeats)


def case_lora_sweep_quick(repeats):
    """bench/gpu_suite_lora.cpp's quick corner of the grid (BF16; N 2048 / 8192; r 16)."""
    for n in (2048, 8192):
        for d_in, d_out in ((1024, 1024), (4096, 4096), (4096, 11008)):
            for p in (0.0, 0.1):
                base = f"lora_sweep_bf16_n{n}_{d_in}x{d_out}_r16" + ("_dropout0.1" if p > 0 else "")
                lora_config(base, "bf16", torch.bfloat16, False, n, d_in, d_out, 16, p, repeats)


CASES = {"gemm": case_gemm, "elementwise": case_elementwise, "mlp_step": case_mlp_step,
         "poolformer": case_poolformer, "lora_linear": case_lora_linear, "lora_sweep": case_lora_sweep,
         "lora_sweep_quick": case_lora_sweep_quick}


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which != "all" and which not in CASES:
        sys.exit(f"usage: {sys.argv[0]} [{'|'.join(CASES)}|all]")
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return
    repeats = max(1, int(os.environ.get("REPEATS", "20")))
    torch.manual_seed(0)
    set_tf32(False)
    for name, run in CASES.items():
        if which == name or (which == "all" and not name.startswith("lora_sweep")):
            run(repeats)


if __name__ == "__main__":
    main()
