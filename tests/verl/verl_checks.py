"""The code tool and the reward inside upstream verl 0.9.1, with verl's own classes.

Runs in the venv of ``tests/verl/requirements.txt`` (``test_upstream_verl.py`` starts it with
the checkout on PYTHONPATH and a built RL set in ``DATAGEN_RL_SET``); never collected by the
project's own pytest run, which has no verl. Everything comes from the README's verl command:
its overrides are composed with verl's own ``ppo_trainer`` config, the RL parquet is read by
verl's ``RLHFDataset``, the tools are made by ``initialize_tools_from_config``, calls are read
by the parser the README names (``multi_turn.format``) and go through ``ToolAgentLoop._call_tool``
of a loop built by its own ``__init__`` (with a byte-level tokenizer made here, so no model is
downloaded), whole SFT trajectories go through ``ToolAgentLoop.run`` with a scripted LLM server,
and the reward is loaded by ``get_custom_reward_fn``. The SFT side of each comparison is a plain
``Sandbox`` session on the row's published image, formatted by ``observation_text``, as
``datagen build`` does, or a built SFT row (``DATAGEN_SFT_ROW``, made by the caller).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import io
import json
import os
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pyarrow.parquet as pq
import pytest
import verl
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from verl.experimental.agent_loop.agent_loop import (
    DictConfigWrap,
    ToolListWrap,
    _agent_loop_registry,
)
from verl.experimental.agent_loop.tool_agent_loop import AgentData, ToolAgentLoop
from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
from verl.tools.schemas import ToolResponse
from verl.tools.tool_registry import initialize_tools_from_config
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from datagen.messages import assistant_text, observation_text
from datagen.records import Step
from datagen.sandbox import Sandbox
from datagen.verl_tool import TOOL_NAME, TOOL_PARSER, CodeTool, CodeToolParser

CHECKOUT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("DATAGEN_RL_SET", "/nonexistent"))
REPORT = os.environ.get("DATAGEN_VERL_REPORT")
SFT_ROW = Path(os.environ.get("DATAGEN_SFT_ROW", "/nonexistent"))
PARQUET = "data/rl-00000-of-00001.parquet"


# -- the README's command, composed with verl's config -------------------------------------------

def readme_command() -> tuple[dict[str, str], list[str]]:
    """The README's verl block: its ``NAME=$(python -c ...)`` lines and the overrides of its
    ``python -m verl.trainer.main_ppo`` line (``...`` dropped)."""
    text = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", text, re.DOTALL)
    (block,) = [b for b in blocks if "python -m verl.trainer.main_ppo" in b]
    joined = block.replace("\\\n", " ")
    variables: dict[str, str] = {}
    overrides: list[str] = []
    for line in joined.splitlines():
        if m := re.fullmatch(r"(\w+)=\$\(python -c (.+)\)", line.strip()):
            (code,) = shlex.split(m.group(2))
            variables[m.group(1)] = code
        elif "verl.trainer.main_ppo" in line:
            words = shlex.split(line)
            assert words[:3] == ["python", "-m", "verl.trainer.main_ppo"], line
            overrides = [w for w in words[3:] if w != "..."]
    assert variables and overrides, "README: no verl command block"
    return variables, overrides


def resolve(overrides: list[str], variables: dict[str, str]) -> list[str]:
    """Overrides with ``$NAME`` run as the README runs it (in this env) and the placeholders
    OUT / VAL / MODEL filled in."""
    values = {name: subprocess.run([sys.executable, "-c", code], check=True, text=True,
                                   capture_output=True).stdout.strip()
              for name, code in variables.items()}
    resolved = []
    for item in overrides:
        for name, value in values.items():
            item = item.replace(f"${name}", value)
        item = re.sub(r"=(OUT|VAL)/", f"={OUT}/", item)
        resolved.append(item.replace("=MODEL", "=Qwen/Qwen3-VL-8B-Instruct"))
    return resolved


@pytest.fixture(scope="module")
def config() -> DictConfig:
    """verl's ppo_trainer config with the README's overrides (an unknown key fails here)."""
    variables, overrides = readme_command()
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose("ppo_trainer", overrides=resolve(overrides, variables))


class _AnyProcessor:
    """RLHFDataset only checks that a processor is set before it splits ``<image>`` into
    content parts; nothing of a model processor reaches the tool."""


@pytest.fixture(scope="module")
def rows(config: DictConfig, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The RL rows as verl's RLHFDataset hands them to the agent loop."""
    data = copy.deepcopy(config).data
    with open_dict(data):  # no model here to count prompt tokens with
        data.filter_overlong_prompts = False
        data.cache_dir = str(tmp_path_factory.mktemp("verl"))
    dataset = RLHFDataset(data_files=config.data.train_files, tokenizer=None, config=data,
                          processor=_AnyProcessor())
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture(scope="module")
def published_images() -> list[bytes]:
    """The input image of every row as the parquet holds it (what the SFT build ran on)."""
    table = pq.read_table(OUT / PARQUET, columns=["images"]).to_pylist()
    return [row["images"][0]["bytes"] for row in table]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE without merges: encodes and decodes any text exactly."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


