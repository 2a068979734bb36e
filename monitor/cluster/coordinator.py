"""This daemon's part of the cluster: which registry streams it runs, handed to the stream supervisor.

Every `lease_ttl_s / 3`, its own task renews every lease it holds in one round trip (a refused renewal stops that
stream at once); it never waits for anything else, a stream being started included. And every `lease_ttl_s / 3`
(and at once when another daemon announces a change on the cluster channel), one step at a time:
1. heartbeat into the member set, with this daemon's capacity and public URL;
2. (renewal, above);
3. read the registry when its version moved: streams removed stop, changed ones are applied;
4. work out the fair share (the registry's streams dealt round-robin over the live members in id order,
   each capped by its capacity): above it, release one stream that has no open alert and no WHIP publisher;
   below it, claim unowned streams; a stream left unowned for a whole period is claimed by any daemon with
   room, so every stream runs while capacity allows.
A lease that could not be renewed stops its stream when it runs out locally (`lease_ttl_s * 0.8` after the
last renewal was sent), before another daemon can have claimed it. On taking a stream over, the alerts its
previous owner left open are closed with reason `owner_lost` (once: the event id is derived from the alert
id); a clean stop closes this daemon's alerts with `handoff`, delivers them, and releases every lease.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from .. import __version__
from ..errors import ConfigError
from ..logs import get
from ..redis import OUTAGES, connect, describe_error
from ..redis.leases import Leases
from ..scoring.lifecycle import owner_lost_close
from ..tasks import TaskSupervisor
from .registry import StreamRegistry

log = get(__name__)
CLUSTER = "cluster"  # the origin of streams run for the cluster (in /streams)
VALIDITY = 0.8  # share of the TTL a lease is trusted locally after its renewal was sent
LIVE = 0.7  # a member unseen for this share of the TTL (two heartbeats) is taken for gone


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.held = Gauge("deepfake_cluster_leases_held", "Stream leases this daemon holds", registry=registry)
        self.claims = Counter("deepfake_cluster_claims", "Streams claimed", registry=registry)
        self.releases = Counter("deepfake_cluster_releases", "Streams released (rebalance, removal, stop)",
                                registry=registry)
        self.lost = Counter("deepfake_cluster_lost_leases", "Leases lost (renewal refused or expired)",
                            registry=registry)


@dataclass
class Held:
    token: int
    claimed_at: float  # wall clock
    deadline: float  # monotonic: the lease is trusted until then
    raw: dict  # the registry entry it runs with


class ClusterCoordinator:
    def __init__(self, config, supervisor, publisher, resolve: Callable[[dict], object], registry: CollectorRegistry,
                 public_url: str):
        """`resolve(raw)`: a registry entry as a StreamConfig with its references resolved here (ConfigError if
        it cannot run on this daemon)."""
        self.settings, self.redis, self.instance = config.cluster, config.redis, config.instance
        self.supervisor, self.publisher, self.resolve = supervisor, publisher, resolve
        self.public_url = public_url
        self.ttl = self.settings.lease_ttl_s
        self.client = connect(self.redis)
        self.registry = StreamRegistry(self.redis, self.client)
        self.leases = Leases(self.client, self.redis, self.instance, self.ttl)
        self.metrics = ClusterMetrics(registry)
        self.held: dict[str, Held] = {}
        self.raw: dict[str, dict] = {}  # the registry, as last read
        self.version = -1
        self.unrunnable: dict[str, str] = {}  # stream -> why it cannot run on this daemon
        self.members: dict[str, dict] = {}  # live instance -> its info
        self.tasks = TaskSupervisor()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one change of the held set at a time
        self._stopping = False
        self._unowned_before: set[str] = set()
        self._outage_logged = False

    @property
    def capacity(self) -> int:
        return self.settings.max_streams

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join (a first step, so that streams start before the daemon says it is ready), then keep going."""
        try:
            async with self._lock:
                await self._step()
            await self.client.publish(self.redis.cluster_channel, "joined")
        except OUTAGES as e:
            self._down(e)
        self.tasks.spawn("cluster-renewals", self._renew_forever)
        self.tasks.spawn("cluster-steps", self._loop)
        self.tasks.spawn("cluster-events", self._listen)
        self.tasks.spawn("cluster-deadlines", self._watch_deadlines)

    async def stop(self) -> None:
        """Stop taking part (no more claims or renewals); the leases stay until `release_all`."""
        self._stopping = True
        self._wake.set()
        await self.tasks.close()

    async def release_all(self) -> None:
        """After a clean stop (alerts closed with `handoff` and delivered): every lease goes at once, and the
        other daemons are told."""
        try:
            for stream_id, held in list(self.held.items()):
                await self.leases.release(stream_id, held.token)
                self.metrics.releases.inc()
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zrem(self.redis.members_key, self.instance)
                pipe.hdel(self.redis.member_info_key, self.instance)
                pipe.publish(self.redis.cluster_channel, "left")
                await pipe.execute()
        except OUTAGES as e:
            log.warning("could not release the leases: they run out on their own", error=describe_error(e, self.redis.url))
        self.held.clear()
        self.metrics.held.set(0)
        await self.client.aclose()

    # --- the periodic step -----------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.ttl / 3)
            except TimeoutError:
                pass
            if self._stopping:
                return
            try:
                async with self._lock:
                    await self._step()
            except OUTAGES as e:
                self._down(e)

    async def _renew_forever(self) -> None:
        """Renewal on its own: a step that is claiming and starting streams (seconds each on a cold start) holds
        the step lock, and a renewal behind it would let the held leases lapse."""
        while not self._stopping:
            try:
                await self._renew()
            except OUTAGES as e:
                self._down(e)
            await asyncio.sleep(self.ttl / 3)

    async def _renew(self) -> None:
        tokens = {i: h.token for i, h in self.held.items()}
        sent = time.monotonic()
        renewed = await self.leases.renew(tokens)
        for stream_id, ok in renewed.items():
            held = self.held.get(stream_id)
            if held is None or held.token != tokens[stream_id]:
                continue  # released or claimed anew meanwhile
            if ok:
                held.deadline = max(held.deadline, sent + self.ttl * VALIDITY)
            else:
                await self._lost(stream_id, "another daemon holds the lease")

    async def _step(self) -> None:
        await self._heartbeat()
        version = await self.registry.version()
        if version != self.version:
            await self._registry_changed(await self.registry.streams())
            self.version = version
        if self._outage_logged:
            log.warning("cluster: Redis reachable again")
            self._outage_logged = False
        if self._stopping:
            return
        target = self._target()
        owners = await self.leases.owners(list(self.raw))
        unowned = [i for i, owner in owners.items() if owner is None and i not in self.unrunnable]
        random.shuffle(unowned)  # daemons that look at once try different streams first
        if len(self.held) > target:
            await self._release_one()
        else:
            for stream_id in unowned[:max(0, target - len(self.held))]:
                await self._claim(stream_id)
            # Nobody's share (its owner died, or it waited a whole period): whoever has room runs it now.
            orphans = await self._orphans([i for i in unowned if i not in self.held])
            for stream_id in orphans:
                if len(self.held) >= self.capacity:
                    break
                await self._claim(stream_id)
        self._unowned_before = {i for i in unowned if i not in self.held}
        self.metrics.held.set(len(self.held))

    async def _heartbeat(self) -> None:
        now = time.time()
        info = {"instance": self.instance, "capacity": self.capacity, "streams": len(self.held),
                "public_url": self.public_url, "version": __version__}
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.redis.members_key, {self.instance: now})
            pipe.hset(self.redis.member_info_key, self.instance, json.dumps(info))
            pipe.zremrangebyscore(self.redis.members_key, "-inf", now - 10 * self.ttl)  # long gone
            pipe.zrangebyscore(self.redis.members_key, now - LIVE * self.ttl, "+inf")
            pipe.hgetall(self.redis.member_info_key)
            *_, live, infos = await pipe.execute()
        self.members = {m: json.loads(infos[m]) for m in sorted(live) if m in infos}
        self.members.setdefault(self.instance, info)

    async def _orphans(self, unowned: list[str]) -> list[str]:
        """Unowned streams that are nobody's to take by share: unowned for a whole period already, or last
        claimed by a daemon that is no longer live (a released stream's last owner is alive: the daemon below
        its share takes it)."""
        if not unowned:
            return []
        s = self.redis
        epochs = await self.client.mget([s.epoch_key(i) for i in unowned])
        async with self.client.pipeline(transaction=False) as pipe:
            for stream_id, epoch in zip(unowned, epochs):
                pipe.hget(s.epochs_key(stream_id), f"owner:{epoch or 0}")
            last_owners = await pipe.execute()
        return [i for i, owner in zip(unowned, last_owners)
                if i in self._unowned_before or owner is None or owner not in self.members]

    def _target(self) -> int:
        """This daemon's fair share: the streams dealt one at a time over the live members in instance order,
        each up to its capacity."""
        capacities = {m: int(info.get("capacity", 0)) for m, info in sorted(self.members.items())}
        share = dict.fromkeys(capacities, 0)
        remaining = len(self.raw)
        while remaining:
            dealt = False
            for member, capacity in capacities.items():
                if remaining and share[member] < capacity:
                    share[member] += 1
                    remaining -= 1
                    dealt = True
            if not dealt:
                break
        return share.get(self.instance, 0)

    async def _registry_changed(self, streams: dict[str, dict]) -> None:
        for stream_id in [i for i in self.held if i not in streams]:
            await self._release(stream_id, "stream_ended", "removed from the registry")
        for stream_id, raw in streams.items():
            if raw == self.raw.get(stream_id) and stream_id not in self.unrunnable:
                continue
            try:
                stream = self.resolve(raw)
                self.unrunnable.pop(stream_id, None)
            except ConfigError as e:
                if self.unrunnable.get(stream_id) != str(e):
                    log.error("cluster: a registry stream cannot run on this daemon", stream_id=stream_id, error=str(e))
                self.unrunnable[stream_id] = str(e)
                if stream_id in self.held:
                    await self._release(stream_id, "stream_ended", "its new settings cannot run here")
                continue
            if stream_id in self.held and raw != self.held[stream_id].raw:
                self.held[stream_id].raw = raw
                await self.supervisor.change(stream)
        self.raw = streams

    # --- claiming and releasing ------------------------------------------------------------------------------

    async def _claim(self, stream_id: str) -> bool:
        if stream_id in self.held or self._stopping:
            return False
        token = await self.leases.claim(stream_id)
        if token is None:
            return False
        raw = self.raw[stream_id]
        self.publisher.fence(stream_id, token)  # from now on, what it makes carries the new token
        self.held[stream_id] = Held(token, time.time(), time.monotonic() + self.ttl * VALIDITY, raw)
        self.metrics.claims.inc()
        closed = await self._close_orphans(stream_id)
        try:
            await self.supervisor.add(self.resolve(raw), origin=CLUSTER)
        except ConfigError as e:
            self.unrunnable[stream_id] = str(e)
            log.error("cluster: a registry stream cannot run on this daemon", stream_id=stream_id, error=str(e))
            await self._release(stream_id, "stream_ended", str(e))
            return False
        log.info("stream claimed", stream_id=stream_id, token=token, closed_for_lost_owner=closed or None)
        return True

    async def _close_orphans(self, stream_id: str) -> int:
        """Close, with reason `owner_lost`, the alerts the stream's previous owner left open."""
        s, closed = self.redis, 0
        for alert_id in await self.client.smembers(s.open_key(stream_id)):
            history = await self.client.hgetall(s.alert_key(alert_id))
            if not history:
                continue
            last = json.loads(max(history.items(), key=lambda item: int(item[0].split(":")[1]))[1])
            if last.get("type") == "closed":
                continue
            await self.publisher.publish(owner_lost_close(last, self.instance))
            closed += 1
        return closed

    def _releasable(self, stream_id: str) -> bool:
        """Not while it has an open alert or a WHIP publisher: a rebalance must not cut either."""
        handle = self.supervisor.handles.get(stream_id)
        if handle is None:
            return True
        if any(track.judge.alert_open for track in handle.pipeline.tracks.values()):
            return False
        return not handle.source.busy

    async def _release_one(self) -> None:
        for stream_id in sorted(self.held, key=lambda i: -self.held[i].claimed_at):  # the newest first
            if self._releasable(stream_id):
                await self._release(stream_id, "handoff", "rebalance: above this daemon's fair share")
                return

    async def _release(self, stream_id: str, reason: str, why: str) -> None:
        held = self.held.pop(stream_id, None)
        if held is None:
            return
        await self.supervisor.remove(stream_id, reason)
        await self.publisher.flush(2.0)  # its closing events land before the next owner looks for open alerts
        try:
            await self.leases.release(stream_id, held.token)
        except OUTAGES:
            pass  # it runs out on its own
        self.metrics.releases.inc()
        self.metrics.held.set(len(self.held))
        log.info("stream released", stream_id=stream_id, reason=why)

    async def _lost(self, stream_id: str, why: str) -> None:
        held = self.held.pop(stream_id, None)
        if held is None:
            return
        self.metrics.lost.inc()
        self.metrics.held.set(len(self.held))
        log.warning("stream lease lost: the stream stops here", stream_id=stream_id, reason=why, token=held.token)
        await self.supervisor.remove(stream_id, "lease_lost")

    # --- background ------------------------------------------------------------------------------------------

    async def _watch_deadlines(self) -> None:
        """A lease not renewed in time (Redis away, or this process was paused) stops its stream when it runs
        out locally, before another daemon can claim it."""
        while not self._stopping:
            now = time.monotonic()
            for stream_id in [i for i, h in self.held.items() if h.deadline <= now]:
                await self._lost(stream_id, "not renewed in time (Redis unreachable, or this process was paused)")
            upcoming = min((h.deadline for h in self.held.values()), default=now + 1.0)
            await asyncio.sleep(min(1.0, max(0.02, upcoming - time.monotonic())))

    async def _listen(self) -> None:
        """Look again at once when another daemon joins, leaves, releases a stream or the registry changes.
        Through a Redis outage it keeps trying (an expected outage is a warning, from `_down`, not a task failure)."""
        delay = 0.5
        while not self._stopping:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.redis.cluster_channel)
                delay = 0.5
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._wake.set()
            except OUTAGES as e:
                self._down(e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.ttl)
            finally:
                try:
                    await pubsub.aclose()
                except OUTAGES:
                    pass

    def _down(self, error: BaseException) -> None:
        if not self._outage_logged:
            log.warning("cluster: Redis unreachable; leases run out unless renewed in time",
                        error=describe_error(error, self.redis.url))
            self._outage_logged = True

    # --- WHIP and status -------------------------------------------------------------------------------------

    async def route_whip(self, stream_id: str) -> str | None:
        """Where a WHIP publisher of `stream_id` must go: the owner's URL (a 307), or None to serve it here
        (claiming it first when nobody owns it and this daemon has room)."""
        if stream_id in self.held or stream_id not in self.raw:
            return None
        owner = (await self.leases.owners([stream_id]))[stream_id]
        if owner is not None and owner[0] != self.instance:
            url = (self.members.get(owner[0]) or {}).get("public_url")
            if url is None:
                info = await self.client.hget(self.redis.member_info_key, owner[0])
                url = json.loads(info).get("public_url") if info else None
            return f"{url.rstrip('/')}/whip/{stream_id}" if url else None
        if owner is None and len(self.held) < self.capacity:
            async with self._lock:
                await self._claim(stream_id)
        return None

    def held_status(self) -> dict:
        """The streams this daemon runs under a lease it can still trust, with the lease's fencing token."""
        now = time.monotonic()
        return {i: {"token": h.token, "claimed_at": h.claimed_at, "valid_for_s": round(h.deadline - now, 3)}
                for i, h in sorted(self.held.items()) if h.deadline > now}
