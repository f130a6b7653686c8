"""The peripancreatic vessels TwinTrack reports involvement for, and their labels.

The label values are the CURVAS-PDACVI ``vessels.nii.gz`` convention; the names are the keys
every report, table and DICOM object uses (``"portal vein"``, ``"SMV"``, ``"aorta"``,
``"celiac trunk"``, ``"SMA"``).
"""

from typing import Dict

VESSEL_LABELS: Dict[str, int] = {"portal vein": 1, "SMV": 2, "aorta": 3, "celiac trunk": 4, "SMA": 5}
VESSEL_NAMES: Dict[int, str] = {label: name for name, label in VESSEL_LABELS.items()}
