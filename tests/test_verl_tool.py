"""The verl code tool: verl's call sequence, our sandbox, the SFT observation text."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import yaml
from PIL import Image

from datagen.messages import observation_text
from datagen.sandbox import Sandbox
from datagen.templates import resource_dir
from datagen.verl_tool import TOOL_SCHEMA, CodeTool, image_bytes, reply_text


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
