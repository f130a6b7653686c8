"""The two-stage ensemble: localiser -> region -> members -> mean tumour probability.

1. The localiser (if the bundle has one) runs on the whole CT at its spacing;
   its organ probability is resampled onto the CT grid and thresholded, and the
   organ mask dilated by the bundle's ``dilation_mm`` is the *region*.
2. Only the region's bounding box (widened to at least one patch of real CT
   context where the image allows) is cropped; every member runs on that crop
   at its own spacing, its tumour probability is resampled back onto the crop
   and added to one running sum, so no two members' maps are held at once.
3. The mean is pasted onto the CT grid, zero outside the region.
4. The vessel stage (if the bundle has one) runs on the whole CT at its spacing, like the
   localiser, not on the region's crop: a vessel the tumour touches runs on beyond the region,
   and a crop would cut its cross-sections, whose rim is what a contact angle is a share of (and
   a cut vessel would show as a stump in a viewer). Each channel's probability is resampled onto
   the CT grid and every voxel takes its most probable channel's CURVAS label (0 for background
   and unlabelled channels; with sigmoid outputs a labelled channel must also exceed 0.5).

Members in the nnU-Net-compatible mode (``nnunet_mode.py``) run nnU-Net's own
path on the crop they are given: on the whole CT without a localiser (or with
``use_region=False``) they reproduce ``nnUNetv2_predict``; on a region's crop
their window grid and resampling grid start at the crop's corner instead of the
CT's nonzero box and the network sees less context, so values differ from a
whole-image nnU-Net run (how much depends on the network; docs/howto-nnunet.md).

Calibration is not applied here: the raw mean is what a calibrator maps to MHR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union, cast

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io import Case, Geometry, Volume, read_image
from ..io.finite import check_finite, describe, non_finite
from ..masks import bounding_box, dilate_mm
from ..progress import CancelToken, ProgressCallback, no_progress, scaled
from ..vessels import VESSEL_LABELS
from .bundle import Bundle, Stage, VesselStage, load_bundle
from .network import Network, channel_probabilities
from .nnunet_mode import NnunetStage
from .normalisation import normalise
from .resample import resample, to_spacing
from .sliding_window import sliding_window

# Shares of the progress bar taken by the localiser and the vessel stage (both run on the whole CT).
LOCALISER_SHARE = 0.2
VESSEL_SHARE = 0.15


@dataclass
class Prediction:
    """The ensemble's output on the CT grid; arrays (z, y, x)."""

    probability: np.ndarray  # float32 raw ensemble tumour probability, 0 outside the region
    region: np.ndarray  # bool: where the members ran
    organ: Optional[np.ndarray]  # bool localiser mask, None without a localiser
    geometry: Geometry
    vessels: Optional[np.ndarray] = None  # uint8 CURVAS vessel labels (vessels.py), None without a vessel stage


