"""The code tool of RL rollouts, for verl's tool registry: ``execute_python_code(code)``.

verl is not a dependency: ``CodeTool`` follows verl's ``BaseTool`` interface
(``verl/tools/base_tool.py``: ``__init__(config, tool_schema)``, async ``create`` /
``execute`` / ``calc_reward`` / ``release``) and subclasses it only when verl is importable.
Register it with ``templates/verl/tool_config.yaml``. Tested against verl 0.9.1
(``tests/verl/``).

Cells run in ``datagen.sandbox.Sandbox`` (one per process, created on first use) with the row's
image preloaded, and the reply is ``datagen.messages.observation_text`` — the formatter of the
SFT observations — so a rollout sees the text a model was trained on. Two differences come from
verl, not from us:

* verl puts a tool reply in a ``tool`` message. Chat templates of the Qwen3 / Qwen3-VL kind
  render it as a user turn ``<tool_response>\\n…\\n</tool_response>``, exactly the SFT user turn,
  when the tool returns the inner text (``wrap: false``, the default). For a template that
  shows the ``tool`` role as is, set ``wrap: true`` to send the whole ``<tool_response>`` block.
* images a cell shows go back as images; verl places them before the text, so the ``<image>``
  lines of the SFT text are dropped from the tool's text.

The image. An RL row stores its image once, in ``images``; ``create_kwargs`` names it by its
number (``{"image_index": 0}``). verl's ``RLHFDataset`` turns each ``<image>`` of the prompt into
an image part holding that image (``{"type": "image", "image": <PIL>}`` as ``datasets`` decodes
the column, or ``{"type": "image", "bytes": …}`` for raw rows), and the agent loop keeps the
prompt in the trajectory's ``AgentData.messages``, which ``execute`` receives: the tool reads
the image from there (``prompt_image``): the stored pixels, exactly, not the processor's
resized copy (a decoded image goes to the sandbox losslessly as PNG, as the embedded copy
did). An explicit ``create_kwargs={"image": …}`` (older rows, other loops) still wins; a loop
that passes no ``agent_data`` needs it.

Sessions. The SFT traces rely on state persisting across the cells of a trajectory (variables,
files in the scratch dir, ``input_image``), so the tool keeps one sandbox session per
trajectory:

* Upstream verl's ``ToolAgentLoop`` creates and releases a tool instance around every call but
  passes the trajectory's ``AgentData`` to ``execute()``. The tool keys a session by that
  object (not by its ``request_id``, which repeats across trajectories with
  ``full_determinism``), so the rollouts of one prompt never share one. The session closes
  when verl drops the ``AgentData`` (the end of the trajectory: a weakref finalizer, as verl
  has no end-of-trajectory hook for tools), when it has been idle for
  ``session_idle_timeout`` s, or, least recently used first, when more than ``max_sessions``
  are open. A session closed early starts again on the next call, with the reset of a
  timed-out cell (fresh namespace and scratch dir).
* Loops that keep the instance and call ``execute()`` without ``agent_data`` (the CodeDance
  fork of verl, SGLang rollouts) get one session per instance, closed by ``release()``.

Closing happens on a reaper thread, never in the event loop or inside a garbage collection.

Calls. The SFT traces and the system prompt write code as ``<code>`` + a ```` ```python ````
block + ``</code>``, but upstream verl's ``ToolAgentLoop`` reads calls with the parser named by
``actor_rollout_ref.rollout.multi_turn.format`` (default ``hermes``: ``<tool_call>`` JSON only),
so a model fine-tuned on the SFT set would write cells verl never runs. Importing this module
with verl present registers ``CodeToolParser`` as ``TOOL_PARSER`` ("codedance"); the tool config
imports it in time: verl's agent-loop worker loads the tools (by class path) in its
``__init__``, and the ``ToolAgentLoop`` of each trajectory, made later, looks the parser up in
its own ``__init__``. The parser reads a reply with ``datagen.messages.split_reply``, the rule
of the build and of ``datagen verify``: the code of the first ``<code>`` block, else of the
first ``execute_python_code`` ``<tool_call>`` JSON, is one call; a reply with an ``<answer>``
and no code, or with both (not a usable step), makes none, and verl ends the trajectory. The
returned content is the reply without the call's block, as verl's hermes parser does: verl
0.9.1 only stores it as the assistant message in ``AgentData.messages``, next to the call in
``tool_calls`` (so a chat template re-rendering that message shows the code once); the tokens
it trains on and continues from are the model's own, unchanged.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from datagen.messages import observation_text, split_reply
from datagen.sandbox import CellResult, Sandbox, Session

__all__ = ["TOOL_NAME", "TOOL_PARSER", "TOOL_SCHEMA", "CodeTool", "CodeToolParser", "ToolCall",
           "ToolReply", "TrajectorySessions", "image_bytes", "prompt_image", "reply_calls",
           "reply_text"]

log = logging.getLogger(__name__)

TOOL_NAME = "execute_python_code"
TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Run Python code on the input image (preloaded as `input_image`, a PIL "
                       "Image, and saved as 'input_image.jpg'). Returns stdout, errors and the "
                       "images shown with plt.show() or Image.show().",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The Python code to run."}},
            "required": ["code"],
        },
    },
}
"""The OpenAI function schema (the same as in the YAML tool config)."""

TOOL_PARSER = "codedance"
"""The name ``CodeToolParser`` is registered under: ``multi_turn.format=codedance``."""

try:  # verl's own classes when verl is installed; small stand-ins otherwise
    from verl.tools.base_tool import BaseTool as _Base  # type: ignore[import-not-found]
    from verl.tools.schemas import ToolResponse as _VerlResponse  # type: ignore[import-not-found]
except ImportError:  # verl is optional: duck-type its interface
    _Base = object
    _VerlResponse = None

# Separately: an older verl without the parser registry still gets the tool. This loads verl's
# agent-loop package (torch, ray), which a trainer's agent-loop worker has loaded already.
try:
    from verl.experimental.agent_loop.tool_parser import (  # type: ignore[import-not-found]
        FunctionCall as _VerlCall,
    )
    from verl.experimental.agent_loop.tool_parser import (  # type: ignore[import-not-found]
        ToolParser as _ParserBase,
    )
except ImportError:
    _ParserBase = object
    _VerlCall = None


@dataclass(slots=True)
class ToolReply:
    """What the tool returns when verl is absent: the fields verl's ``ToolResponse`` has."""

    text: str | None = None
    image: list[Any] | None = None
    video: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What the parser returns per call when verl is absent: the fields of verl's
    ``FunctionCall`` (``arguments`` is a JSON object string)."""

    name: str
    arguments: str


def reply_calls(text: str) -> tuple[str, list[Any]]:
    """The content and tool calls of a decoded reply, as ``CodeToolParser`` returns them: at
    most one ``execute_python_code`` call (``split_reply``'s rule; see the module docstring)
    and the reply without its block, or the whole reply and no call."""
    step, content = split_reply(text)
    if step.code is None:
        return text, []
    make = _VerlCall if _VerlCall is not None else ToolCall
    arguments = json.dumps({"code": step.code}, ensure_ascii=False)
    return content, [make(name=TOOL_NAME, arguments=arguments)]


class CodeToolParser(_ParserBase):  # type: ignore[misc, valid-type]
    """verl's tool-call parser for the SFT format (``multi_turn.format=codedance``): reads both
    ``<code>`` blocks and ``<tool_call>`` JSON of ``execute_python_code``, one call per reply.

    A subclass of verl's ``ToolParser`` when verl has one (registered on import), a plain class
    otherwise. No extra stop tokens: the SFT turns end with the end-of-turn token after
    ``</code>``, as Qwen-style models end a hermes call.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer  # all that verl's ToolParser.__init__ does

    async def extract_tool_calls(self, responses_ids: list[int],
                                 tools: list[Any] | None = None) -> tuple[str, list[Any]]:
        """``(content, calls)`` of the generated ids; ``tools`` is not needed (one tool)."""
        # Decoded as verl's hermes parser does: special tokens kept, off the event loop.
        text = await asyncio.get_running_loop().run_in_executor(None, self.tokenizer.decode,
                                                                responses_ids)
        return reply_calls(text)


if _ParserBase is not object:
    _ParserBase.register(TOOL_PARSER)(CodeToolParser)


def image_bytes(image: Any) -> bytes:
    """Encoded bytes of an image as verl hands it over: a ``{bytes, path}`` dict, a PIL image,
    raw bytes or a file path."""
    if isinstance(image, Mapping):
        if image.get("bytes"):
            return bytes(image["bytes"])
        if image.get("path"):
            with open(image["path"], "rb") as fh:
                return fh.read()
        raise ValueError("the image dict has neither bytes nor path")
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str):
        with open(image, "rb") as fh:
            return fh.read()
    if hasattr(image, "save"):  # PIL
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def prompt_image(messages: Any, index: int) -> bytes:
    """The bytes of image number ``index`` of a prompt as verl's ``RLHFDataset`` builds it:
    the ``index``-th image part (``{"type": "image", "bytes": …}`` or ``{"type": "image",
    "image": …}``) over the messages' content lists. Raises ValueError when there is none."""
    seen = 0
    for message in messages or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str) or not content:
            continue
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "image":
                continue
            if seen == index:
                if part.get("bytes"):  # the stored file, as RLHFDataset keeps it
                    return bytes(part["bytes"])
                return image_bytes(part["image"] if part.get("image") is not None else part)
            seen += 1
    raise ValueError(f"{TOOL_NAME}: the prompt has {seen} image part(s), no image number "
                     f"{index} (create_kwargs.image_index); is the RL set's images column "
                     "loaded (data.image_key)?")


