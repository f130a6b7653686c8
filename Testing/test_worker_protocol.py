"""The worker protocol rejects non-finite numbers (issue 24): a child reporting NaN or infinite
progress never moves the progress bar to NaN; the last finite fraction stays."""

import json
import math
import sys
import textwrap

from TwinTrackLogic.worker import jobs
from TwinTrackLogic.worker import process as worker


def test_non_finite_progress_is_rejected_and_the_last_fraction_stays(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    opening = json.dumps({worker.PROTOCOL_KEY: worker.PROTOCOL_VERSION})[:-1]  # '{"key": 1', then more fields
    script = textwrap.dedent(f"""
        import sys
        def send(text):
            sys.stdout.write({opening!r} + ", " + text + "}}\\n")
            sys.stdout.flush()
        send('"event": "progress", "fraction": 0.4, "message": "forty"')
        send('"event": "progress", "fraction": NaN, "message": "not a number"')
        send('"event": "progress", "fraction": -Infinity, "message": "minus infinity"')
        send('"event": "progress", "fraction": 1e999, "message": "overflows"')
        send('"event": "done", "answer": 1')
    """)
    job = worker.WorkerProcess([sys.executable, "-c", script], folder, lambda done, workdir: done).start()
    outcome = job.wait(30)
    assert outcome.status == jobs.DONE, outcome.message
    fraction, message = job.poll()[:2]
    assert fraction == 0.4 and math.isfinite(fraction)
    # NaN and -Infinity are not JSON: those lines are not the protocol at all; 1e999 is JSON but infinite.
    assert message == "overflows"
    assert any("NaN" in line for line in job._noise) and any("-Infinity" in line for line in job._noise)