class Ensemble:
    """A loaded bundle, ready to predict. ``device``: auto, cpu or cuda; ``threads``: per session."""

    def __init__(self, bundle: Union[Bundle, str, Path], device: str = "auto", threads: Optional[int] = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.localiser = load_stage(self.bundle.localiser, device, threads) if self.bundle.localiser else None
        self.members = [load_stage(stage, device, threads) for stage in self.bundle.members]
        self.vessels = Network(self.bundle.vessels.stage, device, threads) if self.bundle.vessels else None

    def predict(self, image: Volume, progress: Optional[ProgressCallback] = None,
                token: Optional[CancelToken] = None, use_region: bool = True) -> Prediction:
        """Raw ensemble tumour probability for ``image`` (a CT in HU).

        ``use_region=False`` skips the localiser and runs the members on the whole CT, as
        nnU-Net does: the like-for-like comparison with ``nnUNetv2_predict``.
        """
        progress = progress or no_progress
        geometry = image.geometry
        ct = image.to_sitk()
        members_start = 0.0
        organ = None
        if self.localiser is not None and use_region:
            members_start = LOCALISER_SHARE
            organ_probability = run_stage(self.localiser, ct, scaled(progress, 0.0, members_start), token,
                                          "localiser")
            organ_on_ct = resample(organ_probability, geometry)  # a view must not outlive its image
            organ = sitk.GetArrayViewFromImage(organ_on_ct) > self.bundle.threshold
            region = dilate_mm(organ, geometry, self.bundle.dilation_mm) if organ.any() else organ
        else:
            region = np.ones(geometry.shape, dtype=bool)
        vessels = None
        if self.vessels is not None and self.bundle.vessels is not None:
            vessels = run_vessel_stage(self.vessels, self.bundle.vessels, ct, geometry,
                                       scaled(progress, members_start, members_start + VESSEL_SHARE), token)
            members_start += VESSEL_SHARE
        probability = np.zeros(geometry.shape, dtype=np.float32)
        if not region.any():
            progress(1.0, "localiser found no organ: empty region, probability 0 everywhere")
            return Prediction(probability, region, organ, geometry, vessels)

        box = self._crop_box(region, geometry)
        crop = ct[box[2], box[1], box[0]]  # SimpleITK indexes (x, y, z); slicing keeps the physical position
        crop_geometry = Geometry.from_sitk(crop)
        running_sum = np.zeros(crop_geometry.shape, dtype=np.float32)
        share = (1.0 - members_start) / len(self.members)
        for k, member in enumerate(self.members):
            start = members_start + k * share
            member_probability = run_stage(member, crop, scaled(progress, start, start + share), token,
                                           f"member {k + 1}/{len(self.members)}")
            on_crop = resample(member_probability, crop_geometry)
            running_sum += sitk.GetArrayViewFromImage(on_crop)
        running_sum /= np.float32(len(self.members))
        running_sum[~region[box]] = 0.0
        probability[box] = running_sum
        progress(1.0, "ensemble done")
        return Prediction(probability, region, organ, geometry, vessels)

    def predict_vessels(self, image: Volume, progress: Optional[ProgressCallback] = None,
                        token: Optional[CancelToken] = None) -> np.ndarray:
        """The vessel stage alone: uint8 CURVAS vessel labels of ``image`` (a CT in HU) on its grid."""
        if self.vessels is None or self.bundle.vessels is None:
            raise InputError(f"The bundle {self.bundle.folder} has no vessel stage. Give the vessels as a label "
                             "map, or use a bundle whose manifest declares one (docs/bundle.md).")
        return run_vessel_stage(self.vessels, self.bundle.vessels, image.to_sitk(), image.geometry,
                                progress or no_progress, token)

    def case_prediction(self, case: Case, token: Optional[CancelToken] = None) -> Tuple[Volume, Prediction]:
        """A case folder's CT and the ensemble's prediction on it, for calibration fits."""
        ct = read_image(case.image, dtype=np.float32)
        # A calibrator is not fitted on patched CTs (io.finite): such a case is skipped and reported.
        check_finite(ct.array, case.image, "A calibration fit needs a CT without them; fix the export or "
                     "leave the case out.")
        return ct, self.predict(ct, token=token)

    def case_probability(self, case: Case, token: Optional[CancelToken] = None) -> np.ndarray:
        """Raw ensemble probability of a case folder's CT (z, y, x)."""
        return self.case_prediction(case, token)[1].probability

    def _crop_box(self, region: np.ndarray, geometry: Geometry) -> Tuple[slice, slice, slice]:
        """(z, y, x) slices of the region's bounding box, widened towards one patch of context."""
        box = bounding_box(region, (0, 0, 0))
        spacing_zyx = tuple(reversed(geometry.spacing))
        widened = []
        for axis, (piece, n) in enumerate(zip(box, region.shape)):
            # Voxels of this CT that one member patch spans (the largest over members).
            need = max(int(np.ceil(stage.patch_size[axis] * stage.spacing_mm[2 - axis] / spacing_zyx[axis]))
                       for stage in self.bundle.members)
            missing = max(need - (piece.stop - piece.start), 0)
            start = max(piece.start - missing // 2, 0)
            stop = min(max(piece.stop + missing - missing // 2, start + need), n)
            start = max(min(start, stop - need), 0)
            widened.append(slice(start, stop))
        return cast(Tuple[slice, slice, slice], tuple(widened))  # one slice per axis of box


def load_stage(stage: Stage, device: str, threads: Optional[int]) -> Union[Network, NnunetStage]:
    return NnunetStage(stage, device, threads) if stage.mode == "nnunet" else Network(stage, device, threads)


def run_vessel_stage(network: Network, vessel_stage: VesselStage, ct: sitk.Image, geometry: Geometry,
                     progress: ProgressCallback, token: Optional[CancelToken]) -> np.ndarray:
    """uint8 CURVAS vessel labels on ``geometry`` (the CT's grid): each voxel's most probable channel."""
    stage = vessel_stage.stage
    working = to_spacing(ct, stage.spacing_mm)
    array = normalise(sitk.GetArrayViewFromImage(working), stage.normalisation)
    window = stage.window
    probabilities = sliding_window(array, lambda batch: channel_probabilities(network.logits(batch), stage.activation),
                                   stage.patch_size, window.overlap, window.importance, window.sigma_scale,
                                   window.batch_size, window.mirror_axes, progress=progress, token=token,
                                   label="vessels: patch")
    found = non_finite(probabilities)
    if found is not None:
        raise InputError(f"{stage.model_path} (vessel stage) produced {describe(found)} of its working grid. "
                         "The run was stopped so that no wrong vessel map is written; the model is broken or "
                         "does not suit this input. Check the model bundle.")
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    # A softmax's background and unlabelled channels compete like the vessels (and then win label 0);
    # independent sigmoid channels only need to beat 0.5.
    best = None if stage.activation == "softmax" else np.full(geometry.shape, 0.5, dtype=np.float32)
    competing = range(stage.channels) if stage.activation == "softmax" else sorted(vessel_stage.labels)
    for channel in competing:
        image = sitk.GetImageFromArray(probabilities[channel])
        image.CopyInformation(working)
        on_ct = sitk.GetArrayFromImage(resample(image, geometry))
        name = vessel_stage.labels.get(channel)
        if best is None:
            best = on_ct  # channel 0 of a softmax: labels stay 0 where it wins
            continue
        better = on_ct > best
        best[better] = on_ct[better]
        labels[better] = VESSEL_LABELS[name] if name else 0
    return labels


def run_stage(network: Union[Network, NnunetStage], ct: sitk.Image, progress: ProgressCallback,
              token: Optional[CancelToken], label: str) -> sitk.Image:
    """One stage's probability: on its working grid (the CT's extent at the stage spacing), or for
    an nnU-Net-mode stage on ``ct``'s own grid."""
    if isinstance(network, NnunetStage):
        return network.predict(ct, progress, token, label)
    stage: Stage = network.stage
    working = to_spacing(ct, stage.spacing_mm)
    array = normalise(sitk.GetArrayViewFromImage(working), stage.normalisation)
    window = stage.window
    probability = sliding_window(array, network, stage.patch_size, window.overlap, window.importance,
                                 window.sigma_scale, window.batch_size, window.mirror_axes,
                                 progress=progress, token=token, label=f"{label}: patch")
    # A NaN would pass the clip and, in a localiser, read as "no organ": probability 0 everywhere.
    found = non_finite(probability)
    if found is not None:
        raise InputError(f"{stage.model_path} ({label}) produced {describe(found)} of its working grid. "
                         "The run was stopped so that no wrong value is written; the model is broken "
                         "or does not suit this input. Check the model bundle.")
    np.clip(probability, 0.0, 1.0, out=probability)  # a weighted mean of values in [0, 1] can round past 1
    image = sitk.GetImageFromArray(probability)
    image.CopyInformation(working)
    return image
