"""The verl code tool: verl's call sequence, our sandbox, the SFT observation text."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import json
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml
from PIL import Image

from datagen.messages import assistant_text, observation_text, parse_reply
from datagen.records import Step
from datagen.sandbox import Sandbox
from datagen.templates import resource_dir
from datagen.verl_tool import (
    TOOL_NAME,
    TOOL_SCHEMA,
    CodeTool,
    CodeToolParser,
    ToolCall,
    image_bytes,
    prompt_image,
    reply_calls,
    reply_text,
)


def _png(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _call(tool: CodeTool, image: Any, *codes: str) -> list[tuple[Any, float, dict]]:
    """What verl's tool agent loop does: create with create_kwargs, execute, release."""

    async def run() -> list[tuple[Any, float, dict]]:
        instance_id, first = await tool.create(create_kwargs={"image": image})
        assert first.text == ""
        try:
            return [await tool.execute(instance_id, {"code": c}) for c in codes]
        finally:
            await tool.release(instance_id)

    return asyncio.run(run())


def test_tool_config_yaml_registers_this_class_and_schema() -> None:
    config = yaml.safe_load((resource_dir("templates") / "verl" / "tool_config.yaml").read_text())
    (entry,) = config["tools"]
    module, name = entry["class_name"].rsplit(".", 1)
    assert (module, name) == ("datagen.verl_tool", "CodeTool")
    assert entry["config"]["type"] == "native"
    assert entry["tool_schema"] == TOOL_SCHEMA


