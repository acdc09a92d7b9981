"""One side of `pdl compare`: a long-lived process in the side's own Python environment that sets up a run's
loaders once and measures one round when asked.

Started as ``PYTHON -m pdl.bench.side``; it answers JSON lines: a request a line on stdin, its answer a line on
the stdout it was started with. At start it moves that stdout to a private descriptor and points fd 1 at stderr,
so a library that prints (a deprecation notice, a banner) cannot corrupt an answer.

Requests, in order (``op``):
- ``hello``: the protocol version, pdl's and Python's, the augmentation library's; nothing measured.
- ``setup`` with ``experiment`` (``Experiment`` fields; one pipeline, worker count and batch size): the options
  are checked, the pipeline loaded, the loaders started and warmed up (one untimed epoch each, digested).
- ``round`` with ``number``: one timed epoch of every loader, as `pdl run` times one round (the sequential loop
  and the loaders, the order flipped on odd numbers); with the workers a loader named stalled meanwhile.
- ``points`` with ``keep`` (round numbers): each loader's point over those rounds, as `pdl run` would make it.
- ``close``: the loaders stopped; the process ends. End of input does the same.

An answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": one line, "exit_code": n}``; a warning raised
while answering travels in ``warnings``. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from .._env import keep_freed_memory, limit_threads
from .._version import __version__
from ..errors import ConfigError, PdlError
from ..loaders import Loader, make_loader
from ..loaders.forking import die_with_parent
from .experiment import Experiment
from .runner import prepare
from .timing import EpochTiming, WarmUp, Workload, make_point, one_round, warm_all

PROTOCOL = 1
"""Bumped when a request or an answer changes meaning: the parent refuses a side that speaks another."""
PARENT_VAR = "PDL_SIDE_PARENT"  # the parent's pid: the side dies with it, however it dies
TUPLES = ("pipelines", "workers", "batch_sizes", "loaders")  # Experiment fields that are tuples (JSON gives lists)


def experiment_from(fields: dict[str, Any]) -> Experiment:
    """An ``Experiment`` from its fields as JSON carries them; a field this pdl does not know is one line."""
    known = {f.name for f in dataclasses.fields(Experiment)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"this pdl ({__version__}) has no option {unknown[0]!r}: install the same pdl on both sides")
    given: dict[str, Any] = {k: tuple(v) if k in TUPLES else v for k, v in fields.items()}
    given["inputs"] = Path(given["inputs"])
    return Experiment(**given)


class Side:
    """The loaders of one side, started and warmed once; every round's epochs kept for the points."""

    def __init__(self, exp: Experiment) -> None:
        if exp.points != 1:
            raise ConfigError("a side of pdl compare measures one pipeline, worker count and batch size")
        limit_threads()  # the sequential loop runs under the workers' settings, as in `pdl run`
        keep_freed_memory()
        plan = prepare(exp)
        self.exp = exp
        self.work = Workload(plan.dataset, plan.pipelines[0], exp.spec(exp.batch_sizes[0], exp.workers[0]), exp.loaders)
        self.names = exp.loaders
        self._stack = ExitStack()
        self.loaders: list[Loader] = []
        for name in self.names:
            loader = make_loader(name, self.work.dataset, self.work.pipeline, self.work.spec)
            self._stack.callback(loader.close)
            self.loaders.append(loader)
        self.warm: list[WarmUp] = []
        self.rounds: list[list[EpochTiming]] = []

    def start(self) -> dict[str, Any]:
        self.warm = warm_all(self.loaders, self.names)
        return {
            "loaders": list(self.names),
            "images": len(self.work.dataset),
            "pipeline": self.work.pipeline.name,
            "warm": [dataclasses.asdict(w) for w in self.warm],
            "pids": self.pids(),
        }

    def pids(self) -> list[int]:
        return [os.getpid(), *(pid for loader in self.loaders for pid in loader.worker_pids)]

    def round(self, number: int) -> dict[str, Any]:
        epochs = one_round(self.loaders, self.names, number)
        self.rounds.append(epochs)
        stalled = [said for loader in self.loaders for said in loader.stalls()]
        return {
            "wall_s": [e.wall_s for e in epochs],
            "images": [e.images for e in epochs],
            "cpu_s": [e.cpu_main_s + e.cpu_workers_s for e in epochs],
            "stalled": stalled,
            "pids": self.pids(),
        }

    def points(self, keep: Iterable[int]) -> list[dict[str, Any]]:
        kept = [self.rounds[r] for r in keep]
        if not kept:
            raise ConfigError("no round to make points of")
        runs = [[epochs[i] for epochs in kept] for i in range(len(self.loaders))]
        digest = self.warm[0].digest
        return [
            dataclasses.asdict(make_point(self.work, loader, self.warm[i], runs[i], runs[0], digest))
            for i, loader in enumerate(self.loaders)
        ]

    def close(self) -> None:
        self._stack.close()


def hello() -> dict[str, Any]:
    from .._augment import augmentation_library

    library, version = augmentation_library()
    return {
        "protocol": PROTOCOL,
        "pdl": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "augmentation": f"{library} {version}",
    }


def serve(requests: IO[str], answers: IO[str]) -> None:
    """Answer requests until ``close`` or the end of input; the loaders are closed however it ends."""
    server = Server()
    try:
        for line in requests:
            request = json.loads(line)
            if request.get("op") == "close":
                break
            answers.write(json.dumps(_answer(functools.partial(server.handle, request))) + "\n")
            answers.flush()
    finally:
        server.close()
        answers.write(json.dumps({"ok": True}) + "\n")
        answers.flush()


class Server:
    """The requests' state: no side until ``setup`` made one."""

    def __init__(self) -> None:
        self.side: Side | None = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "hello":
            return hello()
        if op == "setup":
            if self.side is not None:
                raise ConfigError("this side is set up already")
            self.side = Side(experiment_from(request["experiment"]))
            return self.side.start()
        if self.side is None:
            raise ConfigError(f"{op!r} before setup")
        if op == "round":
            return self.side.round(int(request["number"]))
        if op == "points":
            return {"points": self.side.points(int(r) for r in request["keep"])}
        raise ConfigError(f"unknown request {op!r}")

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


def _answer(handle: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The handler's answer with ``ok``, or the error as one line; warnings raised meanwhile carried along."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            answer = {"ok": True, **handle()}
        except PdlError as exc:
            answer = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        except Exception as exc:  # a bug, or a library's own error: one line, and the traceback for --verbose
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            answer = {"ok": False, "error": text, "exit_code": 1, "traceback": traceback.format_exc()}
    answer["warnings"] = sorted({str(w.message) for w in caught})
    return answer


def main() -> None:
    """``python -m pdl.bench.side``: the answers go to the stdout it was started with, anything else printed to
    stderr. Ctrl-C is the parent's: it closes the sides."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.environ.pop(PARENT_VAR, "")
    if parent.isdigit():  # not a preexec_fn: the parent has threads (its progress bar) when it starts a side
        die_with_parent(int(parent))
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
