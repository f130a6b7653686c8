"""A PACS over DICOMweb: fetch a CT series (WADO-RS), store results (STOW-RS).

Only the address the user gave is contacted. Credentials come from the environment
(``TWINTRACK_DICOMWEB_TOKEN``, or ``TWINTRACK_DICOMWEB_USER`` and ``TWINTRACK_DICOMWEB_PASSWORD``)
or from a JSON file the user names (``{"username": ..., "password": ...}`` or ``{"token": ...}``),
never from the command line, where other users of the machine could read them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence
from urllib.parse import urlsplit

from ..errors import InputError, TwinTrackError
from ..io.strictjson import read_json
from . import require

TOKEN_VARIABLE = "TWINTRACK_DICOMWEB_TOKEN"
USER_VARIABLE = "TWINTRACK_DICOMWEB_USER"
PASSWORD_VARIABLE = "TWINTRACK_DICOMWEB_PASSWORD"
TIMEOUT_S = 60


CREDENTIALS_MAX_BYTES = 64 * 1024  # a user name and password or a token


class DicomWebError(TwinTrackError):
    """The DICOMweb server could not be reached, or refused a request."""


def _session(credentials_file: Optional[Path]):
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc credentials from elsewhere: only what the user gave
    if credentials_file is not None:
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
    return DicomWebError(f"{action} at {url} failed: {error}.")


class Pacs:
    """One DICOMweb server (its base URL, e.g. Orthanc's http://host:8042/dicom-web)."""

    def __init__(self, url: str, credentials_file: Optional[Path] = None) -> None:
        require()
        from dicomweb_client import DICOMwebClient

        self.url = _check_url(url)
        self._client = DICOMwebClient(self.url, session=_session(credentials_file), timeout=TIMEOUT_S)

    def fetch_series(self, study_uid: str, series_uid: str, folder: Path) -> List[Path]:
        """Retrieve one series (WADO-RS) into ``folder``, one file per instance."""
        import requests

        try:
            datasets = self._client.retrieve_series(study_uid, series_uid)
        except (requests.RequestException, ValueError) as error:
            raise _explained(error, self.url, f"Fetching series {series_uid} of study {study_uid}") from None
        if not datasets:
            raise DicomWebError(f"{self.url} holds no instance of series {series_uid} in study {study_uid}.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for number, dataset in enumerate(datasets):
            path = folder / f"{number:05d}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            paths.append(path)
        return paths

    def store(self, datasets: Sequence, study_uid: str) -> None:
        """Store ``datasets`` in ``study_uid`` (STOW-RS); refuse unless the server kept every one."""
        import requests

        try:
            response = self._client.store_instances(list(datasets), study_instance_uid=study_uid)
        except (requests.RequestException, ValueError) as error:
            raise _explained(error, self.url, "Storing the results") from None
        failed = getattr(response, "FailedSOPSequence", None) or []
        if failed:
            stored = len(getattr(response, "ReferencedSOPSequence", None) or [])
            reasons = ", ".join(str(getattr(item, "FailureReason", "?")) for item in failed)
            raise DicomWebError(f"{self.url} refused {len(failed)} of {len(datasets)} object(s) (failure reason "
                                f"{reasons}) and stored {stored}.")
