"""`pdl compare`: base and head measured in the same command, as interleaved, order-balanced pairs, until the
paired change of every measure is decided or the budget ends.

Each side is a long-lived process of its own environment (``side.py``: started and warmed once, one round when
asked), so a pair costs two rounds, not two start-ups, and the sides may run different Pythons, libraries or
checkouts. A pair is a round of each side back to back; in every two pairs each side goes first once, which of the
two first drawn from the seed (Pinpoint's balanced shuffle). A pair that another process or the hypervisor
disturbed (``machine.contention``), in which a worker stalled or a side failed, is dropped whole and measured again
in the same order, so the kept pairs stay balanced. Pairs come in growing batches (``Budget``): after each, every
measure's paired change (``stats.paired``) is judged against its threshold; the pairs stop when all are decided
or one regressed, or when the time or the pairs run out (then: inconclusive).
"""

from __future__ import annotations

import json
import math
import os
import random
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..errors import ConfigError, PdlError
from ..machine.contention import Interference, Watch
from ..stats import paired
from ..stats.rounds import median
from .compared import Compared, Measured, Pair, SideInfo
from .point import Point
from .records import ResultSet, point_from_dict
from .runner import Plan, start_results, watch_for
from .side import PARENT_VAR, PROTOCOL

HELLO_S = 120.0  # a side's interpreter starting and importing pdl (a cold cache, torch for AlbumentationsX)
SETUP_S = 600.0  # loading the pipeline, starting and warming the loaders: one untimed epoch each
ROUND_LEAST_S = 60.0  # a round may take this long, or WATCHDOG × the slowest round or warm-up seen, before the side is stopped
WATCHDOG = 10
FAILURES = 3  # a side that fails this many rounds in a row stops the comparison with its error
GROWTH = 1.5  # each batch of pairs is this much larger than the pairs before it


@dataclass(frozen=True)
class Budget:
    """When to stop adding pairs: every measure decided, or the time (of the whole command) or the kept pairs used."""

    max_time_s: float = 300.0
    max_pairs: int = 60
    first: int = paired.MIN_PAIRS

    def next_target(self, kept: int) -> int:
        """The kept pairs to reach with the next batch: the first batch, then each ``GROWTH`` × what there is."""
        return min(self.max_pairs, max(self.first, math.ceil(kept * GROWTH)))


@dataclass(frozen=True)
class Thresholds:
    """The smallest slowdown that counts, per measure (shares)."""

    images: float
    speedup: float


@dataclass(frozen=True)
class Status:
    """Where a comparison stands, for the progress line: pairs kept and dropped, the time, the widest measure."""

    kept: int
    dropped: int
    elapsed_s: float
    max_time_s: float
    headline: Measured | None = None
    last_dropped: str = ""


class SideError(PdlError):
    """A side of `pdl compare` could not start, answer or measure."""


