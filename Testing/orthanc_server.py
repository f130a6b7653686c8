"""A throw-away Orthanc PACS for tests: loopback only, a free port, a temp config and storage."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from dicom_helpers import tool

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "radiologist", "s3cret-for-tests"
READER = "reader"  # may fetch but not store: Orthanc refuses its uploads (HTTP 403)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def orthanc(folder: Path):
    """Run Orthanc with DICOMweb under ``folder``; yields its DICOMweb base URL. Stops it after.

    Two accounts: USER may read and store; READER (same password) may only read, as on a PACS
    that refuses uploads from a viewing account.
    """
    binary = tool("Orthanc")
    if not DICOMWEB_PLUGIN.is_file():
        pytest.skip(f"the Orthanc DICOMweb plugin is not installed ({DICOMWEB_PLUGIN})")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "TwinTrackTest", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": port, "DicomPort": free_port(), "DicomAet": "TTTEST", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD, READER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpTimeout": 60, "StableAge": 1,
    }
    script = folder / "filter.lua"
    script.write_text("function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
                      f"  return not (username == '{READER}' and method == 'POST')\nend\n")
    config["LuaScripts"] = [str(script)]
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "w")
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