# The parts of Qwen's ChatML template a text rollout uses (Qwen2.5 / Qwen3 without their
# think handling): a tool message becomes a user turn <tool_response>\n…\n</tool_response>,
# as Qwen3-VL's template renders it; a content list (the prompt as RLHFDataset builds it) is
# its text parts with "<image>" where each image part was split from.
CHATML = (
    "{%- for message in messages %}"
    "{%- if message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}"
    "{{- '<|im_end|>\n' }}{%- endif %}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}"
    "{{- '<|im_start|>assistant' }}{%- if message.content %}{{- '\n' + message.content }}"
    "{%- endif %}{%- for call in message.tool_calls %}"
    "{{- '\n<tool_call>\n{\"name\": \"' + call.function.name + '\", \"arguments\": ' }}"
    "{{- call.function.arguments | tojson }}{{- '}\n</tool_call>' }}{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- elif message.content is string %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\n' }}"
    "{%- for part in message.content %}"
    "{%- if part.type == 'text' %}{{- part.text }}{%- else %}{{- '<' + part.type + '>' }}"
    "{%- endif %}{%- endfor %}{{- '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level tokenizer with a Qwen-style chat template (``CHATML``)."""
    tok = byte_tokenizer()
    tok.chat_template = CHATML
    return tok


def make_loop(config: DictConfig, tool_config_path: str, **kwargs: Any) -> ToolAgentLoop:
    """A ToolAgentLoop built by its own __init__, as verl's agent loop worker builds one
    (``kwargs``: another server_manager, tokenizer or hf_model_type)."""
    tools = initialize_tools_from_config(tool_config_path)
    parts: dict[str, Any] = {"server_manager": None, "tokenizer": byte_tokenizer(), **kwargs}
    return ToolAgentLoop(trainer_config=DictConfigWrap(config), processor=None,
                         dataset_cls=RLHFDataset, data_config=DictConfigWrap(config.data),
                         tools=ToolListWrap(tools), **parts)


@pytest.fixture(scope="module")
def loop(config: DictConfig) -> Iterator[ToolAgentLoop]:
    built = make_loop(config, config.actor_rollout_ref.rollout.multi_turn.tool_config_path)
    yield built
    built.tools[TOOL_NAME].close()


@pytest.fixture(scope="module")
def sft_sandbox() -> Iterator[Sandbox]:
    """The sandbox of the SFT build (``datagen build`` makes it with timeout=cell_timeout)."""
    with Sandbox(timeout=15.0) as sandbox:
        yield sandbox


def trajectory(loop: ToolAgentLoop, row: dict[str, Any], priority: int = 0) -> AgentData:
    """The AgentData ToolAgentLoop.run makes for one rollout of ``row``."""
    request_id = loop._make_request_id(priority, loop.rollout_config.full_determinism)
    return AgentData(messages=list(row["raw_prompt"]), image_data=None, video_data=None,
                     audio_data=None, mm_processor_kwargs=None, metrics={},
                     request_id=request_id, tools_kwargs=row["tools_kwargs"])


def model_turn(code: str, hermes: bool = False) -> str:
    """An assistant turn running ``code``: the SFT format (``assistant_text``, as the build
    writes it) or a hermes ``<tool_call>``."""
    if hermes:
        call = json.dumps({"name": TOOL_NAME, "arguments": {"code": code}})
        return f"<think>Run it.</think>\n<tool_call>{call}</tool_call>"
    return assistant_text(Step(think="Run it.", code=code))


async def call(loop: ToolAgentLoop, agent_data: AgentData, code: str,
               hermes: bool = False) -> ToolResponse:
    """One model turn calling the tool: the loop's parser (the README's format) reads the call
    from the model's tokens, then ``_call_tool`` runs it, as ``_handle_processing_tools_state``
    does."""
    turn = model_turn(code, hermes)
    schemas = [tool.tool_schema for tool in loop.tools.values()]
    ids = loop.tokenizer.encode(turn, add_special_tokens=False)
    _, (function_call,) = await loop.tool_parser.extract_tool_calls(ids, schemas)
    response, _, _ = await loop._call_tool(function_call, agent_data.tools_kwargs, agent_data)
    return response


def sft_texts(sandbox: Sandbox, image: bytes, cells: list[str],
              timeout: float | None = None) -> list[str]:
    """The SFT observations of ``cells`` run in one session on ``image``."""
    with sandbox.session(image) as session:
        return [observation_text(session.run(cell, timeout)) for cell in cells]


def as_sft(response: ToolResponse) -> str:
    """The user turn a Qwen3-style chat template makes of the tool message (``wrap: false``),
    with the ``<image>`` lines of the SFT text (images only come with a clean run, after its
    output)."""
    assert response.text is not None
    lines = [*response.text.split("\n"), *["<image>"] * len(response.image or [])]
    return "\n".join(["<tool_response>", *lines, "</tool_response>"])


# -- the checks ------------------------------------------------------------------------------------

def test_the_readme_command_is_what_verl_reads(config: DictConfig, rows: list[dict[str, Any]],
                                              loop: ToolAgentLoop) -> None:
    import importlib.util

    assert importlib.util.find_spec("verl.trainer.main_ppo") is not None
    assert verl.__version__ == "0.9.1"
    multi_turn = config.actor_rollout_ref.rollout.multi_turn
    assert multi_turn.enable and Path(multi_turn.tool_config_path).is_file()
    # The SFT traces' call format, registered when the tool config imported datagen.verl_tool.
    assert multi_turn.format == TOOL_PARSER and isinstance(loop.tool_parser, CodeToolParser)
    assert Path(config.reward.custom_reward_function.path).is_file()
    assert rows and {row["agent_name"] for row in rows} == {"tool_agent"}
    assert "tool_agent" in _agent_loop_registry
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "tool_agent"
    assert list(loop.tools) == [TOOL_NAME] and isinstance(loop.tools[TOOL_NAME], CodeTool)
    # The longest observation: stdout, stderr and error message capped at 10,000 chars each.
    assert loop.max_tool_response_length >= 3 * 10_000 + 200
    # Each row stores its image once: the tool is told its number, and the prompt's image part
    # (RLHFDataset's: the image as datasets decoded it) is what the tool reads from the
    # trajectory (the session tests below compare its pixels with the SFT sandbox's).
    assert all(row["tools_kwargs"][TOOL_NAME]["create_kwargs"] == {"image_index": 0}
               for row in rows)
    parts = [part for row in rows for message in row["raw_prompt"]
             if not isinstance(message["content"], str) for part in message["content"]
             if part["type"] == "image"]
    assert len(parts) == len(rows)
    assert all(isinstance(part.get("image"), Image.Image) or part.get("bytes") for part in parts)


def test_calls_of_one_trajectory_share_the_sft_session(loop: ToolAgentLoop, sft_sandbox: Sandbox,
                                                      rows: list[dict[str, Any]],
                                                      published_images: list[bytes]) -> None:
    cells = ["import hashlib, os\nvals = [v * 2 for v in range(3)]\n"
             "open('notes.txt', 'w').write('measured')\n"
             "print(input_image.size, hashlib.md5(input_image.tobytes()).hexdigest())",
             "print(vals[-1] + 1, open('notes.txt').read(), sorted(os.listdir('.')))",
             "x = 1/0"]
    for index in (0, len(rows) - 1):  # a chart (PNG) and a search scene (JPEG)
        agent = trajectory(loop, rows[index])

        async def run(agent: AgentData = agent) -> list[ToolResponse]:
            return [await call(loop, agent, cell) for cell in cells]

        responses = asyncio.run(run())
        assert all(isinstance(r, ToolResponse) for r in responses)
        assert [as_sft(r) for r in responses] == sft_texts(sft_sandbox, published_images[index],
                                                          cells)
        assert "5 measured ['input_image.jpg', 'notes.txt']" in responses[1].text
        assert responses[2].text.startswith("Execution error: ZeroDivisionError")


def test_rollouts_of_one_prompt_do_not_share_state(loop: ToolAgentLoop,
                                                   rows: list[dict[str, Any]]) -> None:
    a, b = trajectory(loop, rows[0]), trajectory(loop, rows[0])

    async def run() -> list[ToolResponse]:  # hermes calls: the same parser reads both formats
        await call(loop, a, "secret = 'a'; open('a.txt', 'w').write('a')", hermes=True)
        return [await call(loop, b, "import os; print(sorted(os.listdir('.')))", hermes=True),
                await call(loop, b, "print(secret)", hermes=True),
                await call(loop, a, "print(secret)", hermes=True)]

    listing, b_secret, a_secret = asyncio.run(run())
    assert listing.text.endswith("\n['input_image.jpg']")
    assert b_secret.text.startswith("Execution error: NameError: name 'secret' is not defined")
    assert a_secret.text.endswith("\na")


def test_a_shown_image_comes_back_as_an_image_verl_accepts(loop: ToolAgentLoop,
                                                          sft_sandbox: Sandbox,
                                                          rows: list[dict[str, Any]],
                                                          published_images: list[bytes]) -> None:
    cell = "view = input_image.crop((0, 0, 96, 64))\nprint(view.size)\nview.show()"
    response = asyncio.run(call(loop, trajectory(loop, rows[0]), cell))
    assert isinstance(response, ToolResponse) and len(response.image) == 1
    with sft_sandbox.session(published_images[0]) as session:
        result = session.run(cell)
    (png,) = result.images
    shown = response.image[0]
    assert shown.size == (96, 64) and shown.tobytes() == Image.open(io.BytesIO(png)).tobytes()
    assert as_sft(response) == observation_text(result)
    # A text-only reply leaves the image field out (verl 0.9.1 rejects image=None).
    text_only = asyncio.run(call(loop, trajectory(loop, rows[0]), "print(1)"))
    assert text_only.image is None and text_only.text.endswith("\n1")


def test_timeout_and_crash_read_like_the_sft_observations(config: DictConfig, tmp_path: Path,
                                                          sft_sandbox: Sandbox,
                                                          rows: list[dict[str, Any]],
                                                          published_images: list[bytes]) -> None:
    # The shipped tool config, with a 2 s cell timeout instead of 15 s to keep the test short.
    shipped = Path(config.actor_rollout_ref.rollout.multi_turn.tool_config_path)
    tool_config = yaml.safe_load(shipped.read_text())
    tool_config["tools"][0]["config"]["timeout"] = 2
    path = tmp_path / "tool_config.yaml"
    path.write_text(yaml.safe_dump(tool_config))
    short = make_loop(config, str(path))
    cells = ["x = 1\nwhile True:\n    pass", "print('x' in dir(), input_image.size)",
             "x = 2\nimport os\nos._exit(3)", "print('x' in dir(), input_image.size)"]
    try:
        agent = trajectory(short, rows[0])

        async def run() -> list[ToolResponse]:
            return [await call(short, agent, cell) for cell in cells]

        responses = asyncio.run(run())
    finally:
        short.tools[TOOL_NAME].close()
    expected = sft_texts(sft_sandbox, published_images[0], cells, timeout=2.0)
    assert [as_sft(r) for r in responses] == expected
    assert responses[0].text.startswith("Execution error: TimeoutError: ")
    assert responses[2].text.startswith("Execution error: Crashed: ")
    # Both reset the session, as in the SFT traces: no x, input_image reloaded.
    size = Image.open(io.BytesIO(published_images[0])).size
    assert responses[1].text.endswith(f"\nFalse {size}")
    assert responses[3].text.endswith(f"\nFalse {size}")


def test_fifty_trajectories_at_once_each_see_only_their_own_state(
        loop: ToolAgentLoop, rows: list[dict[str, Any]]) -> None:
    tool: CodeTool = loop.tools[TOOL_NAME]
    rng = random.Random(7)
    agents = [trajectory(loop, rows[i % len(rows)], priority=i) for i in range(50)]
    secrets = [uuid4().hex for _ in agents]
    peak = 0

    async def one(agent: AgentData, secret: str) -> str:
        nonlocal peak
        await call(loop, agent, f"secret = {secret!r}\nopen('mine.txt', 'w').write(secret)")
        peak = max(peak, len(tool.trajectories))
        await asyncio.sleep(rng.random() * 0.5)  # let other trajectories' calls interleave
        response = await call(loop, agent, "import os\nprint(secret, open('mine.txt').read(), "
                                            "len(os.listdir('.')))")
        return response.text or ""

    async def run(batch: list[AgentData]) -> list[str]:
        return await asyncio.gather(*[one(a, s) for a, s in zip(batch, secrets, strict=True)])

    start = time.monotonic()
    texts = asyncio.run(run(agents))
    seconds = time.monotonic() - start
    own = sum(t.endswith(f"\n{s} {s} 2") for t, s in zip(texts, secrets, strict=True))
    foreign = sum(any(o in t for o in secrets if o != s)
                  for t, s in zip(texts, secrets, strict=True))
    open_before = len(tool.trajectories)
    agents.clear()  # the rollouts end: verl lets go of their AgentData
    gc.collect()
    deadline = time.monotonic() + 30
    while len(tool.trajectories) and time.monotonic() < deadline:
        time.sleep(0.05)
    pool = CodeTool._sandbox._pool if CodeTool._sandbox is not None else None
    busy_jails = len(pool._busy) if pool is not None else 0
    summary = {"trajectories": 50, "calls": 100, "seconds": round(seconds, 1),
               "own_state": own, "foreign_state": foreign, "peak_open_sessions": peak,
               "open_after_calls": open_before, "open_at_end": len(tool.trajectories),
               "busy_jails_at_end": busy_jails, "closed_ended": tool.trajectories.closed_ended,
               "sandbox_mode": CodeTool._sandbox.mode if CodeTool._sandbox else None}
    print("fifty trajectories:", json.dumps(summary))
    if REPORT:
        Path(REPORT).write_text(json.dumps(summary))
    assert own == 50 and foreign == 0, texts
    assert open_before >= 50 and summary["open_at_end"] == 0 and busy_jails == 0


# -- whole trajectories through ToolAgentLoop.run -------------------------------------------------

class ScriptedServer:
    """Stands in for verl's LLM server manager: each ``generate`` answers with the next scripted
    reply as a model ends its turn (the reply's ids, then ``<|im_end|>``), and keeps the prompts
    it was sent. Asked for a turn after the last reply, it fails the test."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, replies: list[str]) -> None:
        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.prompts: list[list[int]] = []

    async def generate(self, *, prompt_ids: list[int], **kwargs: Any) -> TokenOutput:
        self.prompts.append(list(prompt_ids))
        if not self.replies:
            raise AssertionError("the loop asked for another turn after the last scripted reply")
        ids = self.tokenizer.encode(self.replies.pop(0), add_special_tokens=False)
        return TokenOutput(token_ids=[*ids, self.tokenizer.eos_token_id])


@pytest.fixture(scope="module")
def sft_row() -> dict[str, Any]:
    """A built SFT row (scripted teacher, verified) of the task of the first RL row."""
    return json.loads(SFT_ROW.read_text())


def as_text(message: dict[str, Any]) -> dict[str, str]:
    """A message of verl's raw prompt as text: its image parts become the ``<image>`` token
    they were split from (a text-only rollout; the image still reaches the tool)."""
    content = message["content"]
    if not isinstance(content, str):
        content = "".join(part["text"] if part["type"] == "text" else f"<{part['type']}>"
                          for part in content)
    return {"role": message["role"], "content": content}


def run_trajectory(config: DictConfig, row: dict[str, Any],
                   replies: list[str]) -> tuple[Any, ScriptedServer]:
    """``ToolAgentLoop.run`` on ``row``'s raw prompt as RLHFDataset made it (its image part
    rendered as the ``<image>`` token: no processor here) and its tools kwargs, the model's
    turns scripted; the tool reads the row's one stored image from the prompt. Returns verl's
    output and the server."""
    roomy = copy.deepcopy(config)
    with open_dict(roomy):  # one token per byte: room for a whole trajectory, no truncation
        roomy.actor_rollout_ref.rollout.prompt_length = 1 << 15
        roomy.actor_rollout_ref.rollout.response_length = 1 << 15
    tokenizer = chat_tokenizer()
    server = ScriptedServer(tokenizer, replies)

    async def run() -> Any:
        # Built inside the running event loop: AgentLoopBase keeps the loop it is made in.
        loop = make_loop(roomy, roomy.actor_rollout_ref.rollout.multi_turn.tool_config_path,
                         server_manager=server, tokenizer=tokenizer, hf_model_type="qwen3")
        try:
            return await loop.run({}, raw_prompt=row["raw_prompt"],
                                  tools_kwargs=row["tools_kwargs"], extra_info=row["extra_info"])
        finally:
            loop.tools[TOOL_NAME].close()

    return asyncio.run(run()), server


def trained_text(output: Any) -> list[str]:
    """The stretches of the response verl trains on (``response_mask`` 1), decoded."""
    tokenizer = chat_tokenizer()
    runs: list[list[int]] = []
    previous = 0
    for token, mask in zip(output.response_ids, output.response_mask, strict=True):
        if mask and not previous:
            runs.append([])
        if mask:
            runs[-1].append(token)
        previous = mask
    return [tokenizer.decode(ids) for ids in runs]


def test_an_sft_trajectory_runs_unchanged_in_verls_loop(config: DictConfig,
                                                       rows: list[dict[str, Any]],
                                                       sft_row: dict[str, Any]) -> None:
    """The SFT row's assistant turns as the model's replies: verl's loop reads their
    ``<code>`` blocks with our parser, runs them in one session, and shows the SFT
    observations, so the rollout is the SFT conversation token for token."""
    messages = sft_row["messages"]
    # verl's prompt of the RL row, as text (no processor here), is the SFT row's prompt.
    prompt = [as_text(message) for message in rows[0]["raw_prompt"]]
    assert prompt == messages[:2]
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    codes = [re.search(r"```python\n(.*?)```", r, re.DOTALL) for r in replies]
    assert codes[0] and codes[1] and not codes[2] and "<answer>" in replies[2]
    # The second cell reads what the first one left: only a kept session gives the SFT output.
    assert "vals" in codes[0].group(1) and "vals" in codes[1].group(1)
    output, server = run_trajectory(config, rows[0], replies)
    tokenizer = chat_tokenizer()
    transcript = tokenizer.decode(output.prompt_ids + output.response_ids)
    # The template ends every turn with "\n"; the model's last turn ends at <|im_end|>.
    assert transcript + "\n" == tokenizer.apply_chat_template(messages, tokenize=False)
    assert len(server.prompts) == len(replies) and output.num_turns == len(messages) - 1
    assert trained_text(output) == [f"{reply}<|im_end|>" for reply in replies]
    assert "Execution error" not in transcript


@pytest.mark.parametrize("kind", ["answer", "code and answer"])
def test_a_reply_without_a_usable_call_ends_the_trajectory(config: DictConfig,
                                                          rows: list[dict[str, Any]],
                                                          sft_row: dict[str, Any],
                                                          kind: str) -> None:
    messages = sft_row["messages"]
    answer = messages[-1]["content"]  # the SFT row's last turn: <think>…</think><answer>…
    if kind != "answer":  # parse_reply's rule: an answer before the code's output is no step
        answer = assistant_text(Step(think="Both at once.", code="print(1)", answer="Jun"))
    output, server = run_trajectory(config, rows[0], [answer])
    assert len(server.prompts) == 1 and output.num_turns == 2
    assert trained_text(output) == [f"{answer}<|im_end|>"]  # no tool response was added
    assert all(output.response_mask)


def test_verls_registry_reads_both_formats_with_our_parser(loop: ToolAgentLoop) -> None:
    parser = ToolParser.get_tool_parser(TOOL_PARSER, loop.tokenizer)
    assert isinstance(parser, CodeToolParser) and parser.stop_token_ids == []
    for hermes in (False, True):
        ids = loop.tokenizer.encode(model_turn("x = 1", hermes), add_special_tokens=False)
        content, calls = asyncio.run(parser.extract_tool_calls(ids, None))
        assert calls == [FunctionCall(name=TOOL_NAME, arguments=json.dumps({"code": "x = 1"}))]
        # The content verl keeps beside the call: the reply without the call's block.
        assert content.startswith("<think>Run it.</think>") and "x = 1" not in content


def test_compute_score_loads_through_verl_and_scores_rollouts(
        config: DictConfig, loop: ToolAgentLoop, rows: list[dict[str, Any]]) -> None:
    compute_score = get_custom_reward_fn(config)
    assert compute_score is not None
    row = rows[0]
    observed = asyncio.run(call(loop, trajectory(loop, row), "print(input_image.size)"))
    turn = (f"{model_turn('print(input_image.size)')}\n"
            f"<tool_response>\n{observed.text}\n</tool_response>\n")
    gold = row["reward_model"]["ground_truth"]
    right = compute_score(data_source=row["data_source"], solution_str=f"{turn}<answer>{gold}"
                          "</answer>", ground_truth=gold, extra_info=row["extra_info"])
    wrong = compute_score(data_source=row["data_source"], solution_str=f"{turn}<answer>"
                          "a purple elephant</answer>", ground_truth=gold,
                          extra_info=row["extra_info"])
    assert right["score"] == 1.0 and right["tool_calls"] == right["tool_success"] == 1.0
    assert wrong["score"] == 0.0 and wrong["format_ok"] == 1.0


def test_the_trainer_env_has_no_prefect() -> None:
    import importlib.util

    # The light install (templates/verl/trainer-requirements.txt) is enough for all of the above.
    assert importlib.util.find_spec("prefect") is None
