"""Small PyTorch models with the structures the LiteRT path must convert beyond plain CNNs (module:callable
form): attention with LayerNorm, an FPN with upsampling, a YOLO-style split head that reads its input's
shape, a GRU, and a Silero-VAD-like model with a state input and an integer scalar input."""
import torch
from torch import nn
import torch.nn.functional as F


class Attention(nn.Module):
    """Patch embedding, one pre-norm transformer block (x.shape read for the reshapes), a head."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.patch, self.heads = nn.Conv2d(3, dim, 4, 4), heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, c))
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


class Fpn(nn.Module):
    """Two strides, nearest and bilinear upsampling, a concat: a segmenter's decoder in small."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        a = F.relu(self.c1(x))
        b = F.relu(self.c2(a))
        up = F.interpolate(b, scale_factor=2.0, mode="nearest")
        y = self.out(torch.cat([a, up], 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class SplitHead(nn.Module):
    """A YOLOv8-style head: boxes and scores split off one conv, a distribution softmax, a decode."""

    def __init__(self, reg=4, classes=3):
        super().__init__()
        self.reg, self.conv = reg, nn.Conv2d(3, 4 * reg + classes, 3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        b, _, h, w = y.shape
        box, cls = y.view(b, -1, h * w).split((4 * self.reg, y.shape[1] - 4 * self.reg), 1)
        dist = box.view(b, 4, self.reg, h * w).transpose(2, 1).softmax(1)
        box = (dist * torch.arange(self.reg, dtype=torch.float32).view(1, -1, 1, 1)).sum(1)
        return torch.cat([box, cls.sigmoid()], 1)


class Gru(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru, self.fc = nn.GRU(6, 8, num_layers=2, batch_first=True), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.gru(x)[0][:, -1])


class VadLike(nn.Module):
    """Audio chunk + LSTM state + sample rate (an int64 scalar): (probability, new state)."""

    def __init__(self, hidden=8):
        super().__init__()
        self.conv, self.lstm = nn.Conv1d(1, hidden, 8, 4), nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x, state, sr):
        feats = F.relu(self.conv(F.pad(x.unsqueeze(1), (4, 4), mode="reflect"))).transpose(1, 2)
        feats = feats * (sr.to(torch.float32) / 16000.0)
        y, (h, c) = self.lstm(feats, (state[0:1], state[1:2]))
        return torch.sigmoid(self.out(y[:, -1])), torch.cat([h, c], 0)


def _seeded(cls):
    def build():
        torch.manual_seed(0)
        return cls().eval()
    return build


attention, fpn, split_head, gru, vad_like = (_seeded(c) for c in (Attention, Fpn, SplitHead, Gru, VadLike))

# name -> (builder, example input shapes); VadLike's inputs are made by vad_inputs()
SHAPES = {"attention": [(1, 3, 16, 16)], "fpn": [(1, 3, 16, 16)], "split_head": [(1, 3, 16, 16)], "gru": [(1, 7, 6)]}


def vad_inputs():
    torch.manual_seed(1)
    return torch.randn(1, 64) * 0.1, torch.randn(2, 1, 8) * 0.1, torch.tensor(16000)
