"""An nnU-Net model folder with odd plans.json or dataset.json is a sentence naming the file and
the key (issue 24), never a KeyError or ValueError traceback.

The checks run on the files' content before any checkpoint is loaded, so they are tested here on
a minimal valid pair of documents (no torch needed), each changed in one way."""

import copy
from pathlib import Path

import pytest

from TwinTrackLogic.errors import InputError
from TwinTrackNNUNet.results import check_files, output_channel, resolve_configuration

NAME = "3d_fullres"
FOLDER = Path("/results/Dataset501_TTPhantom/nnUNetTrainer__nnUNetPlans__3d_fullres")
PLANS = {
    "configurations": {NAME: {
        "spacing": [2.0, 1.5, 1.5], "patch_size": [32, 48, 48], "normalization_schemes": ["CTNormalization"],
        "resampling_fn_data_kwargs": {"order": 3, "order_z": 0},
        "resampling_fn_probabilities_kwargs": {"order": 1, "order_z": 0},
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": 4}, "_kw_requires_import": []}}},
    "foreground_intensity_properties_per_channel": {"0": {"percentile_00_5": -100.0, "percentile_99_5": 300.0,
                                                          "mean": 80.0, "std": 40.0}},
}
DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "pancreas": 1, "tumour": 2}}


def _check(plans, dataset):
    configuration = resolve_configuration(plans, NAME, FOLDER)
    check_files(FOLDER, plans, dataset, configuration, NAME)
    return output_channel(FOLDER, dataset, "tumour")


def test_the_valid_documents_pass():
    assert _check(PLANS, DATASET) == (3, 2, "softmax", "tumour")


def _configuration(plans):
    return plans["configurations"][NAME]


@pytest.mark.parametrize("change, file, said", [
    (lambda p, d: _configuration(p)["architecture"].pop("arch_kwargs"), "plans.json", "architecture.arch_kwargs"),
    (lambda p, d: _configuration(p).update(architecture="PlainConvUNet"), "plans.json", "3d_fullres.architecture"),
    (lambda p, d: _configuration(p)["architecture"].pop("network_class_name"), "plans.json", "network_class_name"),
    (lambda p, d: _configuration(p).update(spacing=[1, "2", 1]), "plans.json", "3d_fullres.spacing"),
    (lambda p, d: _configuration(p).update(patch_size=[32.5, 32, 32]), "plans.json", "3d_fullres.patch_size"),
    (lambda p, d: _configuration(p)["resampling_fn_data_kwargs"].update(order="3"), "plans.json",
     "resampling_fn_data_kwargs.order"),
    (lambda p, d: _configuration(p).pop("resampling_fn_probabilities_kwargs"), "plans.json",
     "resampling_fn_probabilities_kwargs"),
    (lambda p, d: p.pop("foreground_intensity_properties_per_channel"), "plans.json",
     "foreground_intensity_properties_per_channel"),
    (lambda p, d: p.update(configurations=[NAME]), "plans.json", "configurations must be an object"),
    (lambda p, d: d["labels"].update(tumour="2"), "dataset.json", "labels.tumour is '2'; a label value is a whole number"),
    (lambda p, d: d["labels"].update(tumour=1.5), "dataset.json", "labels.tumour is 1.5"),
    (lambda p, d: d["labels"].update(tumour=True), "dataset.json", "labels.tumour is True"),
    (lambda p, d: d.update(labels=["background", "tumour"]), "dataset.json", "labels must be an object"),
    (lambda p, d: d.update(channel_names="CT"), "dataset.json", "channel_names must be an object"),
])
def test_odd_documents_are_sentences_naming_the_file_and_key(change, file, said):
    plans, dataset = copy.deepcopy(PLANS), copy.deepcopy(DATASET)
    change(plans, dataset)
    with pytest.raises(InputError) as refused:
        _check(plans, dataset)
    message = str(refused.value)
    assert str(FOLDER / file) in message and said in message, message
