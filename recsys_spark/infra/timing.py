"""Seconds per stage and per step, each logged as it ends, so a person can follow long work."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("recsys_spark")


class Stopwatch:
    """Seconds per step of a stage: `start(step)` ends the running step (logging it) and starts the next."""

    def __init__(self, stage: str) -> None:
        self.stage, self.seconds, self._step, self._t0 = stage, {}, None, 0.0

    def start(self, step: str) -> None:
        now = time.perf_counter()
        if self._step:
            self.seconds[self._step] = round(now - self._t0, 2)
            log.info("[%s] %s done in %.1f s", self.stage, self._step, now - self._t0)
        self._step, self._t0 = step, now

    def elapsed(self) -> float:
        """Seconds since the running step started."""
        return time.perf_counter() - self._t0

    def stop(self) -> dict[str, float]:
        """End the running step; {step: seconds} in the order the steps ran."""
        self.start("")
        return self.seconds
