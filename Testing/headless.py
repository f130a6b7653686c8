"""Slice views without the Slicer application: scene wiring and rendering.

Inside Slicer the application provides the colour logic and the views. With
the slicer-core wheel (tests, scripts, a browser front end) this module wires
the same MRML logic by hand, blends a slice view's layers with
vtkMRMLSliceLogic (no OpenGL needed) and, for a full view with its colour
legend, renders offscreen through VTK (EGL on headless Mesa).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support


def make_scene():
    """A scene with application logic and the default colour nodes, like Slicer's.

    Returns (scene, application_logic, color_logic); keep all three alive.
    """
    scene = slicer.vtkMRMLScene()
    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    color_logic = slicer.vtkSlicerColorLogic()
    color_logic.SetMRMLApplicationLogic(application_logic)
    color_logic.SetMRMLScene(scene)  # adds the default colour nodes
    application_logic.SetColorLogic(color_logic)
    application_logic.SetSliceLogics(vtk.vtkCollection())
    return scene, application_logic, color_logic


def _image_to_array(image) -> np.ndarray:
    """vtkImageData (2D) -> (rows, columns, components), first row at the top."""
    columns, rows, _ = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return scalars.reshape(rows, columns, -1)[::-1].copy()


def write_png(path, rgba: np.ndarray) -> Path:
    """Save an (rows, columns, 3|4) uint8 array as PNG (top row first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, columns, components = rgba.shape
    image = vtk.vtkImageData()
    image.SetDimensions(columns, rows, 1)
    flat = np.ascontiguousarray(rgba[::-1]).reshape(-1, components)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return path


class HeadlessSliceView:
    """One slice view (Red/Yellow/Green) of ``scene``, rendered without a GUI."""

    def __init__(self, scene, application_logic, name: str = "Red", orientation: str = "Axial",
                 size: Tuple[int, int] = (480, 480)):
        self.scene = scene
        self.application_logic = application_logic
        self.slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", name)
        self.slice_node.SetLayoutName(name)
        self.slice_node.SetOrientation(orientation)
        self.slice_node.SetDimensions(size[0], size[1], 1)
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(application_logic)
        self.logic.SetMRMLScene(scene)
        self.logic.SetSliceNode(self.slice_node)
        application_logic.GetSliceLogics().AddItem(self.logic)
        self._window = None

    @property
    def composite_node(self):
        return self.logic.GetSliceCompositeNode()

    def fit(self) -> None:
        self.logic.FitSliceToAll()

    def jump_to_ras(self, ras) -> None:
        """Put the slice through ``ras`` (keeps the field of view)."""
        self.slice_node.JumpSliceByCentering(*[float(v) for v in ras])

    def rgba(self) -> np.ndarray:
        """The blended slice (background, foreground, label, in Slicer's order)."""
        producer = self.logic.GetImageDataConnection().GetProducer()
        producer.Update()
        return _image_to_array(producer.GetOutputDataObject(0))

    def layer_values(self, layer: str = "foreground") -> np.ndarray:
        """The resliced scalar values of one layer, pixel for pixel with :meth:`rgba`."""
        layer_logic = {"foreground": self.logic.GetForegroundLayer(),
                       "background": self.logic.GetBackgroundLayer()}[layer]
        reslice = layer_logic.GetReslice()
        reslice.Update()
        return _image_to_array(reslice.GetOutput())[..., 0]

    # --- full view (slice image + colour legend), offscreen OpenGL ---------

    def attach_render_window(self):
        """Create the offscreen render window and its displayable managers.

        Call before the result nodes are added: the colour legend manager
        creates its actors when it sees legend nodes being added.
        """
        window = vtk.vtkRenderWindow()
        window.SetOffScreenRendering(True)
        width, height, _ = self.slice_node.GetDimensions()
        window.SetSize(width, height)
        renderer = vtk.vtkRenderer()
        window.AddRenderer(renderer)
        interactor = vtk.vtkRenderWindowInteractor()  # the managers expect one, never started
        interactor.SetRenderWindow(window)
        # A 2D image mapper puts slice pixel (i, j) on window pixel (i, j), as in Slicer's slice views.
        mapper = vtk.vtkImageMapper()
        mapper.SetColorWindow(255.0)
        mapper.SetColorLevel(127.5)
        actor = vtk.vtkActor2D()
        actor.SetMapper(mapper)
        renderer.AddViewProp(actor)
        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(self.application_logic)
        for manager in ("vtkMRMLColorLegendDisplayableManager", "vtkMRMLSegmentationsDisplayableManager2D"):
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        managers = factory.InstantiateDisplayableManagers(renderer)
        managers.SetMRMLDisplayableNode(self.slice_node)
        # A batch-process cycle makes the managers look up this view's slice
        # logic and composite node, as they do after a scene load in Slicer.
        self.scene.StartState(self.scene.BatchProcessState)
        self.scene.EndState(self.scene.BatchProcessState)
        self._window = (window, renderer, interactor, actor, managers)
        return window

    def render_full(self, path: Optional[Path] = None) -> np.ndarray:
        """Render the full view (image + legend) offscreen; optionally save a PNG."""
        if self._window is None:
            raise RuntimeError("attach_render_window() first")
        window, renderer, _, actor, _ = self._window
        # The slice logic replaces its output connection as layers come and go.
        actor.GetMapper().SetInputConnection(self.logic.GetImageDataConnection())
        self.rgba()
        window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.ReadFrontBufferOff()
        grab.Update()
        pixels = _image_to_array(grab.GetOutput())
        if path is not None:
            write_png(path, pixels)
        return pixels

    def close(self) -> None:
        if self._window is not None:
            self._window[0].Finalize()
            self._window = None
