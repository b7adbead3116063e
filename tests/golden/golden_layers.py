"""Layer cases (tests/test_golden_layers.cpp): a torch.nn module with its PyTorch-initialised
parameters, stored under their state_dict() keys so the C++ layer loads them by name.
Parameters PyTorch initialises to constants (norm weights 1, biases 0) are randomised first,
so the gradients of the affine part are really checked.
"""
import torch
import torch.nn.functional as F
from torch import nn

from golden_common import case, run_module


def randomise_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


class LayerNorm2d(nn.LayerNorm):
    """timm.layers.LayerNorm2d: LayerNorm over the channels of NCHW."""

    def __init__(self, num_channels, eps=1e-6, affine=True):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class MLP(nn.Module):
    """The seed MLP of custom_models.md with a small hidden size."""

    def __init__(self, num_units_hidden=2000):
        super().__init__()
        self.seq = nn.Sequential(
            nn.Linear(20, num_units_hidden),
            nn.ReLU(),
            nn.Linear(num_units_hidden, num_units_hidden),
            nn.ReLU(),
            nn.Linear(num_units_hidden, 2),
            nn.LogSoftmax(dim=-1),
        )

    def forward(self, X):
        return self.seq(X)


MLP_HIDDEN = 64

# Layer configurations are repeated in the C++ test next to the case name.
case("layer_linear")(lambda: run_module(nn.Linear(6, 4), torch.randn(2, 3, 6)))
case("layer_linear_nobias")(lambda: run_module(nn.Linear(6, 4, bias=False), torch.randn(5, 6)))
case("layer_conv2d_groups2_stride2_pad1")(lambda: run_module(
    nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 1), groups=2), torch.randn(2, 4, 7, 6)))
case("layer_conv2d_1x1")(lambda: run_module(nn.Conv2d(3, 5, 1), torch.randn(2, 3, 4, 4)))
case("layer_conv1d_k3_s2_p1")(lambda: run_module(nn.Conv1d(4, 6, 3, stride=2, padding=1), torch.randn(2, 4, 9)))
case("layer_conv1d_groups2_dil2_nobias")(lambda: run_module(
    nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2, bias=False), torch.randn(2, 4, 8)))
case("layer_conv3d_k323_s212_p101")(lambda: run_module(
    nn.Conv3d(3, 4, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1)), torch.randn(2, 3, 5, 4, 6)))
case("layer_conv3d_groups2_dil")(lambda: run_module(
    nn.Conv3d(4, 6, 3, padding=(2, 1, 0), dilation=(2, 1, 1), groups=2), torch.randn(1, 4, 6, 5, 5)))
case("layer_conv3d_1x1x1")(lambda: run_module(nn.Conv3d(3, 5, 1), torch.randn(2, 3, 2, 3, 3)))
case("layer_group_norm")(lambda: run_module(randomise_(nn.GroupNorm(2, 6)), torch.randn(2, 6, 3, 4)))
case("layer_layer_norm")(lambda: run_module(randomise_(nn.LayerNorm(5)), torch.randn(2, 3, 5)))
case("layer_layer_norm_2dims")(lambda: run_module(randomise_(nn.LayerNorm((3, 5))), torch.randn(2, 3, 5)))
case("layer_layer_norm2d")(lambda: run_module(randomise_(LayerNorm2d(4)), torch.randn(2, 4, 3, 5)))
case("layer_gelu")(lambda: run_module(nn.GELU(), torch.randn(3, 7) * 2))
case("layer_gelu_tanh")(lambda: run_module(nn.GELU(approximate="tanh"), torch.randn(3, 7) * 2))
case("layer_avg_pool2d")(lambda: run_module(
    nn.AvgPool2d(3, 2, 1, ceil_mode=False, count_include_pad=False), torch.randn(2, 3, 7, 6)))
case("layer_flatten")(lambda: run_module(nn.Flatten(), torch.randn(2, 3, 2, 2)))
case("layer_flatten_1_2")(lambda: run_module(nn.Flatten(1, 2), torch.randn(2, 3, 2, 2)))
case("layer_mlp")(lambda: run_module(MLP(MLP_HIDDEN), torch.randn(4, 20)))


@case("layer_embedding_padding_idx1")
def _embedding():
    ids = torch.tensor([[1, 4, 4, 0], [7, 1, 2, 4]], dtype=torch.int64)
    return run_module(nn.Embedding(8, 3, padding_idx=1), ids)


def _lstm_outputs(module, x):
    out, (h_n, c_n) = module(x)
    return {"out": out, "h_n": h_n, "c_n": c_n}


case("layer_lstm_2layers_batch_first")(lambda: run_module(
    nn.LSTM(5, 6, num_layers=2, batch_first=True), torch.randn(3, 4, 5), _lstm_outputs))
case("layer_lstm_2layers")(lambda: run_module(nn.LSTM(5, 6, num_layers=2), torch.randn(4, 3, 5), _lstm_outputs))


@case("layer_conv_block")
def _conv_block():
    """A small vision stem: Conv2d → LayerNorm2d → GELU → AvgPool2d → Flatten → Linear."""
    block = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        randomise_(LayerNorm2d(4)),
        nn.GELU(),
        nn.AvgPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    )
    return run_module(block, torch.randn(2, 3, 8, 8))


@case("mlp_state_dict")
def _mlp_state_dict():
    """Exactly what safetensors.torch.save_file(MLP(64).state_dict(), path) writes."""
    return dict(MLP(MLP_HIDDEN).state_dict()), {"format": "pt"}


@case("mlp_state_dict_io")
def _mlp_state_dict_io():
    """Input and log-probabilities of the model in mlp_state_dict (same seed, rebuilt here)."""
    import zlib
    torch.manual_seed(zlib.crc32(b"mlp_state_dict"))
    model = MLP(MLP_HIDDEN)
    torch.manual_seed(1234)
    x = torch.randn(5, 20)
    with torch.no_grad():
        out = model(x)
    return {"x": x, "out": out}
