"""Long work away from the user interface: a job body with progress and cancel run on a
thread (jobs), or in a child Python process that Slicer can kill as a tree (process,
child). The child runs the same job bodies, hence the same pipeline.run_case.
"""