def reply_text(result: CellResult, wrap: bool = False) -> str:
    """The tool's text for one cell: the SFT observation, without ``<image>`` lines (images go
    back as images) and, unless ``wrap``, without the ``<tool_response>`` lines."""
    lines = observation_text(result).split("\n")
    lines = [line for line in lines if line != "<image>"]
    if not wrap:
        lines = lines[1:-1]  # the template's first and last lines are the tags
    return "\n".join(lines)


# -- sessions per trajectory --------------------------------------------------------------------

@dataclass(eq=False, slots=True)
class _Trajectory:
    """One trajectory's session. ``lock`` orders its cells (verl may run a turn's calls in
    parallel) and keeps a close from cutting into a cell."""

    key: Any
    label: str
    image: bytes
    ref: Callable[[], Any]  # the trajectory's AgentData (weakly) or a constant
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: Session | None = None
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # calls between get() and the end of run(); never reaped while > 0
    closed: bool = False
    finalizer: weakref.finalize | None = None


class TrajectorySessions:
    """Sandbox sessions keyed by trajectory, closed when the trajectory ends (its
    ``AgentData`` is garbage), when idle for ``idle_timeout`` s, or, least recently used
    first, beyond ``max_sessions``.

    ``open_session(image)`` makes a session. ``get`` is cheap and called in the event loop;
    ``run`` blocks and belongs in a worker thread. Thread-safe. Sessions are closed by a
    daemon reaper thread: finalizers only enqueue (``SimpleQueue.put`` is safe inside a
    garbage collection), so a close never runs in the event loop or under our lock.
    """

    def __init__(self, open_session: Callable[[bytes], Session], idle_timeout: float = 900.0,
                 max_sessions: int = 1024) -> None:
        if idle_timeout <= 0 or max_sessions < 1:
            raise ValueError("session_idle_timeout must be positive and max_sessions at least 1")
        self._open = open_session
        self.idle_timeout = float(idle_timeout)
        self.max_sessions = int(max_sessions)
        self._lock = threading.Lock()
        self._entries: dict[Any, _Trajectory] = {}
        self._to_close: queue.SimpleQueue[_Trajectory | None] = queue.SimpleQueue()
        self._reaper: threading.Thread | None = None
        # How sessions ended, for tests and logs.
        self.closed_ended = self.closed_idle = self.closed_evicted = 0

    def __len__(self) -> int:
        """Trajectories holding a session (or about to open one)."""
        with self._lock:
            return len(self._entries)

    def get(self, agent_data: Any, image: bytes) -> _Trajectory:
        """The trajectory's entry, made on its first call with ``image`` and marked busy until
        its ``run`` ends. The session itself opens in ``run``."""
        label = str(getattr(agent_data, "request_id", "") or id(agent_data))
        try:
            ref: Callable[[], Any] = weakref.ref(agent_data)
            key: Any = id(agent_data)
        except TypeError:  # not weak-referenceable: only the idle timeout can end it
            ref, key = (lambda: agent_data), ("request_id", label)
        dropped: list[_Trajectory] = []
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.ref() is not agent_data:
                # The id of a dead AgentData, reused before the reaper got to its entry.
                self._forget(entry)
                self.closed_ended += 1
                dropped.append(entry)
                entry = None
            if entry is None:
                entry = _Trajectory(key, label, image, ref)
                if isinstance(ref, weakref.ref):
                    entry.finalizer = weakref.finalize(agent_data, self._to_close.put, entry)
                    entry.finalizer.atexit = False
                self._entries[key] = entry
                dropped += self._over_limit()
            entry.busy += 1
            entry.last_used = time.monotonic()
            self._start_reaper()
        for old in dropped:
            self._to_close.put(old)
        return entry

    def _over_limit(self) -> list[_Trajectory]:
        """Forget the least recently used idle entries beyond ``max_sessions`` (caller holds
        the lock); returns them, to be closed."""
        extra = len(self._entries) - self.max_sessions
        if extra <= 0:
            return []
        oldest = sorted((e for e in self._entries.values() if e.busy == 0),
                        key=lambda e: e.last_used)[:extra]
        for e in oldest:
            log.warning("verl tool: closing the session of trajectory %s (idle %.0f s) to keep "
                        "at most max_sessions=%d open; its next call starts a fresh one",
                        e.label, time.monotonic() - e.last_used, self.max_sessions)
            self._forget(e)
            self.closed_evicted += 1
        return oldest

    def _forget(self, entry: _Trajectory) -> bool:
        """Take ``entry`` out of the table (caller holds the lock); False if it was not in."""
        if entry.finalizer is not None:
            entry.finalizer.detach()
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            return True
        return False

    def run(self, entry: _Trajectory, code: str, timeout: float) -> CellResult:
        """Run one cell in the trajectory's session (blocking), then clear the busy mark."""
        try:
            with entry.lock:
                if entry.closed:  # only after close(): the tool is shutting down
                    raise RuntimeError(f"{TOOL_NAME}: the tool's sessions were closed")
                if entry.session is None:
                    entry.session = self._open(entry.image)
                return entry.session.run(code, timeout)
        finally:
            with self._lock:
                entry.busy -= 1
                entry.last_used = time.monotonic()

    def _start_reaper(self) -> None:
        """Start the reaper thread unless it runs (caller holds the lock)."""
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_loop, daemon=True,
                                            name="datagen-verl-tool-reaper")
            self._reaper.start()

    def _reap_loop(self) -> None:
        # Wakes at once for an ended trajectory, and a few times per idle timeout to sweep.
        interval = max(0.05, min(30.0, self.idle_timeout / 4))
        while True:
            try:
                entry = self._to_close.get(timeout=interval)
            except queue.Empty:
                entry = None
            else:
                if entry is None:  # close() asks us to stop
                    return
                with self._lock:
                    if self._forget(entry):  # still listed: its AgentData just died
                        self.closed_ended += 1
                self._close_quietly(entry)
            self._reap_idle()

    def _reap_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            idle = [e for e in self._entries.values()
                    if e.busy == 0 and now - e.last_used > self.idle_timeout]
            for e in idle:
                self._forget(e)
                self.closed_idle += 1
        for e in idle:
            self._close_quietly(e)

    def _close_quietly(self, entry: _Trajectory) -> None:
        try:
            with entry.lock:
                entry.closed = True
                session, entry.session = entry.session, None
            if session is not None:
                session.close()
        except Exception:  # the reaper must outlive one bad close
            log.exception("verl tool: closing the session of trajectory %s failed", entry.label)

    def close(self) -> None:
        """Close every session now (waiting for cells that run) and stop the reaper."""
        with self._lock:
            entries = list(self._entries.values())
            for e in entries:
                self._forget(e)
            reaper, self._reaper = self._reaper, None
        for e in entries:
            self._close_quietly(e)
        if reaper is not None:
            self._to_close.put(None)
            reaper.join(timeout=60.0)


