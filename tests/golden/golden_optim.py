"""Optimizer cases (tests/test_golden_optim.cpp): from fixed parameters p0 (3, 4) and p1 (5),
five steps with fixed gradients. Stored: p0, p1 (initial), step<k>.grad.<p> (the gradient set
before step k; absent = the parameter has no gradient that step, which PyTorch skips) and
step<k>.<p> (the parameters after step k). The optimizer and its options are in __metadata__.
"""
import torch

from golden_common import case

STEPS = 5


def _run(optimizer, options, skip=()):
    """skip: (step, param name) pairs whose gradient is None at that step."""
    params = {"p0": torch.randn(3, 4), "p1": torch.randn(5)}
    tensors = {k: v.clone() for k, v in params.items()}
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[optimizer]
    kwargs = dict(options)
    if "beta1" in kwargs:
        kwargs["betas"] = (kwargs.pop("beta1"), kwargs.pop("beta2"))
    opt = cls(list(leaves.values()), foreach=False, **kwargs)
    for step in range(1, STEPS + 1):
        for name, p in leaves.items():
            if (step, name) in skip:
                p.grad = None
                continue
            g = torch.randn(p.shape)
            p.grad = g.clone()
            tensors["step%d.grad.%s" % (step, name)] = g
        opt.step()
        for name, p in leaves.items():
            tensors["step%d.%s" % (step, name)] = p.detach().clone()
    metadata = {"optimizer": optimizer}
    metadata.update({k: repr(float(v)) if not isinstance(v, bool) else str(v).lower() for k, v in options.items()})
    return tensors, metadata


case("optim_sgd")(lambda: _run("SGD", {"lr": 0.1}))
case("optim_sgd_momentum")(lambda: _run("SGD", {"lr": 0.1, "momentum": 0.9}))
case("optim_sgd_momentum_dampening_wd")(lambda: _run(
    "SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}))
case("optim_sgd_nesterov_wd")(lambda: _run("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                                    "weight_decay": 0.05}))
case("optim_sgd_momentum_skip")(lambda: _run("SGD", {"lr": 0.1, "momentum": 0.9}, skip={(2, "p1"), (3, "p1")}))
case("optim_adam")(lambda: _run("Adam", {"lr": 0.01}))
case("optim_adam_wd")(lambda: _run("Adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
                                            "weight_decay": 0.1}))
case("optim_adamw")(lambda: _run("AdamW", {"lr": 0.01, "weight_decay": 0.1}))
case("optim_adamw_default_wd_skip")(lambda: _run("AdamW", {"lr": 0.02}, skip={(1, "p1"), (3, "p0")}))
