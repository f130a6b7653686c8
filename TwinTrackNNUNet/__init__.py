"""Import nnU-Net v2 trained models as TwinTrack bundles (needs the ``.[nnunet]`` extra).

- :mod:`.results`: read a trained-model folder safely, refuse what a bundle cannot express;
- :mod:`.export`: build each fold's network from the plans, export to ONNX, check onnxruntime;
- :mod:`.bundle_writer`: the bundle folder and its manifest (version 2, nnU-Net mode).

Nothing at run time imports this package: running a bundle needs no torch.
"""

from .bundle_writer import import_nnunet
from .results import UnsupportedModel, read_model

__all__ = ["import_nnunet", "read_model", "UnsupportedModel"]
