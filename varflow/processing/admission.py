"""Admission of work into a memory window: start a piece while the window admits its cost, and
when it does not, wait for one in flight to end and record it first.

Prefect-free: the flow drives it with two callables, ``wait`` (block until pieces end) and
``finish`` (record an ended piece), and hands ``submit`` a ``start`` that begins one (a task run
in the flow; a thread, or nothing at all, in a test). The window (varflow/processing/memory.py)
decides what fits; this loop keeps its books: a piece's cost enters when it starts and leaves
when it has been recorded, whatever ended it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from varflow.processing.memory import MemoryWindow

Ended = Iterable[tuple[Hashable, BaseException | None]]


@dataclass
class Admission:
    """The pieces in flight and the window they fit in.

    ``wait(handles)`` blocks until at least one of ``handles`` has ended and returns the ended ones,
    each with the failure that ended it (None: it ended by itself; a failure: the caller gave up on
    it, say because its workers are gone). ``finish(handle, payload, failure)`` records one.
    """

    window: MemoryWindow
    wait: Callable[[list], Ended]
    finish: Callable[[Hashable, Any, BaseException | None], None]
    pending: dict = field(default_factory=dict)  # handle -> (cost, payload)

    def submit(self, cost: int, start: Callable[[], tuple[Hashable, Any] | None]) -> Hashable | None:
        """Make room for ``cost`` (recording what ends meanwhile), then ``start()`` one piece. ``start``
        returns (handle, payload), or None when it decided, now that there is room, not to start
        (the run stopped meanwhile, say): the window is then left as it was."""
        self.make_room(cost)
        started = start()
        if started is None:
            return None
        handle, payload = started
        self.window.enter(cost)
        self.pending[handle] = (cost, payload)
        return handle

    def make_room(self, cost: int) -> None:
        while self.pending and not self.window.admits(cost):
            self.finish_next()

    def finish_next(self) -> None:
        """Wait for pieces in flight to end; record each and free its place."""
        for handle, failure in self.wait(list(self.pending)):
            if handle in self.pending:  # a wait may report a piece twice; it is recorded once
                cost, payload = self.pending.pop(handle)
                self.window.leave(cost)
                self.finish(handle, payload, failure)

    def drain(self) -> None:
        """Wait for everything in flight and record it."""
        while self.pending:
            self.finish_next()
