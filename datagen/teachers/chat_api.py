"""Calls to an OpenAI-compatible chat endpoint: retries, rate limits, a response cache, costs.

``ChatAPI.complete`` sends one chat request and returns the reply text and its usage. Around the
real ``openai`` client (its own retries off) it adds, per process:

* a semaphore of ``concurrency`` requests in flight and token buckets for requests and tokens
  per minute (the user's limits are split evenly over the build's worker processes);
* our retry loop: exponential backoff with jitter on 408/409/429, 5xx, timeouts, connection
  errors and unparsable bodies, honouring ``Retry-After``; a bounded number of tries;
* one-line ``RunError``s for what no retry can fix (bad key, unknown model, bad request), and
  for an endpoint that has never answered at all (wrong URL, server down);
* a stop once the build's budget is spent (``BudgetSpent``): spending is shared by every worker
  process of a build through ``share_spending``.

``ResponseCache`` keeps each reply on disk under the hash of the full request, so a resumed or
repeated build pays nothing for calls it already made. ``Ledger`` adds up tokens and dollars.
The API key is read by the client from ``OPENAI_API_KEY`` and never stored: not in the cache
key or files, and it is masked out of every error message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from datagen.atomic import write_text
from datagen.config import DEFAULT_BASE_URL, public_url
from datagen.errors import RunError, UsageError
from datagen.teachers.base import BudgetSpent, TeacherFailure, Usage

__all__ = ["ChatAPI", "Completion", "Ledger", "ResponseCache", "TokenBucket", "chat_api",
           "estimate_tokens", "openai_api_key", "share_spending", "spent"]

MAX_TRIES = 7  # one request and up to six retries: ~30 s of backoff at most
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
RETRY_AFTER_CAP = 120.0
# What the tokens-per-minute bucket takes for a request before the server reports the real
# count (``settle`` then corrects it): each image as IMAGE_TOKENS (a detailed 1024 px image is
# ~765 tokens on OpenAI's models, more on Qwen-VL's for large ones), text at CHARS_PER_TOKEN
# (OpenAI's rule of thumb for English), plus the completion's max_tokens.
IMAGE_TOKENS = 1000
CHARS_PER_TOKEN = 4


# -- spending shared by the worker processes of one build ------------------------------------

_spent_lock = threading.Lock()
_spent_local = [0.0]
_spent_shared: Any = None  # a multiprocessing.Value("d") when the flow's pool set one


def share_spending(value: Any) -> None:
    """Count this process's spending in ``value`` (a ``multiprocessing.Value("d")``)."""
    global _spent_shared
    _spent_shared = value


def spent() -> float:
    """USD spent on uncached calls so far by this build (or this process, when not shared)."""
    if _spent_shared is not None:
        return float(_spent_shared.value)
    with _spent_lock:
        return _spent_local[0]


def _spend(usd: float) -> None:
    if _spent_shared is not None:
        with _spent_shared.get_lock():
            _spent_shared.value += usd
    else:
        with _spent_lock:
            _spent_local[0] += usd


# -- limits --------------------------------------------------------------------------------


class TokenBucket:
    """``per_minute`` units a minute, refilled continuously; 0 means unlimited.

    ``take`` may drive the level below zero when a request is larger than the bucket (it waits
    for a full bucket first), and ``settle`` corrects an estimate once the real count is known.
    """

    def __init__(self, per_minute: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: float) -> None:
        """Wait until ``n`` units are available, then take them."""
        if self.capacity <= 0:
            return
        while True:
            with self.lock:
                self._refill()
                need = min(n, self.capacity)
                if self.level >= need:
                    self.level -= n
                    return
                wait = (need - self.level) / self.rate
            time.sleep(min(wait, 1.0))

    def settle(self, delta: float) -> None:
        """Take ``delta`` more units (or give back, if negative) without waiting."""
        if self.capacity > 0:
            with self.lock:
                self.level -= delta


def estimate_tokens(request: dict[str, Any]) -> int:
    """The tokens ``request`` may use, before the server says (see ``IMAGE_TOKENS``)."""
    chars = images = 0
    for message in request["messages"]:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "image_url":
                images += 1
            else:
                chars += len(part.get("text") or "")
    return (images * IMAGE_TOKENS + math.ceil(chars / CHARS_PER_TOKEN)
            + request.get("max_tokens", 0))


# -- cache and ledger -------------------------------------------------------------------------


class ResponseCache:
    """One JSON file per request hash under ``root``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(request: dict[str, Any], base_url: str | None) -> str:
        """Hash of everything that shapes the reply (never the API key)."""
        blob = json.dumps({"request": request, "base_url": public_url(base_url)},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply, or None."""
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, reply: dict[str, Any]) -> None:
        """Store a reply."""
        write_text(self._path(key), json.dumps(reply, sort_keys=True))


