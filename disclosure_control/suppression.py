"""Secondary suppression: hide enough extra cells that no suppressed cell can be recovered.

A published total is a linear equation over the cells of its row (or column). If exactly one
member of such an equation is hidden, subtraction recovers it. So after the primary cells are
hidden, every line (an inner row or column together with its margin cell) must hide either none
or at least two of its members. The heuristic hides, in each offending line, the visible inner
cell with the smallest contribution (the least information lost), and repeats until stable.

A table of proportions has lines even without margins: each row of a row-normalised table sums to 1
(each column of a column-normalised one, the whole table of one normalised over all cells), and a
proportion written in full is an exact fraction (0.9210526315789473 is 35/38), so one hidden cell in
such a line is 1 minus the others, and its count comes back. ``proportion_lines`` names those lines.
"""

from __future__ import annotations

import numpy as np


def lines_of(shape: tuple[int, int], margin_row: bool, margin_col: bool) -> list[list[tuple[int, int]]]:
    """Additive lines of a 2-D table whose last row/column may hold the margins."""
    n_rows, n_cols = shape
    lines: list[list[tuple[int, int]]] = []
    if margin_col:
        for r in range(n_rows):
            lines.append([(r, c) for c in range(n_cols)])
    if margin_row:
        for c in range(n_cols):
            lines.append([(r, c) for r in range(n_rows)])
    return lines


def proportion_lines(shape: tuple[int, int], normalize: bool | str | int | None, margin_row: bool,
                     margin_col: bool) -> list[list[tuple[int, int]]]:
    """The lines of inner cells that sum to 1 in a table of proportions (none for a table of counts)."""
    n_rows, n_cols = shape[0] - int(margin_row), shape[1] - int(margin_col)
    if normalize in ("index", 0):
        return [[(r, c) for c in range(n_cols)] for r in range(n_rows)]
    if normalize in ("columns", 1):
        return [[(r, c) for r in range(n_rows)] for c in range(n_cols)]
    if normalize is True or normalize == "all":
        return [[(r, c) for r in range(n_rows) for c in range(n_cols)]]
    return []


def secondary(primary: np.ndarray, weights: np.ndarray, margin_row: bool, margin_col: bool,
              extra_lines: list[list[tuple[int, int]]] | None = None) -> np.ndarray:
    """Suppression pattern (primary plus secondary) for a table with the given margins.

    ``weights`` decides which cell is sacrificed (smallest first); margins are only chosen when
    no inner cell of the line is left visible. ``extra_lines`` are further sets of cells whose sum
    is known without a margin cell (``proportion_lines``).
    """
    hidden = np.array(primary, dtype=bool, copy=True)
    lines = lines_of(hidden.shape, margin_row, margin_col) + list(extra_lines or [])
    if not lines:
        return hidden
    n_rows, n_cols = hidden.shape
    w = np.where(np.isnan(weights), np.inf, np.asarray(weights, dtype=float))

    def is_margin(cell: tuple[int, int]) -> bool:
        return (margin_row and cell[0] == n_rows - 1) or (margin_col and cell[1] == n_cols - 1)

    changed = True
    while changed:
        changed = False
        for line in lines:
            n_hidden = sum(hidden[cell] for cell in line)
            if n_hidden != 1:
                continue
            candidates = [cell for cell in line if not hidden[cell]]
            inner = [cell for cell in candidates if not is_margin(cell)]
            pool = inner or candidates
            if not pool:
                continue
            # prefer non-empty cells: hiding a zero does not protect anything it is summed with
            nonzero = [cell for cell in pool if w[cell] > 0]
            choice = min(nonzero or pool, key=lambda cell: (w[cell], cell))
            hidden[choice] = True
            changed = True
    return hidden


def recoverable(hidden: np.ndarray, margin_row: bool, margin_col: bool) -> list[tuple[int, int]]:
    """Hidden cells that are the only hidden member of some line (so subtraction reveals them)."""
    found: list[tuple[int, int]] = []
    for line in lines_of(hidden.shape, margin_row, margin_col):
        members = [cell for cell in line if hidden[cell]]
        if len(members) == 1:
            found.append(members[0])
    return found
