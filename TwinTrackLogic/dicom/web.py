"""A PACS over DICOMweb: fetch a CT series (WADO-RS), store results (STOW-RS).

Only the address the user gave is contacted: a redirect to another scheme, host or port is
refused. Every request is bounded (:class:`Limits`): its answer is read in blocks and refused past
``max_mb``, and it ends by its deadline, however slowly the server sends (a watchdog closes the
connection), as does a whole series fetch. Credentials come from the environment
(``TWINTRACK_DICOMWEB_TOKEN``, or ``TWINTRACK_DICOMWEB_USER`` and ``TWINTRACK_DICOMWEB_PASSWORD``)
or from a JSON file the user names (``{"username": ..., "password": ...}`` or ``{"token": ...}``),
never from the command line, where other users of the machine could read them; a credentials
file other users can read is refused, with the chmod that fixes it.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Type
from urllib.parse import urljoin, urlsplit

from ..errors import InputError, TwinTrackError
from ..io.strictjson import read_json
from . import require

TOKEN_VARIABLE = "TWINTRACK_DICOMWEB_TOKEN"
USER_VARIABLE = "TWINTRACK_DICOMWEB_USER"
PASSWORD_VARIABLE = "TWINTRACK_DICOMWEB_PASSWORD"
TIMEOUT_S = 60  # one connect or one read with nothing arriving
CREDENTIALS_MAX_BYTES = 64 * 1024  # a user name and password or a token
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Limits:
    """What one PACS conversation may cost; every request is bounded by all three.

    max_mb: the largest answer read (a 2,000-slice 512 x 512 CT of 16 bits is about 1 GB, with
    headers); request_s: one request from its start to its last byte, however slowly the server
    sends; series_s: everything a series fetch takes."""

    max_mb: float = 2048.0
    request_s: float = 600.0
    series_s: float = 1800.0

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 2**20)


class DicomWebError(TwinTrackError):
    """The DICOMweb server could not be reached, or refused a request."""


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default
    except ValueError:  # a port that is not a number
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _tracking_adapter(sockets: List):
    """A requests adapter whose connections register their sockets, so that a deadline can close
    them from another thread (a read that waits on a trickling server wakes up)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Connection(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class SecureConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SecurePool}

    return Adapter()


