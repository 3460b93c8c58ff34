"""The soak's verdict: does anything grow without bound? (pure: samples in, verdict out)

A run is cut into thirds by time. The first third is warm-up (caches fill, retention sets
reach their caps, the allocator finds its size) and is not judged. Each series is then
compared between the middle third and the last third, by medians so that one spike does
not decide: it *grows* when its median rose by more than the series' noise floor **and** by
more than its allowance per job processed in the last third. Something bounded levels off
before the middle third; a leak keeps climbing by about the same amount per job, so it
shows in every run long enough for the floor (a 10-minute run at 500 jobs/s sees a leak of
about 20 bytes per job against a 2 MiB floor). The least-squares slope over the last two
thirds is reported too, per minute, to read alongside.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    """A series' allowance: ``floor`` in its own unit, ``per_job`` per job processed."""

    floor: float
    per_job: float
    unit: str  # "B" (bytes) or "" (a count)


# Bytes for memory; jobs or entries for counts. Redis memory moves with the waiting set
# (a few hundred jobs in flight at any moment), a worker's RSS with the allocator's arenas.
LIMITS: dict[str, Limit] = {
    "redis_used_memory": Limit(1 * MiB, 8.0, "B"),
    "worker_rss": Limit(2 * MiB, 8.0, "B"),
    "producer_rss": Limit(2 * MiB, 8.0, "B"),
    "backlog": Limit(500, 0.01, ""),
    "events_len": Limit(2000, 0.01, ""),
}


@dataclass(frozen=True)
class Judgement:
    series: str
    middle: float  # median over the middle third
    last: float  # median over the last third
    jobs: int  # jobs processed in the last third
    slope_per_min: float
    grows: bool
    judged: bool  # False when a third had fewer than two samples

    @property
    def growth(self) -> float:
        return self.last - self.middle

    def describe(self) -> str:
        unit = LIMITS[self.series.split("[")[0]].unit
        if unit == "B":
            text = f"{self.middle / MiB:.1f} -> {self.last / MiB:.1f} MiB ({self.growth / MiB:+.2f} MiB"
            if self.jobs:
                text += f", {self.growth / self.jobs:+.1f} B/job"
            text += f", slope {self.slope_per_min / MiB:+.2f} MiB/min)"
        else:
            text = f"{self.middle:.0f} -> {self.last:.0f} ({self.slope_per_min:+.0f}/min)"
        return f"{self.series} {text}{' GROWS' if self.grows else ''}"


def slope(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope dy/dt; 0 for fewer than two distinct times."""
    if len(ts) < 2:
        return 0.0
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def judge(series: str, ts: Sequence[float], ys: Sequence[float], done: Sequence[int]) -> Judgement:
    """``ts`` seconds since the start, ``ys`` the series, ``done`` jobs processed per sample."""
    limit = LIMITS[series.split("[")[0]]
    end = ts[-1] if ts else 0.0
    mid = [i for i, t in enumerate(ts) if end / 3 <= t < 2 * end / 3]
    last = [i for i, t in enumerate(ts) if t >= 2 * end / 3]
    tail = [i for i, t in enumerate(ts) if t >= end / 3]
    per_min = 60.0 * slope([ts[i] for i in tail], [ys[i] for i in tail])
    if len(mid) < 2 or len(last) < 2:
        return Judgement(series, float("nan"), float("nan"), 0, per_min, False, False)
    m = statistics.median(ys[i] for i in mid)
    lst = statistics.median(ys[i] for i in last)
    jobs = sum(done[i] for i in last)
    grows = lst - m > limit.floor and lst - m > limit.per_job * max(jobs, 1)
    return Judgement(series, m, lst, jobs, per_min, grows, True)


def verdict(judgements: Sequence[Judgement]) -> tuple[bool, str]:
    """(bounded, the one-line verdict printed at the end of a soak)."""
    growing = [j for j in judgements if j.grows]
    unjudged = [j.series for j in judgements if not j.judged]
    if growing:
        return False, "soak verdict: GROWS: " + "; ".join(j.describe() for j in growing)
    if unjudged and len(unjudged) == len(judgements):
        return True, "soak verdict: NOT JUDGED (too few samples in a third: run longer)"
    shown = [j for j in judgements if j.judged and not j.series.startswith("producer")]
    return True, "soak verdict: BOUNDED: " + "; ".join(j.describe() for j in shown)
