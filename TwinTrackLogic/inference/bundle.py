"""Model bundles: a folder with a versioned ``manifest.json`` and ONNX files.

The manifest (format in ``docs/bundle.md``) describes an optional localiser
stage, the ensemble members and an optional vessel stage (version 3): each an ONNX file with its sha256, working
spacing (mm, x, y, z), patch size (voxels, z, y, x), intensity normalisation,
the output channel to read and its activation. :func:`load_bundle` validates
everything and refuses paths that leave the bundle folder; model bytes are
checked against their sha256 by :meth:`Stage.read_model` before anyone loads
them. Nothing here executes anything from the bundle: it is JSON and ONNX
graphs only.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Tuple

from ..errors import InputError
from ..io.strictjson import read_json
from ..schemas import validate
from ..vessels import VESSEL_LABELS
from .bundle_nnunet import NnunetSettings, read_models, read_settings

FORMAT = "twintrack-bundle"
VERSION = 2  # 2 added the nnU-Net-compatible stage mode (bundle_nnunet.py); what the importer writes
VESSEL_STAGE_VERSION = 3  # 3 added the vessel stage; only a manifest that has one needs it
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
ENVIRONMENT_VARIABLE = "TWINTRACK_BUNDLE"
MAX_MANIFEST_BYTES = 1024 * 1024
HINT = "See docs/bundle.md for the manifest format (schema: TwinTrackLogic/schemas/bundle.schema.json)."


@dataclass(frozen=True)
class SlidingWindow:
    """How a stage tiles its input. ``mirror_axes`` are array axes (0 = z, 1 = y, 2 = x)."""

    overlap: float = 0.5
    importance: str = "gaussian"
    sigma_scale: float = 0.125
    batch_size: int = 2
    mirror_axes: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Stage:
    """One network: the localiser or an ensemble member."""

    name: str
    model_path: Path
    sha256: str
    spacing_mm: Tuple[float, float, float]  # (x, y, z)
    patch_size: Tuple[int, int, int]  # (z, y, x) voxels
    normalisation: Mapping[str, Any]
    channels: int  # output channels of the network
    channel: int  # the channel holding the organ / tumour
    activation: str
    window: SlidingWindow
    mode: str = "twintrack"  # or "nnunet": nnU-Net's inference path over the folds in ``nnunet``
    nnunet: Optional[NnunetSettings] = None

    def read_model(self) -> bytes:
        """The ONNX file's bytes, after checking them against the manifest's sha256."""
        try:
            data = self.model_path.read_bytes()
        except OSError as error:
            raise InputError(f"{self.model_path} (model of {self.name}) cannot be read ({error.strerror}). "
                             "Restore the bundle folder from its source.") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise InputError(
                f"{self.model_path} does not match the sha256 in its manifest (expected {self.sha256}, "
                f"found {digest}): the file is corrupted or was replaced. Restore the bundle from its source.")
        return data


@dataclass(frozen=True)
class VesselStage:
    """The multi-label vessel network and which of its output channels is which vessel."""

    stage: Stage
    labels: Mapping[int, str]  # output channel -> vessel name of ``vessels.VESSEL_LABELS``


@dataclass(frozen=True)
class Bundle:
    """A validated model bundle."""

    folder: Path
    id: str
    description: str
    members: Tuple[Stage, ...]
    localiser: Optional[Stage] = None
    threshold: float = 0.5  # localiser probability above which a voxel is organ
    dilation_mm: float = 0.0  # organ mask dilation that makes the region
    raters: Optional[int] = None  # raters the default calibrator was fitted with
    default_calibrator_path: Optional[Path] = None
    vessels: Optional[VesselStage] = None
    manifest: Mapping[str, Any] = field(default_factory=dict, repr=False)


def default_bundle_dir() -> Path:
    """The bundle used when none is named: ``$TWINTRACK_BUNDLE``, else the embedded demo bundle."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        folder = Path(configured)
        source = f"the {ENVIRONMENT_VARIABLE} environment variable"
    else:
        import TwinTrackLogic

        # A source checkout or the Slicer extension keeps Resources/ next to the package;
        # a wheel install puts the bundle under <prefix>/share/twintrack.
        candidates = [Path(TwinTrackLogic.__file__).resolve().parent.parent / "Resources" / "DemoBundle",
                      Path(sys.prefix) / "share" / "twintrack" / "DemoBundle"]
        folder = next((c for c in candidates if (c / MANIFEST).is_file()), candidates[0])
        source = "the embedded demo bundle"
    if not (folder / MANIFEST).is_file():
        raise InputError(
            f"No model bundle at {folder} ({source}): {MANIFEST} is missing. Pass --bundle DIR, set "
            f"{ENVIRONMENT_VARIABLE} to a bundle folder, or reinstall TwinTrack with its Resources folder.")
    return folder


