"""The grounding checks reject code that types what it cannot see, and keep code that looks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from datagen.check.grounding import (
    code_literals,
    jitter_image,
    jitter_outcome,
    provenance_problem,
    twin_outcome,
)
from datagen.records import Percept, Scene, Step, Task, Trajectory, Turn
from datagen.sandbox import Sandbox
from datagen.scenes.base import Secrets, Twin

_BOX = (412, 236, 447, 271)  # where the renderer put the target


def _image(box: tuple[int, int, int, int] = _BOX, size: tuple[int, int] = (800, 600)) -> bytes:
    img = Image.new("RGB", size, (235, 230, 220))
    ImageDraw.Draw(img).rectangle(box, fill=(220, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _task(question: str = "In which half of the image is the red square?\nA. left\nB. right",
          answer: str = "B") -> Task:
    scene = Scene(id="test-scene", family="search", kind="plain", seed=0, image=_image(),
                  spec={}, difficulty="easy")
    return Task(id="search-0123456789abcdef", scene=scene, task_type="search.position",
                question=question, answer=answer, answer_type="choice", tolerance=0.0,
                difficulty="easy", ops=("crop",), facts={"options": {"A": "left", "B": "right"}})


_SECRETS = Secrets(numbers=frozenset(float(v) for v in _BOX), colours=((220, 40, 40),),
                   strings=frozenset({"Online"}))

# Finds the red pixels and says which half they are in: reads the pixels.
_LOOKS = """
import numpy as np
a = np.asarray(input_image.convert("RGB")).astype(int)
red = (a[..., 0] > 170) & (a[..., 1] < 110) & (a[..., 2] < 110)
ys, xs = np.nonzero(red)
print("left" if xs.mean() < a.shape[1] / 2 else "right")
"""
# Knows where the target is: prints the right half whatever the image holds.
_TOLD = """
x0, y0, x1, y1 = 412, 236, 447, 271
W, H = input_image.size
print("left" if (x0 + x1) / 2 < W / 2 else "right")
"""


def _ran(task: Task, *cells: str, sandbox: Sandbox,
         percepts: tuple[Percept, ...] = ()) -> Trajectory:
    turns = []
    with sandbox.session(task.scene.image) as session:
        for i, code in enumerate(cells):
            turns.append(Turn(Step(think="", code=code, percepts=percepts if i == 0 else ()),
                              session.run(code)))
    turns.append(Turn(Step(think="", answer=task.answer)))
    return Trajectory(task=task, system="", user="", turns=turns, teacher="test", style="t",
                      ops=())


def test_literals_are_numbers_strings_and_colour_triples() -> None:
    lits = {lit.value for lit in code_literals('x = -3\nc = (220, 40, 40)\ns = "Online"\n')}
    assert {-3.0, (220, 40, 40), "Online", 220.0} <= lits
    assert 3.0 not in lits  # the negated number is the literal, not its operand


def test_hard_coded_box_coordinates_are_rejected(sandbox: Sandbox) -> None:
    traj = _ran(_task(), _TOLD, sandbox=sandbox)
    problem = provenance_problem(traj, frozenset(), _SECRETS)
    assert problem is not None and "412" in problem


def test_a_scene_number_as_a_code_constant_is_no_fact_but_as_data_it_is(sandbox: Sandbox
                                                                         ) -> None:
    """412 is a coordinate of the target. As the count of a loop or a factor of arithmetic it
    sets how code works and says nothing of the scene; typed as data (assigned, printed,
    compared, in a tuple) it is the renderer's fact."""
    constant = "for k in range(412):\n    pass\nw = input_image.width * 412 / 800\nprint('right')\n"
    assert provenance_problem(_ran(_task(), constant, sandbox=sandbox), frozenset(),
                              _SECRETS) is None
    for data in ("x0 = 412\n", "print(412)\n", "ok = input_image.width == 412\n",
                 "crop = input_image.crop((412, 0, 500, 100))\n"):
        problem = provenance_problem(_ran(_task(), data + "print('right')\n", sandbox=sandbox),
                                     frozenset(), _SECRETS)
        assert problem is not None and "412" in problem, data


