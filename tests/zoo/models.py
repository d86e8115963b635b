"""The zoo's CNN architectures, written out by hand (torchvision and timm cannot be imported beside
the pinned CPU torch: their wheels are built against CUDA torch, see TESTRIG.md).

Each builder follows the building blocks of the paper or reference config named in its docstring,
reduced in width, depth or resolution so that it exports and converts in seconds; the ops that
make the architecture what it is (depthwise convs, SE, hardswish, channel shuffle...) are kept.
Weights are random with a fixed seed; BatchNorm running statistics are settled by a few
train-mode passes over random inputs so that activations have realistic ranges for calibration.
The transformers, the detector, the segmenter and the recurrent models are in zoo/models2.py.
"""
from __future__ import annotations

import math

SEED = 0


def make_divisible(value, divisor=8):
    """Channel counts rounded as the MobileNet/EfficientNet reference code rounds them."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


# Train-mode passes (batches, batch size) that settle BatchNorm statistics: small for the zoo's
# reduced models (builds stay fast in tests), (4, 8) for the benchmarks' full-size ones.
ZOO_SETTLE = (2, 4)


def settle_batchnorm(model, input_shape, batches=ZOO_SETTLE[0], batch_size=ZOO_SETTLE[1]):
    """Cumulative BatchNorm statistics from random inputs, so no layer explodes or vanishes."""
    import torch

    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, *input_shape[1:]))
    return model.eval()


def conv_bn(nn, cin, cout, kernel, stride=1, groups=1, act=None, dilation=1):
    """[Conv2d (no bias), BatchNorm2d, activation]: the conv unit of every CNN here."""
    pad = kernel // 2 * dilation
    layers = [nn.Conv2d(cin, cout, kernel, stride, pad, dilation, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([act] if act is not None else [])


def residual(nn, body, skip):
    """A module computing `body(x)`, plus x when `skip` is set."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x) if skip else self.body(x)

    return Block()


# --- MobileNetV2 ---------------------------------------------------------------------------------

# (expansion t, output channels c, repeats n, first stride s): the MobileNetV2 paper's table 2.
MNV2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1)]


def inverted_residual(nn, cin, cout, stride, expand):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, with a skip when shapes allow."""
    hidden = cin * expand
    layers = conv_bn(nn, cin, hidden, 1, act=nn.ReLU6(inplace=True)) if expand != 1 else []
    layers += conv_bn(nn, hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6(inplace=True))
    layers += conv_bn(nn, hidden, cout, 1)
    return residual(nn, nn.Sequential(*layers), stride == 1 and cin == cout)


def mobilenet_v2_features(nn, width=1.0, stages=None):
    """The MobileNetV2 body (stem + inverted residual stages) and its output channel count."""
    stem = make_divisible(32 * width)
    layers, cin = conv_bn(nn, 3, stem, 3, 2, act=nn.ReLU6(inplace=True)), stem
    for t, c, n, s in (stages or MNV2_SETTINGS):
        cout = make_divisible(c * width)
        for i in range(n):
            layers.append(inverted_residual(nn, cin, cout, s if i == 0 else 1, t))
            cin = cout
    return layers, cin


def mobilenet_v2(num_classes=1000, width=1.0, input_shape=(1, 3, 224, 224), settle=ZOO_SETTLE):
    """MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381, table 2; torchvision's layout): ReLU6,
    depthwise 3x3, linear bottlenecks, 1280-wide head. settle: (batches, batch size) of the
    BatchNorm passes, or None for the bare architecture (to load a state dict into)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    layers, cin = mobilenet_v2_features(nn, width)
    last = make_divisible(1280 * max(1.0, width))
    layers += conv_bn(nn, cin, last, 1, act=nn.ReLU6(inplace=True))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, num_classes)]
    model = nn.Sequential(*layers)
    return settle_batchnorm(model, input_shape, *settle) if settle else model.eval()


