"""Semantic segmentation metrics from a confusion matrix (pure functions).

The confusion matrix has one row per ground-truth class and one column per
predicted class plus a final "no prediction" column (a thresholded-out point
counts against its true class but is a false positive for none).

IoU_c = TP_c / (GT_c + P_c - TP_c), Acc_c = TP_c / GT_c, where GT_c counts every
point of class c (whatever it was predicted as) and P_c every point predicted c.
Means are taken over the evaluated classes that occur in the ground truth;
``exclude`` leaves classes out of the mean (f-mIoU / f-mAcc without wall,
floor, ceiling) while their points still count as false positives elsewhere.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

BACKGROUND_CLASSES = ("wall", "floor", "ceiling")


def confusion_matrix(pred, gt, num_classes: int, ignore_index: int = -1) -> np.ndarray:
    """[C, C+1] int64 counts: rows true class, columns predicted class, column C = no prediction.

    pred, gt: [N] integer arrays/tensors. Points with ``gt == ignore_index`` (or gt outside
    [0, C)) are skipped; predictions outside [0, C) land in the last column.
    """
    pred = torch.as_tensor(pred).reshape(-1).long().cpu()
    gt = torch.as_tensor(gt).reshape(-1).long().cpu()
    if pred.shape != gt.shape:
        raise ValueError(f"confusion_matrix: pred has {pred.numel()} entries, gt {gt.numel()}; expected equal")
    keep = (gt != ignore_index) & (gt >= 0) & (gt < num_classes)
    pred, gt = pred[keep], gt[keep]
    pred = torch.where((pred >= 0) & (pred < num_classes), pred, torch.full_like(pred, num_classes))
    flat = gt * (num_classes + 1) + pred
    counts = torch.bincount(flat, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1).numpy().astype(np.int64)


def class_ids_to_exclude(class_names: Sequence[str] | None, names: Sequence[str] = BACKGROUND_CLASSES) -> list[int]:
    """Ids of ``names`` (case-insensitive) in ``class_names``."""
    if not class_names:
        return []
    wanted = {n.lower() for n in names}
    return [i for i, n in enumerate(class_names) if n.lower() in wanted]


def segmentation_metrics(conf: np.ndarray, exclude: Sequence[int] = (), class_names: Sequence[str] | None = None) -> dict:
    """mIoU, mAcc, overall accuracy and per-class IoU/Acc from a [C, C+1] confusion matrix.

    Returns {"miou", "macc", "allacc", "iou" [C] (nan where GT_c == 0), "acc" [C], "classes_evaluated"}.
    """
    conf = np.asarray(conf, dtype=np.float64)
    c = conf.shape[0]
    if conf.ndim != 2 or conf.shape[1] != c + 1:
        raise ValueError(f"segmentation_metrics: confusion matrix shape {conf.shape}, expected (C, C+1)")
    tp = np.diag(conf[:, :c])
    gt_count = conf.sum(1)
    pred_count = conf[:, :c].sum(0)
    union = gt_count + pred_count - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(gt_count > 0, tp / np.maximum(union, 1), np.nan)
        acc = np.where(gt_count > 0, tp / np.maximum(gt_count, 1), np.nan)
    evaluated = [i for i in range(c) if gt_count[i] > 0 and i not in set(exclude)]
    out = {
        "miou": float(np.mean(iou[evaluated])) if evaluated else float("nan"),
        "macc": float(np.mean(acc[evaluated])) if evaluated else float("nan"),
        "allacc": float(tp.sum() / max(gt_count.sum(), 1)),
        "iou": iou.tolist(),
        "acc": acc.tolist(),
        "classes_evaluated": evaluated,
    }
    if class_names is not None:
        out["per_class_iou"] = {class_names[i]: float(iou[i]) for i in evaluated}
    return out