def _bounded_session_class():
    import requests

    class BoundedSession(requests.Session):
        """A session that talks only to one origin, reads at most ``limits.max_bytes`` of an answer and
        ends every request by its deadline (the earlier of the request's and the series')."""

        def __init__(self, origin: Tuple[str, str, Optional[int]], base_url: str, limits: Limits) -> None:
            super().__init__()
            self.trust_env = False  # no proxy or .netrc credentials from elsewhere: only what the user gave
            self.max_redirects = MAX_REDIRECTS
            self.origin, self.base_url, self.limits = origin, base_url, limits
            self.series_deadline: Optional[float] = None
            self._sockets: List = []
            adapter = _tracking_adapter(self._sockets)
            self.mount("http://", adapter)
            self.mount("https://", adapter)

        def get_redirect_target(self, resp):
            target = super().get_redirect_target(resp)
            if target:
                absolute = urljoin(resp.url, target)
                if _origin(absolute) != self.origin:
                    resp.close()
                    raise DicomWebError(
                        f"{resp.url} redirected to {absolute}, another scheme, host or port than the --dicomweb "
                        f"address {self.base_url}. TwinTrack follows redirects only within the address you gave "
                        "(a redirect elsewhere could send your credentials or fetch another server's data); "
                        "give the address the server redirects to, if you trust it.")
            return target

        def _abort(self) -> None:
            for sock in list(self._sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def request(self, method, url, *args, **kwargs):
            started = time.monotonic()
            deadline = started + self.limits.request_s
            which = f"the request deadline of {self.limits.request_s:g} s (--dicomweb-request-timeout-s)"
            if self.series_deadline is not None and self.series_deadline < deadline:
                deadline = self.series_deadline
                which = f"the series deadline of {self.limits.series_s:g} s (--dicomweb-series-timeout-s)"
            remaining = deadline - started
            if remaining <= 0:
                raise DicomWebError(f"{method} {url} was not started: {which} has passed.")
            kwargs["stream"] = True
            kwargs["timeout"] = (min(TIMEOUT_S, remaining), min(TIMEOUT_S, remaining))
            del self._sockets[:-8]  # a kept-alive connection is reused without connecting again: keep recent ones
            watchdog = threading.Timer(remaining, self._abort)
            watchdog.daemon = True
            watchdog.start()
            try:
                response = super().request(method, url, *args, **kwargs)
                self._read_body(response, url)
            except (requests.RequestException, OSError) as error:
                if time.monotonic() >= deadline - 0.05:
                    raise DicomWebError(f"{method} {url} did not finish within {which}: the server answers too "
                                        "slowly or stopped answering. Raise the limit if the server is just slow.") from None
                raise error
            finally:
                watchdog.cancel()
            return response

        def _read_body(self, response, url: str) -> None:
            cap = self.limits.max_bytes
            announced = response.headers.get("Content-Length", "")
            too_big = (f"The answer to {url} is larger than the {self.limits.max_mb:g} MB TwinTrack reads from a "
                       "PACS (--dicomweb-max-mb); nothing of it was kept. Raise the limit if the series really "
                       "is that large.")
            if announced.isdigit() and int(announced) > cap:
                response.close()
                raise DicomWebError(too_big.replace("is larger than", f"announces {int(announced)} bytes, more than"))
            chunks, total = [], 0
            for chunk in response.iter_content(1 << 16):
                total += len(chunk)
                if total > cap:
                    response.close()
                    raise DicomWebError(too_big)
                chunks.append(chunk)
            response._content = b"".join(chunks)
            response._content_consumed = True

    return BoundedSession


def _check_private(path: Path) -> None:
    """Refuse a credentials file other users can read (as ssh refuses a private key)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # the reader says the file is missing
    if os.name == "posix" and mode & 0o077:
        raise InputError(f"{path} holds credentials but other users of this machine can read or change it "
                         f"(permissions {stat.filemode(mode)}). Make it private with: chmod 600 {path}")


def _session(credentials_file: Optional[Path], url: str = "", limits: Limits = Limits()):
    session = _bounded_session_class()(_origin(url), url, limits)
    if credentials_file is not None:
        _check_private(Path(credentials_file))
        content = read_json(credentials_file, "credentials JSON file", max_bytes=CREDENTIALS_MAX_BYTES)
        if not isinstance(content, dict) or not ({"token"} <= content.keys() or {"username", "password"} <= content.keys()):
            raise InputError(f"{credentials_file} must hold {{\"username\": ..., \"password\": ...}} or "
                             "{\"token\": ...}.")
        token, user, password = content.get("token"), content.get("username"), content.get("password")
    else:
        token = os.environ.get(TOKEN_VARIABLE)
        user, password = os.environ.get(USER_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user is not None:
        session.auth = (str(user), str(password or ""))
    return session


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--dicomweb must be an http(s) address like http://localhost:8042/dicom-web, not {url!r}.")
    if parts.username or parts.password:
        raise InputError("Do not put credentials in the --dicomweb address (other users can read command "
                         f"lines); set {USER_VARIABLE} and {PASSWORD_VARIABLE} (or {TOKEN_VARIABLE}) "
                         "or pass --dicomweb-credentials FILE.")
    return url.rstrip("/")


def _explained(error, url: str, action: str) -> DicomWebError:
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        hint = {401: "the server wants credentials, or refused the ones given (see --dicomweb-credentials)",
                403: "the credentials given may not do this",
                404: "no such study or series on the server (check the UIDs)",
                409: "the server refused to store the objects"}.get(status, "the server refused the request")
        return DicomWebError(f"{action} at {url} failed with HTTP {status}: {hint}.")
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return DicomWebError(f"{action}: could not reach {url} ({type(error).__name__}). Check the address "
                             "and that the server is running.")
    if isinstance(error, requests.RequestException):
        return DicomWebError(f"{action} at {url} failed: {error}.")
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return DicomWebError(f"{action}: the answer of {url} is not the DICOM the DICOMweb standard promises "
                         f"({detail}). Check that --dicomweb is the server's DICOMweb base address (for Orthanc "
                         "http://host:8042/dicom-web) and that the series is stored there intact.")


def _answer_errors() -> Tuple[Type[BaseException], ...]:
    """What a client raises on an answer that is not what DICOMweb promises (garbage multipart, a part
    that is not DICOM, a missing header): each becomes a sentence naming the server."""
    import requests
    from pydicom.errors import InvalidDicomError

    return (requests.RequestException, ValueError, KeyError, IndexError, TypeError, EOFError, AttributeError,
            InvalidDicomError)


class Pacs:
    """One DICOMweb server (its base URL, e.g. Orthanc's http://host:8042/dicom-web), within ``limits``."""

    def __init__(self, url: str, credentials_file: Optional[Path] = None, limits: Limits = Limits()) -> None:
        require()
        from dicomweb_client import DICOMwebClient

        self.url = _check_url(url)
        self.limits = limits
        self._session = _session(credentials_file, self.url, limits)
        self._client = DICOMwebClient(self.url, session=self._session, timeout=TIMEOUT_S)
        # The client would retry a failed request (five times, waiting longer each time), past every
        # deadline: one attempt, bounded, and a sentence.
        self._client.set_http_retry_params(retry=False)

    def fetch_series(self, study_uid: str, series_uid: str, folder: Path) -> List[Path]:
        """Retrieve one series (WADO-RS) into ``folder``, one file per instance, by the series deadline."""
        action = f"Fetching series {series_uid} of study {study_uid}"
        self._session.series_deadline = time.monotonic() + self.limits.series_s
        try:
            datasets = self._client.retrieve_series(study_uid, series_uid)
            if not datasets:
                raise DicomWebError(f"{self.url} holds no instance of series {series_uid} in study {study_uid}.")
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for number, dataset in enumerate(datasets):
                path = folder / f"{number:05d}.dcm"
                dataset.save_as(path, enforce_file_format=True)
                paths.append(path)
        except _answer_errors() as error:
            raise _explained(error, self.url, action) from None
        finally:
            self._session.series_deadline = None
        return paths

    def store(self, datasets: Sequence, study_uid: str) -> None:
        """Store ``datasets`` in ``study_uid`` (STOW-RS); refuse unless the server kept every one."""
        try:
            response = self._client.store_instances(list(datasets), study_instance_uid=study_uid)
        except _answer_errors() as error:
            raise _explained(error, self.url, "Storing the results") from None
        failed = getattr(response, "FailedSOPSequence", None) or []
        if failed:
            stored = len(getattr(response, "ReferencedSOPSequence", None) or [])
            reasons = ", ".join(str(getattr(item, "FailureReason", "?")) for item in failed)
            raise DicomWebError(f"{self.url} refused {len(failed)} of {len(datasets)} object(s) (failure reason "
                                f"{reasons}) and stored {stored}.")
