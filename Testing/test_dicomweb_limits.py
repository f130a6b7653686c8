"""The PACS client has limits (issue 24): small loopback servers (127.0.0.1 only) that misbehave
on purpose, each test bounded in time.

- a redirect to another port is refused with both addresses; one within the address is followed;
- an answer larger than --dicomweb-max-mb is refused, announced or streamed;
- a server that trickles one byte at a time fails by the request deadline, and by the series
  deadline when that comes first, also while it trickles its headers;
- a credentials file others can read is refused with the chmod to run;
- a garbage multipart answer is a sentence, not a traceback.
"""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from TwinTrackCLI import main
from TwinTrackLogic.errors import InputError

pytest.importorskip("dicomweb_client")
from TwinTrackLogic.dicom.web import DicomWebError, Limits, Pacs  # noqa: E402

STUDY, SERIES = "1.2.3", "1.2.3.4"
LONGEST_S = 10.0  # no misbehaving server keeps a connection open longer than this


def _handler(behave):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            try:
                behave(self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def server(behave):
    """A server on 127.0.0.1 (a free port) answering every GET with ``behave(handler)``; yields its
    DICOMweb base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behave))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fetch(url, tmp_path, **limits):
    return Pacs(url, limits=Limits(**limits)).fetch_series(STUDY, SERIES, tmp_path / "ct")


def _garbage(handler):
    body = b"--xyz\r\nContent-Type: application/dicom\r\n\r\nthis is not DICOM\r\n--xyz--"
    handler.send_response(200)
    handler.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=xyz')
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_redirect_to_another_port_is_refused_naming_both_addresses(tmp_path):
    with server(_garbage) as elsewhere:
        def redirect(handler):
            handler.send_response(302)
            handler.send_header("Location", elsewhere + handler.path[len("/dicom-web"):])
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with server(redirect) as url:
            with pytest.raises(DicomWebError) as refused:
                _fetch(url, tmp_path)
    message = str(refused.value)
    assert url in message and elsewhere.rsplit("/", 1)[0] in message and "another scheme, host or port" in message
    assert not (tmp_path / "ct").exists()


def test_a_redirect_within_the_address_is_followed(tmp_path):
    def redirect_then_garbage(handler):
        if "moved" in handler.path:
            return _garbage(handler)
        handler.send_response(301)
        handler.send_header("Location", "/dicom-web/moved" + handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with server(redirect_then_garbage) as url:
        with pytest.raises(DicomWebError, match="is not the DICOM the DICOMweb standard promises"):
            _fetch(url, tmp_path)  # the garbage is behind the redirect: it was followed


def test_a_garbage_multipart_answer_is_a_sentence(tmp_path):
    with server(_garbage) as url:
        with pytest.raises(DicomWebError) as refused:
            _fetch(url, tmp_path)
    assert url in str(refused.value) and "Check that --dicomweb is the server's DICOMweb base address" in str(refused.value)


def _announce(size):
    def behave(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/related; boundary=xyz")
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        handler.wfile.write(b"x" * 1024)
    return behave


def test_an_answer_announced_larger_than_the_cap_is_refused_before_reading(tmp_path):
    started = time.monotonic()
    with server(_announce(10 * 2**30)) as url:
        with pytest.raises(DicomWebError, match=r"announces 10737418240 bytes, more than the 1 MB .*--dicomweb-max-mb"):
            _fetch(url, tmp_path, max_mb=1)
    assert time.monotonic() - started < LONGEST_S


def test_an_answer_streaming_past_the_cap_is_refused(tmp_path):
    sent = []

    def endless(handler):  # no Content-Length: the body ends when the connection does
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/related; boundary=xyz")
        handler.end_headers()
        block = b"x" * 65536
        for _ in range(400):  # 25 MB at most
            handler.wfile.write(block)
            sent.append(len(block))

    with server(endless) as url:
        with pytest.raises(DicomWebError, match=r"larger than the 2 MB TwinTrack reads from a PACS"):
            _fetch(url, tmp_path, max_mb=2)
    assert sum(sent) < 25 * 2**20  # the client stopped reading; the server did not send it all


def _trickle(headers_first: bool):
    def behave(handler):
        ends = time.monotonic() + LONGEST_S
        if headers_first:
            handler.send_response(200)
            handler.send_header("Content-Type", "multipart/related; boundary=xyz")
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            handler.wfile.flush()
            payload = b"x"
        else:
            payload = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/related; boundary=xyz\r\n"
        index = 0
        while time.monotonic() < ends:  # one byte every 0.2 s: no read ever waits long
            handler.wfile.write(payload[index % len(payload):index % len(payload) + 1])
            handler.wfile.flush()
            index += 1
            time.sleep(0.2)
    return behave


@pytest.mark.parametrize("headers_first", [True, False], ids=["trickled-body", "trickled-headers"])
def test_a_trickling_server_fails_by_the_request_deadline(tmp_path, headers_first):
    started = time.monotonic()
    with server(_trickle(headers_first)) as url:
        with pytest.raises(DicomWebError, match=r"did not finish within the request deadline of 1\.5 s"):
            _fetch(url, tmp_path, request_s=1.5)
    assert 1.4 < time.monotonic() - started < 5.0


def test_the_series_deadline_bounds_the_fetch_when_it_comes_first(tmp_path):
    started = time.monotonic()
    with server(_trickle(True)) as url:
        with pytest.raises(DicomWebError, match=r"the series deadline of 1 s \(--dicomweb-series-timeout-s\)"):
            _fetch(url, tmp_path, request_s=60, series_s=1)
    assert time.monotonic() - started < 4.0


def test_a_credentials_file_others_can_read_is_refused_with_the_chmod(tmp_path):
    credentials = tmp_path / "pacs.json"
    credentials.write_text(json.dumps({"token": "secret"}))
    credentials.chmod(0o644)
    with pytest.raises(InputError, match=rf"other users .* -rw-r--r--.*chmod 600 {credentials}"):
        Pacs("http://127.0.0.1:1/dicom-web", credentials)
    credentials.chmod(0o640)  # the group alone is too many readers too
    with pytest.raises(InputError, match="chmod 600"):
        Pacs("http://127.0.0.1:1/dicom-web", credentials)
    credentials.chmod(0o600)
    assert Pacs("http://127.0.0.1:1/dicom-web", credentials)._session.headers["Authorization"] == "Bearer secret"


def test_the_limits_are_options_of_the_command(tmp_path, capsys):
    with server(_announce(50 * 2**20)) as url:
        code = main(["predict", "--dicomweb", url, "--study", STUDY, "--series", SERIES, "--out",
                     str(tmp_path / "p.nii.gz"), "--dicomweb-max-mb", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "more than the 5 MB" in err and "Traceback" not in err, err
    for option, value in (("--dicomweb-max-mb", "0"), ("--dicomweb-request-timeout-s", "nan"),
                          ("--dicomweb-series-timeout-s", "-1")):
        assert main(["predict", "--dicomweb", "http://127.0.0.1:1/", "--study", "1", "--series", "2",
                     option, value]) == 2
        assert f"argument {option}" in capsys.readouterr().err
