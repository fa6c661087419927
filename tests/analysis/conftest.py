"""Shared fixtures for the analysis tests: the committed fixture folder and small frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.frames import simulate_crowd

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The hand-checkable 5x5 frame: 5 units (tasks) x 5 raters, nominal labels a/b.
#        u1 u2 u3 u4 u5
# r1:    a  a  a  b  a
# r2:    a  a  a  b  b
# r3:    a  a  b  b  b
# r4:    a  a  b  b  b
# r5:    a  b  b  b  b
GRID_5X5 = {"r1": "aaaba", "r2": "aaabb", "r3": "aabbb", "r4": "aabbb", "r5": "abbbb"}


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def frame_5x5() -> pd.DataFrame:
    rows = [(f"u{j + 1}", w, lab) for w, labels in GRID_5X5.items() for j, lab in enumerate(labels)]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


@pytest.fixture
def simulated():
    return simulate_crowd(n_tasks=200, n_workers=25, n_classes=3, per_task=5, seed=0)
