"""Publishing a built folder to the Hugging Face Hub (``datagen push``, ``build --push``).

The local folder is the product; pushing uploads it as it is, after ``validate_path`` passed,
in one commit (``huggingface_hub.HfApi.upload_folder``), leaving out the private ``.datagen/``
state. The token comes from the argument, ``HF_TOKEN`` or the user's ``huggingface-cli login``;
it is only sent to the Hub, never written anywhere. Errors are one line: no token or a bad repo
id is a ``UsageError``, a refused or failed upload a ``RunError``; the local folder is never
changed. Transient failures (connection errors, 429 and 5xx answers) are retried with a delay.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datagen.check.validate import validate_path
from datagen.errors import RunError, UsageError
from datagen.paths import WORK_DIR_NAME

__all__ = ["IGNORED", "check_push", "push_folder"]

IGNORED = [WORK_DIR_NAME, f"{WORK_DIR_NAME}/*", ".*.tmp", "*/.*.tmp"]
"""Never uploaded: our private state and half-written temp files (patterns are fnmatch, so
``*`` also matches ``/``)."""

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _token(token: str | None) -> str:
    if token:
        return token
    from huggingface_hub import get_token

    found = os.environ.get("HF_TOKEN") or get_token()
    if not found:
        raise UsageError("no Hugging Face token: set HF_TOKEN or run `hf auth login` "
                         "(a token with write access)")
    return found


def check_push(repo_id: str) -> None:
    """Fail now, before a long build, if ``--push repo_id`` could not work: a bad repo id or
    no token (the network is only tried when the upload starts)."""
    if not _REPO_ID.fullmatch(repo_id):
        raise UsageError(f"--push {repo_id!r}: give a dataset repo id as ORG/NAME")
    _token(None)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _http_modules() -> list[Any]:
    """The HTTP clients huggingface_hub may be using (httpx2 in 2.x, httpx in 1.x)."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _failures() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, OSError, *(m.HTTPError for m in _http_modules()))


def _transient(exc: BaseException) -> bool:
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    transport = tuple(m.TransportError for m in _http_modules())
    return isinstance(exc, transport + (ConnectionError, TimeoutError))


def _describe(exc: BaseException, repo_id: str) -> str:
    status = _status(exc)
    if status in (401, 403):
        return (f"the Hub refused the upload to {repo_id} ({status}): check that the token "
                "has write access to it")
    if status is not None:
        return f"the Hub answered {status} for {repo_id}: {str(exc).splitlines()[0]}"
    return f"cannot reach the Hub ({type(exc).__name__}); check the network and try again"


def push_folder(folder: Path | str, repo_id: str, private: bool = False,
                token: str | None = None, retries: int = 3,
                retry_delays: Sequence[float] = (2.0, 10.0),
                endpoint: str | None = None) -> str:
    """Validate ``folder`` and upload it to the dataset repo ``repo_id`` in one commit.

    Creates the repo if needed (``private`` applies then). ``endpoint`` defaults to
    ``HF_ENDPOINT`` read at call time (else huggingface.co). Returns the commit URL.
    """
    folder = Path(folder)
    if not _REPO_ID.fullmatch(repo_id):
        raise UsageError(f"repo id {repo_id!r}: expected ORG/NAME (e.g. my-org/codedance-data)")
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder; build one with `datagen build` first")
    report = validate_path(folder)
    if not report.ok:
        raise RunError(f"{folder} has {len(report.problems)} format problems (first: "
                       f"{report.problems[0]}); run `datagen validate {folder}` for all of them")
    secret = _token(token)

    from huggingface_hub import HfApi

    failures = _failures()
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=secret)
    delays = list(retry_delays)
    for attempt in range(1, retries + 1):
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                                     ignore_patterns=IGNORED,
                                     commit_message="Upload dataset built by codedance-datagen")
            return str(info.commit_url)
        except failures as exc:  # one line each; only transient ones are retried
            if attempt < retries and _transient(exc):
                time.sleep(delays[min(attempt - 1, len(delays) - 1)] if delays else 0.0)
                continue
            raise RunError(_describe(exc, repo_id)) from None
    raise AssertionError("unreachable")
