"""`twintrack bundle`: import nnU-Net models as a bundle, describe a bundle, check a bundle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from TwinTrackLogic import Bundle, load_bundle
from TwinTrackLogic.inference.bundle import Stage

from . import options

VESSEL_ROLE = "vessel stage"


def register(subparsers) -> None:
    parser = subparsers.add_parser("bundle", help="import nnU-Net v2 models as a model bundle; inspect or check one",
                                   description="Model bundles: import, describe, check.")
    commands = parser.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    imported = commands.add_parser(
        "from-nnunet", help="turn nnU-Net v2 trained-model folders into a bundle (needs the [nnunet] extra)",
        description=(
            "Export nnU-Net v2 folds to ONNX and write a bundle whose members run nnU-Net's own inference "
            "path (resampling, normalisation, Gaussian, logit blending over windows, mirrors and folds). "
            "MODEL_FOLDER is nnUNet_results/DatasetXXX/Trainer__Plans__configuration; ':0,1' picks folds "
            "(default: every fold with a checkpoint_final.pth). Several MODEL_FOLDERs become members whose "
            "probabilities are averaged. Checkpoints are read as plain weights with an allow-list of types; "
            "nothing in them runs. Running the bundle needs no torch."))
    imported.add_argument("models", nargs="+", metavar="MODEL_FOLDER[:FOLDS]", help="nnU-Net trained-model folder")
    imported.add_argument("--out", required=True, type=Path, help="bundle folder to create (must not exist)")
    imported.add_argument("--tumour-label", help="dataset.json label to read (default: the only foreground "
                                                 "label, or the one named tumour/tumor)")
    imported.add_argument("--localiser", metavar="MODEL_FOLDER[:FOLDS]",
                          help="nnU-Net model of the organ, run first; members run in its dilated mask's box")
    imported.add_argument("--organ-label", help="the localiser's organ label (default: its only foreground label)")
    imported.add_argument("--dilation-mm", type=options.distance_mm, default=10.0,
                          help="dilation of the localiser's organ mask into the region (default 10 mm)")
    imported.add_argument("--calibrator", type=Path, help="calibrator JSON to ship as the bundle's default")
    imported.add_argument("--id", dest="bundle_id", help="bundle id (default: from the model folder names)")
    imported.set_defaults(run=run_import)

    info = commands.add_parser("info", help="describe a bundle: stages, settings, provenance")
    info.add_argument("bundle", type=Path, help="bundle folder")
    info.set_defaults(run=run_info)

    check = commands.add_parser("check", help="verify a bundle: manifest, sha256s, ONNX signatures, calibrator, domain")
    check.add_argument("bundle", type=Path, help="bundle folder")
    check.set_defaults(run=run_check)


def run_import(args) -> int:
    try:
        # The importer is its own package beside the core (TwinTrackNNUNet), so no checkpoint reader is
        # ever on the runtime path; only this command loads it.
        from TwinTrackNNUNet import import_nnunet
    except ImportError as error:
        from TwinTrackLogic import InputError

        raise InputError(f"twintrack bundle from-nnunet needs torch and nnunetv2 ({error}). Install them with "
                         "pip install 'twintrack[nnunet]' (pinned to the CPU torch).") from None
    out = import_nnunet(args.models, args.out, args.tumour_label, args.localiser, args.organ_label,
                        args.dilation_mm, args.calibrator, args.bundle_id)
    print(f"Wrote the bundle {out}; check it with `twintrack bundle check {out}`")
    return 0


def _stage_lines(stage: Stage, role: str):
    folds = stage.nnunet.folds if stage.nnunet else ()
    read = (f"{stage.channels} output channels" if role == VESSEL_ROLE
            else f"output channel {stage.channel} of {stage.channels}")
    yield (f"{role} {stage.name}: mode {stage.mode}, spacing {list(stage.spacing_mm)} mm (x, y, z), "
           f"patch {list(stage.patch_size)} (z, y, x), {read} ({stage.activation})")
    yield f"    normalisation {dict(stage.normalisation)}; mirror axes {list(stage.window.mirror_axes)}"
    if stage.nnunet is not None and folds:
        yield f"    folds (logits blended): {', '.join(fold.name for fold in folds)}"
        settings = stage.nnunet
        yield (f"    resampling: image {dataclasses.asdict(settings.image_resampling)}, logits "
               f"{dataclasses.asdict(settings.logit_resampling)}, anisotropy threshold "
               f"{settings.anisotropy_threshold}, crop to nonzero {settings.crop_to_nonzero}")


def _entries(bundle: Bundle):
    manifest = bundle.manifest
    yield bundle.localiser, manifest.get("localiser") or {}, "localiser"
    for k, (stage, entry) in enumerate(zip(bundle.members, manifest["members"])):
        yield stage, entry, f"member {k + 1}"
    yield bundle.vessels.stage if bundle.vessels else None, manifest.get("vessels") or {}, VESSEL_ROLE


def _vessel_line(bundle: Bundle) -> str:
    if bundle.vessels is None:
        return "no vessel stage (a vascular read-out needs the vessels given as a label map)"
    names = ", ".join(f"channel {channel} {name}" for channel, name in bundle.vessels.labels.items())
    return f"run on the whole CT, labelled by output channel: {names}"


def run_info(args) -> int:
    bundle = load_bundle(args.bundle)
    print(f"bundle {bundle.id} (format version {bundle.manifest['version']}) at {bundle.folder}")
    if bundle.description:
        print(f"  {bundle.description}")
    for stage, entry, role in _entries(bundle):
        if stage is None:
            continue
        for line in _stage_lines(stage, role):
            print(f"  {line}")
        provenance = entry.get("provenance")
        if isinstance(provenance, dict):
            keys = ("source", "nnunetv2_version", "dataset", "plans", "trainer", "configuration", "label")
            print("    provenance: " + ", ".join(f"{k} {provenance[k]}" for k in keys if provenance.get(k)))
    if bundle.localiser is not None:
        print(f"  region: localiser probability > {bundle.threshold}, dilated by {bundle.dilation_mm} mm")
    print(f"  vessels: {_vessel_line(bundle)}")
    calibrator = bundle.default_calibrator_path
    print(f"  default calibrator: {calibrator.name if calibrator else 'none'}"
          + (f" (fitted with {bundle.raters} raters)" if bundle.raters else ""))
    return 0


def _domain_lines(bundle: Bundle):
    """What ``predict`` will check a CT against (the manifest's ``domain``, already validated)."""
    from TwinTrackLogic.inference.domain import Domain

    domain = Domain.from_manifest(bundle.manifest)
    if domain is None:
        yield ("domain: none declared, so predict cannot warn when a CT is unlike the training data; add a "
               "domain section to manifest.json (docs/bundle.md)")
        return
    checks = [f"modality {domain.modality}"]
    if domain.spacing_min is not None and domain.spacing_max is not None:
        checks.append(f"spacing {list(domain.spacing_min)} to {list(domain.spacing_max)} mm (x, y, z)")
    checks += [f"body HU {key} in {list(bounds)}" for key, bounds in (domain.body_hu or {}).items()]
    for name, bounds in (("volume (mL)", domain.organ_volume_ml), ("HU mean", domain.organ_hu_mean),
                         ("HU std", domain.organ_hu_std)):
        if bounds is not None:
            checks.append(f"{domain.organ_name} {name} in {list(bounds)}")
    if domain.max_region_fraction_of_body is not None:
        checks.append(f"region at most {domain.max_region_fraction_of_body:.0%} of the body")
    origin = "synthetic phantoms only" if domain.synthetic else "real scans"
    yield f"domain: valid, trained on {origin}; predict checks each CT for ({len(checks)}):"
    for check in checks:
        yield f"    {check}"


def run_check(args) -> int:
    from TwinTrackLogic.inference.network import Network

    bundle = load_bundle(args.bundle)
    print(f"manifest: valid, format version {bundle.manifest['version']}")
    for stage, _, role in _entries(bundle):
        if stage is None:
            continue
        files = [dataclasses.replace(stage, name=f"{stage.name} ({fold.name})", model_path=fold.path,
                                     sha256=fold.sha256) for fold in stage.nnunet.folds] if stage.nnunet else [stage]
        for model in files:
            Network(model, device="cpu", threads=1)  # sha256 first, then onnxruntime and the signature
            print(f"{role}: {model.model_path.relative_to(bundle.folder.resolve())} sha256 ok, onnxruntime loads "
                  "it, signature matches the manifest")
    if bundle.default_calibrator_path is not None:
        from TwinTrackLogic import load_calibrator

        load_calibrator(bundle.default_calibrator_path)
        print(f"calibrator: {bundle.default_calibrator_path.name} valid")
    for line in _domain_lines(bundle):
        print(line)
    print(f"vessels: {_vessel_line(bundle)}")
    print(f"bundle {bundle.id}: all checks passed")
    return 0
