"""Every Redis key and channel name the monitor uses, in one place: the schema other programs read.

`KeySchema` is mixed into `RedisSettings` (it needs only `prefix`), so a key is always `settings.<name>`.
"""

from __future__ import annotations


class KeySchema:
    prefix: str

    # --- alerts: the durable log, channels, per-alert history, evidence ------------------------------------

    def channel(self, stream_id: str | None = None) -> str:
        return f"{self.prefix}:alerts" + (f":{stream_id}" if stream_id else "")

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    def stream_key(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{stream_id}"

    def instance_key(self, instance: str) -> str:
        return f"{self.prefix}:instance:{instance}"

    def delivered_key(self, event_id: str) -> str:
        return f"{self.prefix}:delivered:{event_id}"

    def open_key(self, stream_id: str) -> str:
        """The set of a stream's open alert ids (kept by the delivery script)."""
        return f"{self.prefix}:open:{stream_id}"

    def lease_key(self, stream_id: str) -> str:
        """Cluster mode: `<instance>:<token>` of the daemon that runs the stream, with a TTL."""
        return f"{self.prefix}:lease:{stream_id}"

    def epoch_key(self, stream_id: str) -> str:
        """Cluster mode: the stream's last fencing token (INCR on every claim)."""
        return f"{self.prefix}:epoch:{stream_id}"

    def epochs_key(self, stream_id: str) -> str:
        """Cluster mode: token -> when it was claimed (Redis time), for fencing late events."""
        return f"{self.prefix}:epochs:{stream_id}"

    def alert_key(self, alert_id: str) -> str:
        """A hash of one alert's events, field `seq:<n>` each."""
        return f"{self.prefix}:alert:{alert_id}"

    def evidence_key(self, alert_id: str) -> str:
        return f"{self.prefix}:evidence:{alert_id}"

    @property
    def scores_key(self) -> str:
        """A capped stream of scored crops ([record]), for calibration."""
        return f"{self.prefix}:scores"

    def drift_key(self, stream_id: str) -> str:
        """A hash of hourly histograms of a stream's authentic p_fake ([drift])."""
        return f"{self.prefix}:drift:{stream_id}"

    @property
    def test_channel(self) -> str:
        return f"{self.prefix}:sinks:test"

    # --- cluster mode: the stream registry and the members --------------------------------------------------

    @property
    def registry_key(self) -> str:
        """Hash: stream id -> the stream's table as JSON (secrets as ${...} references)."""
        return f"{self.prefix}:registry"

    @property
    def registry_version_key(self) -> str:
        """Counter: bumped by every registry change, so daemons notice without reading everything."""
        return f"{self.prefix}:registry:version"

    @property
    def members_key(self) -> str:
        """Sorted set: daemon instance -> the time of its last heartbeat."""
        return f"{self.prefix}:cluster:members"

    @property
    def member_info_key(self) -> str:
        """Hash: daemon instance -> JSON (capacity, streams held, public URL, version)."""
        return f"{self.prefix}:cluster:info"

    @property
    def cluster_channel(self) -> str:
        """Pub/Sub channel: `registry`, `released`, `joined`, `left`: a daemon looks again at once."""
        return f"{self.prefix}:cluster:events"
