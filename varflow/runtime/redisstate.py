"""A run's shared state and the RPM limit in Redis: for processes on machines sharing no file system.

Chosen by ``--shared-limits redis://host:port/db`` (flows/resources.py). Every change is one Lua
script, so it is atomic however many processes call it:

* the run's ledger -- a hash ``varflow:<run_id>:ledger`` (stop outcome and message, spent,
  booked, calls) with the rules of varflow/runtime/runstate.py: the first stop wins, a call is booked only
  within the cap, settling swaps the estimate for the actual cost;
* its call slots -- leases in a sorted set ``varflow:<run_id>:slots`` (member: a holder's token,
  score: when its lease ends, in Redis's clock). Expired leases are dropped before a slot is
  counted, so a dead process's slot comes back after its lease. A process renews the leases it
  holds every third of a lease (a slot is also held while its call waits for the rate limit,
  which can outlast a request), so only a dead or frozen holder loses one;
* the RPM limit -- ``RedisRateLimiter``: the GCRA of varflow/runtime/ratelimit.py on a hash
  ``varflow:ratelimit:<scope>`` shared by every run using that Redis, timed by Redis's ``TIME``
  (machines' clocks differ; only differences of Redis times reach the callers).

Run keys expire ``RUN_KEY_TTL_S`` after their last change, so an unfinished run cannot fill
Redis; a finished run's flow removes them (``RedisState.close(discard=True)``). The password is
never in the URL (the run's parameters are recorded): it comes from ``VARFLOW_REDIS_PASSWORD``.
Core module: no Prefect, no storage.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

try:
    import redis
except ImportError:  # the redis extra is not installed: only --shared-limits redis://... needs it
    redis = None

from varflow.errors import ConfigurationError
from varflow.runtime.ratelimit import HORIZON_S, Limiter
from varflow.runtime.runstate import CAP_TOLERANCE_USD, SLOT_POLL_S, Ledger

PASSWORD_ENV = "VARFLOW_REDIS_PASSWORD"
SCHEMES = ("redis", "rediss")
KEY_PREFIX = "varflow"
MISSING = "--shared-limits redis://... needs the redis extra: pip install 'varflow[redis]'"
RUN_KEY_TTL_S = 7 * 86400  # a run's keys outlive its last change by this long, then Redis drops them
SLOT_LEASE_MARGIN_S = 60.0  # a slot's lease: the request timeout plus this
CONNECT_TIMEOUT_S = 5.0  # an unreachable Redis is reported after this long
COMMAND_TIMEOUT_S = 30.0  # one script or command; they are all O(slots)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_NUM = "local function num(v) return tonumber(v) or 0 end\n"
_FMT = "local function fmt(x) return string.format('%.17g', x) end\n"

_RESERVE = _NUM + _FMT + """
local spent = num(redis.call('HGET', KEYS[1], 'spent'))
local booked = num(redis.call('HGET', KEYS[1], 'booked'))
local estimate = tonumber(ARGV[1])
if ARGV[2] ~= '' and spent + booked + estimate > tonumber(ARGV[2]) + tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'booked', fmt(booked + estimate))
redis.call('HINCRBY', KEYS[1], 'calls', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

_SETTLE = _NUM + _FMT + """
local booked = num(redis.call('HGET', KEYS[1], 'booked')) - tonumber(ARGV[1])
if booked < 0 then booked = 0 end
redis.call('HSET', KEYS[1], 'booked', fmt(booked),
           'spent', fmt(num(redis.call('HGET', KEYS[1], 'spent')) + tonumber(ARGV[2])))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_STOP = """
if redis.call('HEXISTS', KEYS[1], 'stop_outcome') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'stop_outcome', ARGV[1], 'stop_message', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_TAKE_SLOT = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

_RENEW_SLOTS = _NOW + """
local renewed = 0
for i = 3, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return renewed
"""

# GCRA, as varflow/runtime/ratelimit.py: ARGV = op (reserve|defer|peek), interval, tolerance, seconds, horizon.
# Returns {result, now} as strings (a Lua number would come back as a truncated integer).
_RATE = _NUM + _NOW + """
local op, interval, tolerance = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local horizon = tonumber(ARGV[5])
local tat = num(redis.call('HGET', KEYS[1], 'tat'))
local paused = num(redis.call('HGET', KEYS[1], 'paused_until'))
if tat > now + horizon then tat = 0 end
if paused > now + horizon then paused = 0 end
local result = paused
if op == 'reserve' then
  local earliest = math.max(now, paused)
  result = earliest
  if interval > 0 then
    tat = math.max(tat, earliest)
    result = math.max(earliest, tat - tolerance)
    tat = tat + interval
  end
elseif op == 'defer' then
  paused = math.max(paused, now + tonumber(ARGV[4]))
  result = paused
end
if op ~= 'peek' then
  redis.call('HSET', KEYS[1], 'tat', string.format('%.17g', tat), 'paused_until', string.format('%.17g', paused))
  redis.call('EXPIRE', KEYS[1], math.ceil(math.max(tat, paused, now) - now) + 1)
end
return {string.format('%.6f', result), string.format('%.6f', now)}
"""


# -- connecting ------------------------------------------------------------------------------------

def is_redis_url(value: str) -> bool:
    return urlsplit(value).scheme in SCHEMES


def redis_address(url: str) -> str:
    """``host:port/db`` of ``url``, without any credentials (for messages)."""
    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


def check_redis_url(url: str) -> None:
    """Refuse a URL that is not Redis's or that carries a password (parameters are recorded)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"shared limits: {parts.scheme or url!r} is not a Redis URL (redis://host:port/db)")
    if parts.password or "password" in parse_qs(parts.query):
        raise ConfigurationError(f"shared limits: the Redis URL for {redis_address(url)} holds a password, and the "
                         f"run's parameters are recorded: drop it from the URL and set {PASSWORD_ENV} instead")
    if redis is None:
        raise ConfigurationError(MISSING)


def connect(url: str) -> redis.Redis:
    """A client of the Redis at ``url`` (password from ``VARFLOW_REDIS_PASSWORD``), checked with a
    PING: raises a one-line ValueError naming the address when it cannot be used."""
    check_redis_url(url)
    address = redis_address(url)
    client = redis.Redis.from_url(url, password=os.environ.get(PASSWORD_ENV) or None, decode_responses=True,
                                  socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=COMMAND_TIMEOUT_S)
    try:
        client.ping()
    except redis.AuthenticationError:
        client.close()
        raise ConfigurationError(f"Redis at {address} refused the connection's credentials: set {PASSWORD_ENV} to its "
                         f"password (or unset it for a Redis without one)") from None
    except redis.RedisError as exc:
        client.close()
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "password" in reason.lower() or "AUTH" in reason:
            reason += f" (check {PASSWORD_ENV})"
        raise ConfigurationError(f"cannot reach Redis at {address} for the run's shared limits ({reason}): start it "
                         f"or fix the address, or run with --shared-limits file (a data directory every "
                         f"worker shares)") from None
    return client


def slot_lease_s(timeout_s: float | None) -> float:
    """How long a call slot's lease lasts unrenewed: the request timeout plus a margin."""
    return (timeout_s or 0.0) + SLOT_LEASE_MARGIN_S


# -- the run's state -----------------------------------------------------------------------------

class RedisState:
    """A run's ledger and call slots in Redis, shared by every process using ``client``'s Redis."""

    def __init__(self, client: redis.Redis, run_id: str, slots: int | None = None, *,
                 lease_s: float = SLOT_LEASE_MARGIN_S, ttl_s: int = RUN_KEY_TTL_S, poll_s: float = SLOT_POLL_S):
        self.client = client
        self.run_id = run_id
        self.slots = slots or None
        self.lease_s, self.ttl_s, self.poll_s = lease_s, int(ttl_s), poll_s
        self.ledger_key = f"{KEY_PREFIX}:{run_id}:ledger"
        self.slots_key = f"{KEY_PREFIX}:{run_id}:slots"
        self._reserve, self._settle, self._stop, self._take, self._renew = (
            client.register_script(s) for s in (_RESERVE, _SETTLE, _STOP, _TAKE_SLOT, _RENEW_SLOTS))
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()
        self._token_prefix = f"{socket.gethostname()}:{os.getpid()}:"

    def __repr__(self) -> str:
        return f"RedisState({self.run_id!r}, slots={self.slots!r})"

    def ledger(self) -> Ledger:
        outcome, message, spent, booked, calls = self.client.hmget(
            self.ledger_key, "stop_outcome", "stop_message", "spent", "booked", "calls")
        return Ledger(outcome, message, float(spent or 0), float(booked or 0), int(calls or 0))

    def stop(self, outcome: str, message: str) -> bool:
        return bool(self._stop(keys=[self.ledger_key], args=[outcome, message, self.ttl_s]))

    def reserve(self, estimate: float, cap: float | None) -> bool:
        cap_arg = "" if cap is None else repr(float(cap))
        return bool(self._reserve(keys=[self.ledger_key],
                                  args=[repr(float(estimate)), cap_arg, repr(CAP_TOLERANCE_USD), self.ttl_s]))

    def settle(self, estimate: float, actual: float) -> None:
        self._settle(keys=[self.ledger_key], args=[repr(float(estimate)), repr(float(actual)), self.ttl_s])

    # -- call slots --------------------------------------------------------------------------------

    def take_slot(self, timeout: float | None) -> object | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        token = self._token_prefix + uuid.uuid4().hex
        while not self._take(keys=[self.slots_key], args=[token, self.slots, self.lease_s, self.ttl_s]):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)
        with self._lock:
            self._held.add(token)
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_leases, name="varflow-slot-leases", daemon=True)
                self._renewer.start()
        return token

    def give_slot(self, token: object) -> None:
        with self._lock:
            self._held.discard(token)
        self.client.zrem(self.slots_key, token)

    def _renew_leases(self) -> None:
        """Keep this process's leases alive while it holds any; ends when it holds none."""
        while not self._closed.wait(self.lease_s / 3):
            with self._lock:
                tokens = sorted(self._held)
                if not tokens:
                    self._renewer = None
                    return
            try:
                self._renew(keys=[self.slots_key], args=[self.lease_s, self.ttl_s, *tokens])
            except redis.RedisError:
                pass  # a blip: the next round renews (a lease outlasts two missed rounds)

    # -- the run's ends ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget an earlier attempt of the same run (the flow's process, before any work)."""
        self.client.delete(self.ledger_key, self.slots_key)

    def close(self, discard: bool) -> None:
        self._closed.set()
        try:
            if discard:
                self.client.delete(self.ledger_key, self.slots_key)
        finally:
            self.client.close()