# --- MobileNetV3 ---------------------------------------------------------------------------------

# (kernel, expanded, out, squeeze-excite, activation, stride): MobileNetV3-Small, table 2 of the paper.
MNV3_SMALL = [(3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
              (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
              (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
              (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)]


def squeeze_excite(nn, channels, squeeze, act, gate):
    """x * gate(fc2(act(fc1(avgpool(x))))) (Hu et al. 2018) with 1x1 convs as the FC layers."""
    class SqueezeExcite(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.act = nn.Conv2d(channels, squeeze, 1), act
            self.fc2, self.gate = nn.Conv2d(squeeze, channels, 1), gate

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    return SqueezeExcite()


def _mnv3_block(nn, cin, kernel, expanded, cout, se, act_name, stride):
    act = (lambda: nn.ReLU(inplace=True)) if act_name == "RE" else (lambda: nn.Hardswish())
    layers = conv_bn(nn, cin, expanded, 1, act=act()) if expanded != cin else []
    layers += conv_bn(nn, expanded, expanded, kernel, stride, groups=expanded, act=act())
    if se:
        layers.append(squeeze_excite(nn, expanded, make_divisible(expanded // 4), nn.ReLU(), nn.Hardsigmoid()))
    layers += conv_bn(nn, expanded, cout, 1)
    return residual(nn, nn.Sequential(*layers), stride == 1 and cin == cout)


def mobilenet_v3_small(num_classes=1000, input_shape=(1, 3, 64, 64)):
    """MobileNetV3-Small (Howard et al. 2019, arXiv 1905.02244, table 2): hardswish, SE blocks with
    hardsigmoid gates, 5x5 depthwise convs, 1024-wide hardswish head. Full width, small input."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    layers, cin = conv_bn(nn, 3, 16, 3, 2, act=nn.Hardswish()), 16
    for kernel, expanded, cout, se, act, stride in MNV3_SMALL:
        layers.append(_mnv3_block(nn, cin, kernel, expanded, cout, se, act, stride))
        cin = cout
    layers += conv_bn(nn, cin, 576, 1, act=nn.Hardswish())
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
               nn.Linear(1024, num_classes)]
    return settle_batchnorm(nn.Sequential(*layers), input_shape)


# --- ResNet --------------------------------------------------------------------------------------

RESNET18_LAYERS = (2, 2, 2, 2)
RESNET18_WIDTHS = (64, 128, 256, 512)


def basic_block(nn, cin, cout, stride):
    """conv3x3-BN-ReLU-conv3x3-BN plus an identity (or 1x1 projection) skip, then ReLU."""
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
    skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity())

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.skip, self.relu = body, skip, nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + self.skip(x))

    return Block()


def resnet18(num_classes=1000, widths=RESNET18_WIDTHS, input_shape=(1, 3, 224, 224), settle=ZOO_SETTLE):
    """ResNet-18 (He et al. 2016, arXiv 1512.03385, table 1): 7x7 stem, max pool, basic blocks
    [2, 2, 2, 2]; `widths` scales the four stages."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    layers = [nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = widths[0]
    for i, (n, width) in enumerate(zip(RESNET18_LAYERS, widths)):
        for j in range(n):
            layers.append(basic_block(nn, cin, width, 2 if j == 0 and i > 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return settle_batchnorm(nn.Sequential(*layers), input_shape, *settle)


# --- EfficientNet --------------------------------------------------------------------------------

# (expansion, kernel, stride, out channels, repeats): EfficientNet-B0, table 1 of the paper.
EFFICIENTNET_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                   (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def _mbconv(nn, cin, cout, expand, kernel, stride):
    """MBConv: 1x1 expand (SiLU) -> depthwise (SiLU) -> SE (squeeze = input channels / 4) -> 1x1 project."""
    hidden = cin * expand
    layers = conv_bn(nn, cin, hidden, 1, act=nn.SiLU()) if expand != 1 else []
    layers += conv_bn(nn, hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU())
    layers.append(squeeze_excite(nn, hidden, max(1, cin // 4), nn.SiLU(), nn.Sigmoid()))
    layers += conv_bn(nn, hidden, cout, 1)
    return residual(nn, nn.Sequential(*layers), stride == 1 and cin == cout)


def efficientnet_b0(num_classes=1000, width=0.5, depth=0.5, input_shape=(1, 3, 64, 64)):
    """EfficientNet-B0 (Tan & Le 2019, arXiv 1905.11946, table 1; torchvision's MBConv): SiLU,
    squeeze-excite with sigmoid gates, 3x3/5x5 depthwise convs; width and depth scaled down."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    stem = make_divisible(32 * width)
    layers, cin = conv_bn(nn, 3, stem, 3, 2, act=nn.SiLU()), stem
    for expand, kernel, stride, c, n in EFFICIENTNET_B0:
        cout = make_divisible(c * width)
        for i in range(int(math.ceil(n * depth))):
            layers.append(_mbconv(nn, cin, cout, expand, kernel, stride if i == 0 else 1))
            cin = cout
    head = make_divisible(1280 * width)
    layers += conv_bn(nn, cin, head, 1, act=nn.SiLU())
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(head, num_classes)]
    return settle_batchnorm(nn.Sequential(*layers), input_shape)


# --- ShuffleNetV2 --------------------------------------------------------------------------------

def channel_shuffle(x, groups):
    """(b, g*c, h, w) -> (b, c*g, h, w) interleaved: the reshape/transpose/reshape of the paper."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def _shuffle_unit(nn, cin, cout, stride):
    """ShuffleNetV2 unit: stride 1 splits the channels in two and transforms one half; stride 2
    transforms both copies of the input; then concatenate and shuffle."""
    half = cout // 2
    branch_in = cin if stride > 1 else half
    right = nn.Sequential(*conv_bn(nn, branch_in, half, 1, act=nn.ReLU(inplace=True)),
                          *conv_bn(nn, half, half, 3, stride, groups=half),
                          *conv_bn(nn, half, half, 1, act=nn.ReLU(inplace=True)))
    left = (nn.Sequential(*conv_bn(nn, cin, cin, 3, stride, groups=cin),
                          *conv_bn(nn, cin, half, 1, act=nn.ReLU(inplace=True))) if stride > 1 else None)

    class ShuffleUnit(nn.Module):
        def __init__(self):
            super().__init__()
            self.left, self.right = left, right

        def forward(self, x):
            import torch

            if self.left is None:
                a, b = x.chunk(2, dim=1)
                out = torch.cat((a, self.right(b)), dim=1)
            else:
                out = torch.cat((self.left(x), self.right(x)), dim=1)
            return channel_shuffle(out, 2)

    return ShuffleUnit()


def shufflenet_v2(num_classes=1000, repeats=(2, 4, 2), channels=(24, 48, 96, 192, 1024),
                  input_shape=(1, 3, 64, 64)):
    """ShuffleNetV2 0.5x (Ma et al. 2018, arXiv 1807.11164, table 5 channel widths; torchvision's
    units): channel split (Split), channel shuffle (Reshape/Transpose/Reshape), depthwise convs.
    Stage repeats reduced from (4, 8, 4)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    layers = conv_bn(nn, 3, channels[0], 3, 2, act=nn.ReLU(inplace=True)) + [nn.MaxPool2d(3, 2, 1)]
    cin = channels[0]
    for n, cout in zip(repeats, channels[1:4]):
        for i in range(n):
            layers.append(_shuffle_unit(nn, cin, cout, 2 if i == 0 else 1))
            cin = cout
    layers += conv_bn(nn, cin, channels[4], 1, act=nn.ReLU(inplace=True))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[4], num_classes)]
    return settle_batchnorm(nn.Sequential(*layers), input_shape)
