"""Markdown for the report's tables and claims: a table, numbers, signed differences, seed counts."""

from __future__ import annotations

from typing import Iterable, Sequence, Sized


def num(x: float | None) -> str:
    """``x`` with 2 decimals; "—" for None or NaN (no value)."""
    return "—" if x is None or x != x else f"{x:.2f}"


def signed(x: float | None) -> str:
    """``x`` with its sign and 2 decimals; "—" for None or NaN."""
    return "—" if x is None or x != x else f"{x:+.2f}"


def diff(ours: float | None, paper: float | None) -> str:
    """``ours − paper``, signed; "—" when either is missing."""
    return "—" if ours is None or paper is None else signed(ours - paper)


def md(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def seeds(runs: Sized) -> str:
    """``1 seed``, ``3 seeds``: how many runs (one per seed)."""
    return f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"
