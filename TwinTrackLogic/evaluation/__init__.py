"""How good a probability map is against its raters: the CURVAS-PDACVI challenge's metrics
(including its vascular-involvement score), the MHR calibration metrics, the per-case
evaluation and the cohort report with bootstrap intervals and plots. Reads arrays and
case folders; never runs a model.
"""
