"""Tiny PyTorch models for the intake tests (module:callable form)."""
import torch
from torch import nn


def make_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def make_wide_depthwise():
    """A CNN with one 7x7 depthwise convolution (as in ConvNeXt) and one 3x3 (as in MobileNet)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 7, padding=3, groups=16),
                         nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 16, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


class _Block(nn.Module):
    """A transformer block in miniature: LayerNorm, attention (two activations multiplied), GELU MLP."""

    def __init__(self, dim=32):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + self.proj(torch.softmax(q @ k.transpose(-2, -1) / 4.0, dim=-1) @ v)
        return x + self.mlp(self.norm2(x))


def make_transformer_block():
    torch.manual_seed(0)
    return nn.Sequential(_Block(), _Block())


def not_a_module():
    return 42


class _TwoInputs(nn.Module):
    """An image and a feature vector in, class scores and a regression out (a detector head's shape of things)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc, self.cls, self.reg = nn.Linear(8 + 6, 16), nn.Linear(16, 5), nn.Linear(16, 2)

    def forward(self, image, meta):
        hidden = torch.relu(self.fc(torch.cat([self.conv(image), meta], 1)))
        return self.cls(hidden), self.reg(hidden)


def make_two_inputs():
    torch.manual_seed(0)
    return _TwoInputs().eval()
