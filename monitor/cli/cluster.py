"""`monitor cluster status`: the fleet as Redis sees it."""

from __future__ import annotations

from ..errors import EXIT_OK, InputError
from .base import redis_options, redis_settings


def add_parser(commands) -> None:
    cluster = commands.add_parser("cluster", help="the daemons of a cluster",
                                  description="The fleet as Redis sees it.")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    cluster_status = cluster_commands.add_parser(
        "status", help="live daemons and each stream's owner, lease and fencing token",
        description="Print the daemons (live, last heartbeat, streams held, capacity, version, public URL) and "
                    "each registry stream's owner, fencing token, lease time left and open alerts.")
    redis_options(cluster_status)
    cluster_status.add_argument("--lease-ttl", type=float, default=10.0, metavar="S",
                                help="the cluster's lease_ttl_s: a daemon unseen this long is not live (default 10)")
    cluster_status.add_argument("--json", action="store_true")
    cluster.set_defaults(handler=run)


def run(args) -> int:
    import asyncio

    from ..cluster import commands

    try:
        print(asyncio.run(commands.status(redis_settings(args), args.lease_ttl, args.json)))
    except ValueError as e:
        raise InputError(f"invalid Redis URL {args.redis}: {e}") from None
    return EXIT_OK
