"""Progress bars that stay readable in logs.

`progress_bar(...)` takes tqdm's arguments. On a terminal it is tqdm (one line redrawn with
carriage returns). When stderr is not a terminal (`make demo > log`, CI, a pipe) it is a
`LogBar`: whole lines, one when the bar starts, one per `LOG_EVERY_PERCENT` of the total (or
per `LOG_EVERY_S` seconds when the total is unknown) and one at the end; never a carriage
return or a cursor movement, so a log holds a handful of lines per bar instead of thousands
of redraws. `ARGUS_PROGRESS=tty|log|off` forces one behaviour.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm as _plain_tqdm
from tqdm.auto import tqdm as _auto_tqdm

LOG_EVERY_PERCENT = 10
LOG_EVERY_S = 30.0
MODES = ("tty", "log", "off")


def _mode(file) -> str:
    forced = os.environ.get("ARGUS_PROGRESS", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"ARGUS_PROGRESS must be one of {', '.join(MODES)}; got {forced!r}")
        return forced
    stream = file if file is not None else sys.stderr
    try:
        return "tty" if stream.isatty() else "log"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "log"


class LogBar(_plain_tqdm):
    """tqdm that prints whole lines at most every `LOG_EVERY_PERCENT` percent (or `LOG_EVERY_S` s)."""

    def __init__(self, *args, **kwargs):
        self._logged_step, self._logged_at, self._logged_n = -1, -float("inf"), None
        kwargs.setdefault("mininterval", 1.0)  # tqdm's own refresh check, at most once a second
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 100)
        kwargs.setdefault("ascii", True)  # "#" bars read the same in any log viewer
        super().__init__(*args, **kwargs)

    def _step(self) -> int:
        return min(int(100 * self.n / self.total), 100) // LOG_EVERY_PERCENT if self.total else self._logged_step + 1

    def _log(self):
        self._logged_step, self._logged_at, self._logged_n = self._step(), time.monotonic(), self.n
        self.fp.write(self.__str__().strip() + "\n")
        self.fp.flush()

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing a leave=False bar (it would then write a carriage return)
            return False
        due = self._step() > self._logged_step if self.total else time.monotonic() - self._logged_at >= LOG_EVERY_S
        if due and self._logged_n != self.n:
            self._log()
        return True

    def close(self):
        if not getattr(self, "disable", True) and self._logged_n != self.n:
            self._log()  # the last state always reaches the log
        self.leave = False  # the line is written; tqdm's own close would add a blank line
        super().close()

    def moveto(self, n):  # nested bars: no cursor movement in a log
        pass


def progress_bar(iterable=None, *args, **kwargs):
    """A progress bar with tqdm's signature: tqdm on a terminal, a `LogBar` otherwise, none with
    `ARGUS_PROGRESS=off`."""
    mode = _mode(kwargs.get("file"))
    if mode == "off":
        kwargs["disable"] = True
    if mode == "tty":
        return _auto_tqdm(iterable, *args, **kwargs)
    return LogBar(iterable, *args, **kwargs)


progress_bar.write = _auto_tqdm.write  # `tqdm.write`: a line that does not break a bar on a terminal
