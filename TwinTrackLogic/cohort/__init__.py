"""Many cases: the case folder's inputs read and checked (annotations, region), the per-case
map that every cohort command shares (in-process, or on Dask distributed workers), and
predicting a whole cohort with resume. Each case still goes through pipeline.run_case.
"""
