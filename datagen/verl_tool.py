"""The code tool of RL rollouts, for verl's tool registry: ``execute_python_code(code)``.

verl is not a dependency: ``CodeTool`` follows verl's ``BaseTool`` interface
(``verl/tools/base_tool.py``: ``__init__(config, tool_schema)``, async ``create`` /
``execute`` / ``calc_reward`` / ``release``) and subclasses it only when verl is importable.
Register it with ``templates/verl/tool_config.yaml``.

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

Upstream verl's tool agent loop creates and releases one instance per call, so variables do not
persist from one call to the next there (each call sees a fresh ``input_image``); loops that keep
the instance (the CodeDance fork, SGLang rollouts) get the persistent session of the SFT traces.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from datagen.messages import observation_text
from datagen.sandbox import CellResult, Sandbox, Session

__all__ = ["TOOL_NAME", "TOOL_SCHEMA", "CodeTool", "ToolReply", "image_bytes", "reply_text"]

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

try:  # verl's own classes when verl is installed; small stand-ins otherwise
    from verl.tools.base_tool import BaseTool as _Base  # type: ignore[import-not-found]
    from verl.tools.schemas import ToolResponse as _VerlResponse  # type: ignore[import-not-found]
except ImportError:  # verl is optional: duck-type its interface
    _Base = object
    _VerlResponse = None


@dataclass(slots=True)
class ToolReply:
    """What the tool returns when verl is absent: the fields verl's ``ToolResponse`` has."""

    text: str | None = None
    image: list[Any] | None = None
    video: list[Any] | None = None


@dataclass(slots=True)
class _Instance:
    session: Session
    calls: int = 0
    ok_calls: int = 0
    results: list[CellResult] = field(default_factory=list)


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


def reply_text(result: CellResult, wrap: bool = False) -> str:
    """The tool's text for one cell: the SFT observation, without ``<image>`` lines (images go
    back as images) and, unless ``wrap``, without the ``<tool_response>`` lines."""
    lines = observation_text(result).split("\n")
    lines = [line for line in lines if line != "<image>"]
    if not wrap:
        lines = lines[1:-1]  # the template's first and last lines are the tags
    return "\n".join(lines)


class CodeTool(_Base):  # type: ignore[misc, valid-type]
    """``execute_python_code`` for verl: one sandbox session per tool instance.

    ``config`` keys (from the YAML): ``timeout`` (s per cell, default 15), ``memory_mb``
    (default 4096), ``wrap`` (see the module docstring, default false), ``sandbox_mode``
    ("auto", "bwrap" or "process"). ``sandbox``: run in this one instead of the process-wide
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

    def _reply(self, text: str, images: list[Any] | None = None) -> Any:
        if _VerlResponse is not None:
            return _VerlResponse(text=text, image=images or None)
        return ToolReply(text=text, image=images or None)

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        """Start a session on the row's image (``create_kwargs={"image": …}`` or ``image=…``);
        returns ``(instance_id, empty reply)`` as verl's tool agent loop expects."""
        instance_id = instance_id or uuid4().hex
        params = dict(kwargs.get("create_kwargs") or {})
        image = params.get("image", kwargs.get("image"))
        if image is None:
            raise ValueError(f"{TOOL_NAME}: no image in create_kwargs (extra_info.tools_kwargs."
                             f"{TOOL_NAME}.create_kwargs.image)")
        data = image_bytes(image)
        sandbox = self._get_sandbox()
        session = await asyncio.to_thread(sandbox.session, data)
        self._instances[instance_id] = _Instance(session)
        return instance_id, self._reply("")

    async def execute(self, instance_id: str, parameters: dict[str, Any],
                      **kwargs: Any) -> tuple[Any, float, dict[str, Any]]:
        """Run ``parameters["code"]``; returns (reply, step reward 0.0, metrics)."""
        instance = self._instances[instance_id]
        code = parameters.get("code")
        if not isinstance(code, str) or not code.strip():
            return self._reply("Execution error: ValueError: no code given"), 0.0, \
                {"success": False}
        result = await asyncio.to_thread(instance.session.run, code, self.timeout)
        instance.calls += 1
        instance.ok_calls += result.status == "ok"
        instance.results.append(result)
        images = [_pil(png) for png in result.images]
        metrics = {"success": result.status == "ok", "status": result.status,
                   "seconds": result.seconds}
        return self._reply(reply_text(result, self.wrap), images), 0.0, metrics

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """Share of this instance's calls that ran cleanly (0.0 before any call)."""
        instance = self._instances.get(instance_id)
        if instance is None or instance.calls == 0:
            return 0.0
        return instance.ok_calls / instance.calls

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Close the instance's session (its worker and scratch dir go away)."""
        instance = self._instances.pop(instance_id, None)
        if instance is not None:
            await asyncio.to_thread(instance.session.close)


def _pil(png: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    return image
