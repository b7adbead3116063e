"""Case registry and forward/backward helpers shared by the golden case modules
(see make_golden.py for the naming convention inside each file)."""
import torch

# name -> function returning (dict of tensors, metadata dict or None)
CASES = {}


def case(name):
    """Registers a case; torch is seeded from crc32(name) before it runs."""
    def wrap(fn):
        assert name not in CASES, name
        CASES[name] = fn
        return fn
    return wrap


def leaf(t):
    """A float32 leaf that requires grad."""
    return t.detach().to(torch.float32).clone().requires_grad_(True)


def run_backward(inputs, outputs, extra=None):
    """Backpropagates sum(out * grad_out) over the float outputs with random grad_out.

    inputs: name -> leaf (requires grad); outputs: name -> tensor; extra: stored as is.
    Returns the dict of everything to store.
    """
    tensors = {}
    float_outs = [(k, v) for k, v in outputs.items() if v.is_floating_point()]
    grad_outs = {k: torch.randn(v.shape) for k, v in float_outs}
    torch.autograd.backward([v for _, v in float_outs], [grad_outs[k] for k, _ in float_outs])
    for k, v in inputs.items():
        tensors[k] = v.detach()
        assert v.grad is not None, "input %s got no gradient" % k
        tensors["grad." + k] = v.grad
    for k, v in (extra or {}).items():
        tensors[k] = v.detach()
    for k, v in outputs.items():
        tensors[k] = v.detach()
    for k, g in grad_outs.items():
        tensors["grad_" + k] = g
    return tensors


def run_module(module, x, outputs_fn=None, extra=None):
    """Forward/backward of a module; stores x, its state_dict under state_dict.<key>, the
    outputs, the upstream gradients and grad.x / grad.<parameter name>."""
    x = leaf(x) if x.is_floating_point() else x
    outputs = outputs_fn(module, x) if outputs_fn else {"out": module(x)}
    params = dict(module.named_parameters())
    float_outs = [(k, v) for k, v in outputs.items() if v.is_floating_point()]
    grad_outs = {k: torch.randn(v.shape) for k, v in float_outs}
    torch.autograd.backward([v for _, v in float_outs], [grad_outs[k] for k, _ in float_outs])
    tensors = {"x": x.detach()}
    if x.is_floating_point():
        tensors["grad.x"] = x.grad
    for k, v in module.state_dict().items():
        tensors["state_dict." + k] = v
    for k, p in params.items():
        tensors["grad." + k] = p.grad
    for k, v in (extra or {}).items():
        tensors[k] = v.detach()
    for k, v in outputs.items():
        tensors[k] = v.detach()
    for k, g in grad_outs.items():
        tensors["grad_" + k] = g
    return tensors