class SideProcess:
    """The parent's handle on one side: its process, a request at a time, each answer awaited within a bound."""

    def __init__(self, label: str, python: str, option: str) -> None:
        self.label, self.python, self.option = label, python, option
        # the side's stderr, read when it fails; a file, not a pipe, so a chatty side never blocks on it
        self._err = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed in close())
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "pdl.bench.side"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err,
                text=True,
                encoding="utf-8",
                env={**os.environ, "PYTHONUNBUFFERED": "1", PARENT_VAR: str(os.getpid())},  # it dies with pdl
            )
        except OSError as exc:
            self._err.close()
            raise ConfigError(f"{option} {python}: cannot start it ({exc.strerror}): give a Python interpreter's path") from None
        self.slowest_s = 0.0  # the slowest round (or warm-up epoch) seen: the watchdog's scale
        self.failures = 0
        self.pids: tuple[int, ...] = (self.proc.pid,)
        self.warnings: list[str] = []

    def ask(self, request: dict[str, Any], timeout_s: float, doing: str) -> dict[str, Any]:
        """Send ``request`` and await its answer (``receive``)."""
        self.send(request, doing)
        return self.receive(timeout_s, doing)

    def send(self, request: dict[str, Any], doing: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:
            self._gone(doing)

    def receive(self, timeout_s: float, doing: str) -> dict[str, Any]:
        """The answer to the request sent (``ok`` true), or the side's error raised as ``SideError`` with its exit
        code; no answer within ``timeout_s`` stops the side."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout_s):
                self.kill()
                raise SideError(
                    f"{self.label} side: no answer {doing} within {timeout_s:.0f} s; stopped it (pid {self.proc.pid}): "
                    "a worker or a transform that never returns?"
                )
        line = self.proc.stdout.readline()
        if not line:
            self._gone(doing)
        answer: dict[str, Any] = json.loads(line)
        self.warnings += [w for w in answer.get("warnings", ()) if w not in self.warnings]
        if not answer.get("ok"):
            error = SideError(f"{self.label} side: {answer.get('error', 'failed')}")
            error.exit_code = int(answer.get("exit_code", 1))
            error.worker_traceback = str(answer.get("traceback", ""))  # type: ignore[attr-defined]
            raise error
        return answer

    def _gone(self, doing: str) -> None:
        code = self.proc.wait(5)
        tail = self.log()[-600:].strip().replace("\n", " | ")
        raise SideError(f"{self.label} side ({self.python}) ended {doing} with exit code {code}: {tail or 'no output'}")

    def log(self) -> str:
        """What the side wrote to stderr so far."""
        self._err.flush()
        self._err.seek(0)
        return self._err.read()

    def hello(self) -> dict[str, Any]:
        """The side's versions; a Python without pdl, or with a pdl too old to serve, is one line."""
        try:
            said = self.ask({"op": "hello"}, HELLO_S, "at start")
        except SideError:
            raise self._unfit() from None
        if said.get("protocol") != PROTOCOL:
            raise ConfigError(
                f"{self.option} {self.python}: its pdl {said.get('pdl')} speaks the side protocol {said.get('protocol')}, "
                f"this pdl {PROTOCOL}: install the same pdl in both environments"
            )
        return said

    def _unfit(self) -> PdlError:
        log = self.log()
        if "No module named 'pdl'" in log:
            return ConfigError(f"{self.option} {self.python}: that environment has no pdl: {self.python} -m pip install pdl")
        if "pdl.bench.side" in log:
            found = subprocess.run(
                [self.python, "-c", "import importlib.metadata as m; print(m.version('pdl'))"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            version = f" {found.stdout.strip()}" if found.stdout.strip() else ""
            return ConfigError(
                f"{self.option} {self.python}: its pdl{version} is too old to serve pdl compare (it has no "
                "pdl.bench.side): install this pdl or a newer one there"
            )
        tail = log[-600:].strip().replace("\n", " | ")
        return SideError(f"{self.label} side ({self.python}) did not start: {tail or 'no output'}")

    def round_timeout(self) -> float:
        return max(ROUND_LEAST_S, WATCHDOG * self.slowest_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        """Ask the side to stop its loaders and end; end it after a bound either way."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.kill()
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        self._err.close()


@dataclass
class Sides:
    """Both sides started and set up: their processes, what they said, and each one's answer to every round."""

    base: SideProcess
    head: SideProcess
    infos: dict[str, SideInfo] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=lambda: {"base": 0, "head": 0})

    def __iter__(self) -> Any:
        return iter((self.base, self.head))


def start_sides(
    base: tuple[str, dict[str, Any]], head: tuple[str, dict[str, Any]], options: tuple[str, str], clock: Callable[[], float]
) -> Sides:
    """Start both sides' processes, then set them up at once (each loads its pipeline, starts and warms its
    loaders). ``base`` and ``head``: (python, Experiment fields); ``options``: the flags that name each Python."""
    t0 = clock()
    sides = Sides(SideProcess("base", base[0], options[0]), SideProcess("head", head[0], options[1]))
    try:
        said = {s.label: s.hello() for s in sides}
        fields = {"base": base[1], "head": head[1]}
        for s in sides:  # both at once: neither is timed yet
            s.send({"op": "setup", "experiment": fields[s.label]}, "setting up")
        for s in sides:
            ready = s.receive(SETUP_S, "setting up")
            s.slowest_s = max(w["warmup_epoch_s"] for w in ready["warm"])
            s.pids = tuple(ready["pids"])
            sides.infos[s.label] = SideInfo(
                label=s.label,
                python=s.python,
                pdl=said[s.label]["pdl"],
                augmentation=said[s.label]["augmentation"],
                options=fields[s.label],
                loaders=tuple(ready["loaders"]),
                pipeline=ready["pipeline"],
                images=int(ready["images"]),
                digest=ready["warm"][0]["digest"],
                setup_s=clock() - t0,
            )
    except BaseException:
        for s in sides:
            s.close()
        raise
    return sides


def order_of(kept: int, rng: random.Random, drawn: list[bool]) -> tuple[str, str]:
    """The order of the pair that will be kept as number ``kept``: in each two, each side first once; which one
    first in a block is drawn (``drawn`` holds the draws so far, one per block)."""
    block = kept // 2
    while len(drawn) <= block:
        drawn.append(rng.random() < 0.5)
    base_first = drawn[block] != (kept % 2 == 1)
    return ("base", "head") if base_first else ("head", "base")


def judge(infos: dict[str, SideInfo], kept: Sequence[Pair], limits: Thresholds, final: bool) -> tuple[Measured, ...]:
    """Every measure's paired change over the kept pairs: each loader's images/s, each parallel loader's speedup
    over its side's own sequential loop. ``final``: the budget ended, so an undecided measure is inconclusive."""
    base, head = infos["base"], infos["head"]
    found = []
    for i, (b_name, h_name) in enumerate(zip(base.loaders, head.loaders, strict=True)):
        name = h_name if b_name == h_name else f"{b_name} → {h_name}"
        rates_b = [p.base_images / p.base_wall_s[i] for p in kept]
        rates_h = [p.head_images / p.head_wall_s[i] for p in kept]
        found.append(_measured("images/s", name, rates_b, rates_h, limits.images, final))
        if i:
            speed_b = [p.base_wall_s[0] / p.base_wall_s[i] for p in kept]
            speed_h = [p.head_wall_s[0] / p.head_wall_s[i] for p in kept]
            found.append(_measured("speedup", name, speed_b, speed_h, limits.speedup, final))
    return tuple(found)


def _measured(measure: str, loader: str, base: list[float], head: list[float], threshold: float, final: bool) -> Measured:
    ch = paired.change([math.log(h / b) for b, h in zip(base, head, strict=True)])
    status: str = paired.verdict(ch, threshold)
    more = None
    if status == "undecided":
        more = paired.pairs_to_decide(ch, threshold)
        status = "inconclusive" if final else "undecided"
    return Measured(measure, loader, median(base), median(head), ch.estimate, ch.low, ch.high, threshold, status, ch.pairs, more)


def decided(measured: Sequence[Measured]) -> bool:
    """Stop adding pairs: a measure regressed (nothing more can pass it), or every one is decided."""
    return any(m.status == "regressed" for m in measured) or all(m.status != "undecided" for m in measured)


def headline(measured: Sequence[Measured]) -> Measured | None:
    """The measure furthest from deciding (the widest interval among the undecided), for the progress line."""
    open_ = [m for m in measured if m.status == "undecided" and m.low is not None and m.high is not None]
    if not open_:
        return measured[0] if measured else None
    return max(open_, key=lambda m: (m.high or 0.0) - (m.low or 0.0))


@dataclass
class Pairs:
    """The comparison's loop: pairs measured one by one, kept or dropped, judged after each batch."""

    sides: Sides
    limits: Thresholds
    budget: Budget
    watch: Watch | None
    clock: Callable[[], float] = time.monotonic
    seed: int = 0
    measured: list[Pair] = field(default_factory=list)

    def run(self, started: float, progress: Callable[[Status], None], save: Callable[[Compared], None]) -> Compared:
        rng, drawn = random.Random(self.seed), []  # type: ignore[var-annotated]
        kept: list[Pair] = []
        target = self.budget.first
        verdicts: tuple[Measured, ...] = ()
        stopped = ""
        while not stopped:
            while len(kept) < target and not stopped:
                stopped = self._out_of_budget(started, len(kept))
                if stopped:
                    break
                pair = self._pair(order_of(len(kept), rng, drawn), len(self.measured))
                self.measured.append(pair)
                if pair.kept:
                    kept.append(pair)
                progress(self._status(started, kept, verdicts))
            if len(kept) >= 2:
                verdicts = judge(self.sides.infos, kept, self.limits, final=False)
            if verdicts and decided(verdicts):
                stopped = "regressed" if any(m.status == "regressed" for m in verdicts) else "decided"
            elif not stopped:
                target = self.budget.next_target(len(kept))
                stopped = self._out_of_budget(started, len(kept))
            save(self.compared(verdicts, stopped or "running", started))
            progress(self._status(started, kept, verdicts))
        if stopped not in ("decided", "regressed") and len(kept) >= 2:
            verdicts = judge(self.sides.infos, kept, self.limits, final=True)
        return self.compared(verdicts, stopped, started)

    def compared(self, verdicts: tuple[Measured, ...], stopped: str, started: float) -> Compared:
        infos = self.sides.infos
        seconds = self.clock() - started
        return Compared(
            infos["base"], infos["head"], tuple(self.measured), verdicts, paired.CONFIDENCE, stopped, seconds,
            self.limits.images, self.limits.speedup,
        )  # fmt: skip

    def _out_of_budget(self, started: float, kept: int) -> str:
        if kept >= self.budget.max_pairs:
            return "max-pairs"
        spent = [p.seconds for p in self.measured]
        typical = median(spent) if spent else 0.0
        if self.clock() - started + typical > self.budget.max_time_s:
            return "max-time"
        return ""

    def _status(self, started: float, kept: list[Pair], verdicts: tuple[Measured, ...]) -> Status:
        dropped = [p for p in self.measured if not p.kept]
        return Status(
            len(kept),
            len(dropped),
            self.clock() - started,
            self.budget.max_time_s,
            headline(verdicts),
            dropped[-1].why if dropped else "",
        )

    def _pair(self, order: tuple[str, str], number: int) -> Pair:
        """One round of each side in ``order``; dropped when disturbed or failed (then, a wait for quiet)."""
        sides = {"base": self.sides.base, "head": self.sides.head}
        watch = self.watch
        before = watch.reading() if watch is not None else None
        t0 = self.clock()
        answers: dict[str, dict[str, Any]] = {}
        why = ""
        for label in order:
            side = sides[label]
            try:
                answers[label] = side.ask(
                    {"op": "round", "number": self.sides.rounds[label]}, side.round_timeout(), f"to round {number + 1}"
                )
                side.failures = 0
            except SideError as exc:
                if side.proc.poll() is not None or side.failures + 1 >= FAILURES:
                    raise
                side.failures += 1
                why = str(exc)
            finally:
                self.sides.rounds[label] += 1
        seconds = self.clock() - t0
        seen: Interference | None = None
        if watch is not None and before is not None:
            pids = [pid for s in sides.values() for pid in s.pids]
            for label, answer in answers.items():
                if tuple(answer["pids"]) != sides[label].pids:
                    sides[label].pids = tuple(answer["pids"])
                    pids = [pid for s in sides.values() for pid in s.pids]
                    watch.follow(pids)  # a worker replaced: its successor is the side's own
            seen = watch.between(before, watch.reading())
            stalled = tuple(f"{label} side: {s}" for label, a in answers.items() for s in a.get("stalled", ()))
            if stalled:
                seen = replace(seen, stalled=stalled)
            if seen.disturbed and not why:
                why = seen.describe()
        for label, answer in answers.items():
            sides[label].slowest_s = max(sides[label].slowest_s, max(answer["wall_s"]))
        pair = Pair(
            order=",".join(order),
            base_wall_s=tuple(answers["base"]["wall_s"]) if "base" in answers else (),
            head_wall_s=tuple(answers["head"]["wall_s"]) if "head" in answers else (),
            base_images=int(answers["base"]["images"][0]) if "base" in answers else 0,
            head_images=int(answers["head"]["images"][0]) if "head" in answers else 0,
            kept=not why,
            why=why,
            interference=seen,
            seconds=seconds,
        )
        if seen is not None and seen.disturbed and watch is not None:
            watch.wait_quiet(seen)
        return pair

    def keep_rounds(self) -> dict[str, list[int]]:
        """Each side's round numbers that belong to kept pairs (a side counts every round it ran)."""
        found: dict[str, list[int]] = {"base": [], "head": []}
        counters = {"base": 0, "head": 0}
        for pair in self.measured:
            for label in pair.order.split(","):
                if pair.kept:
                    found[label].append(counters[label])
                counters[label] += 1
        return found


def warn_once(sides: Sides) -> list[str]:
    """The sides' warnings, each once, named by side."""
    return [f"{s.label} side: {w}" for s in sides for w in s.warnings]


class Progress(Protocol):
    """What the comparison tells its caller: a ``Status`` after each pair, and why it waits (``status``)."""

    def __call__(self, status: Status) -> None: ...

    def status(self, message: str) -> None: ...


def compare(
    plan: Plan,
    sides: tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]],
    limits: Thresholds,
    budget: Budget,
    save: Callable[[ResultSet], None],
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[ResultSet, list[str]]:
    """The whole comparison: both sides started and set up (``sides``: (python, Experiment fields) of base, then
    head), a wait for quiet, the pairs, each side's points over its kept rounds; saved after every batch. Returns
    the results and the sides' warnings (each once, named by side). The sides are closed however it ends."""
    started = clock()
    results = start_results(plan, kind="compare")
    watch = watch_for(plan.exp, progress.status)
    before = watch.reading()
    progress.status("starting both sides: loading, warming up")
    running = start_sides(sides[0], sides[1], ("--base-python", "python"), clock)
    try:
        watch.follow(pid for s in running for pid in s.pids)
        watch.wait_quiet(watch.between(before, watch.reading()))
        pairs = Pairs(running, limits, budget, watch, clock, seed=plan.exp.seed)
        compared = pairs.run(started, progress, lambda c: save(with_points(results, running, pairs, c)))
        final = replace(with_points(results, running, pairs, compared), complete=True)
        save(final)
    finally:
        for side in running:
            side.close()
    return final, list(dict.fromkeys(f"{s.label} side: {w}" for s in running for w in s.warnings))


def with_points(results: ResultSet, sides: Sides, pairs: Pairs, compared: Compared) -> ResultSet:
    """The results so far: both sides' points over their kept rounds (what each side's `pdl run` would show, with
    what the machine did in each kept pair), and the comparison."""
    keep = pairs.keep_rounds()
    points: list[Point] = []
    if keep["base"] and keep["head"]:
        seen = tuple(p.interference for p in pairs.measured if p.kept and p.interference is not None)
        for side in sides:
            answer = side.ask({"op": "points", "keep": keep[side.label]}, ROUND_LEAST_S, "making its points")
            for raw in answer["points"]:
                point = point_from_dict(raw)
                points.append(replace(point, side=side.label, interference=seen if len(seen) == point.rounds else ()))
    return replace(results, points=tuple(points), compared=compared)
