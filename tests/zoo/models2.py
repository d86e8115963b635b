"""The rest of the zoo (split from zoo/models.py for size): a ViT/DeiT, a ConvNeXt, a YOLOv8-style
detector with its decoded head, a DeepLabV3 segmenter, a GRU keyword spotter and a
Silero-VAD-like model with a recurrent state and a scalar input. Same rules as models.py: the
reference's building blocks, reduced sizes, seeded random weights, settled BatchNorm.
"""
from __future__ import annotations

from .models import SEED, conv_bn, mobilenet_v2_features, settle_batchnorm


# --- DeiT / ViT ----------------------------------------------------------------------------------

def _attention_block(nn, dim, heads, mlp_ratio=4.0):
    """Pre-norm transformer block as timm's vision_transformer.Block: x + attn(LN(x)), x + mlp(LN(x)),
    attention from one qkv Linear reshaped to heads, scaled dot product, softmax; exact (erf) GELU."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
            self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
            hidden = int(dim * mlp_ratio)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            self.heads, self.scale = heads, (dim // heads) ** -0.5

        def attention(self, x):
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

        def forward(self, x):
            x = x + self.attention(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    return Block()


def deit_tiny(num_classes=1000, image=64, patch=8, dim=64, depth=3, heads=4):
    """DeiT-Ti / ViT (Touvron et al. 2021, arXiv 2012.12877; timm deit_tiny_patch16_224: patch 16,
    dim 192, depth 12, 3 heads): conv patch embedding, class token, learned position embedding,
    pre-norm blocks, LayerNorm eps 1e-6, GELU MLP, head on the class token. Reduced: 64x64 input,
    patch 8, dim 64, depth 3, 4 heads."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    tokens = (image // patch) ** 2

    class DeiT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(3, dim, patch, patch)
            self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
            self.blocks = nn.Sequential(*[_attention_block(nn, dim, heads) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, num_classes)

        def forward(self, x):
            x = self.patch_embed(x).flatten(2).transpose(1, 2)
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
            return self.head(self.norm(self.blocks(x))[:, 0])

    return DeiT().eval()


# --- ConvNeXt ------------------------------------------------------------------------------------

def _channels_first_norm(nn, channels, eps=1e-6):
    """ConvNeXt's LayerNorm over channels of an NCHW tensor, written out as the official code does
    (mean, variance, normalise, affine): ReduceMean/Sub/Pow/Sqrt/Div in ONNX."""
    import torch

    class LayerNorm2d(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

        def forward(self, x):
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + eps)
            return self.weight[:, None, None] * x + self.bias[:, None, None]

    return LayerNorm2d()


def _convnext_block(nn, dim):
    """dwconv 7x7 -> permute to NHWC -> LayerNorm -> Linear 4x -> GELU -> Linear -> layer scale -> NCHW, + x."""
    import torch

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
            # Layer scale starts at 1e-6 in training; a trained model's is far larger. 0.1 keeps
            # the residual branch visible in the outputs.
            self.gamma = nn.Parameter(torch.full((dim,), 0.1))

        def forward(self, x):
            y = self.dwconv(x).permute(0, 2, 3, 1)
            y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
            return x + y.permute(0, 3, 1, 2)

    return Block()


def convnext_tiny(num_classes=1000, depths=(1, 1, 2, 1), dims=(16, 32, 64, 128)):
    """ConvNeXt (Liu et al. 2022, arXiv 2201.03545; ConvNeXt-T is depths (3, 3, 9, 3), dims
    (96, 192, 384, 768)): 4x4 stride-4 patchify stem, channels-first LayerNorm + 2x2 stride-2
    downsampling, blocks of 7x7 depthwise conv, LayerNorm, inverted MLP with GELU, layer scale;
    head: global mean, LayerNorm, Linear. Reduced depths and dims, 64x64 input."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    layers = [nn.Conv2d(3, dims[0], 4, 4), _channels_first_norm(nn, dims[0])]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i:
            layers += [_channels_first_norm(nn, dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
        layers += [_convnext_block(nn, dim) for _ in range(depth)]

    class ConvNeXt(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.norm, self.head = nn.LayerNorm(dims[-1], eps=1e-6), nn.Linear(dims[-1], num_classes)

        def forward(self, x):
            return self.head(self.norm(self.features(x).mean([-2, -1])))

    return ConvNeXt().eval()


# --- YOLOv8 --------------------------------------------------------------------------------------

def _conv(nn, cin, cout, kernel=1, stride=1):
    """Ultralytics' Conv: Conv2d (no bias) + BatchNorm2d + SiLU."""
    return nn.Sequential(*conv_bn(nn, cin, cout, kernel, stride, act=nn.SiLU()))


def _c2f(nn, cin, cout, n, shortcut):
    """C2f: 1x1 conv, split in two (Split), n bottlenecks on the last half, concat every piece, 1x1 conv."""
    import torch

    c = cout // 2

    class Bottleneck(nn.Module):
        def __init__(self):
            super().__init__()
            self.cv1, self.cv2 = _conv(nn, c, c, 3), _conv(nn, c, c, 3)

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if shortcut else y

    class C2f(nn.Module):
        def __init__(self):
            super().__init__()
            self.cv1, self.cv2 = _conv(nn, cin, 2 * c), _conv(nn, (2 + n) * c, cout)
            self.m = nn.ModuleList(Bottleneck() for _ in range(n))

        def forward(self, x):
            y = list(self.cv1(x).chunk(2, 1))
            y.extend(m(y[-1]) for m in self.m)
            return self.cv2(torch.cat(y, 1))

    return C2f()


def _sppf(nn, cin, cout, k=5):
    """SPPF: 1x1 conv, three chained k x k max pools, concat the four, 1x1 conv."""
    import torch

    class SPPF(nn.Module):
        def __init__(self):
            super().__init__()
            self.cv1, self.cv2 = _conv(nn, cin, cin // 2), _conv(nn, cin // 2 * 4, cout)
            self.m = nn.MaxPool2d(k, 1, k // 2)

        def forward(self, x):
            y = [self.cv1(x)]
            y.extend(self.m(y[-1]) for _ in range(3))
            return self.cv2(torch.cat(y, 1))

    return SPPF()


def _anchors(torch, sizes, strides):
    """Anchor centres (A, 2) and their strides (A, 1), as ultralytics' make_anchors (offset 0.5)."""
    points, stride_list = [], []
    for (h, w), s in zip(sizes, strides):
        sy, sx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_list.append(torch.full((h * w, 1), float(s)))
    return torch.cat(points).float(), torch.cat(stride_list).float()


def _detect(nn, channels, nc, strides, sizes, reg_max=16):
    """YOLOv8's Detect head, decoded as in export: per level box (4 x reg_max) and class convs,
    concat, Split, DFL (softmax over reg_max bins then a fixed 1x1 conv of 0..reg_max-1),
    dist2bbox (xywh) times stride, sigmoid classes: output (1, 4 + nc, anchors)."""
    import torch

    c2, c3 = max(16, channels[0] // 4, reg_max * 4), max(channels[0], min(nc, 100))
    anchors, stride_t = _anchors(torch, sizes, strides)

    class Detect(nn.Module):
        def __init__(self):
            super().__init__()
            self.cv2 = nn.ModuleList(nn.Sequential(_conv(nn, c, c2, 3), _conv(nn, c2, c2, 3),
                                                   nn.Conv2d(c2, 4 * reg_max, 1)) for c in channels)
            self.cv3 = nn.ModuleList(nn.Sequential(_conv(nn, c, c3, 3), _conv(nn, c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                     for c in channels)
            self.dfl = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
            self.dfl.weight.data[:] = torch.arange(reg_max, dtype=torch.float).view(1, reg_max, 1, 1)
            self.register_buffer("anchors", anchors.transpose(0, 1))
            self.register_buffer("strides", stride_t.transpose(0, 1))

        def forward(self, xs):
            b = xs[0].shape[0]
            x = torch.cat([torch.cat((a(x), c(x)), 1).view(b, 4 * reg_max + nc, -1)
                           for x, a, c in zip(xs, self.cv2, self.cv3)], 2)
            box, cls = x.split((reg_max * 4, nc), 1)
            dist = self.dfl(box.view(b, 4, reg_max, -1).transpose(2, 1).softmax(1)).view(b, 4, -1)
            lt, rb = dist.chunk(2, 1)
            x1y1, x2y2 = self.anchors.unsqueeze(0) - lt, self.anchors.unsqueeze(0) + rb
            dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
            return torch.cat((dbox, cls.sigmoid()), 1)

    return Detect()


def yolov8n(nc=80, image=96, input_shape=None):
    """YOLOv8n (ultralytics yolov8.yaml, scale n: depth 0.33, width 0.25): Conv/C2f backbone, SPPF,
    PAN neck with nearest Upsample (Resize) and Concat, decoded Detect head (DFL + dist2bbox).
    Same channels and repeats as yolov8n; 96x96 input (3 levels: 12x12, 6x6, 3x3)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    sizes = [(image // s, image // s) for s in (8, 16, 32)]

    class YOLOv8(nn.Module):
        def __init__(self):
            super().__init__()
            self.p3 = nn.Sequential(_conv(nn, 3, 16, 3, 2), _conv(nn, 16, 32, 3, 2), _c2f(nn, 32, 32, 1, True),
                                    _conv(nn, 32, 64, 3, 2), _c2f(nn, 64, 64, 2, True))
            self.p4 = nn.Sequential(_conv(nn, 64, 128, 3, 2), _c2f(nn, 128, 128, 2, True))
            self.p5 = nn.Sequential(_conv(nn, 128, 256, 3, 2), _c2f(nn, 256, 256, 1, True), _sppf(nn, 256, 256))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.top4, self.top3 = _c2f(nn, 384, 128, 1, False), _c2f(nn, 192, 64, 1, False)
            self.down3, self.out4 = _conv(nn, 64, 64, 3, 2), _c2f(nn, 192, 128, 1, False)
            self.down4, self.out5 = _conv(nn, 128, 128, 3, 2), _c2f(nn, 384, 256, 1, False)
            self.detect = _detect(nn, (64, 128, 256), nc, (8, 16, 32), sizes)

        def forward(self, x):
            p3 = self.p3(x)
            p4 = self.p4(p3)
            p5 = self.p5(p4)
            t4 = self.top4(torch.cat((self.up(p5), p4), 1))
            n3 = self.top3(torch.cat((self.up(t4), p3), 1))
            n4 = self.out4(torch.cat((self.down3(n3), t4), 1))
            n5 = self.out5(torch.cat((self.down4(n4), p5), 1))
            return self.detect([n3, n4, n5])

    return settle_batchnorm(YOLOv8(), input_shape or (1, 3, image, image))


# --- DeepLabV3 -----------------------------------------------------------------------------------

def _aspp(nn, cin, cout, rates):
    """ASPP (torchvision's layout): 1x1 branch, atrous 3x3 branches, image pooling branch resized
    back bilinearly to the feature size (Resize with sizes read from Shape); concat; 1x1 project."""
    import torch
    import torch.nn.functional as F

    class ASPP(nn.Module):
        def __init__(self):
            super().__init__()
            branches = [nn.Sequential(*conv_bn(nn, cin, cout, 1, act=nn.ReLU()))]
            branches += [nn.Sequential(*conv_bn(nn, cin, cout, 3, dilation=r, act=nn.ReLU())) for r in rates]
            self.branches = nn.ModuleList(branches)
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *conv_bn(nn, cin, cout, 1, act=nn.ReLU()))
            self.project = nn.Sequential(*conv_bn(nn, cout * (len(rates) + 2), cout, 1, act=nn.ReLU()),
                                         nn.Dropout(0.5))

        def forward(self, x):
            pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
            return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))

    return ASPP()


def deeplabv3_mobilenet(num_classes=21, width=0.5, image=96, rates=(2, 4, 6)):
    """DeepLabV3 (Chen et al. 2017, arXiv 1706.05587; torchvision deeplabv3 head) on a MobileNetV2
    backbone at output stride 16: ASPP with atrous convs and an image-pooling branch, 3x3 conv,
    1x1 classifier, bilinear upsampling (Resize) to the input size. 96x96 input, width 0.5,
    atrous rates scaled to the 6x6 feature map (the paper uses 6, 12, 18 at 33x33)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(SEED)
    body, channels = mobilenet_v2_features(nn, width, [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                                       (6, 64, 4, 2), (6, 96, 3, 1)])
    aspp = _aspp(nn, channels, 64, rates)

    class DeepLabV3(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(*body)
            self.head = nn.Sequential(aspp, *conv_bn(nn, 64, 64, 3, act=nn.ReLU()), nn.Conv2d(64, num_classes, 1))

        def forward(self, x):
            y = self.head(self.backbone(x))
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return settle_batchnorm(DeepLabV3(), (1, 3, image, image))


# --- Recurrent -----------------------------------------------------------------------------------

def kws_gru(num_classes=12, frames=49, features=10, hidden=64, layers=2):
    """Keyword spotting GRU (Zhang et al. 2017, "Hello Edge", arXiv 1711.07128: MFCC frames 49x10 ->
    GRU -> FC over the 12 Speech Commands classes). Two stacked GRU layers of 64 units, logits
    from the last time step."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)

    class KwsGRU(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True)
            self.fc = nn.Linear(hidden, num_classes)

        def forward(self, x):
            out, _ = self.gru(x)
            return self.fc(out[:, -1])

    del frames  # the input length is the caller's; the module takes any
    return KwsGRU().eval()


def silero_vad(chunk=512, hidden=128):
    """Silero VAD v5-like (snakers4/silero-vad, 16 kHz branch): inputs audio chunk [1, 512], state
    [2, 1, 128] (LSTM h and c), sr int64 scalar; outputs speech probability [1, 1] and the new state.
    Blocks as in v5: reflect pad, STFT as a Conv1d with a fixed Fourier basis (filter 256, hop 128),
    magnitude, 4 Conv1d+ReLU encoder blocks, LSTM decoder, ReLU, 1x1 Conv1d, sigmoid, mean over
    time. v5's decoder is an LSTMCell: here a one-step nn.LSTM, the same arithmetic, because torch's
    legacy exporter cannot export LSTMCell ("unsafe_chunk, unknown dimension size"). The real model
    selects its 16k/8k branch with an If on sr; here sr scales the audio (sr / 16000, 1.0 for
    16 kHz) so exporters keep the input and the graph stays static."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(SEED)
    n_fft, hop, bins = 256, 128, 129
    k = np.arange(bins)[:, None] * np.arange(n_fft)[None, :] * 2 * np.pi / n_fft
    window = np.hanning(n_fft + 1)[:-1]
    basis = np.concatenate([np.cos(k), -np.sin(k)]) * window
    blocks = [(bins, 128, 1), (128, 64, 2), (64, 64, 2), (64, 128, 1)]

    class SileroVAD(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("basis", torch.tensor(basis, dtype=torch.float32).unsqueeze(1))
            self.encoder = nn.Sequential(*[m for cin, cout, s in blocks
                                           for m in (nn.Conv1d(cin, cout, 3, s, 1), nn.ReLU())])
            self.rnn = nn.LSTM(hidden, hidden, batch_first=True)
            self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(hidden, 1, 1), nn.Sigmoid())

        def forward(self, x, state, sr):
            x = x * (sr.to(torch.float32) / 16000.0)
            x = F.pad(x.unsqueeze(1), (0, 64), mode="reflect")
            spec = F.conv1d(x, self.basis, stride=hop)
            mag = torch.sqrt(spec[:, :bins] ** 2 + spec[:, bins:] ** 2)
            feat = self.encoder(mag).transpose(1, 2)        # (1, time=1, 128)
            _, (h, c) = self.rnn(feat, (state[:1], state[1:]))
            prob = self.out(h[0].unsqueeze(-1)).squeeze(1).mean(dim=1, keepdim=True)
            return prob, torch.cat((h, c))

    del chunk
    return SileroVAD().eval()
