"""nnU-Net folds through TwinTrack (onnxruntime, nnU-Net mode) against nnU-Net's own predictor, same run.

    .venv/bin/pip install -e ".[nnunet]"
    .venv/bin/python benchmarks/bench_nnunet.py [--threads 2] [--case small,full] [--network shrunk,default]
        [--variants batch1,batch8,mirrors,no-graph-opt,region,rev:REV] [--repeat N]

Uses the tiny nnU-Net results folder of the parity tests (Testing/nnunet_fixture.py, built under
.cache/ if missing). For each network, one fold is exported with `twintrack bundle from-nnunet`,
then each side runs in a fresh process on the same phantom CT with the same thread count:

- nnU-Net: ``nnUNetPredictor(device=cpu)`` initialised from the model folder (not timed), then
  ``predict_single_npy_array(..., save_or_return_probabilities=True)`` (timed);
- TwinTrack: ``Ensemble(bundle).predict(volume)`` after loading (not timed).

Prints time, peak resident memory of each process, max |Δp| and the ratios.

Cases: ``small`` is the fixture's test phantom (96 x 96 x 48 at 2.6 x 2.6 x 4 mm); ``full`` is a
full-size phantom (512 x 512 x 100 at 0.8 x 0.8 x 2.5 mm, the size of a real abdominal CT).
Networks: ``shrunk`` is the fixture's fold 0 (PlainConvUNet 4-32 features, patch 32 x 64 x 64);
``default`` is nnU-Net's own plan for the phantom (PlainConvUNet 32-320, patch 48 x 96 x 96,
16 M parameters) with random weights, saved in nnU-Net's checkpoint format (timing only needs
the architecture).

Engine variants, each against TwinTrack's default run on the same case and network (time ratio
and max |Δp|), so every engine-side change has its own number:

- ``batchN``: N windows per onnxruntime call instead of the bundle's 2;
- ``mirrors``: all 8 mirrored copies of a batch in one call instead of one call per mirror;
- ``no-graph-opt``: onnxruntime's graph optimisations off (ORT_DISABLE_ALL instead of ENABLE_ALL);
- ``region``: the TwinTrack method's region crop: a localiser (the shrunk fixture fold, 15 mm
  dilation, a cheap network as in the paper) runs first and the member only on its region's box;
  |Δp| is then taken inside the region against the whole-image run;
- ``rev:REV``: the default run with the engine of git revision REV (a temporary worktree), e.g.
  the revision before an engine change that has no switch of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import status_mb  # benchmarks/measure.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Testing"))

from nnunet_fixture import DATASET, TEST_CASES, is_built, results_folder  # noqa: E402

FIXTURE = ROOT / ".cache" / "nnunet-fixture"
CASES = {"small": "96 x 96 x 48 phantom", "full": "512 x 512 x 100 full-size phantom"}
NETWORKS = ("shrunk", "default")
REGION_DILATION_MM = "15"


def case_image(case: str, work: Path) -> Path:
    if case == "small":
        return FIXTURE / "nnUNet_raw" / DATASET / "imagesTs" / f"{TEST_CASES[0]}_0000.nii.gz"
    path = work / "full_0000.nii.gz"
    if not path.exists():
        from TwinTrackLogic import phantom
        from TwinTrackLogic.io import write_image

        generated = phantom.generate_case(3, raters=1, seed=5, size="full")
        write_image(path, generated.image, generated.geometry)
    return path


def child_nnunet(settings: dict) -> dict:
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(settings["threads"])
    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(settings["target"], use_folds=(0,))
    image, properties = SimpleITKIO().read_images([settings["image"]])
    started = time.perf_counter()
    _, probabilities = predictor.predict_single_npy_array(image, properties, None, None, True)
    seconds = time.perf_counter() - started
    np.save(settings["out"], probabilities[1].astype(np.float32))
    return {"seconds": seconds, "peak_mb": status_mb("VmHWM")}


def child_twintrack(settings: dict) -> dict:
    import TwinTrackLogic
    from TwinTrackLogic.inference import Ensemble, network
    from TwinTrackLogic.io import read_image

    if settings.get("graph_optimisation") == "off":
        import onnxruntime

        default_options = network.session_options

        def without_graph_optimisation(threads):
            options = default_options(threads)
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            return options

        network.session_options = without_graph_optimisation
    ensemble = Ensemble(settings["target"], device="cpu", threads=settings["threads"])
    if settings.get("mirror_batching"):
        for member in ensemble.members:
            member.mirror_batching = True
    image = read_image(Path(settings["image"]), dtype=np.float32)
    started = time.perf_counter()
    prediction = ensemble.predict(image)
    seconds = time.perf_counter() - started
    np.save(settings["out"], prediction.probability)
    np.save(settings["out"].replace(".npy", "-region.npy"), prediction.region)
    return {"seconds": seconds, "peak_mb": status_mb("VmHWM"), "engine": str(Path(TwinTrackLogic.__file__).parent)}


CHILDREN = {"nnunet": child_nnunet, "twintrack": child_twintrack}


REPEATS = 1  # --repeat: runs per measurement; the median time (and the peak memory of that run) is kept


def run_child(name: str, settings: dict, source: Path = ROOT) -> dict:
    """One measurement: the child run ``REPEATS`` times in fresh processes, the median by time."""
    runs = sorted((_run_child_once(name, settings, source) for _ in range(REPEATS)), key=lambda r: r["seconds"])
    median = dict(runs[len(runs) // 2])
    median["all_seconds"] = [run["seconds"] for run in runs]
    return median


def _run_child_once(name: str, settings: dict, source: Path) -> dict:
    environment = dict(os.environ)
    if source != ROOT:  # another revision's engine: its tree first on the path
        environment["PYTHONPATH"] = os.pathsep.join([str(source), environment.get("PYTHONPATH", "")])
    output = subprocess.run([sys.executable, __file__, "--child", name, "--settings", json.dumps(settings)],
                            check=True, capture_output=True, text=True, cwd=source, env=environment)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    if name == "twintrack" and Path(result["engine"]) != source / "TwinTrackLogic":
        raise RuntimeError(f"the child ran the engine in {result['engine']}, not in {source}")
    return result


def default_size_model(work: Path) -> Path:
    """nnU-Net's own 3d_fullres plan for the phantom with random (He-initialised) weights."""
    folder = work / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if folder.exists():
        return folder
    import torch

    from nnunet_fixture import build_network, save_checkpoint

    preprocessed = FIXTURE / "nnUNet_preprocessed" / DATASET
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    torch.manual_seed(0)
    network = build_network(plans)
    optimiser = torch.optim.SGD(network.parameters(), lr=0.01)
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth", network, optimiser, [np.float32(0.0)], plans,
                    "3d_fullres", 0, dataset)
    (folder / "plans.json").write_text(json.dumps(plans))
    shutil.copy(preprocessed / "dataset.json", folder / "dataset.json")
    return folder


