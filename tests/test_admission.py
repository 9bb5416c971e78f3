"""The admission loop (varflow/processing/admission.py), driven by plain callables: no Prefect."""

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from threading import Event

from varflow.processing.admission import Admission
from varflow.processing.memory import MemoryWindow


class Clock:
    """Pieces that end in the order they started (a queue): wait returns the oldest."""

    def __init__(self):
        self.log: list[str] = []

    def wait(self, handles):
        self.log.append(f"wait {sorted(handles)}")
        return [(min(handles), None)]

    def finish(self, handle, payload, failure):
        self.log.append(f"finish {handle} {payload} {failure}")


def test_submits_while_the_window_admits_and_finishes_one_when_it_does_not():
    clock = Clock()
    adm = Admission(MemoryWindow(budget_bytes=100, max_images=8), wait=clock.wait, finish=clock.finish)
    for i, cost in enumerate([60, 30, 50, 10]):
        adm.submit(cost, lambda i=i: (i, f"p{i}"))
        clock.log.append(f"started {i}")
    assert clock.log == ["started 0", "started 1",       # 60 + 30 fit in 100
                         "wait [0, 1]", "finish 0 p0 None", "started 2",  # 50 waits for room: 0 ends
                         "started 3"]                      # 30 + 50 + 10 fit
    assert (adm.window.in_flight, adm.window.in_flight_bytes) == (3, 90)
    adm.drain()
    assert clock.log[6:] == ["wait [1, 2, 3]", "finish 1 p1 None", "wait [2, 3]", "finish 2 p2 None",
                             "wait [3]", "finish 3 p3 None"]
    assert adm.pending == {} and (adm.window.in_flight, adm.window.in_flight_bytes) == (0, 0)


def test_the_count_limit_admits_one_at_a_time_and_a_huge_piece_alone():
    clock = Clock()
    adm = Admission(MemoryWindow(budget_bytes=100, max_images=1), wait=clock.wait, finish=clock.finish)
    adm.submit(1000, lambda: ("a", None))  # larger than the budget: admitted when nothing is in flight
    adm.submit(1, lambda: ("b", None))
    assert clock.log == ["wait ['a']", "finish a None None"] and list(adm.pending) == ["b"]


def test_a_start_that_declines_leaves_the_window_as_it_was():
    clock = Clock()
    adm = Admission(MemoryWindow(budget_bytes=100, max_images=8), wait=clock.wait, finish=clock.finish)
    assert adm.submit(40, lambda: None) is None
    assert adm.pending == {} and adm.window.in_flight_bytes == 0


def test_a_wait_that_gives_up_ends_every_piece_with_its_failure_once():
    ended = []
    gone = RuntimeError("no workers")
    adm = Admission(MemoryWindow(budget_bytes=100, max_images=8),
                    wait=lambda handles: [(h, gone) for h in handles + handles],  # reported twice
                    finish=lambda h, payload, failure: ended.append((h, failure)))
    adm.submit(10, lambda: ("x", 1))
    adm.submit(10, lambda: ("y", 2))
    adm.drain()
    assert ended == [("x", gone), ("y", gone)] and adm.window.in_flight == 0


def test_real_threads_never_exceed_the_window():
    """Driven by a thread pool's futures: at most max_images run at once, whatever their order."""
    running, most, gates = [], [0], [Event() for _ in range(6)]

    def work(i):
        running.append(i)
        most[0] = max(most[0], len(running))
        gates[i].wait(5)
        running.remove(i)
        return i

    finished = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        def wait_one(futures):
            for g in gates:  # let the oldest running piece end
                if not g.is_set():
                    g.set()
                    break
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            return [(f, None) for f in done]

        adm = Admission(MemoryWindow(budget_bytes=10**9, max_images=2), wait=wait_one,
                        finish=lambda f, i, failure: finished.append(f.result()))
        for i in range(6):
            adm.submit(1, lambda i=i: (pool.submit(work, i), i))
        adm.drain()
    assert sorted(finished) == list(range(6)) and most[0] <= 2
