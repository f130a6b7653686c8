"""What the sliders read out, in annotators and millilitres.

All numbers come from an :class:`~TwinTrackLogic.review.agreement.AgreementCurve`
computed once per result, so every read-out is a lookup.
"""

from __future__ import annotations

import math

from .agreement import AgreementCurve


def annotators_at_least(level: float, raters: int) -> int:
    """Fewest annotators (of ``raters``) that make up at least ``level`` of them.

    Examples
    --------
    >>> annotators_at_least(0.6, 5), annotators_at_least(0.5, 5)
    (3, 3)
    """
    return int(math.ceil(float(level) * raters - 1e-9))


def percent(level: float) -> str:
    return f"{level * 100:.0f} %"


def level_text(curve: AgreementCurve, level: float, raters: int) -> str:
    """e.g. '≥ 60 % of annotators (3 of 5) expected to label tumour: 12.4 mL'."""
    return (f"≥ {percent(level)} of annotators ({annotators_at_least(level, raters)} of {raters}) "
            f"expected to label tumour: {curve.volume_ml(level):.1f} mL")


def band_text(curve: AgreementCurve, low: float, high: float, raters: int) -> str:
    """The ambiguous band between two levels, e.g. '20–80 % of annotators (1 to 3 of 5): 4.1 mL'."""
    low, high = min(low, high), max(low, high)
    fewest = annotators_at_least(low, raters)
    most = max(annotators_at_least(high, raters) - 1, fewest)
    return (f"Ambiguous band {percent(low)}–{percent(high)} of annotators "
            f"({fewest} to {most} of {raters}): {curve.band_volume_ml(low, high):.1f} mL")


def expected_text(curve: AgreementCurve) -> str:
    """Expected volume (sum of calibrated p) and the 90 %-to-10 % agreement interval."""
    return (f"Expected tumour volume: {curve.expected_volume_ml:.1f} mL "
            f"(from {curve.volume_ml(0.9):.1f} mL at 90 % agreement "
            f"to {curve.volume_ml(0.1):.1f} mL at 10 %)")


def uncalibrated_text(curve: AgreementCurve, level: float) -> str:
    """Read-out while the raw ensemble probability is shown: no annotator claim."""
    return (f"Uncalibrated ensemble probability ≥ {level:.2f}: {curve.volume_ml(level):.1f} mL "
            "(not annotator agreement)")