def load_bundle(folder) -> Bundle:
    """Read and validate ``folder/manifest.json``; every problem is an :class:`InputError`."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} is not a model bundle: it has no {MANIFEST}. "
                         "Pass the folder that holds manifest.json and the ONNX files.")
    manifest = read_json(path, "TwinTrack model bundle manifest", MAX_MANIFEST_BYTES, hint=HINT)
    reader = _Reader(folder, path)
    reader.check_format_and_version(manifest)
    validate(manifest, "bundle", str(path), HINT)
    return reader.bundle(manifest)


class _Reader:
    """Builds a :class:`Bundle` from a manifest that passed ``bundle.schema.json``.

    The schema has checked every type, range and key; what is left here is what a schema cannot
    say (files inside the bundle, a channel below the channel count, clip low < high), with
    messages that name the manifest and the key.
    """

    def __init__(self, folder: Path, path: Path) -> None:
        self.folder = folder
        self.path = path
        self.version = VERSION

    def fail(self, where: str, problem: str) -> InputError:
        return InputError(f"{self.path}: {where} {problem}. See docs/bundle.md for the manifest format.")

    def get(self, mapping, key, kind, where, default=...):
        """``mapping[key]`` (types already checked by the schema); ``default`` when absent or null."""
        value = mapping.get(key) if isinstance(mapping, dict) else None
        if value is None:
            if default is ...:
                raise self.fail(f"{where}.{key}", "is missing")
            return default
        return float(value) if kind is float else value

    def numbers(self, mapping, key, kind, where):
        return tuple(kind(value) for value in self.get(mapping, key, list, where))

    def file(self, relative, where) -> Path:
        """A path inside the bundle: relative, no '..', and still inside after resolving links."""
        if not isinstance(relative, str) or not relative:
            raise self.fail(where, "must be a file name relative to the bundle folder")
        pure = PurePosixPath(relative.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (len(relative) > 1 and relative[1] == ":"):
            raise self.fail(where, f"is {relative!r}, which points outside the bundle; "
                                   "use a path relative to the bundle folder without '..'")
        resolved = (self.folder / pure).resolve()
        if not resolved.is_relative_to(self.folder.resolve()):
            raise self.fail(where, f"is {relative!r}, which resolves outside the bundle folder")
        if not resolved.is_file():
            raise InputError(f"{self.folder / pure} is missing ({where} in {self.path}). "
                             "Restore the bundle folder from its source.")
        return resolved

    def window(self, mapping, where, base: SlidingWindow) -> SlidingWindow:
        if mapping is None:
            return base
        axes = self.get(mapping, "mirror_axes", list, where, list(base.mirror_axes))
        return SlidingWindow(self.get(mapping, "overlap", float, where, base.overlap),
                             self.get(mapping, "importance", str, where, base.importance),
                             self.get(mapping, "sigma_scale", float, where, base.sigma_scale),
                             self.get(mapping, "batch_size", int, where, base.batch_size), tuple(sorted(axes)))

    def normalisation(self, mapping, where) -> dict:
        settings = {"scheme": self.get(mapping, "scheme", str, where)}
        if settings["scheme"] == "ct":
            low, high = self.numbers(mapping, "clip", float, where)
            if not low < high:
                raise self.fail(f"{where}.clip", f"must be [low, high] with low < high, not {[low, high]}")
            settings.update(clip=[low, high], mean=self.get(mapping, "mean", float, where),
                            std=self.get(mapping, "std", float, where))
        return settings

    def stage(self, mapping, where, window: SlidingWindow, channel: Optional[int] = None) -> Stage:
        """A stage entry; ``channel`` is given for the vessel stage, whose output has no single channel."""
        output = self.get(mapping, "output", dict, where)
        channels = self.get(output, "channels", int, f"{where}.output")
        if channel is None:
            channel = self.get(output, "channel", int, f"{where}.output")
        activation = self.get(output, "activation", str, f"{where}.output")
        if not channel < channels or (activation == "softmax" and channels < 2):
            raise self.fail(f"{where}.output", f"has channel {channel} of {channels} channels with {activation}; "
                                               "the channel must exist and softmax needs 2 or more channels")
        mode = self.get(mapping, "mode", str, where, "twintrack")  # the schema ties nnunet to version 2
        nnunet = None
        if mode == "nnunet":
            folds = read_models(self, mapping, where, self.sha256)
            nnunet = read_settings(self, mapping, where, folds)
            model_path, sha256 = folds[0].path, folds[0].sha256
        else:
            sha256 = self.sha256(self.get(mapping, "sha256", str, where), f"{where}.sha256")
            model_path = self.file(self.get(mapping, "model", str, where), f"{where}.model")
        stage_window = self.window(mapping.get("sliding_window"), f"{where}.sliding_window", window)
        if "mirror_axes" in mapping:  # shorthand for the most common per-stage override
            stage_window = self.window({"mirror_axes": mapping["mirror_axes"]}, where, stage_window)
        return Stage(
            name=self.get(mapping, "name", str, where, where),
            model_path=model_path,
            sha256=sha256,
            spacing_mm=self.numbers(mapping, "spacing_mm", float, where),
            patch_size=self.numbers(mapping, "patch_size", int, where),
            normalisation=self.normalisation(self.get(mapping, "normalisation", dict, where),
                                             f"{where}.normalisation"),
            channels=channels, channel=channel, activation=activation, window=stage_window,
            mode=mode, nnunet=nnunet,
        )

    def check_format_and_version(self, manifest) -> None:
        """Format and version first: a manifest of another version gets that said, not its key list."""
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise self.fail("format", f"must be {FORMAT!r}; this is not a TwinTrack model bundle manifest")
        version = manifest.get("version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise InputError(f"{self.path} is bundle format version {version!r}; this TwinTrack reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}. Use a TwinTrack release that matches the "
                             "bundle, or re-export it.")
        self.version = version

    def sha256(self, value: str, where: str) -> str:
        return value.lower()  # 64 hexadecimal digits, checked by the schema

    def distinct(self, members, localiser) -> None:
        """No stage named twice, no model file (or fold) used by two members: an ensemble would count it twice."""
        stages = [*members, *([localiser] if localiser is not None else [])]
        names = [stage.name for stage in stages]
        for index, stage in enumerate(members):
            files = [fold.path for fold in stage.nnunet.folds] if stage.nnunet else [stage.model_path]
            if len(set(files)) < len(files):
                raise self.fail(f"members[{index}].models", "lists one fold file twice; list each fold once")
            for other in range(index):
                earlier = members[other]
                shared = set(files) & set([f.path for f in earlier.nnunet.folds] if earlier.nnunet
                                          else [earlier.model_path])
                if shared:
                    raise self.fail(f"members[{index}]", f"uses {sorted(shared)[0].name}, as members[{other}] "
                                    "does: the ensemble would count one model twice; list each member once")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise self.fail("members", f"name two stages {repeated[0]!r}; give every stage its own name")

    def domain(self, entry, has_localiser: bool) -> None:
        """What the schema cannot say about ``domain``: every range ordered, organ checks only with a localiser."""
        if entry is None:
            return
        spacing = entry.get("spacing_mm")
        if spacing is not None and any(low > high for low, high in zip(spacing["min"], spacing["max"])):
            raise self.fail("domain.spacing_mm", f"has min {spacing['min']} above max {spacing['max']} on an axis "
                            "(both are (x, y, z) in mm)")
        ranges = [(f"body_hu.{key}", value) for key, value in (entry.get("body_hu") or {}).items()]
        organ = entry.get("organ") or {}
        ranges += [(f"organ.{key}", organ[key]) for key in ("volume_ml", "hu_mean", "hu_std") if key in organ]
        for key, (low, high) in ranges:
            if low > high:
                raise self.fail(f"domain.{key}", f"is [{low}, {high}]: the low end is above the high end")
        about_region = [key for key in ("organ", "max_region_fraction_of_body") if entry.get(key) is not None]
        if about_region and not has_localiser:
            raise self.fail(f"domain.{about_region[0]}", "describes the localiser's organ, but the bundle has no "
                            "localiser, so that check could never run; remove it or add the localiser")

    def vessels(self, entry, window: SlidingWindow) -> VesselStage:
        """The vessel stage: its labels name known vessels, once each, on channels the network has."""
        if self.version < VESSEL_STAGE_VERSION:
            raise self.fail("vessels", f"needs format version {VESSEL_STAGE_VERSION} (this manifest says "
                                       f"{self.version}); set \"version\": {VESSEL_STAGE_VERSION}")
        labels = self.get(entry, "labels", dict, "vessels")
        channels = self.get(self.get(entry, "output", dict, "vessels"), "channels", int, "vessels.output")
        softmax = self.get(entry["output"], "activation", str, "vessels.output") == "softmax"
        mapping: dict = {}
        for key, name in labels.items():  # the schema allows only the names of vessels.VESSEL_LABELS
            where, channel = f"vessels.labels.{key}", int(key)
            if name in mapping.values():
                raise self.fail(where, f"names {name!r} again (channel {_channel_of(mapping, name)} is already "
                                       f"{name!r}); give each vessel one channel")
            if channel >= channels or (softmax and channel == 0):
                raise self.fail(where, f"is channel {channel}, but the network has channels 0 to {channels - 1}"
                                       + (" and channel 0 of a softmax is the background" if softmax else ""))
            mapping[channel] = name
        if not mapping:
            raise self.fail("vessels.labels", "names no vessel; map output channels to vessel names ("
                            + ", ".join(f'"{name}"' for name in VESSEL_LABELS) + ")")
        stage = self.stage(entry, "vessels", window, channel=min(mapping))
        return VesselStage(stage, dict(sorted(mapping.items())))

    def bundle(self, manifest) -> Bundle:
        """The bundle of a manifest already checked against ``bundle.schema.json``."""
        window = self.window(manifest.get("sliding_window", {}), "sliding_window", SlidingWindow())
        members = tuple(self.stage(m, f"members[{i}]", window) for i, m in enumerate(manifest["members"]))
        localiser, threshold, dilation = None, 0.5, 0.0
        if manifest.get("localiser") is not None:
            entry = self.get(manifest, "localiser", dict, "manifest")
            localiser = self.stage(entry, "localiser", window)
            threshold = self.get(entry, "threshold", float, "localiser", 0.5)
            dilation = self.get(entry, "dilation_mm", float, "localiser", 0.0)
        self.distinct(members, localiser)
        self.domain(manifest.get("domain"), localiser is not None)
        raters = self.get(manifest, "raters", int, "manifest", None)
        calibrator = manifest.get("default_calibrator")
        vessels = None if manifest.get("vessels") is None else self.vessels(manifest["vessels"], window)
        return Bundle(
            folder=self.folder,
            id=self.get(manifest, "id", str, "manifest"),
            description=self.get(manifest, "description", str, "manifest", ""),
            members=members, localiser=localiser, threshold=threshold, dilation_mm=dilation, raters=raters,
            default_calibrator_path=None if calibrator is None else self.file(calibrator, "default_calibrator"),
            vessels=vessels, manifest=manifest,
        )


def _channel_of(mapping: Mapping[int, str], name: str) -> int:
    return next(channel for channel, known in mapping.items() if known == name)
