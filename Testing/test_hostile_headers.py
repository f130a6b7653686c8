"""Hostile files are refused from their header, before any work: nothing is inflated to find out."""

import time

import corpus  # noqa: E402,F401  (first: corpus_hostile builds on it, and corpus imports it)
import pytest
from corpus_hostile import HOSTILE_CORPUS, _gzip_bomb, _huge_nifti  # noqa: E402

from TwinTrackLogic.errors import InputError  # noqa: E402
from TwinTrackLogic.io import (  # noqa: E402
    nifti,  # noqa: E402
    read_geometry,
    read_image,
)


def test_the_hostile_part_of_the_corpus_covers_its_classes():
    names = [entry.name for entry in HOSTILE_CORPUS]
    assert len(names) >= 25
    for prefix in ("nifti-", "nrrd-", "mha-", "calibrator-", "manifest-", "option-", "env-", "domain-strict-"):
        assert any(name.startswith(prefix) for name in names), prefix


def test_a_header_claiming_4000_cubed_voxels_is_refused_at_once(tmp_path):
    _huge_nifti(tmp_path)
    for read in (read_image, read_geometry):
        started = time.perf_counter()
        with pytest.raises(InputError, match=r"\(4000, 4000, 4000\) voxels need about 1907.3 GiB"):
            read(tmp_path / "ct.nii.gz")
        assert time.perf_counter() - started < 1.0


def test_a_gzip_bomb_is_inflated_no_further_than_its_header_says(tmp_path, monkeypatch):
    _gzip_bomb(tmp_path)
    inflated = []
    real_open = nifti.gzip.open

    class Counting:
        def __init__(self, stream):
            self.stream = stream

        def read(self, size=-1):
            block = self.stream.read(size)
            inflated.append(len(block))
            return block

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

    monkeypatch.setattr(nifti.gzip, "open", lambda path, mode: Counting(real_open(path, mode)))
    with pytest.raises(InputError, match="decompresses to more than the 11872 bytes its header describes"):
        read_image(tmp_path / "ct.nii.gz")
    # 256 MB follow the voxels; reading stops within one block past the allowed excess.
    assert sum(inflated) <= 11872 + nifti.EXCESS_BYTES + (1 << 22) + 540
