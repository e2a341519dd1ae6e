"""Recomputes the arithmetic an answer writes out (`a op b = c`, chains `a = b = c` too).

A worked answer that states `17 * 4 = 58` is wrong wherever its final number came from, and a
cheap model's slip of this kind is exactly what a stronger tier fixes. The check never evaluates
text as code: each side of an `=` is cut to the run of digits, operators and brackets next to
it, parsed with `ast` in eval mode, and only number constants, unary minus and the four binary
operators are walked; anything else is not checked. Sides without an operator on the left
("20% of 50 = 10" leaves "50") are skipped, so prose around a number is never mistaken for a sum.
"""

from __future__ import annotations

import ast
import itertools
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
# Characters an arithmetic side is made of once notation is normalised.
# A dot only as a decimal point, so a sentence's full stop ends the side.
_SIDE = r"(?:\d|\.(?=\d)|[\s+\-*/()%])"
_LEFT = re.compile(r"[-(\d]" + _SIDE + r"*$")
_RIGHT = re.compile(_SIDE + r"+")
_HAS_OPERATOR = re.compile(r"[\d)%]\s*[-+*/]\s*[\d(]")
_LEADING_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# Longer sides are prose that happens to hold digits; and they keep the parse cheap.
_MAX_SIDE_CHARS = 80
# Relative slack for rounded results ("17 / 3 = 5.67"; "1/3 of 100 = 33").
_RELATIVE_SLACK = 0.01


@dataclass(frozen=True)
class ArithmeticCheck:
    """How many stated equations were recomputed, and the ones that do not hold."""

    checked: int
    wrong: tuple[str, ...]


def normalise(text: str) -> str:
    """Markdown and typographic notation to plain operators: `\\*`, x, the multiplication,
    division and minus signs, $ and thousands commas go, so `$1,200 x 3` reads as `1200 * 3`."""
    text = text.replace("\\*", "*").replace("\u00d7", "*").replace("\u00f7", "/")
    text = text.replace("\u2212", "-")
    text = text.replace("$", "")
    text = re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", text)
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)


def value_of(expression: str) -> float | None:
    """The value of a plain arithmetic expression, or None when it is anything else."""
    expression = expression.strip()
    if not expression or len(expression) > _MAX_SIDE_CHARS:
        return None
    expression = re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", expression)
    try:
        tree = ast.parse(expression, mode="eval")
        return _walk(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _walk(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ValueError("not a number")
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_walk(node.left), _walk(node.right))
    raise ValueError("not plain arithmetic")


def _holds(computed: float, stated: str, stated_value: float) -> bool:
    """Equal up to the stated number's own rounding, or within 1% for rounded fractions."""
    decimals = len(stated.split(".")[1]) if "." in stated else 0
    slack = max(0.5 * 10**-decimals if decimals else 1e-9, _RELATIVE_SLACK * abs(stated_value))
    return abs(computed - stated_value) <= slack


def check_arithmetic(text: str) -> ArithmeticCheck:
    """Recomputes every `left = right` whose left side is a sum with an operator."""
    checked = 0
    wrong: list[str] = []
    for line in normalise(text).splitlines():
        sides = line.split("=")
        for left_text, right_text in itertools.pairwise(sides):
            left = _LEFT.search(left_text)
            right = _RIGHT.match(right_text)
            if left is None or right is None or not _HAS_OPERATOR.search(left.group()):
                continue
            computed = value_of(left.group())
            stated = right.group().strip().rstrip(".,")
            number = _LEADING_NUMBER.match(stated)
            if computed is None or number is None:
                continue
            stated_value = (
                value_of(stated) if _HAS_OPERATOR.search(stated) else float(number.group())
            )
            if stated_value is None:
                continue
            checked += 1
            if not _holds(computed, number.group(), stated_value):
                wrong.append(f"{left.group().strip()} = {stated}")
    return ArithmeticCheck(checked, tuple(wrong))
