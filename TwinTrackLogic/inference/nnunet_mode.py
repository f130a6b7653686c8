"""The nnU-Net-compatible stage mode: nnU-Net v2's inference path on onnxruntime.

A stage with ``"mode": "nnunet"`` (bundle format version 2) holds the folds of one
nnU-Net configuration and reproduces ``nnUNetv2_predict --save_probabilities``
(nnunetv2 2.8.1) step for step, in numpy, scipy and onnxruntime:

1. crop to the bounding box of the filled ``image != 0`` mask (crop-to-nonzero);
2. normalise the crop (CT: clip, z-score with the plans' statistics) *before*
   resampling, in float32;
3. resample to the working shape with a spline of order 3, or in-plane then
   nearest neighbour along a coarse axis (see ``nnunet_resample``);
4. pad with 0 (normalised units) to at least one patch, centred;
5. windows at nnU-Net's starts (step = 0.5 patch), each the mean of the 8
   mirrored network passes as *logits*, weighted by nnU-Net's Gaussian and summed
   in float16, divided by the summed float16 Gaussian;
6. the folds' float16 logits averaged;
7. logits resampled back to the crop (order 1, same separate-z rule), stored in
   float16, then softmax or sigmoid in float32;
8. pasted into the stage's input grid: 0 tumour probability outside the crop.

Precision: nnU-Net accumulates and exports its logits in float16, even on CPU; this
mode emulates that rounding (same window order, same float16 operations), which
keeps it within about 5e-4 of nnU-Net where an exact float32 path lands about
1.5e-3 away. The float16 sums overflow where nnU-Net's do, with the same refusal.
Arrays are (z, y, x); the output lies on the input image's own grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..progress import CancelToken, ProgressCallback, no_progress
from .bundle import Stage
from .bundle_nnunet import NnunetSettings
from .network import Network, channel_probability
from .nnunet_resample import new_shape, resample_to_shape
from .normalisation import normalise
from .sliding_window import mirror_combinations

# All mirrored copies of a batch in one onnxruntime call: off, as on CPU it measured 0.94-1.00x the
# speed at 1.2-2.7x the memory (benchmarks/bench_nnunet.py --variants mirrors; docs/performance.md).
MIRROR_BATCHING = False
GAUSSIAN_MAXIMUM = 10.0  # nnU-Net's value_scaling_factor: keeps float16 sums away from underflow


def nonzero_box(array: np.ndarray) -> Optional[Tuple[slice, ...]]:
    """Bounding box of the hole-filled ``array != 0`` mask (nnU-Net's crop_to_nonzero), None if all 0."""
    mask = ndimage.binary_fill_holes(array != 0)
    found = ndimage.find_objects(mask.astype(np.uint8))
    return found[0] if found else None


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float, importance: str) -> np.ndarray:
    """nnU-Net's ``compute_gaussian(patch, sigma_scale, value_scaling_factor=10)`` as float16."""
    if importance == "constant":
        return np.ones(tuple(patch_size), dtype=np.float16)
    delta = np.zeros(tuple(patch_size))
    delta[tuple(p // 2 for p in patch_size)] = 1.0
    gaussian = ndimage.gaussian_filter(delta, [p * sigma_scale for p in patch_size], 0, mode="constant", cval=0)
    gaussian /= gaussian.max() / GAUSSIAN_MAXIMUM
    gaussian = gaussian.astype(np.float16)
    gaussian[gaussian == 0] = gaussian[gaussian != 0].min()  # a zero weight would divide by zero
    return gaussian


def window_starts(size: int, patch: int, step: float) -> List[int]:
    """nnU-Net's ``compute_steps_for_sliding_window`` on one axis (``size`` >= ``patch``)."""
    count = int(math.ceil((size - patch) / (patch * step))) + 1
    actual = (size - patch) / (count - 1) if count > 1 else 0.0
    return [int(np.round(actual * i)) for i in range(count)]


def _padding(shape: Sequence[int], patch: Sequence[int]) -> List[Tuple[int, int]]:
    """Centred padding up to the patch (acvl_utils' pad_nd_image): the odd voxel goes after."""
    return [(max(p - n, 0) // 2, max(p - n, 0) - max(p - n, 0) // 2) for n, p in zip(shape, patch)]


class NnunetStage:
    """The folds of one nnU-Net configuration; :meth:`predict` gives the stage channel's probability."""

    def __init__(self, stage: Stage, device: str = "auto", threads: Optional[int] = None) -> None:
        if stage.nnunet is None:
            raise InputError(f"{stage.name}: mode nnunet needs the bundle's nnunet settings (folds, resampling)")
        self.stage = stage
        self.settings: NnunetSettings = stage.nnunet
        self.folds = [Network(dataclasses.replace(stage, name=f"{stage.name} ({fold.name})", model_path=fold.path,
                                                  sha256=fold.sha256), device, threads)
                      for fold in self.settings.folds]
        self.mirror_batching = MIRROR_BATCHING

    def predict(self, ct: sitk.Image, progress: Optional[ProgressCallback] = None,
                token: Optional[CancelToken] = None, label: str = "stage") -> sitk.Image:
        """Probability of the stage's channel on ``ct``'s own grid (float32 image)."""
        stage, settings = self.stage, self.settings
        progress = progress or no_progress
        array = sitk.GetArrayFromImage(ct).astype(np.float32, copy=False)
        spacing = tuple(abs(s) for s in reversed(ct.GetSpacing()))  # (z, y, x), as SimpleITKIO
        target = tuple(reversed(stage.spacing_mm))
        probability = np.zeros(array.shape, dtype=np.float32)
        box = nonzero_box(array) if settings.crop_to_nonzero else tuple(slice(0, n) for n in array.shape)
        if box is not None:
            cropped = array[box]
            data = normalise(cropped, stage.normalisation)
            working_shape = new_shape(cropped.shape, spacing, target)
            forward = settings.image_resampling
            data = resample_to_shape(data, working_shape, spacing, target, forward.order, forward.order_z,
                                     forward.force_separate_z, settings.anisotropy_threshold, np.float32)
            with np.errstate(over="ignore"):  # float16 overflow is checked and refused in logits()
                logits = self.logits(data, progress, token, label)
            del data  # the working-grid CT is no longer needed: free it before the full-size arrays
            back = settings.logit_resampling
            resampled = np.empty((len(logits),) + cropped.shape, dtype=np.float16)
            for k in range(len(logits)):  # one channel at a time: no stacked float64 copies
                resampled[k] = resample_to_shape(logits[k], cropped.shape, target, spacing, back.order, back.order_z,
                                                 back.force_separate_z, settings.anisotropy_threshold, np.float16)
            del logits
            channel = stage.channel if stage.activation == "softmax" else 0  # sigmoid: only that channel is kept
            probability[box] = float16_logit_probability(resampled, channel, stage.activation)
        image = sitk.GetImageFromArray(probability)
        image.CopyInformation(ct)
        return image

    def logits(self, data: np.ndarray, progress: ProgressCallback, token: Optional[CancelToken],
               label: str) -> np.ndarray:
        """Folds' mean float16 logits on ``data``'s grid: (channels kept, z, y, x)."""
        stage = self.stage
        window = stage.window
        patch = tuple(stage.patch_size)
        padding = _padding(data.shape, patch)
        if any(sum(pad) for pad in padding):
            data = np.pad(data, padding, mode="constant", constant_values=0)
        starts = [window_starts(n, p, 1.0 - window.overlap) for n, p in zip(data.shape, patch)]
        positions = list(itertools.product(*starts))  # z outermost, as nnU-Net's slicers
        gaussian = gaussian_importance(patch, window.sigma_scale, window.importance)
        weight = gaussian.astype(np.float32)
        summed_weight = np.zeros(data.shape, dtype=np.float16)
        for start in positions:
            summed_weight[tuple(slice(s, s + p) for s, p in zip(start, patch))] += gaussian
        flips = mirror_combinations(window.mirror_axes)
        kept = slice(None) if stage.activation == "softmax" else slice(stage.channel, stage.channel + 1)
        total: Optional[np.ndarray] = None
        steps = len(self.folds) * len(positions)
        for f, network in enumerate(self.folds):
            accumulated = np.zeros((stage.channels if kept == slice(None) else 1,) + data.shape, dtype=np.float16)
            for first in range(0, len(positions), window.batch_size):
                if token is not None:
                    token.check()
                chosen = positions[first:first + window.batch_size]
                boxes = [tuple(slice(s, s + p) for s, p in zip(start, patch)) for start in chosen]
                batch = np.stack([data[box] for box in boxes])[:, None]
                mean = _mirrored_logits(network, batch, flips, self.mirror_batching)[:, kept]
                for k, box in enumerate(boxes):
                    # float32 product, float16 sum: nnU-Net's `predicted_logits[sl] += prediction * gaussian`
                    np.multiply(mean[k], weight, out=mean[k])
                    accumulated[(slice(None),) + box] += mean[k]
                done = f * len(positions) + first + len(boxes)
                progress(done / steps, f"{label}: window {done}/{steps}")
            np.divide(accumulated, summed_weight, out=accumulated)
            if np.isinf(accumulated).any():
                raise InputError(f"{stage.name}: the float16 logit sums overflowed (as nnU-Net's would) on this "
                                 "image; the network's logits are too large for nnU-Net-compatible blending.")
            if total is None:
                total = accumulated
            else:
                total += accumulated
        if total is None:
            raise InputError(f"{stage.name}: the nnU-Net stage has no folds")
        if len(self.folds) > 1:
            total /= np.float16(len(self.folds))
        crop = tuple(slice(before, before + n - before - after) for (before, after), n in zip(padding, data.shape))
        return total[(slice(None),) + crop]


def float16_logit_probability(logits: np.ndarray, channel: int, activation: str) -> np.ndarray:
    """The activation of float16 logits (C, z, y, x) computed in float32, as nnU-Net does after
    ``logits.float()``; one channel's probability (z, y, x) without a float32 copy of every channel."""
    if activation == "softmax" and len(logits) != 2:
        return channel_probability(logits[None].astype(np.float32), channel, activation)[0]
    with np.errstate(over="ignore"):  # exp overflow to inf gives the correct limit, 0
        if activation == "sigmoid":
            exponent = np.negative(logits[channel], dtype=np.float32)
        else:  # two classes: softmax is the sigmoid of the logit difference
            exponent = np.subtract(logits[1 - channel], logits[channel], dtype=np.float32)
        np.exp(exponent, out=exponent)
        exponent += np.float32(1.0)
        return np.reciprocal(exponent, out=exponent)


def _mirrored_logits(network: Network, batch: np.ndarray, flips, together: bool = False) -> np.ndarray:
    """Mean logits over the mirror combinations, each flipped back; float32 (B, C, z, y, x).

    ``together`` sends every mirrored copy of the batch in one onnxruntime call (B x mirrors
    patches) instead of one call per mirror; the sum runs in the same order either way.
    """
    if not flips:
        raise ValueError("no mirror combinations: flips must hold at least the identity ()")
    axes_of = [tuple(a + 2 for a in flip) for flip in flips]
    parts: Iterable[np.ndarray]
    if together and len(flips) > 1:
        outputs = network.logits(np.concatenate([np.flip(batch, axes) if axes else batch for axes in axes_of]))
        parts = np.split(outputs, len(flips))
    else:
        parts = (network.logits(np.ascontiguousarray(np.flip(batch, axes)) if axes else batch) for axes in axes_of)
    result: Optional[np.ndarray] = None
    for axes, logits in zip(axes_of, parts):
        logits = np.flip(logits, axes) if axes else logits
        if result is None:  # onnxruntime's output is ours: sum into it (a copy only if flipped)
            result = np.ascontiguousarray(logits, dtype=np.float32)
        else:
            np.add(result, logits, out=result)
    assert result is not None
    if len(flips) > 1:
        result /= np.float32(len(flips))
    return result
