"""Progress of long work (training steps, generated answers, scored sequences): position, rate and
time left. On a terminal a tqdm bar, as HF shows; otherwise (DVC's log, CI, a file) one concise line
every `HASAT_PROGRESS_STEPS` steps (default: every 5% of the total) or `HASAT_PROGRESS_SECONDS`
seconds (default 30), whichever comes first, and one at the end:

    finetune: step 40/400 (10%), 2.31 steps/s, elapsed 17s, ETA 2m36s, epoch 0.1, loss 2.345, lr 0.00019

`HASAT_PROGRESS=bar|lines|off` forces a mode (default: bar on a terminal, lines elsewhere). These are
environment variables, not config keys: how progress is shown never changes a result, so it must
not make DVC re-run a stage.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional, TextIO

MODES = ("bar", "lines", "off")
DEFAULT_SECONDS = 30.0
DEFAULT_LINES_PER_RUN = 20  # with no step setting, a line every 5% of the total


def duration(seconds: float) -> str:
    """12s, 2m05s, 1h03m: short enough for a log line."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _mode(stream: TextIO) -> str:
    chosen = os.environ.get("HASAT_PROGRESS", "").strip().lower()
    if chosen in MODES:
        return chosen
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def _env_number(name: str, default: Optional[float]) -> Optional[float]:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


class Progress:
    """Count work done towards `total`; `update()` after each unit (or batch of units).

    `desc` starts every line ("finetune", "evaluate: base: generate"; None: show nothing), `unit` names what is counted
    (its plural adds an s). `extra` values given to `update`/`set` (loss, lr) end the lines."""

    def __init__(self, total: int, desc: Optional[str], unit: str = "step", initial: int = 0,
                 stream: Optional[TextIO] = None, mode: Optional[str] = None,
                 every_steps: Optional[int] = None, every_seconds: Optional[float] = None,
                 clock=time.monotonic):
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.n = self.start_n = int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.mode = "off" if desc is None else mode or _mode(self.stream)
        steps = every_steps or _env_number("HASAT_PROGRESS_STEPS", None)
        self.every_steps = int(steps) if steps else max(1, math.ceil(self.total / DEFAULT_LINES_PER_RUN))
        self.every_seconds = every_seconds if every_seconds is not None else \
            _env_number("HASAT_PROGRESS_SECONDS", DEFAULT_SECONDS)
        self.clock = clock
        self.started = self.last_time = clock()
        self.last_n = self.n
        self.extra: dict = {}
        self.closed = False
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit, file=self.stream,
                            dynamic_ncols=True, leave=True)

    def set(self, **extra) -> None:
        """Values shown with the next line (None removes one)."""
        for key, value in extra.items():
            if value is None:
                self.extra.pop(key, None)
            else:
                self.extra[key] = value
        if self.bar is not None and self.extra:
            self.bar.set_postfix({k: _number(v) for k, v in self.extra.items()}, refresh=False)

    def update(self, n: int = 1, **extra) -> None:
        self.advance_to(self.n + n, **extra)

    def advance_to(self, position: int, **extra) -> None:
        """Set the position (a trainer's global step) rather than add to it."""
        self.set(**extra)
        done, self.n = position - self.n, position
        if self.bar is not None:
            self.bar.update(done)
        elif self.mode == "lines" and self._due():
            self._line()

    def write(self, message: str) -> None:
        """A one-off line (a validation loss) that does not break the bar."""
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.write(f"{self.desc}: {message}", file=self.stream)
        else:
            self._emit(f"{self.desc}: {message}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.n != self.last_n:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def rate(self) -> float:
        """Units per second since the start (units before `initial`, e.g. a resumed run's, not counted)."""
        elapsed = self.clock() - self.started
        return (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate, elapsed = self.rate(), self.clock() - self.started
        left = (self.total - self.n) / rate if rate > 0 else math.inf
        plural = self.unit + ("" if self.unit.endswith("s") else "s")
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc}: {self.unit} {self.n}/{self.total}{percent}",
                 f"{rate:.2f} {plural}/s" if rate >= 0.1 or rate == 0 else f"{1 / rate:.1f} s/{self.unit}",
                 f"elapsed {duration(elapsed)}", f"ETA {duration(left) if self.n < self.total else '0s'}"]
        parts += [f"{key} {_number(value)}" for key, value in self.extra.items()]
        return ", ".join(parts)

    def _due(self) -> bool:
        if self.n >= self.total:
            return True
        return self.n - self.last_n >= self.every_steps or self.clock() - self.last_time >= self.every_seconds

    def _line(self) -> None:
        self._emit(self.line())
        self.last_n, self.last_time = self.n, self.clock()

    def _emit(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