class RedisRateLimiter(Limiter):
    """At most ``rpm`` starts per minute across every user of ``scope`` on this Redis; the API of
    varflow/runtime/ratelimit.py's ``RateLimiter`` (``defer`` pauses apply even with ``rpm=None``)."""

    def __init__(self, client: redis.Redis, scope: str, rpm: float | None = None, *, burst: int = 1):
        super().__init__(rpm, burst=burst)
        self.client = client
        self.scope = scope
        self.key = f"{KEY_PREFIX}:ratelimit:{scope}"
        self._script = client.register_script(_RATE)

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self.key!r}, rpm={self.rpm!r})"

    def _run(self, op: str, seconds: float = 0.0) -> float:
        """The script's answer, moved from Redis's clock to this machine's ``time.time()``."""
        result, now = self._script(keys=[self.key], args=[op, repr(self.interval), repr(self.tolerance),
                                                          repr(float(seconds)), repr(HORIZON_S)])
        return time.time() + (float(result) - float(now))

    def reserve(self) -> float:
        return self._run("reserve")

    def defer(self, seconds: float) -> None:
        if not seconds or seconds <= 0:
            return
        self._run("defer", min(float(seconds), HORIZON_S))

    def paused_until(self) -> float:
        return self._run("peek")


__all__ = ["PASSWORD_ENV", "RedisRateLimiter", "RedisState", "check_redis_url", "connect", "is_redis_url",
           "redis_address", "slot_lease_s"]