@dataclass(frozen=True, slots=True)
class Completion:
    """A reply: its text, its token counts, and whether it came from the cache."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool


@dataclass
class Ledger:
    """Tokens and dollars of one teacher's calls; cached replies are counted apart, as free."""

    price_in: float = 0.0  # USD per 1M prompt tokens
    price_out: float = 0.0  # USD per 1M completion tokens
    usage: Usage = field(default_factory=Usage)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for a call with these token counts."""
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6

    def add(self, c: Completion) -> float:
        """Record a reply; returns what it cost."""
        usd = 0.0 if c.cached else self.cost(c.prompt_tokens, c.completion_tokens)
        with self.lock:
            u = self.usage
            if c.cached:
                u.cached_calls += 1
            else:
                u.calls += 1
                u.prompt_tokens += c.prompt_tokens
                u.completion_tokens += c.completion_tokens
                u.cost_usd += usd
        return usd


# -- the endpoint -----------------------------------------------------------------------------

_KEYISH = re.compile(r"sk-[A-Za-z0-9_\-*]{3,}")
_RETRY_STATUS = {408, 409, 429}


def _one_line(text: str, limit: int = 200) -> str:
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        text = text.replace(key, "***")
    text = " ".join(_KEYISH.sub("***", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return min(RETRY_AFTER_CAP, max(0.0, float(value) * scale))
            except ValueError:
                continue  # an HTTP date: fall back to our backoff
    return None


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    # The client hands over the "error" object of the body when there is one.
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error", body)
    return err if isinstance(err, dict) else {}


def _server_message(exc: openai.APIStatusError) -> str:
    return _one_line(str(_error_body(exc).get("message") or exc.message))


class ChatAPI:
    """An OpenAI-compatible endpoint with our retries, limits and budget (one per process)."""

    def __init__(self, api_key: str, base_url: str | None, timeout: float, concurrency: int,
                 rpm: float, tpm: float) -> None:
        self.base_url = base_url
        self.url = public_url(base_url)
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url or DEFAULT_BASE_URL,
                                    max_retries=0, timeout=timeout)
        self.slots = threading.BoundedSemaphore(concurrency)
        self.requests = TokenBucket(rpm)
        self.tokens = TokenBucket(tpm)
        self.answered = False  # has the endpoint ever answered? If not, failures are fatal.

    def _fatal(self, exc: openai.APIStatusError, model: str) -> RunError:
        status, msg = exc.status_code, _server_message(exc)
        if status == 401:
            fix = "set OPENAI_API_KEY to a valid key for this endpoint"
        elif status == 403:
            fix = f"check that the key may use model {model!r}"
        elif status == 404:
            fix = f"check --model {model!r} and that --base-url ends in /v1"
        elif status == 429:
            fix = "add credit to the account, or use another key"
        else:
            fix = f"check --model {model!r} (does it take images?) and the other options"
        return RunError(f"{self.url} refused the request ({status}: {msg}); {fix}")

    def _backoff(self, attempt: int) -> float:
        return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * random.uniform(0.5, 1.0)

    def complete(self, request: dict[str, Any], cache: ResponseCache | None, ledger: Ledger,
                 max_cost: float = 0.0) -> Completion:
        """Send ``request`` (``chat.completions.create`` keyword arguments) or replay it."""
        key = ResponseCache.key(request, self.base_url) if cache is not None else ""
        if cache is not None and (hit := cache.get(key)) is not None:
            done = Completion(hit["text"], hit["prompt_tokens"], hit["completion_tokens"], True)
            ledger.add(done)
            return done
        estimate = estimate_tokens(request)
        problem = ""
        for attempt in range(MAX_TRIES):
            if max_cost and spent() >= max_cost:
                raise BudgetSpent(f"--max-cost {max_cost:g} USD spent")
            wait: float | None = None
            with self.slots:
                self.requests.take(1)
                self.tokens.take(estimate)
                try:
                    reply = self.client.chat.completions.create(**request)
                    text = reply.choices[0].message.content or ""
                    usage = reply.usage
                except openai.APIStatusError as exc:
                    code = exc.status_code
                    if code == 429 and _error_body(exc).get("code") == "insufficient_quota":
                        raise self._fatal(exc, request["model"]) from None
                    if code not in _RETRY_STATUS and code < 500:
                        raise self._fatal(exc, request["model"]) from None
                    problem = f"HTTP {code}: {_server_message(exc)}"
                    wait = _retry_after(exc)
                except openai.APITimeoutError:
                    problem = f"no reply within {self.client.timeout} s"
                except openai.APIConnectionError as exc:
                    problem = f"connection failed ({_one_line(str(exc.__cause__ or exc))})"
                except (ValueError, IndexError, AttributeError, TypeError) as exc:
                    problem = f"unreadable response ({type(exc).__name__})"
                else:
                    self.answered = True
                    done = Completion(text, usage.prompt_tokens if usage else 0,
                                      usage.completion_tokens if usage else 0, False)
                    self.tokens.settle(done.prompt_tokens + done.completion_tokens - estimate)
                    _spend(ledger.add(done))
                    if cache is not None:
                        cache.put(key, {"text": done.text, "prompt_tokens": done.prompt_tokens,
                                        "completion_tokens": done.completion_tokens})
                    return done
            if attempt + 1 < MAX_TRIES:
                time.sleep(wait if wait is not None else self._backoff(attempt))
        if not self.answered:
            raise RunError(f"no usable reply from {self.url} after {MAX_TRIES} tries (last: "
                           f"{problem}); check --base-url, that the server runs, and "
                           "--request-timeout")
        raise TeacherFailure("api_error", f"{MAX_TRIES} tries failed; last: {problem}")


def openai_api_key(option: str) -> str:
    """The key in ``OPENAI_API_KEY``; a UsageError naming ``option`` (what calls) if it is unset."""
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise UsageError(f"{option} needs an API key: set OPENAI_API_KEY (for a local server "
                         "any value works, e.g. OPENAI_API_KEY=none)")
    return key


@functools.cache
def chat_api(api_key: str, base_url: str | None, timeout: float, concurrency: int, rpm: float,
             tpm: float) -> ChatAPI:
    """The process's endpoint for these settings: its connections and limits are shared."""
    return ChatAPI(api_key, base_url, timeout, concurrency, rpm, tpm)
