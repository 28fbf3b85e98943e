"""Shared job state on Redis 7+ or Valkey (``MCP_STATE_URL=redis://...``), on ``redis.asyncio``.

Keys, all under ``mcp:``::

    job:{id}            the job's JSON snapshot: 7 days while it runs, MCP_JOB_TTL once done
    jobs:{owner}        sorted set of the owner's job ids by creation time (list_generations);
                        jobs:* holds every owner's (newest 100,000), for an admin's all=true
    key:{owner}:{hash}  an idempotency key -> job id, claimed with the job in one script
    running             hash job id -> the replica running it (what reapers check)
    queue               stream of job ids waiting for a replica (consumer group ``workers``)
    replica:{id}        a replica's lease, renewed every few seconds, gone LEASE_TTL s after it dies
    cancel:{id}         a cancel request, for a runner that missed the broadcast
    task:{id}           the job was created as an MCP task (its payload's inline mode)
    quota:{counter}     a token's usage counter (quotas.py: requests a minute, images a day, ...)

Channels: ``mcp:updates:{id}`` carries each saved snapshot; ``mcp:cancel`` carries job ids to stop.
Every call is bounded (5 s socket timeouts, two retries with backoff) and a failure is
``StateUnavailableError``, never a hang; the URL (and its password) is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError

from ..errors import StateUnavailableError
from ..quotas import Charge
from . import ACTIVE_TTL, ALL_OWNERS, LEASE_TTL

__all__ = ["RedisState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
RENEW_EVERY: Final = 3.0
RETRY_AFTER: Final = 5
P: Final = "mcp:"
QUEUE: Final = f"{P}queue"
GROUP: Final = "workers"

# KEYS: job, owner index, running hash, queue, idempotency key (or none). ARGV: snapshot,
# created_at, job id, replica ("" = queue the job), active ttl, job key prefix, all-owners index. Claims the key and
# records the job in one step, so two replicas given one key at the same moment start one job; a
# key whose job expired is reused.
_CREATE: Final = """
if #KEYS == 5 then
  local holder = redis.call('GET', KEYS[5])
  if holder then
    local snapshot = redis.call('GET', ARGV[6] .. holder)
    if snapshot then return snapshot end
  end
  redis.call('SET', KEYS[5], ARGV[3], 'EX', ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', ARGV[7], ARGV[2], ARGV[3])
if redis.call('ZCARD', ARGV[7]) > 100000 then redis.call('ZREMRANGEBYRANK', ARGV[7], 0, 999) end
if ARGV[4] == '' then
  redis.call('XADD', KEYS[4], '*', 'job', ARGV[3])
else
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
end
return false
"""


# KEYS: job, running hash, idempotency key (or none). ARGV: snapshot, replica, done ("1"/""), ttl,
# active ttl, channel, job id. Writes the snapshot unless the stored one is finished or names another
# replica: a replica cut off long enough to be declared lost must not overwrite the verdict
# (worker_lost, or the job queued again for someone else) when it reconnects.
_CLOSE_TIMEOUT_S: Final = 3.0

_SAVE: Final = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = cjson.decode(current)
  local state = stored['state']
  if state == 'succeeded' or state == 'failed' or state == 'cancelled' or stored['replica'] ~= ARGV[2] then
    return current
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
  redis.call('HDEL', KEYS[2], ARGV[7])
  if #KEYS == 3 then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
else
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
end
redis.call('PUBLISH', ARGV[6], ARGV[1])
return false
"""

# KEYS: counters. ARGV: amount, limit, ttl for each. All or nothing: {index, used} of the first
# counter the charge would take past its limit, else every counter is charged (ttl set once).
_RESERVE: Final = """
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) + 1e-9 then
    return {i - 1, tostring(used)}
  end
end
for i = 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[3 * i - 2])
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[3 * i]) end
end
return false
"""

# KEYS: counters. ARGV: the amount to give back to each; a counter never goes below 0.
_RELEASE: Final = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local left = tonumber(redis.call('INCRBYFLOAT', KEYS[i], -tonumber(ARGV[i])))
    if left < 0 then redis.call('SET', KEYS[i], '0', 'KEEPTTL') end
  end
end
return 0
"""


class RedisState:
    def __init__(self, url: str, replica_id: str) -> None:
        self.replica_id = replica_id
        self._client: aioredis.Redis = aioredis.from_url(
            url,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2),
            health_check_interval=15,
        )
        self._create = self._client.register_script(_CREATE)
        self._save = self._client.register_script(_SAVE)
        self._reserve = self._client.register_script(_RESERVE)
        self._release = self._client.register_script(_RELEASE)
        self._ok = True
        self._since = time.monotonic()
        self._routes: dict[str, set[asyncio.Queue[str]]] = {}
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def healthy(self) -> bool:
        return self._ok

    def steady(self) -> float:
        """Seconds since calls last started succeeding (0 while the backend is down)."""
        return time.monotonic() - self._since if self._ok else 0.0

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            result = await op
        except RedisError as exc:
            if self._ok:
                logger.warning("shared state (MCP_STATE_URL) is unavailable: %s", type(exc).__name__)
            self._ok = False
            raise StateUnavailableError(
                "the shared state (Redis, MCP_STATE_URL) is unavailable; try again shortly",
                details={"retry_after": RETRY_AFTER},
            ) from None
        if not self._ok:
            logger.info("shared state (MCP_STATE_URL) is reachable again")
            self._since = time.monotonic()
        self._ok = True
        return result

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, on_cancel: Callable[[str], None], tick: Callable[[], Awaitable[None]]) -> None:
        try:
            await self._call(self._client.ping())
        except StateUnavailableError:
            logger.warning("starting without the shared state; jobs will wait for it to come back")
        self._tasks = [
            asyncio.create_task(self._renew(), name="state-lease"),
            asyncio.create_task(self._housekeep(tick), name="state-housekeeping"),
            asyncio.create_task(self._listen(on_cancel), name="state-listen"),
        ]

    async def aclose(self) -> None:
        """Bounded: a hung Redis must not hang the server's shutdown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_CLOSE_TIMEOUT_S)
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._client.delete(f"{P}replica:{self.replica_id}")  # peers need not wait out the lease
                await self._client.aclose()
        except (RedisError, OSError, TimeoutError):
            pass

    async def _renew(self) -> None:
        """The lease alone, so slow housekeeping never lets it lapse."""
        while True:
            try:
                await self._call(self._client.set(f"{P}replica:{self.replica_id}", "1", ex=LEASE_TTL))
            except StateUnavailableError:
                pass
            await asyncio.sleep(RENEW_EVERY)

    async def _housekeep(self, tick: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await tick()
            except StateUnavailableError:
                pass
            except Exception:  # noqa: BLE001 - a bug in one round must not end the housekeeping
                logger.exception("shared-state housekeeping failed")

    async def _listen(self, on_cancel: Callable[[str], None]) -> None:
        """One pub/sub connection per replica; rebuilt with backoff when Redis goes away."""
        backoff = 0.1
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                first = set(self._routes)
                await pubsub.subscribe(f"{P}cancel", *first)
                self._pubsub = pubsub
                if late := set(self._routes) - first:  # followers that came during the subscribe
                    await pubsub.subscribe(*late)
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    channel, data = message["channel"], message["data"]
                    if channel == f"{P}cancel":
                        on_cancel(data)
                    for queue in self._routes.get(channel, ()):
                        queue.put_nowait(data)
            except (RedisError, OSError):
                self._pubsub = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self._pubsub = None
                try:
                    async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                        await pubsub.aclose()
                except (RedisError, OSError, TimeoutError):
                    pass

    # --- jobs ---------------------------------------------------------------------------------

    def _key(self, owner: str, key: str) -> str:
        return f"{P}key:{owner}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    async def create(
        self, job_id: str, owner: str, created_at: float, snapshot: str, key: str | None, *, queue: bool = False
    ) -> str | None:
        keys = [f"{P}job:{job_id}", f"{P}jobs:{owner}", f"{P}running", QUEUE]
        if key is not None:
            keys.append(self._key(owner, key))
        runner = "" if queue else self.replica_id
        args: list[str | float] = [snapshot, created_at, job_id, runner, ACTIVE_TTL, f"{P}job:", f"{P}jobs:{ALL_OWNERS}"]
        existing = await self._call(self._create(keys=keys, args=args))
        return str(existing) if existing else None

    async def save(
        self, job_id: str, snapshot: str, *, owner: str, key: str | None, done: bool, ttl: float
    ) -> str | None:
        keys = [f"{P}job:{job_id}", f"{P}running"]
        if key is not None:
            keys.append(self._key(owner, key))
        args = [snapshot, self.replica_id, "1" if done else "", max(1, int(ttl)), ACTIVE_TTL, f"{P}updates:{job_id}", job_id]
        refused = await self._call(self._save(keys=keys, args=args))
        return str(refused) if refused else None

    async def replace(self, job_id: str, old: str, new: str, ttl: float, then: str = "done") -> bool:
        name = f"{P}job:{job_id}"

        async def attempt() -> bool:
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(name)
                if await pipe.get(name) != old:
                    await pipe.unwatch()  # type: ignore[no-untyped-call]
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(name, new, ex=max(1, int(ttl)) if then == "done" else ACTIVE_TTL)
                if then == "run":
                    pipe.hset(f"{P}running", job_id, self.replica_id)
                else:
                    pipe.hdel(f"{P}running", job_id)
                if then == "queue":
                    pipe.xadd(QUEUE, {"job": job_id})
                pipe.publish(f"{P}updates:{job_id}", new)
                try:
                    await pipe.execute()
                except WatchError:
                    return False
                return True

        return await self._call(attempt())

    async def load(self, job_id: str) -> str | None:
        return cast("str | None", await self._call(self._client.get(f"{P}job:{job_id}")))

    async def recent(self, owner: str, limit: int) -> list[str]:
        index = f"{P}jobs:{owner}"
        ids = cast("list[str]", await self._call(self._client.zrevrange(index, 0, limit - 1)))
        if not ids:
            return []
        snapshots = cast("list[str | None]", await self._call(self._client.mget([f"{P}job:{i}" for i in ids])))
        gone = [i for i, s in zip(ids, snapshots, strict=True) if s is None]
        if gone:  # expired jobs leave the index when someone lists
            await self._call(self._client.zrem(index, *gone))
        return [s for s in snapshots if s is not None]

    async def running(self) -> dict[str, str]:
        return cast("dict[str, str]", await self._call(self._client.hgetall(f"{P}running")))

    async def forget_running(self, job_id: str) -> None:
        await self._call(self._client.hdel(f"{P}running", job_id))

    async def alive(self, replicas: Iterable[str]) -> set[str]:
        names = sorted(set(replicas))
        if not names:
            return set()
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.exists(f"{P}replica:{name}")
        found = await self._call(pipe.execute())
        return {name for name, n in zip(names, found, strict=True) if n}

    @asynccontextmanager
    async def follow(self, job_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        channel = f"{P}updates:{job_id}"
        queue: asyncio.Queue[str] = asyncio.Queue()
        routes = self._routes.setdefault(channel, set())
        routes.add(queue)
        try:
            if len(routes) == 1 and self._pubsub is not None:
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError):
                    pass  # the listener resubscribes every route when it reconnects
            yield queue
        finally:
            routes.discard(queue)
            if not routes:
                self._routes.pop(channel, None)
                if self._pubsub is not None:
                    try:
                        await self._pubsub.unsubscribe(channel)
                    except (RedisError, OSError):
                        pass

    async def mark_task(self, job_id: str, inline: str) -> None:
        await self._call(self._client.set(f"{P}task:{job_id}", inline, ex=ACTIVE_TTL))

    async def task_marks(self, job_ids: Iterable[str]) -> dict[str, str]:
        ids = list(job_ids)
        if not ids:
            return {}
        marks = cast("list[str | None]", await self._call(self._client.mget([f"{P}task:{i}" for i in ids])))
        return {i: m for i, m in zip(ids, marks, strict=True) if m is not None}

    # --- quota counters (the Ledger of quotas.py) --------------------------------------------

    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, float] | None:
        if not charges:
            return None
        args: list[Any] = []
        for c in charges:
            args += [repr(float(c.amount)), repr(float(c.limit)), c.ttl]
        found = await self._call(self._reserve(keys=[f"{P}quota:{c.key}" for c in charges], args=args))
        return None if not found else (int(found[0]), float(found[1]))

    async def release(self, amounts: Sequence[tuple[str, float]]) -> None:
        if amounts:
            await self._call(self._release(keys=[f"{P}quota:{k}" for k, _ in amounts],
                                           args=[repr(float(a)) for _, a in amounts]))

    # --- the queue --------------------------------------------------------------------------

    async def _group(self) -> None:
        try:
            await self._client.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
        except RedisError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def take(self, block: float) -> tuple[str, str] | None:
        """The next queued job (entry id, job id), waiting up to ``block`` s; ``ack`` it once claimed."""

        async def read() -> Any:
            await self._group()
            return await self._client.xreadgroup(
                GROUP, self.replica_id, {QUEUE: ">"}, count=1, block=max(1, int(block * 1000))
            )

        # A blocking read must outlast the socket timeout's budget, so it gets its own bound.
        reply = await self._call(read())
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                return str(entry_id), str(fields.get("job", ""))
        return None

    async def reclaim(self, idle: float) -> list[tuple[str, str]]:
        """Entries taken by a replica that died before claiming them (idle over ``idle`` s)."""

        async def claim() -> Any:
            await self._group()
            return await self._client.xautoclaim(QUEUE, GROUP, self.replica_id, int(idle * 1000), count=10)

        reply = await self._call(claim())
        return [(str(entry_id), str(fields.get("job", ""))) for entry_id, fields in reply[1] if fields]

    async def ack(self, entry_id: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.xack(QUEUE, GROUP, entry_id)
        pipe.xdel(QUEUE, entry_id)
        await self._call(pipe.execute())

    async def queued(self) -> int:
        return int(await self._call(self._client.xlen(QUEUE)))

    async def cancel(self, job_id: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.set(f"{P}cancel:{job_id}", str(time.time()), ex=ACTIVE_TTL)
        pipe.publish(f"{P}cancel", job_id)
        await self._call(pipe.execute())

    async def cancels(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)
        if not ids:
            return set()
        flags = cast("list[str | None]", await self._call(self._client.mget([f"{P}cancel:{i}" for i in ids])))
        return {i for i, flag in zip(ids, flags, strict=True) if flag is not None}

    # --- handshake-era HTTP sessions ----------------------------------------------------------
    # session:{id}  JSON {"replica": ..., "url": MCP_REPLICA_URL or null} while the session lives
    #               on that replica: renewed by it before the TTL runs out, deleted when it ends

    async def register_sessions(self, session_ids: Iterable[str], url: str | None, ttl: float) -> None:
        ids = list(session_ids)
        if not ids:
            return
        entry = json.dumps({"replica": self.replica_id, "url": url}, separators=(",", ":"))
        pipe = self._client.pipeline(transaction=False)
        for session_id in ids:
            pipe.set(f"{P}session:{session_id}", entry, ex=max(1, int(ttl)))
        await self._call(pipe.execute())

    async def session_holder(self, session_id: str) -> tuple[str, str | None] | None:
        text = cast("str | None", await self._call(self._client.get(f"{P}session:{session_id}")))
        try:
            entry = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(entry, dict):
            return None
        replica, url = entry.get("replica"), entry.get("url")
        if not isinstance(replica, str) or not (url is None or isinstance(url, str)):
            return None
        return replica, url

    async def forget_sessions(self, session_ids: Iterable[str]) -> None:
        keys = [f"{P}session:{session_id}" for session_id in session_ids]
        if keys:
            await self._call(self._client.delete(*keys))
