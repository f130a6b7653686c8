"""`twintrack review` before any server starts: address, token, cases, the missing extra.

These run without the .[review] extra; the browser tests (test_web_review.py) cover the
running server.
"""

import subprocess
import sys

import pytest

from TwinTrackCLI import EXIT_ERROR, main
from TwinTrackCLI import review
from TwinTrackLogic.phantom import generate_case, write_case


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.3", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.20", False), ("review.example.org", False)])
def test_loopback_addresses(host, loopback):
    assert review.is_loopback(host) is loopback


def test_every_run_gets_a_new_random_token():
    tokens = {review.check_access("127.0.0.1", no_token=False) for _ in range(20)}
    assert len(tokens) == 20 and all(len(token) >= 32 for token in tokens)
    assert review.check_access("0.0.0.0", no_token=False) is not None
    assert review.check_access("127.0.0.1", no_token=True) is None


def test_a_reachable_address_without_a_token_is_refused(capsys):
    assert main(["review", "--host", "0.0.0.0", "--no-token"]) == EXIT_ERROR
    message = capsys.readouterr().err
    assert "--host 0.0.0.0" in message and "--no-token" in message and "127.0.0.1" in message
    assert "Traceback" not in message


def test_the_url_carries_the_token():
    options = review.ReviewOptions(host="127.0.0.1", port=8765, token="abc")
    assert options.url() == "http://127.0.0.1:8765/index.html?secret=abc"
    assert review.ReviewOptions(host="::1", port=1, token=None).url() == "http://[::1]:1/index.html"


def test_cases_come_only_from_the_folder_given_at_start(tmp_path, capsys):
    for index in (3, 4):
        write_case(generate_case(index, raters=2, seed=1, size="small"), tmp_path / "cohort")
    cohort = review.resolve_cases(tmp_path / "cohort")
    assert [case.name for case in cohort] == ["case_003", "case_004"]
    one = review.resolve_cases(tmp_path / "cohort" / "case_004")
    assert [case.name for case in one] == ["case_004"] and one[0].raters == 2
    assert review.resolve_cases(None) == []  # the demo phantom
    assert main(["review", str(tmp_path / "missing")]) == EXIT_ERROR
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["review", str(tmp_path / "empty")]) == EXIT_ERROR
    assert "holds no case folders" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [(["--port", "70000"], "argument --port: must be a whole number in [0, 65535]"),
                                         (["--level", "nan"], "argument --level: must be a percentage above 1 and at most 100, not nan"),
                                         (["--level", "120"], "argument --level")])
def test_bad_numbers_are_refused_where_they_are_parsed(argv, words, capsys):
    assert main(["review", *argv]) == EXIT_ERROR
    assert words in capsys.readouterr().err


def test_a_missing_bundle_is_refused_with_the_option(capsys):
    assert main(["review", "--bundle", "nowhere"]) == EXIT_ERROR
    assert "--bundle nowhere does not exist" in capsys.readouterr().err


def test_without_the_extra_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "TwinTrackWeb.app", None)  # as if trame were not installed
    assert main(["review"]) == EXIT_ERROR
    message = capsys.readouterr().err
    assert 'pip install "twintrack[review]"' in message and "Traceback" not in message


def test_the_command_line_never_imports_the_web_stack():
    code = ("import sys; from TwinTrackCLI import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'trame', 'trame_slicer', 'wslink', 'aiohttp', 'vtk', 'slicer', 'TwinTrackWeb'}))")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "[]"


def _web_sources():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "TwinTrackWeb"
    sources = {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.py"))}
    assert {"app.py", "access.py"} <= set(sources)
    return sources


def test_the_web_app_is_a_thin_layer_over_the_presenter():
    """Review decisions go through TwinTrackLib.presenter (the module's); the page never calls
    the scene's setters itself, nor runs the pipeline."""
    for name, text in _web_sources().items():
        for call in ("set_level(", "set_range(", "set_opacity(", "set_color_map(", "show_uncalibrated(",
                     "run_case(", "ensemble_job(", "BackgroundJob(", "AgreementScene("):
            assert call not in text, f"TwinTrackWeb/{name} calls {call}: that belongs to the presenter"
    assert "presenter.Presenter(" in _web_sources()["app.py"]


def test_the_web_app_has_no_upload_and_no_path_from_the_browser():
    for name, text in _web_sources().items():
        for risky in ("write_client_files_to_dir", "file_upload", "VFileInput", "--fs-endpoints", "Path(self.state",
                      "read_image(self.state", "open(self.state"):
            assert risky not in text, f"TwinTrackWeb/{name} uses {risky}"


def test_the_volume_curve_is_drawn_from_the_numbers_it_is_given():
    import numpy as np

    from TwinTrackWeb.curve import HEIGHT, LEFT, RIGHT, WIDTH, curve_svg

    levels = np.linspace(0.01, 1.0, 100)
    svg = curve_svg(levels, 20.0 * (1.0 - levels), 0.6, 0.2, 0.8)
    points = svg.split('class="curve" points="')[1].split('"')[0].split()
    assert len(points) == 100
    xs = [float(point.split(",")[0]) for point in points]
    ys = [float(point.split(",")[1]) for point in points]
    assert xs == sorted(xs) and ys == sorted(ys)  # volume falls as the level rises (y grows downwards)
    level_x = float(svg.split('class="level" x1="')[1].split('"')[0])
    assert abs(level_x - (LEFT + 0.6 * (WIDTH - LEFT - RIGHT))) < 0.1
    assert 'class="band"' in svg and 'class="band"' not in curve_svg(levels, levels, 0.5)
    assert "<script" not in svg and f'height="{HEIGHT}"' in svg


def test_the_token_check_guards_every_request():
    """The middleware in front of trame's routes, on a bare aiohttp app (no trame, no browser)."""
    web = pytest.importorskip("aiohttp.web", reason="the web review needs pip install -e '.[review]'")
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from TwinTrackWeb import access

    async def scenario():
        async def page(request):
            return web.Response(text="page")

        app = web.Application()
        app.router.add_get("/index.html", page)
        app.router.add_get("/ws", page)
        app.middlewares.append(access.token_middleware("right-token"))
        async with TestClient(TestServer(app)) as client:
            statuses = {}
            for path in ("/index.html", "/index.html?secret=wrong", "/index.html?secret=%C3%A9t%C3%A9", "/ws"):
                response = await client.get(path)
                statuses[path] = (response.status, await response.text())
            first = await client.get("/index.html?secret=right-token")
            cookie = first.cookies[access.cookie_name("right-token")]
            later = await client.get("/ws")  # the client now holds the cookie
            return statuses, first.status, cookie, later.status

    statuses, first, cookie, later = asyncio.run(scenario())
    assert all(status == 403 and "access token" in text for status, text in statuses.values()), statuses
    assert first == 200 and later == 200
    assert cookie.value == "right-token" and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert access.cookie_name("a") != access.cookie_name("b")


def test_a_token_that_starts_with_a_dash_reaches_trame_whole():
    """token_urlsafe draws '-' first one time in 64: trame's argparse must still read it as the key."""
    import argparse
    from types import SimpleNamespace

    pytest.importorskip("trame")
    from TwinTrackWeb.app import trame_argv

    parser = argparse.ArgumentParser()
    for option in ("--host", "--port", "--timeout", "--authKey"):
        parser.add_argument(option)
    parser.add_argument("--server", action="store_true")
    argv = trame_argv(SimpleNamespace(host="127.0.0.1", port=8765, token="-Ab_c9"))
    assert parser.parse_args(argv[1:]).authKey == "-Ab_c9"
