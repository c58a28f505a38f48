"""CTC text outputs [N, T, C]: greedy decoding and character error rate against reference texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def greedy_decode(output: np.ndarray, blank: int) -> list[list[int]]:
    """Per sample, the class sequence: arg-max per step, repeats collapsed, blanks dropped."""
    output = np.asarray(output)
    if output.ndim != 3:
        raise ValueError(f"a CTC output is [N, T, C], found {list(output.shape)}")
    sequences = []
    for steps in output.argmax(axis=2):
        keep = np.ones(len(steps), bool)
        keep[1:] = steps[1:] != steps[:-1]
        sequences.append([int(c) for c in steps[keep] if c != blank])
    return sequences


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def read_alphabet(path: Path) -> list[str]:
    """One character per line (a line holding a space is the space), for classes 1, 2, ... after the blank."""
    return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines(keepends=True)]


def reference_sequences(labels: np.ndarray, alphabet: list[str] | None, blank: int) -> list[list]:
    """Reference texts as sequences: strings (mapped through the alphabet) or class ids padded with -1."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "US":
        if alphabet is None:
            raise ValueError("string labels need validation.text.alphabet (one character per line) to compare with class ids")
        index = {ch: i + (1 if i >= blank else 0) for i, ch in enumerate(alphabet)}
        unknown = sorted({ch for text in labels for ch in str(text) if ch not in index})
        if unknown:
            raise ValueError(f"label characters not in the alphabet: {''.join(unknown[:20])!r}")
        return [[index[ch] for ch in str(text)] for text in labels]
    if labels.ndim != 2:
        raise ValueError(f"text labels are strings [N] or class ids [N, L] padded with -1, found {list(labels.shape)}")
    return [[int(c) for c in row if c >= 0] for row in labels]


def cer(hypotheses: list[list], references: list[list]) -> float:
    """Character error rate: total edit distance over total reference length (0..; 0 is perfect)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} decoded texts for {len(references)} references")
    total = sum(len(r) for r in references)
    errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True))
    return errors / total if total else float(errors > 0)
