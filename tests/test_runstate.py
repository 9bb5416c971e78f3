"""A run's limits (stop, budget, call slots, the RPM limit) hold across real processes.

Each behaviour runs on every state that claims it: ``memory`` with threads of one process,
``file`` and ``redis`` with separate spawned processes (tests/runstate_child.py), which build
their control from the run's spec as a Dask worker does. The Redis tests need the Redis at
``VARFLOW_TEST_REDIS`` (default 127.0.0.1:6379, as in CI) and fail, saying so, without it.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import runstate_child as child
from pydantic import ValidationError
from varflow.flows.parameters import RunParameters
from varflow.flows.resources import open_resources, resource_spec, run_control

from varflow.runtime.redisstate import PASSWORD_ENV, RUN_KEY_TTL_S, RedisRateLimiter, connect
from varflow.runtime.resources import CallPolicy, ResourceSpec
from varflow.runtime.runstate import shared_dir

REDIS_URL = os.environ.get("VARFLOW_TEST_REDIS", "redis://127.0.0.1:6379/0")
KINDS = ["memory", "file", "redis"]
PROCESSES = 4
WAIT_S = 60  # the longest any worker's part may take (a hang fails instead of blocking)


def barrier(tmp_path: Path, n: int) -> tuple[str, int]:
    """Where ``n`` workers meet to start together (runstate_child.gather)."""
    folder = tmp_path / f"barrier-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return str(folder), n


@pytest.fixture(scope="module")
def pool():
    """Spawned processes (like Dask's workers), started once for the module."""
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as p:
        yield p


@pytest.fixture(scope="module")
def redis_client():
    try:
        client = connect(REDIS_URL)
    except ValueError as exc:
        pytest.fail(f"the Redis tests need a Redis at {REDIS_URL} (set VARFLOW_TEST_REDIS; CI runs one): {exc}")
    yield client
    client.close()


class Run:
    """One run's spec and the flow's control over it, for one kind of state."""

    def __init__(self, kind: str, home: Path, slots: int | None = None, cap: float | None = None):
        self.kind = kind
        shared = {"memory": "", "file": "file", "redis": REDIS_URL}[kind]
        self.spec = ResourceSpec(f"test-{uuid.uuid4().hex}", str(home), "local", shared_limits=shared,
                                 policy=CallPolicy(max_cost_usd=cap, concurrency=slots))
        self.control = run_control(self.spec, owner=True)

    @property
    def where(self):
        """What a worker gets: the control itself for threads, the spec for processes."""
        return self.control if self.kind == "memory" else self.spec

    def run_all(self, pool, fn, args_list: list[tuple]) -> list:
        if self.kind == "memory":
            with ThreadPoolExecutor(len(args_list)) as threads:
                return list(threads.map(lambda a: fn(self.where, *a), args_list))
        pending = [pool.apply_async(fn, (self.where, *a)) for a in args_list]
        return [p.get(timeout=WAIT_S) for p in pending]

    def close(self) -> None:
        self.control.close(discard=True)


@pytest.fixture(params=KINDS)
def kind(request):
    if request.param == "redis":
        request.getfixturevalue("redis_client")
    return request.param


@pytest.fixture
def runs(tmp_path):
    made = []

    def make(kind, **kw) -> Run:
        made.append(Run(kind, tmp_path, **kw))
        return made[-1]

    yield make
    for run in made:
        run.close()


def test_the_cap_is_never_passed_when_four_workers_reserve_at_once(pool, kind, runs, tmp_path):
    run = runs(kind, cap=10.0)
    results = run.run_all(pool, child.reserve_many, [(20, 0.25, barrier(tmp_path, PROCESSES))] * PROCESSES)
    assert sum(n for n, _ in results) == 40  # 80 tries of $0.25 against a $10.00 cap
    if kind != "memory":
        assert len({pid for _, pid in results}) == PROCESSES  # four real processes
    c = run.control
    assert (c.booked_usd, c.spent_usd, c.calls) == (10.0, 0.0, 40)
    assert not c.reserve(0.25)
    for _ in range(40):
        c.settle(0.25, 0.125)  # the calls came back cheaper than their estimates
    assert (c.booked_usd, c.spent_usd, c.calls) == (0.0, 5.0, 40)
    assert c.reserve(5.0) and not c.reserve(0.01)  # what settling freed, and not a cent more


def max_overlap(log: Path) -> int:
    events = []
    for line in log.read_text().split("\n"):
        if line:
            enter, leave = map(float, line.split())
            events += [(enter, 1), (leave, -1)]
    held = most = 0
    for _, step in sorted(events):  # at a tie a leave (-1) sorts first
        held += step
        most = max(most, held)
    return most


def test_at_most_n_calls_hold_slots_at_once_across_three_workers(pool, kind, runs, tmp_path):
    run = runs(kind, slots=2)
    log = tmp_path / "slots.log"
    pids = run.run_all(pool, child.hold_slots, [(4, 0.1, barrier(tmp_path, 3), str(log))] * 3)
    assert len(log.read_text().splitlines()) == 12
    assert max_overlap(log) == 2  # never 3; and 2 at some point, so the slots did not serialize
    if kind != "memory":
        assert len(set(pids)) == 3


def test_the_first_stop_wins_and_every_worker_sees_its_reason(pool, kind, runs, tmp_path):
    run = runs(kind)
    start = barrier(tmp_path, PROCESSES)
    results = run.run_all(pool, child.race_stop, [(f"reason-{i}", f"message {i}", start) for i in range(PROCESSES)])
    winners = [(i, r) for i, r in enumerate(results) if r[1]]
    assert len(winners) == 1
    i, _ = winners[0]
    assert all(not before for before, *_ in results)  # nobody had stopped before the race
    assert {(o, m) for _, _, o, m, _ in results} == {(f"reason-{i}", f"message {i}")}
    c = run.control
    assert (c.stopped, c.stop_outcome, c.stop_message) == (True, f"reason-{i}", f"message {i}")
    assert not c.stop("later", "too late") and c.stop_outcome == f"reason-{i}"


@pytest.mark.parametrize("shared", ["file", "redis"])
def test_a_slot_held_by_a_killed_process_comes_back(shared, runs, tmp_path, request):
    """file: the OS drops a dead process's locks at once; redis: its lease runs out."""
    lease_s = 1.5 if shared == "redis" else None
    if shared == "redis":
        request.getfixturevalue("redis_client")
    run = runs(shared, slots=1)
    ready = tmp_path / "ready"
    proc = multiprocessing.get_context("spawn").Process(target=child.hold_forever, args=(run.spec, str(ready), lease_s))
    proc.start()
    try:
        deadline = time.time() + WAIT_S
        while not ready.exists() and proc.is_alive() and time.time() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the child never took its slot"
        time.sleep(lease_s or 0)  # a live holder keeps its lease past its first term
        with pytest.raises(TimeoutError, match="no call slot"), run.control.call_slot(timeout=0.3):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    killed = time.time()
    with run.control.call_slot(timeout=(lease_s or 0) + 5):
        back_after = time.time() - killed
    if shared == "redis":
        assert back_after >= lease_s * 2 / 3 - 0.1  # not before its lease ran out (renewed every third)
    else:
        assert back_after < 1.0


@pytest.mark.parametrize("shared", ["file", "redis"])
def test_the_flow_and_its_workers_share_one_state_and_build_it_once_per_process(shared, pool, tmp_path,
                                                                                 monkeypatch, request):
    if shared == "redis":
        request.getfixturevalue("redis_client")
    monkeypatch.setattr("varflow.flows.resources.result_storage", lambda home, results_dir: None)  # the Prefect API
    params = RunParameters(input_dir=str(tmp_path), backend="local", runner="dask", max_cost_usd=1.0,
                           generation_concurrency=2, shared_limits="" if shared == "file" else REDIS_URL)
    spec = resource_spec(params, tmp_path / "home", f"test-{uuid.uuid4().hex}")
    assert spec.shared_limits == ("file" if shared == "file" else REDIS_URL)
    res = open_resources(spec)
    try:
        assert open_resources(spec) is res and pickle.loads(pickle.dumps(res)) is res  # once per process
        res.control.reserve(0.25)
        same, owner, booked, pid = pool.apply(child.attach_twice, (pickle.dumps(res),))
        assert (same, owner, booked, pid != os.getpid()) == (True, False, True, True)
        assert (res.control.booked_usd, res.control.calls) == (0.5, 2)  # the worker's booking, seen here
    finally:
        res.close()
    if shared == "file":
        assert not shared_dir(spec.home, spec.run_id).exists()
    else:
        assert connect(REDIS_URL).keys(f"varflow:{spec.run_id}:*") == []
    assert open_resources(spec) is not res  # a closed one is built again (and starts afresh)
    again = open_resources(spec)
    assert again.control.calls == 0
    again.close()


def test_a_new_attempt_of_a_run_starts_from_nothing(tmp_path):
    """A retried flow run keeps its id: its owner must not inherit the last attempt's stop or spend."""
    run = Run("file", tmp_path, cap=1.0)
    run.control.reserve(0.5)
    run.control.stop("auth", "the key was refused")
    again = run_control(run.spec, owner=True)
    assert (again.stopped, again.booked_usd, again.calls) == (False, 0.0, 0)
    worker = run_control(run.spec, owner=False)
    again.reserve(0.25)
    assert worker.booked_usd == 0.25  # a worker attaches, it does not reset
    run.close()


def test_redis_keys_are_namespaced_expire_and_are_removed_at_the_end(runs, redis_client):
    run = runs("redis", slots=2, cap=1.0)
    run.control.reserve(0.25)
    with run.control.call_slot():
        keys = sorted(redis_client.keys(f"varflow:{run.spec.run_id}:*"))
        assert keys == [f"varflow:{run.spec.run_id}:ledger", f"varflow:{run.spec.run_id}:slots"]
        assert all(0 < redis_client.ttl(k) <= RUN_KEY_TTL_S for k in keys)
    run.control.close(discard=True)
    assert redis_client.keys(f"varflow:{run.spec.run_id}:*") == []


def test_the_redis_rate_limiter_spaces_starts_across_two_processes(pool, redis_client, tmp_path):
    scope = f"test/{uuid.uuid4().hex}"
    rpm, interval = 300.0, 0.2
    start = barrier(tmp_path, 2)
    try:
        pending = [pool.apply_async(child.acquire_times, (REDIS_URL, scope, rpm, 3, start)) for _ in range(2)]
        times = [t for p in pending for t in p.get(timeout=WAIT_S)]
    finally:
        redis_client.delete(f"varflow:ratelimit:{scope}")
    starts = sorted(s for s, _ in times)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 6 and min(gaps) >= interval * 0.75, gaps  # 60/rpm apart (less clock noise)
    assert starts[-1] - starts[0] == pytest.approx(5 * interval, abs=0.05)  # and no further
    assert all(woke >= start - 0.01 for start, woke in times)


def test_the_redis_rate_limiter_holds_everyone_back_for_a_deferral(pool, redis_client, tmp_path):
    scope = f"test/{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(redis_client, scope, None)
    folder, n = start = barrier(tmp_path, 3)  # two workers, and this process lets them go
    try:
        pending = [pool.apply_async(child.acquire_times, (REDIS_URL, scope, None, 1, start)) for _ in range(2)]
        deadline = time.time() + WAIT_S
        while len(os.listdir(folder)) < 2 and time.time() < deadline:
            time.sleep(0.005)
        deferred_at = time.time()
        limiter.defer(0.6)  # as a 429 with a retryDelay of 0.6 s would
        limiter.defer(0.1)  # a shorter pause never shortens a longer one
        assert limiter.paused_until() == pytest.approx(deferred_at + 0.6, abs=0.05)
        Path(folder, "go").touch()
        woke = [w - deferred_at for p in pending for _, w in p.get(timeout=WAIT_S)]
        assert all(0.6 - 0.02 <= w < 0.6 + 1.0 for w in woke), woke  # held back, then let go
    finally:
        redis_client.delete(f"varflow:ratelimit:{scope}")


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:6379/0", "redis://ops:hunter2@127.0.0.1:6379/0",
                                 "redis://127.0.0.1:6379/0?password=hunter2"])
