"""ONNX NonMaxSuppression as torch ops of static shape, for the LiteRT path.

litert-torch cannot lower an output whose length depends on the data (its `nonzero` and `.item()`
need static sizes), and LiteRT has no NonMaxSuppression it could lower to. So the op is written
as what the ONNX spec says, unrolled to static shapes: per batch and class, up to K = min(
max_output_boxes_per_class, boxes) rounds, each picking the highest-scoring box still alive,
keeping it if it scores above the threshold, and suppressing every box it overlaps by IoU above
the limit. That is exactly greedy NMS (a kept box only ever suppresses lower-scoring ones), and
each round is a handful of vector ops over [batch, classes, boxes].

The result is B x C x K rows, the selected ones first in ONNX Runtime's order (batch, class,
falling score) and the rest padding that points at box 0, plus the number of selected rows:
onnx_torch.py makes that count one more output of the model, and the device agent trims every
padded output to it (device_agent/runtimes/litert.py, runtime option `valid_rows`).
"""
from __future__ import annotations

from ..errors import BadInput
from .onnx_ops import _torch, ints, op

# A score no box has: masks the boxes already picked or suppressed out of the next round's argmax.
NO_SCORE = -3.0e38


def _corners(torch, boxes, center_point_box: int):
    """(low corner, high corner) [B, A, 2] of boxes given as corners in either order, or centre-size."""
    if center_point_box:
        centre, size = boxes[..., :2], boxes[..., 2:]
        return centre - size / 2, centre + size / 2
    return torch.minimum(boxes[..., :2], boxes[..., 2:]), torch.maximum(boxes[..., :2], boxes[..., 2:])


def _number(value, default: float) -> float:
    """A threshold input as a Python float: a constant, which onnx_torch passes as a number or list
    (NUMBER_INPUTS); a computed threshold would need the tensor's value while tracing."""
    if value is None:
        return default
    if hasattr(value, "dim"):
        raise BadInput("iou_threshold and score_threshold must be constants")
    flat = value
    flat = flat if isinstance(flat, list) else [flat]
    if len(flat) != 1:
        raise BadInput(f"a threshold must be one number, got {len(flat)}")
    return float(flat[0])


@op("NonMaxSuppression")
def _non_max_suppression(a, boxes, scores, max_per_class=None, iou=None, score=None):
    torch = _torch()[0]
    if not isinstance(boxes, torch.Tensor) or not isinstance(scores, torch.Tensor):
        raise BadInput("boxes and scores must be computed tensors")
    per_class = ints(max_per_class) if max_per_class is not None else 0
    per_class = per_class[0] if isinstance(per_class, list) else per_class
    if not isinstance(per_class, int):
        raise BadInput("max_output_boxes_per_class must be a constant")
    iou_limit = _number(iou, 0.0)
    score_limit = None if score is None else _number(score, 0.0)
    batches, count, _ = boxes.shape
    classes = scores.shape[1]
    rounds = max(0, min(per_class, count))
    lo, hi = _corners(torch, boxes, a.get("center_point_box", 0))
    area = (hi - lo).prod(-1)[:, None]                       # [B, 1, A]
    lo, hi = lo[:, None], hi[:, None]                        # [B, 1, A, 2]
    alive = scores > score_limit if score_limit is not None else torch.ones_like(scores, dtype=torch.bool)
    boxes_index = torch.arange(count)
    picks, kept = [], []
    for _ in range(rounds):
        best = torch.where(alive, scores, torch.full_like(scores, NO_SCORE)).argmax(-1, keepdim=True)  # [B, C, 1]
        keep = torch.gather(alive, 2, best)
        corner = best[..., None].expand(batches, classes, 1, 2)
        best_lo = torch.gather(lo.expand(batches, classes, count, 2), 2, corner)
        best_hi = torch.gather(hi.expand(batches, classes, count, 2), 2, corner)
        best_area = torch.gather(area.expand(batches, classes, count), 2, best)
        inter = (torch.minimum(best_hi, hi) - torch.maximum(best_lo, lo)).clamp(min=0).prod(-1)   # [B, C, A]
        union = best_area + area - inter
        # ONNX Runtime's rule: no suppression by or of an empty box, or without overlap
        overlap = inter / torch.where(union > 0, union, torch.ones_like(union))
        suppressed = (overlap > iou_limit) & (inter > 0) & (best_area > 0) & (area > 0)
        alive = alive & ~suppressed & (boxes_index != best) & keep
        picks.append(best[..., 0])
        kept.append(keep[..., 0])
    return _compacted(torch, picks, kept, batches, classes, rounds)


def _compacted(torch, picks, kept, batches, classes, rounds):
    """([B*C*K, 3] int64 rows (batch, class, box), the kept rows first in order, padding after; [1] int64
    count of kept rows)."""
    rows = batches * classes * rounds
    if rows == 0:
        return torch.zeros((0, 3), dtype=torch.int64), torch.zeros((1,), dtype=torch.int64)
    box = torch.stack(picks, -1).reshape(-1)
    kept = torch.stack(kept, -1).reshape(-1)
    batch = torch.arange(batches)[:, None, None].expand(batches, classes, rounds).reshape(-1)
    klass = torch.arange(classes)[None, :, None].expand(batches, classes, rounds).reshape(-1)
    # int32 while stacking: litert-torch lowers argmax's indices to int32 and arange's to int64
    selected = torch.stack([batch.int(), klass.int(), box.int()], -1)
    position = torch.arange(rows)
    order = torch.topk(-torch.where(kept, position, position + rows), rows).indices   # kept first, stable
    selected = torch.where(kept[order][:, None], selected[order], torch.zeros_like(selected))
    return selected.long(), kept.sum().reshape(1).long()
