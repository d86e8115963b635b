"""An SSDLite detector with non-maximum suppression inside the graph, as torchvision's SSD exports
(boxes, scores, labels of a variable number of detections), written without torchvision: NMS is a
torch function whose ONNX form is the NonMaxSuppression op (legacy exporter only: the dynamo
exporter has no translation for it here).

Its outputs are what the parity check must compare as sets: a count that varies with the input,
integer class labels, and rows whose order two runtimes may break differently at equal scores.
"""
from __future__ import annotations

from .models import SEED, conv_bn, inverted_residual, make_divisible

# torchvision ssdlite320 uses score 0.001 and IoU 0.55 over 300 candidates; with random weights the
# class scores sit near 1 / (classes + 1), so a higher score threshold keeps the count varying.
NMS_IOU, NMS_SCORE, NMS_PER_CLASS = 0.5, 0.2, 10


def nms_indices(boxes, scores, per_class: int, iou: float, score: float):
    """ONNX NonMaxSuppression (center_point_box 0) in torch: boxes [B, A, 4] corners, scores [B, C, A]
    -> selected [K, 3] int64 (batch, class, box), per batch and class the boxes scoring above `score`
    in falling score order, each kept unless it overlaps a kept one by IoU > `iou`, at most `per_class`."""
    import torch

    selected = []
    for b in range(boxes.shape[0]):
        lo = torch.minimum(boxes[b, :, :2], boxes[b, :, 2:])
        hi = torch.maximum(boxes[b, :, :2], boxes[b, :, 2:])
        area = (hi - lo).prod(1)
        for c in range(scores.shape[1]):
            kept = []
            for i in torch.argsort(scores[b, c], descending=True, stable=True).tolist():
                if len(kept) == per_class or scores[b, c, i] <= score:
                    break
                inter = (torch.minimum(hi[i], hi[kept]) - torch.maximum(lo[i], lo[kept])).clamp(min=0).prod(-1)
                union = area[i] + area[kept] - inter
                if not kept or not bool(((area[i] > 0) & (area[kept] > 0) & (inter / union > iou)).any()):
                    kept.append(i)
            selected += [[b, c, i] for i in kept]
    return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)


def _nms_function():
    import torch

    class NonMaxSuppression(torch.autograd.Function):
        @staticmethod
        def forward(ctx, boxes, scores, per_class, iou, score):
            return nms_indices(boxes, scores, int(per_class), float(iou), float(score))

        @staticmethod
        def symbolic(g, boxes, scores, per_class, iou, score):
            return g.op("NonMaxSuppression", boxes, scores, per_class, iou, score)

    return NonMaxSuppression


def _anchors(torch, grids, image, scales):
    """[A, 4] (cx, cy, w, h) in pixels: `len(scales)` square anchors per cell of each grid."""
    rows = []
    for grid, scale in zip(grids, scales):
        step = image / grid
        for y in range(grid):
            for x in range(grid):
                for s in scale:
                    rows.append(((x + 0.5) * step, (y + 0.5) * step, s * image, s * image))
    return torch.tensor(rows, dtype=torch.float32)


def ssdlite_nms(num_classes=8, image=64, width=0.5, anchors_per_cell=3):
    """SSDLite (Sandler et al. 2018, arXiv 1801.04381 sec. 6.3; torchvision ssdlite320_mobilenet_v3):
    a MobileNetV2 body, heads of depthwise-separable convs on the stride-8 and stride-16 maps, anchor
    boxes decoded with SSD's center-size coding (variances 0.1, 0.2), softmax class scores without the
    background, then NMS per class. Reduced: 64x64 input, width 0.5, 8 classes, 240 anchors.
    Outputs boxes [K, 4] (x1, y1, x2, y2 pixels), scores [K], labels [K] int64."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    nms = _nms_function()
    stem = make_divisible(32 * width)
    c8, c16 = make_divisible(32 * width), make_divisible(64 * width)
    body8 = nn.Sequential(*conv_bn(nn, 3, stem, 3, 2, act=nn.ReLU6(inplace=True)),
                          inverted_residual(nn, stem, make_divisible(24 * width), 2, 6),
                          inverted_residual(nn, make_divisible(24 * width), c8, 2, 6))
    body16 = nn.Sequential(inverted_residual(nn, c8, c16, 2, 6), inverted_residual(nn, c16, c16, 1, 6))
    outputs_per_anchor = 4 + num_classes + 1

    def head(cin):   # SSDLite: depthwise 3x3 + BN + ReLU6, then a 1x1 conv to the predictions
        return nn.Sequential(*conv_bn(nn, cin, cin, 3, groups=cin, act=nn.ReLU6(inplace=True)),
                             nn.Conv2d(cin, anchors_per_cell * outputs_per_anchor, 1))

    class SSDLite(nn.Module):
        def __init__(self):
            super().__init__()
            self.body8, self.body16 = body8, body16
            self.heads = nn.ModuleList([head(c8), head(c16)])
            grids = (image // 8, image // 16)
            self.register_buffer("anchors", _anchors(torch, grids, image, ((0.1, 0.2, 0.3), (0.35, 0.5, 0.7))))

        def predictions(self, x):
            f8 = self.body8(x)
            f16 = self.body16(f8)
            out = [h(f).permute(0, 2, 3, 1).reshape(x.shape[0], -1, outputs_per_anchor)
                   for h, f in zip(self.heads, (f8, f16))]
            return torch.cat(out, 1)   # [B, A, 4 + classes + 1]

        def forward(self, x):
            p = self.predictions(x)
            a = self.anchors
            centre = a[:, :2] + p[..., 0:2] * 0.1 * a[:, 2:]
            size = a[:, 2:] * torch.exp(p[..., 2:4] * 0.2)
            boxes = torch.cat([centre - size / 2, centre + size / 2], -1)                  # [B, A, 4]
            scores = p[..., 4:].softmax(-1)[..., 1:].transpose(1, 2).contiguous()          # [B, C, A]
            selected = nms.apply(boxes, scores, torch.tensor([NMS_PER_CLASS]), torch.tensor([NMS_IOU]),
                                 torch.tensor([NMS_SCORE]))
            boxes_kept = boxes[selected[:, 0], selected[:, 2]]
            scores_kept = scores[selected[:, 0], selected[:, 1], selected[:, 2]]
            return boxes_kept, scores_kept, selected[:, 1]

    model = SSDLite()
    # BatchNorm statistics settled as zoo/models.py does, through the convolutions only (not NMS)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model.predictions(torch.randn(4, 3, image, image))
    return model.eval()