def test_reply_is_the_sft_observation_inside_the_tags(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    (reply, reward, metrics), = _call(tool, {"bytes": _png(), "path": None},
                                      "print(input_image.size)")
    with sandbox.session(_png()) as session:
        result = session.run("print(input_image.size)")
    # A Qwen3-style template renders a tool message as <tool_response>\n…\n</tool_response>.
    assert f"<tool_response>\n{reply.text}\n</tool_response>" == observation_text(result)
    assert "(64, 48)" in reply.text
    assert reward == 0.0 and metrics["success"] is True and reply.image is None


def test_wrap_sends_the_whole_block_and_errors_look_like_sft(sandbox: Sandbox) -> None:
    tool = CodeTool({"wrap": True}, None, sandbox=sandbox)
    (reply, _, metrics), = _call(tool, _png(), "1/0")
    assert reply.text.startswith("<tool_response>\nExecution error: ZeroDivisionError")
    assert reply.text.endswith("</tool_response>")
    assert metrics["success"] is False


def test_shown_images_come_back_as_images_without_image_tokens(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    (reply, _, _), = _call(tool, _png(), "input_image.crop((0, 0, 32, 24)).show()")
    assert [im.size for im in reply.image] == [(32, 24)]
    assert "<image>" not in reply.text


def test_state_persists_within_one_instance(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    first, second = _call(tool, _png(), "x = 41", "print(x + 1)")
    assert "42" in second[0].text


def test_create_without_image_is_refused(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    with pytest.raises(ValueError, match="no image"):
        asyncio.run(tool.create(create_kwargs={}))


def test_image_bytes_accepts_what_verl_hands_over(tmp_path) -> None:
    png = _png()
    path = tmp_path / "in.png"
    path.write_bytes(png)
    assert image_bytes({"bytes": png, "path": None}) == png
    assert image_bytes({"bytes": None, "path": str(path)}) == png
    assert image_bytes(str(path)) == png
    assert Image.open(io.BytesIO(image_bytes(Image.open(io.BytesIO(png))))).size == (64, 48)
    with pytest.raises(TypeError):
        image_bytes(42)


def test_reply_text_drops_only_the_tags_and_image_lines() -> None:
    from datagen.sandbox import CellResult

    result = CellResult(status="ok", stdout="a\nb", stderr="", images=(b"x",), error_type=None,
                        error_message=None, truncated=False, seconds=0.0)
    assert reply_text(result) == "Code execution successful, output:\na\nb"
    assert reply_text(result, wrap=True).splitlines()[0] == "<tool_response>"


# -- one session per trajectory (verl passes the trajectory's AgentData to execute) -------------

class _Trajectory:
    """Stands in for verl's AgentData here (tests/verl/ drives the real one): an object per
    trajectory with a request_id."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.extra_fields: dict[str, Any] = {}


async def _verl_call(tool: CodeTool, image: Any, code: str, traj: _Trajectory) -> Any:
    """What upstream verl's ToolAgentLoop._call_tool does for every call: a fresh instance."""
    instance_id, _ = await tool.create(create_kwargs={"image": image})
    try:
        reply, _, _ = await tool.execute(instance_id, {"code": code}, agent_data=traj)
        return reply
    finally:
        await tool.release(instance_id)


def _prompt(image: bytes) -> list[dict[str, Any]]:
    """A raw prompt as verl's RLHFDataset builds it from an RL row: the ``<image>`` of the user
    turn split into an image part that keeps the stored ``{bytes, path}`` (and a PIL image)."""
    return [{"role": "system", "content": "You run code."},
            {"role": "user", "content": [
                {"type": "image", "bytes": image, "path": None,
                 "image": Image.open(io.BytesIO(image))},
                {"type": "text", "text": "\nWhat is it?"}]}]


def test_the_tool_reads_the_rows_one_image_from_the_prompt(sandbox: Sandbox) -> None:
    # An RL row stores its image once: create_kwargs names it by number, and the tool takes
    # the bytes from the trajectory's messages, the very file (not a re-encoded copy).
    tool = CodeTool({}, None, sandbox=sandbox)
    png = _png((30, 20))
    traj = _Trajectory("r1")
    traj.messages = _prompt(png)  # type: ignore[attr-defined]

    async def run() -> Any:
        instance_id, _ = await tool.create(create_kwargs={"image_index": 0})
        try:
            code = "import hashlib\nprint(input_image.size, " \
                   "hashlib.md5(input_image.tobytes()).hexdigest())"
            reply, _, _ = await tool.execute(instance_id, {"code": code}, agent_data=traj)
            return reply
        finally:
            await tool.release(instance_id)

    try:
        reply = asyncio.run(run())
    finally:
        tool.close()
    pixels = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    assert reply.text.endswith(f"(30, 20) {hashlib.md5(pixels).hexdigest()}")
    assert prompt_image(_prompt(png), 0) == png


def test_a_missing_prompt_image_is_a_clear_error(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    with pytest.raises(ValueError, match="no image number 1"):
        prompt_image(_prompt(_png()), 1)
    with pytest.raises(ValueError, match="no image number 0"):
        prompt_image([{"role": "user", "content": "<image>\nno parts"}], 0)

    async def without_agent_data() -> None:
        instance_id, _ = await tool.create(create_kwargs={"image_index": 0})
        try:
            await tool.execute(instance_id, {"code": "print(1)"})
        finally:
            await tool.release(instance_id)

    with pytest.raises(ValueError, match="no agent_data"):
        asyncio.run(without_agent_data())


def _wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_calls_of_one_trajectory_share_a_session_across_instances(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    a, b = _Trajectory("same-id"), _Trajectory("same-id")  # request ids may repeat in verl

    async def run() -> list[Any]:
        await _verl_call(tool, _png(), "x = 41; open('n.txt', 'w').write('hi')", a)
        await _verl_call(tool, _png(), "y = 7", b)
        check = "import os; print(x + 1 if 'x' in dir() else y, os.path.exists('n.txt'))"
        return [await _verl_call(tool, _png(), check, t) for t in (a, b)]

    try:
        replies = asyncio.run(run())
        assert replies[0].text.endswith("\n42 True")
        assert replies[1].text.endswith("\n7 False")  # b sees neither a's x nor a's file
        assert len(tool.trajectories) == 2
    finally:
        tool.close()
    assert len(tool.trajectories) == 0


def test_a_trajectory_session_closes_when_verl_drops_its_agent_data(sandbox: Sandbox) -> None:
    tool = CodeTool({}, None, sandbox=sandbox)
    traj = _Trajectory("r1")
    try:
        asyncio.run(_verl_call(tool, _png(), "x = 1", traj))
        (entry,) = tool.trajectories._entries.values()
        session = entry.session
        assert session is not None and len(tool.trajectories) == 1
        del traj  # the end of the rollout: verl lets go of its AgentData
        gc.collect()
        assert _wait_until(lambda: len(tool.trajectories) == 0 and entry.session is None)
        assert tool.trajectories.closed_ended == 1
        with pytest.raises(RuntimeError, match="closed"):
            session.run("1")
    finally:
        tool.close()


def test_idle_sessions_are_reaped_and_the_next_call_starts_afresh(sandbox: Sandbox) -> None:
    tool = CodeTool({"session_idle_timeout": 0.3}, None, sandbox=sandbox)
    traj = _Trajectory("r1")
    try:
        asyncio.run(_verl_call(tool, _png(), "x = 1", traj))
        assert _wait_until(lambda: len(tool.trajectories) == 0)
        assert tool.trajectories.closed_idle == 1
        # Like after a timeout in the SFT traces: a fresh namespace, input_image reloaded.
        reply = asyncio.run(_verl_call(tool, _png(), "print(input_image.size); x", traj))
        assert "(64, 48)" not in reply.text and "NameError" in reply.text
    finally:
        tool.close()


def test_max_sessions_closes_the_least_recently_used_first(sandbox: Sandbox) -> None:
    tool = CodeTool({"max_sessions": 2}, None, sandbox=sandbox)
    trajs = [_Trajectory(f"r{i}") for i in range(3)]
    try:
        for t in trajs:
            asyncio.run(_verl_call(tool, _png(), f"x = {t.request_id!r}", t))
        assert tool.trajectories.closed_evicted == 1
        assert [e.label for e in tool.trajectories._entries.values()] == ["r1", "r2"]
        reply = asyncio.run(_verl_call(tool, _png(), "print(x)", trajs[2]))
        assert "r2" in reply.text
    finally:
        tool.close()


def test_parallel_calls_of_one_trajectory_run_one_after_the_other(sandbox: Sandbox) -> None:
    # verl runs up to max_parallel_calls tool calls of a turn with asyncio.gather.
    tool = CodeTool({}, None, sandbox=sandbox)
    traj = _Trajectory("r1")

    async def run() -> list[Any]:
        await _verl_call(tool, _png(), "log = []", traj)
        cell = "import time; log.append('in'); time.sleep(0.2); log.append('out')"
        await asyncio.gather(*[_verl_call(tool, _png(), cell, traj) for _ in range(3)])
        return [await _verl_call(tool, _png(), "print(''.join(s[0] for s in log))", traj)]

    try:
        (reply,) = asyncio.run(run())
        assert reply.text.endswith("\nioioio")
        assert len(tool.trajectories) == 1
    finally:
        tool.close()


def test_without_agent_data_the_session_lives_as_long_as_the_instance(sandbox: Sandbox) -> None:
    # The CodeDance fork and SGLang rollouts keep one instance per trajectory.
    tool = CodeTool({}, None, sandbox=sandbox)
    first, second = _call(tool, _png(), "x = 41", "print(x + 1)")
    assert "42" in second[0].text
    assert len(tool.trajectories) == 0 and tool._instances == {}


# -- the tool-call parser (multi_turn.format=codedance; tests/verl/ runs it in verl's loop) -------

def _code_call(code: str) -> list[ToolCall]:
    return [ToolCall(name=TOOL_NAME, arguments=json.dumps({"code": code}, ensure_ascii=False))]


def test_an_sft_turn_is_one_call_and_the_content_is_the_rest() -> None:
    code = 'import numpy as np\nprint(np.asarray(input_image).shape, "ü")'
    turn = assistant_text(Step(think="Measure it.", code=code))  # as the build writes a turn
    content, calls = reply_calls(turn)
    assert calls == _code_call(code) and json.loads(calls[0].arguments)["code"] == code
    assert content.startswith("<think>Measure it.</think>") and "<code>" not in content
    assert "np.asarray" not in content


def test_a_hermes_call_is_read_too_and_only_the_first_call_counts() -> None:
    first = json.dumps({"name": TOOL_NAME, "arguments": {"code": "x = 1"}})
    other = json.dumps({"name": "web_search", "arguments": {"q": "x"}})
    turn = (f"<think>t</think>\n<tool_call>{other}</tool_call><tool_call>{first}</tool_call>"
            "<code>\n```python\nprint(2)\n```\n</code>")
    # A <code> block wins over <tool_call> JSON, as in parse_reply; one cell per turn.
    assert reply_calls(turn)[1] == _code_call("print(2)")
    content, calls = reply_calls(turn[:turn.index("<code>")])
    assert calls == _code_call("x = 1")
    assert content == f"<think>t</think>\n<tool_call>{other}</tool_call>"


@pytest.mark.parametrize("turn", [
    "<think>Read it.</think>\n<answer>Jun</answer>",
    assistant_text(Step(think="Both.", code="print(1)", answer="Jun")),  # no usable step
    "<think>Truncated.</think>\n<code>\n```python\nprint(1)\n",  # never closed
    "<think>Nothing to run.</think>",
])
def test_a_reply_without_a_usable_step_makes_no_call(turn: str) -> None:
    assert reply_calls(turn) == (turn, [])
    assert parse_reply(turn).code is None  # the same rule as the build and datagen verify


class _Utf8:
    """A tokenizer's decode, enough for the parser."""

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8")


def test_the_parser_decodes_and_parses_like_verls_parsers() -> None:
    turn = assistant_text(Step(think="Go.", code="print(input_image.size)"))
    parser = CodeToolParser(_Utf8())
    content, calls = asyncio.run(parser.extract_tool_calls(list(turn.encode()), None))
    assert (content, calls) == reply_calls(turn) and calls == _code_call("print(input_image.size)")


def test_the_module_works_without_verl_and_does_not_import_it() -> None:
    probe = ("import importlib.util, sys; import datagen.verl_tool as v; "
             "print(importlib.util.find_spec('verl') is None, "
             "any(m == 'verl' or m.startswith('verl.') for m in sys.modules), "
             "v.CodeToolParser.__bases__ == (object,))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    if out[0] != "True":
        pytest.skip("verl is installed here; tests/verl/ covers the registered parser")
    assert out[1:] == ["False", "True"]