# -- the tool -----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Instance:
    """One ``create``/``release`` pair: the row's image and, without ``agent_data``, a session."""

    image: bytes | None
    image_index: int = 0
    session: Session | None = None
    calls: int = 0
    ok_calls: int = 0
    results: list[CellResult] = field(default_factory=list)


class CodeTool(_Base):  # type: ignore[misc, valid-type]
    """``execute_python_code`` for verl: one sandbox session per trajectory (see the module
    docstring), the SFT observation as the reply.

    ``config`` keys (from the YAML): ``timeout`` (s per cell, default 15), ``memory_mb``
    (default 4096), ``wrap`` (see the module docstring, default false), ``sandbox_mode``
    ("auto", "bwrap" or "process"), ``session_idle_timeout`` (s, default 900) and
    ``max_sessions`` (default 1024). ``sandbox``: run in this one instead of the process-wide
    sandbox (verl never passes it).
    """

    _sandbox: Sandbox | None = None
    _sandbox_lock = threading.Lock()

    def __init__(self, config: dict[str, Any] | None = None, tool_schema: Any = None,
                 sandbox: Sandbox | None = None) -> None:
        self.config = dict(config or {})
        self._own_sandbox = sandbox  # None: the process-wide one, made on first use
        if tool_schema is None and _VerlResponse is not None:
            from verl.tools.schemas import OpenAIFunctionToolSchema  # type: ignore[import-not-found]

            tool_schema = OpenAIFunctionToolSchema.model_validate(TOOL_SCHEMA)
        self.tool_schema = tool_schema if tool_schema is not None else TOOL_SCHEMA
        self.name = TOOL_NAME
        self.timeout = float(self.config.get("timeout", 15.0))
        self.wrap = bool(self.config.get("wrap", False))
        self._instances: dict[str, _Instance] = {}
        self.trajectories = TrajectorySessions(
            self._open_session,
            idle_timeout=float(self.config.get("session_idle_timeout", 900.0)),
            max_sessions=int(self.config.get("max_sessions", 1024)))

    def get_openai_tool_schema(self) -> Any:
        """The tool's OpenAI function schema."""
        return self.tool_schema

    def _get_sandbox(self) -> Sandbox:
        if self._own_sandbox is not None:
            return self._own_sandbox
        # One sandbox per process (warm jails); tools in the same process share it.
        with CodeTool._sandbox_lock:
            if CodeTool._sandbox is None:
                CodeTool._sandbox = Sandbox(timeout=self.timeout,
                                            memory_mb=int(self.config.get("memory_mb", 4096)),
                                            mode=str(self.config.get("sandbox_mode", "auto")))
            return CodeTool._sandbox

    def _open_session(self, image: bytes) -> Session:
        return self._get_sandbox().session(image)

    def _reply(self, text: str, images: list[Any] | None = None) -> Any:
        # verl 0.9.1's ToolResponse rejects image=None: leave the field out when there is none.
        if _VerlResponse is not None:
            return _VerlResponse(text=text, image=images) if images else _VerlResponse(text=text)
        return ToolReply(text=text, image=images or None)

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        """Take the row's image: ``create_kwargs={"image_index": n}`` (the prompt's image
        number n, read in ``execute`` from the trajectory's messages) or an explicit
        ``create_kwargs={"image": …}`` / ``image=…``; returns ``(instance_id, empty reply)`` as
        verl's tool agent loop expects. No session starts here: upstream verl calls this
        around every call, and the trajectory's session is found in ``execute``."""
        instance_id = instance_id or uuid4().hex
        params = dict(kwargs.get("create_kwargs") or {})
        image = params.get("image", kwargs.get("image"))
        index = params.get("image_index")
        if image is None and not isinstance(index, int):
            raise ValueError(f"{TOOL_NAME}: no image and no image_index in create_kwargs "
                             f"(extra_info.tools_kwargs.{TOOL_NAME}.create_kwargs)")
        self._instances[instance_id] = _Instance(
            None if image is None else image_bytes(image), int(index or 0))
        return instance_id, self._reply("")

    async def execute(self, instance_id: str, parameters: dict[str, Any],
                      agent_data: Any = None, **kwargs: Any) -> tuple[Any, float, dict[str, Any]]:
        """Run ``parameters["code"]`` in the trajectory's session (``agent_data``, as upstream
        verl passes it) or else in the instance's; returns (reply, step reward 0.0, metrics)."""
        instance = self._instances.get(instance_id)
        if instance is None:
            raise KeyError(f"{TOOL_NAME}: unknown instance {instance_id!r} (create() first)")
        code = parameters.get("code")
        if not isinstance(code, str) or not code.strip():
            return self._reply("Execution error: ValueError: no code given"), 0.0, \
                {"success": False}
        if agent_data is not None:
            image = instance.image
            if image is None:
                image = prompt_image(getattr(agent_data, "messages", None), instance.image_index)
            entry = self.trajectories.get(agent_data, image)
            result = await asyncio.to_thread(self.trajectories.run, entry, code, self.timeout)
        else:
            result = await asyncio.to_thread(self._run_in_instance, instance, code)
        instance.calls += 1
        instance.ok_calls += result.status == "ok"
        instance.results.append(result)
        images = [_pil(png) for png in result.images]
        metrics = {"success": result.status == "ok", "status": result.status,
                   "seconds": result.seconds}
        return self._reply(reply_text(result, self.wrap), images), 0.0, metrics

    def _run_in_instance(self, instance: _Instance, code: str) -> CellResult:
        if instance.image is None:
            raise ValueError(f"{TOOL_NAME}: no agent_data to read the prompt's image from; a "
                             "loop that passes none must give create_kwargs={'image': …}")
        if instance.session is None:
            instance.session = self._open_session(instance.image)
        return instance.session.run(code, self.timeout)

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """Share of this instance's calls that ran cleanly (0.0 before any call)."""
        instance = self._instances.get(instance_id)
        if instance is None or instance.calls == 0:
            return 0.0
        return instance.ok_calls / instance.calls

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Forget the instance and close its own session, if it has one; a trajectory's
        session outlives the call (see the module docstring)."""
        instance = self._instances.pop(instance_id, None)
        if instance is not None and instance.session is not None:
            await asyncio.to_thread(instance.session.close)

    def close(self) -> None:
        """Close every session this tool holds (trajectories' and instances'), now."""
        self.trajectories.close()
        for instance in list(self._instances.values()):
            if instance.session is not None:
                instance.session.close()
                instance.session = None


def _pil(png: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    return image
