"""The matcher on trigonometric answers: degrees, the degree sign and equivalent forms."""

from __future__ import annotations

import pytest

from datagen.check.matcher import match

# (predicted, gold): the same value written another way.
EQUIVALENT = [
    ("20 sin 70°", "20*cos(pi/9)"),
    ("20*sin(70°)", "20*cos(pi/9)"),
    ("20sin70°", "20*cos(pi/9)"),
    ("sin 70°", "cos 20°"),
    ("sin(70 degrees)", "cos(20°)"),
    ("\\sin 70^\\circ", "cos(pi/9)"),
    ("\\sin(70^{\\circ})", "cos(pi/9)"),
    ("cos 60°", "1/2"),
    ("tan 45°", "1"),
    ("2*sin(30 deg)", "1"),
    ("20 cos 20°", "20*sin(7*pi/18)"),
    ("sqrt(2)*sin(45°)", "1"),
]
# (predicted, gold): a different value, or a number read in radians against degrees.
DIFFERENT = [
    ("20 sin 20°", "20*cos(pi/9)"),
    ("sin 70", "cos(pi/9)"),  # 70 radians: no degree mark, no degrees
    ("20 sin 70", "20*cos(pi/9)"),
    ("cos 70°", "cos 20°"),
    ("sin 70°", "sin 20°"),
    ("tan 45", "1"),
    ("10 sin 70°", "20*cos(pi/9)"),
]


@pytest.mark.parametrize(("predicted", "gold"), EQUIVALENT)
def test_equivalent_trigonometric_forms_match(predicted: str, gold: str) -> None:
    assert match(predicted, gold, "expression")
    assert match(gold, predicted, "expression")


@pytest.mark.parametrize(("predicted", "gold"), DIFFERENT)
def test_different_trigonometric_values_do_not_match(predicted: str, gold: str) -> None:
    assert not match(predicted, gold, "expression")
    assert not match(gold, predicted, "expression")


@pytest.mark.parametrize("predicted", ["35°", "35 degrees", "35^\\circ", "35"])
def test_an_angle_in_degrees_keeps_its_number(predicted: str) -> None:
    # Outside a trigonometric function the degree mark is a unit, not a conversion.
    assert match(predicted, "35", "integer")
    assert match(predicted, "35", "number", 0.01)
    assert not match(predicted, "36", "integer")
