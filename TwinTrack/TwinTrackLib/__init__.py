"""TwinTrack scene layer: everything the Slicer module does to the MRML scene.

Imports only MRML/VTK classes (``slicer.vtkMRML*``, Slicer logic classes), the
``slicer.util`` array helpers and the TwinTrackLogic core: no Qt, no
``slicer.app``, no widgets. It therefore runs inside 3D Slicer and headless on
the slicer-core wheel, where the test suite exercises it for real.
"""
