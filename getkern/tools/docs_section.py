"""Rewrite the generated section of a markdown file (between a begin and an end marker line)."""

from __future__ import annotations

from pathlib import Path


def replace_generated_section(path: Path, begin: str, end: str, text: str) -> None:
    """Replace what stands between ``begin`` and ``end`` in ``path`` with ``text``."""
    doc = Path(path).read_text()
    if begin not in doc or end not in doc:
        raise ValueError(f"{path} lacks the generated-section markers {begin!r} ... {end!r}")
    before, rest = doc.split(begin, 1)
    _, after = rest.split(end, 1)
    Path(path).write_text(f"{before}{begin}\n{text}\n{end}{after}")
