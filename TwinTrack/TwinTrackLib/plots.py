"""Volume against agreement level, as a Slicer plot chart."""

from __future__ import annotations

import numpy as np
import vtk

from TwinTrackLogic import AgreementCurve

X_COLUMN = "Agreement level (%)"
Y_COLUMN = "Volume (mL)"


def _column(name: str, values: np.ndarray) -> vtk.vtkDoubleArray:
    array = vtk.vtkDoubleArray()
    array.SetName(name)
    array.SetNumberOfValues(len(values))
    for index, value in enumerate(values):
        array.SetValue(index, float(value))
    return array


def add_volume_curve_chart(scene, name: str, curve: AgreementCurve, series_name: str = "Calibrated"):
    """Table + plot series + chart of volume (mL) at or above each level (0..100 %).

    Returns (chart, series, table) nodes.
    """
    levels, volumes = curve.curve()
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
    table.AddColumn(_column(X_COLUMN, levels * 100.0))
    table.AddColumn(_column(Y_COLUMN, volumes))
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {series_name}")
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName(X_COLUMN)
    series.SetYColumnName(Y_COLUMN)
    series.SetPlotType(series.PlotTypeScatter)
    series.SetMarkerStyle(series.MarkerStyleNone)
    series.SetLineWidth(2)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle("Tumour volume by expected annotator agreement")
    chart.SetXAxisTitle("Agreement level (% of annotators)")
    chart.SetYAxisTitle("Volume at or above level (mL)")
    chart.SetLegendVisibility(False)
    return chart, series, table