def test_a_typed_palette_colour_is_rejected(sandbox: Sandbox) -> None:
    code = "import numpy as np\nrgb = (220, 40, 40)\nprint('right')\n"
    problem = provenance_problem(_ran(_task(), code, sandbox=sandbox), frozenset(), _SECRETS)
    assert problem is not None and "palette colour" in problem


def test_an_unprinted_name_is_rejected_and_a_printed_one_is_not(sandbox: Sandbox) -> None:
    traj = _ran(_task(), "vals = {'Online': 13}\nprint('right')\n", sandbox=sandbox)
    problem = provenance_problem(traj, frozenset(), _SECRETS)
    assert problem is not None and "Online" in problem
    assert provenance_problem(traj, frozenset({"Online"}), _SECRETS) is None


def test_an_earlier_output_or_an_inexact_look_explains_a_number(sandbox: Sandbox) -> None:
    found = "print('found at', 400 + 12)\n"  # computed: the output then shows it
    then = "x0 = 412\nprint('right')\n"
    assert provenance_problem(_ran(_task(), found, then, sandbox=sandbox), frozenset(),
                              _SECRETS) is None
    look = Percept("region", (405, 230, 452, 280), _BOX)
    traj = _ran(_task(), "box = (405, 230, 452, 280)\nprint('right')\n", sandbox=sandbox,
                percepts=(look,))
    assert provenance_problem(traj, frozenset(), _SECRETS) is None


def test_a_look_that_returns_the_exact_truth_is_rejected(sandbox: Sandbox) -> None:
    exact = Percept("region", _BOX, _BOX)
    traj = _ran(_task(), "print('right')\n", sandbox=sandbox, percepts=(exact,))
    problem = provenance_problem(traj, frozenset(), _SECRETS)
    assert problem is not None and "exact" in problem


def test_the_faithful_trace_passes_the_twin_and_the_told_one_fails(sandbox: Sandbox) -> None:
    task = _task()
    moved = Scene(**{**{k: getattr(task.scene, k) for k in Scene.__slots__},
                     "image": _image((100, 236, 135, 271))})
    twin = Twin(scene=moved, answer="A")
    assert twin_outcome(_ran(task, _LOOKS, sandbox=sandbox), twin, sandbox).status == "pass"
    told = twin_outcome(_ran(task, _TOLD, sandbox=sandbox), twin, sandbox)
    assert told.status == "fail" and "'right'" in told.detail


def test_answers_not_printed_by_code_have_no_twin(sandbox: Sandbox) -> None:
    traj = _ran(_task(), "print('looking')\n", sandbox=sandbox)
    assert twin_outcome(traj, None, sandbox).status == "na"


def test_jitter_keeps_relative_positions_and_breaks_exact_pixel_code(sandbox: Sandbox) -> None:
    shifted = Image.open(io.BytesIO(jitter_image(_image(), seed=1)))
    assert shifted.format == "JPEG" and shifted.width > 800 and shifted.height > 600
    task = _task()
    assert jitter_outcome(_ran(task, _LOOKS, sandbox=sandbox), sandbox).status == "pass"
    # Code that samples one exact pixel of the target misses it once the image moves.
    exact = ("import numpy as np\na = np.asarray(input_image.convert('RGB'))\n"
             "p = a[238, 414]\nprint('right' if p[0] > 170 and p[1] < 110 else 'left')\n")
    assert jitter_outcome(_ran(task, exact, sandbox=sandbox), sandbox).status == "fail"


def test_jitter_is_seeded() -> None:
    assert jitter_image(_image(), 3) == jitter_image(_image(), 3)
    arr = np.asarray(Image.open(io.BytesIO(jitter_image(_image(), 3))))
    assert arr.shape[2] == 3