def model_folder(network: str, work: Path) -> Path:
    return results_folder(FIXTURE, "3d_fullres") if network == "shrunk" else default_size_model(work)


def imported(network: str, work: Path, region: bool = False) -> Path:
    from TwinTrackCLI import main as twintrack

    bundle = work / f"bundle-{network}{'-region' if region else ''}"
    if not bundle.exists():
        arguments = ["bundle", "from-nnunet", f"{model_folder(network, work)}:0", "--out", str(bundle)]
        if region:
            arguments += ["--localiser", f"{results_folder(FIXTURE, '3d_fullres')}:0",
                          "--dilation-mm", REGION_DILATION_MM]
        if twintrack(arguments) != 0:
            raise RuntimeError(f"bundle from-nnunet failed for the {network} network")
    return bundle


def with_batch_size(bundle: Path, batch_size: int) -> Path:
    """A copy of ``bundle`` whose members run ``batch_size`` windows per onnxruntime call."""
    copy = bundle.with_name(f"{bundle.name}-batch{batch_size}")
    if not copy.exists():
        shutil.copytree(bundle, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        for member in manifest["members"]:
            member["sliding_window"]["batch_size"] = batch_size
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def worktree(revision: str, work: Path) -> Path:
    folder = work / f"rev-{revision.replace('/', '_').replace('~', '_')}"
    if not folder.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
                       check=True, capture_output=True)
    return folder


def variant_run(variant: str, network: str, settings: dict, work: Path):
    """(label, result, probability, region or None) of one engine variant."""
    run = dict(settings, out=str(work / f"{network}-{variant.replace(':', '_')}.npy"))
    source, region = ROOT, False
    if variant.startswith("batch"):
        run["target"] = str(with_batch_size(imported(network, work), int(variant[5:])))
        label = f"{variant[5:]} windows per onnxruntime call"
    elif variant == "mirrors":
        run["mirror_batching"] = True
        label = "8 mirrors of a batch in one call"
    elif variant == "no-graph-opt":
        run["graph_optimisation"] = "off"
        label = "onnxruntime graph optimisation off"
    elif variant == "region":
        run["target"], region = str(imported(network, work, region=True)), True
        label = f"region crop (shrunk localiser, {REGION_DILATION_MM} mm)"
    elif variant.startswith("rev:"):
        source = worktree(variant[4:], work)
        label = f"engine of {variant[4:]}"
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    result = run_child("twintrack", run, source)
    probability = np.load(run["out"])
    inside = np.load(run["out"].replace(".npy", "-region.npy")) if region else None
    return label, result, probability, inside


