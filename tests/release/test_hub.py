"""Pushing to the Hub: one commit of the folder without .datagen/, against a fake Hub on
loopback; clean one-line failures that leave the folder byte-identical."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from datagen.errors import RunError, UsageError
from datagen.release.hub import push_folder
from tests.support.rl_sets import rl_rows, write_rl_set

TOKEN = "hf_test_token_not_secret"


@dataclass
class FakeHub:
    """The endpoints create_repo + upload_folder call, recording what they were sent."""

    url: str = ""
    commits: list[dict[str, Any]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    auth: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)
    validated: int = 0
    fail_commits: int = 0  # answer 503 to this many commit requests first
    status: int = 200  # answer every request with this status when not 200


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hub.auth.add(self.headers.get("Authorization", ""))
            path = self.path.split("?")[0]
            if hub.status != 200:
                return self._reply(hub.status, {"error": "nope"})
            if path == "/api/validate-yaml":  # create_commit checks a README's YAML header
                hub.validated += 1
                return self._reply(200, {"errors": [], "warnings": []})
            if path == "/api/repos/create":
                hub.created.append(json.loads(body))
                return self._reply(200, {"url": f"{hub.url}/datasets/org/demo", "name": "demo"})
            if path.startswith("/api/datasets/org/demo/preupload/"):
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": None} for f in files]})
            if path.startswith("/api/datasets/org/demo/commit/"):
                if hub.fail_commits:
                    hub.fail_commits -= 1
                    return self._reply(503, {"error": "busy"})
                lines = [json.loads(line) for line in body.decode().splitlines() if line]
                hub.commits.append({"lines": lines})
                oid = "a" * 40
                return self._reply(200, {"commitUrl": f"{hub.url}/datasets/org/demo/commit/{oid}",
                                         "commitOid": oid, "success": True})
            hub.unknown.append(f"POST {path}")
            return self._reply(404, {"error": f"unknown {path}"})

        def do_GET(self) -> None:  # noqa: N802
            hub.unknown.append(f"GET {self.path}")
            self._reply(404, {"error": "unknown"})

    return Handler


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = write_rl_set(tmp_path / "demo", rl_rows(1)[:2])
    (out / "README.md").write_text("---\nconfigs: []\n---\n# demo\n")
    (out / "rejects.jsonl").write_text('{"reason": "wrong_answer"}\n')
    (out / ".datagen" / "shards").mkdir(parents=True)
    (out / ".datagen" / "shards" / "0.done.json").write_text("{}")
    return out


@pytest.fixture
def no_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HF_TOKEN and no saved login (the token file is looked up under HF_HOME)."""
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_push_uploads_the_folder_in_one_commit(hub: FakeHub, folder: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    before = _snapshot(folder)
    url = push_folder(folder, "org/demo", private=True, endpoint=hub.url)
    assert url.endswith("/commit/" + "a" * 40)
    created = hub.created[0]
    assert created.get("private") is True or created.get("visibility") == "private", created
    assert created["type"] == "dataset"
    assert len(hub.commits) == 1, hub.unknown
    assert hub.validated == 1  # the card's YAML was checked
    files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
             for line in hub.commits[0]["lines"] if line["key"] == "file"}
    assert files == {k: v for k, v in before.items() if not k.startswith(".datagen")}
    assert hub.auth == {f"Bearer {TOKEN}"}
    assert _snapshot(folder) == before
    assert not any(TOKEN.encode() in data for data in _snapshot(folder).values())


def test_transient_errors_are_retried(hub: FakeHub, folder: Path) -> None:
    hub.fail_commits = 1
    push_folder(folder, "org/demo", token=TOKEN, endpoint=hub.url, retry_delays=(0.0,))
    assert len(hub.commits) == 1


def test_refused_upload_is_one_line_and_changes_nothing(hub: FakeHub, folder: Path) -> None:
    hub.status = 401
    before = _snapshot(folder)
    with pytest.raises(RunError, match="refused the upload to org/demo \\(401\\)") as exc:
        push_folder(folder, "org/demo", token=TOKEN, endpoint=hub.url, retry_delays=(0.0,))
    assert "\n" not in str(exc.value)
    assert _snapshot(folder) == before


def test_no_token_fails_cleanly(folder: Path, no_login: None) -> None:
    before = _snapshot(folder)
    with pytest.raises(UsageError, match="no Hugging Face token: set HF_TOKEN"):
        push_folder(folder, "org/demo", endpoint="http://127.0.0.1:9")
    assert _snapshot(folder) == before


def test_no_network_fails_cleanly(folder: Path) -> None:
    before = _snapshot(folder)
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(RunError, match="cannot reach the Hub"):
        push_folder(folder, "org/demo", token=TOKEN, endpoint="http://127.0.0.1:9",
                    retries=2, retry_delays=(0.0,))
    assert _snapshot(folder) == before


def test_invalid_folder_or_repo_is_refused_before_any_upload(hub: FakeHub, folder: Path,
                                                             tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="expected ORG/NAME"):
        push_folder(folder, "just-a-name", token=TOKEN, endpoint=hub.url)
    bad = write_rl_set(tmp_path / "bad", [{**rl_rows(1)[0], "agent_name": "x"}])
    with pytest.raises(RunError, match="1 format problems"):
        push_folder(bad, "org/demo", token=TOKEN, endpoint=hub.url)
    assert hub.commits == [] and hub.created == []