def test_a_redis_url_with_a_password_is_refused_without_repeating_it(url, tmp_path):
    """Refused by the parameter model itself (flows/addresses.py), before Prefect records it; the
    one-line reason says where the password goes, and the value is never repeated."""
    with pytest.raises(ValidationError) as caught:
        RunParameters(input_dir=".", backend="local", shared_limits=url)
    (error,) = caught.value.errors()
    assert error["loc"] == ("shared_limits",) and "\n" not in error["msg"]
    assert PASSWORD_ENV in error["msg"] and "127.0.0.1" in error["msg"]
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(caught.value.errors(include_input=False))


def test_an_unreachable_redis_fails_before_any_work_in_one_line(tmp_path, monkeypatch):
    def no_prefect(*a):
        raise AssertionError("the Redis was not checked first")

    monkeypatch.setattr("varflow.flows.resources.result_storage", no_prefect)
    params = RunParameters(input_dir=".", backend="local", runner="dask", shared_limits="redis://127.0.0.1:1/0")
    with pytest.raises(ValueError) as caught:
        open_resources(resource_spec(params, tmp_path, "r"))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot reach Redis at 127.0.0.1:1/0")
    assert "start it" in message


def test_the_password_comes_from_the_environment(redis_client, monkeypatch):
    """A Redis user with a password: the URL names the user, VARFLOW_REDIS_PASSWORD holds the password."""
    user, password = f"varflow-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    redis_client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["varflow:*"],
                             commands=["+@all"])
    url = REDIS_URL.replace("redis://", f"redis://{user}@")
    try:
        monkeypatch.setenv(PASSWORD_ENV, password)
        assert connect(url).ping()
        monkeypatch.setenv(PASSWORD_ENV, "wrong-" + password)
        with pytest.raises(ValueError) as caught:
            connect(url)
        message = str(caught.value)
        assert PASSWORD_ENV in message and password not in message and "\n" not in message
    finally:
        redis_client.acl_deluser(user)


def test_a_place_that_is_neither_file_nor_redis_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'memcached' is not a place to share them"):
        resource_spec(RunParameters(input_dir=".", backend="local", shared_limits="memcached://x"), tmp_path, "r")