def compare(case: str, network: str, work: Path, threads: int, variants) -> None:
    image = str(case_image(case, work))
    theirs = run_child("nnunet", {"target": str(model_folder(network, work)), "image": image, "threads": threads,
                                  "out": str(work / f"{network}-nnunet.npy")})
    settings = {"target": str(imported(network, work)), "image": image, "threads": threads}
    ours = run_child("twintrack", dict(settings, out=str(work / f"{network}-twintrack.npy")))
    theirs_p, ours_p = np.load(work / f"{network}-nnunet.npy"), np.load(work / f"{network}-twintrack.npy")
    difference = np.abs(theirs_p - ours_p).max()
    decided = np.abs(theirs_p - 0.5) > 2.5e-3
    flipped = int(((theirs_p > 0.5) != (ours_p > 0.5))[decided].sum())
    # Where nnU-Net's float16 Gaussian weights are subnormal (an image's corner regions, far from every
    # window centre) its output is quantised (docs/bundle.md); this shows how much of it is at the border.
    interior = np.abs(theirs_p - ours_p)[2:-2, 2:-2, 2:-2].max()
    repeats = f", median of {REPEATS} runs" if REPEATS > 1 else ""
    print(f"\n{network} network, {CASES[case]} {theirs_p.shape[::-1]}, {threads} threads, one fold, 8 mirrors"
          f"{repeats}:")
    print(f"  nnU-Net 2.8.1 predictor (torch CPU): {theirs['seconds']:.2f} s, peak RSS {theirs['peak_mb']:.0f} MB")
    print(f"  TwinTrack nnU-Net mode (onnxruntime, defaults): {ours['seconds']:.2f} s, "
          f"peak RSS {ours['peak_mb']:.0f} MB")
    print(f"  speed ratio {theirs['seconds'] / ours['seconds']:.2f}x, memory ratio "
          f"{ours['peak_mb'] / theirs['peak_mb']:.2f}, max |Δp| {difference:.2e} ({interior:.2e} two voxels in from "
          f"the image border), p > 0.5 differs at {flipped} "
          f"voxels (of {(theirs_p > 0.5).sum()} nnU-Net p > 0.5)")
    for variant in variants:
        label, other, other_p, region = variant_run(variant, network, settings, work)
        if region is None:
            change = f"max |Δp| against the default run {np.abs(other_p - ours_p).max():.1e}"
        else:
            change = (f"region {region.mean():.1%} of the CT; inside it max |Δp| against the whole-image run "
                      f"{np.abs(other_p - ours_p)[region].max():.2e} (mean {np.abs(other_p - ours_p)[region].mean():.1e})"
                      f"; {theirs['seconds'] / other['seconds']:.2f}x nnU-Net's whole-image speed")
        print(f"  variant {variant} ({label}): {other['seconds']:.2f} s, {ours['seconds'] / other['seconds']:.2f}x "
              f"the default's speed, peak RSS {other['peak_mb']:.0f} MB; {change}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", default="small", help="comma-separated: small, full (default small)")
    parser.add_argument("--network", default="shrunk,default", help="comma-separated: shrunk, default (default both)")
    parser.add_argument("--variants", default="",
                        help="comma-separated engine variants to time against the default run: batchN, mirrors, "
                             "no-graph-opt, region, rev:REV (see the module docstring)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per measurement, each in a fresh process; the median is reported (default 1)")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.settings))))
        return 0
    cases, networks = args.case.split(","), args.network.split(",")
    for name, chosen, known in (("case", cases, CASES), ("network", networks, NETWORKS)):
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}; choose from {', '.join(known)}")
    variants = [v for v in args.variants.split(",") if v]
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    global REPEATS
    REPEATS = args.repeat
    if not is_built(FIXTURE):
        subprocess.run([sys.executable, str(ROOT / "Testing" / "nnunet_fixture.py"), "--out", str(FIXTURE)],
                       check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-nnunet-"))
    try:
        for case in cases:
            for network in networks:
                compare(case, network, work, args.threads, variants)
    finally:
        for tree in work.glob("rev-*"):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
