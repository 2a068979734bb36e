"""Cluster mode: several daemons share one fleet of streams through Redis.

- `registry`: the streams, one entry per id (the validated stream table, secrets as references), with a
  version counter; written by `monitor streams ...` and the HTTP API.
- `leases`: who runs each stream: `SET NX PX` leases with a fencing token (`INCR`), renewed in one round trip.
- `coordinator`: this daemon's side: membership, renewals, a fair share of the streams, failover and handoff,
  handed to the stream supervisor.
- `status`: the fleet as Redis sees it, for `GET /cluster` and `monitor cluster status`.
"""
