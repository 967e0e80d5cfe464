"""The code tool and the reward inside upstream verl 0.9.1, with verl's own classes.

Runs in the venv of ``tests/verl/requirements.txt`` (``test_upstream_verl.py`` starts it with
the checkout on PYTHONPATH and a built RL set in ``DATAGEN_RL_SET``); never collected by the
project's own pytest run, which has no verl. Everything comes from the README's verl command:
its overrides are composed with verl's own ``ppo_trainer`` config, the RL parquet is read by
verl's ``RLHFDataset``, the tools are made by ``initialize_tools_from_config``, calls go through
``ToolAgentLoop._call_tool`` of a loop built by its own ``__init__`` (with a byte-level
tokenizer made here, so no model is downloaded), and the reward is loaded by
``get_custom_reward_fn``. The SFT side of each comparison is a plain ``Sandbox`` session on the
row's published image, formatted by ``observation_text``, as ``datagen build`` does.
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
from verl.tools.schemas import ToolResponse
from verl.tools.tool_registry import initialize_tools_from_config
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.dataset.rl_dataset import RLHFDataset

from datagen.messages import observation_text
from datagen.sandbox import Sandbox
from datagen.verl_tool import TOOL_NAME, CodeTool

CHECKOUT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("DATAGEN_RL_SET", "/nonexistent"))
REPORT = os.environ.get("DATAGEN_VERL_REPORT")
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


def make_loop(config: DictConfig, tool_config_path: str) -> ToolAgentLoop:
    """A ToolAgentLoop built by its own __init__, as verl's agent loop worker builds one."""
    tools = initialize_tools_from_config(tool_config_path)
    return ToolAgentLoop(trainer_config=DictConfigWrap(config), server_manager=None,
                         tokenizer=byte_tokenizer(), processor=None, dataset_cls=RLHFDataset,
                         data_config=DictConfigWrap(config.data), tools=ToolListWrap(tools))


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


async def call(loop: ToolAgentLoop, agent_data: AgentData, code: str) -> ToolResponse:
    """One model turn calling the tool: the hermes parser reads the call from the model's
    tokens, then ``_call_tool`` runs it, as ``_handle_processing_tools_state`` does."""
    turn = f'<tool_call>{json.dumps({"name": TOOL_NAME, "arguments": {"code": code}})}</tool_call>'
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
    assert Path(config.reward.custom_reward_function.path).is_file()
    assert rows and {row["agent_name"] for row in rows} == {"tool_agent"}
    assert "tool_agent" in _agent_loop_registry
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "tool_agent"
    assert list(loop.tools) == [TOOL_NAME] and isinstance(loop.tools[TOOL_NAME], CodeTool)
    # The longest observation: stdout, stderr and error message capped at 10,000 chars each.
    assert loop.max_tool_response_length >= 3 * 10_000 + 200
    assert all(row["tools_kwargs"][TOOL_NAME]["create_kwargs"]["image"] is not None
               for row in rows)


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

    async def run() -> list[ToolResponse]:
        await call(loop, a, "secret = 'a'; open('a.txt', 'w').write('a')")
        return [await call(loop, b, "import os; print(sorted(os.listdir('.')))"),
                await call(loop, b, "print(secret)"),
                await call(loop, a, "print(secret)")]

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


def test_compute_score_loads_through_verl_and_scores_rollouts(
        config: DictConfig, loop: ToolAgentLoop, rows: list[dict[str, Any]]) -> None:
    compute_score = get_custom_reward_fn(config)
    assert compute_score is not None
    row = rows[0]
    observed = asyncio.run(call(loop, trajectory(loop, row), "print(input_image.size)"))
    turn = ('<think>Let me look.</think>\n<tool_call>{"name": "execute_python_code", '
            '"arguments": {"code": "print(input_image.size)"}}</tool_call>\n'
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
