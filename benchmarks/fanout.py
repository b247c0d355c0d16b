"""Socket.io fan-out: many users with several sockets each; one user's build. How long from
each event's commit to every one of the owner's sockets, and whether any reached another user."""

from __future__ import annotations

import asyncio

from benchmarks.deployment import Deployment
from benchmarks.sockets import EventKey, Listener, PublishTimes, latencies
from benchmarks.table import Figure, p50_p99

SOCKETS_PER_USER = 10
CONNECT_AT_ONCE = 50
COMMAND = "for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done"


async def fanout_figures(deployment: Deployment, clients: int) -> list[Figure]:
    users = deployment.users(max(2, clients // SOCKETS_PER_USER))
    per_user = max(1, clients // len(users))
    sockets = {user.id: [Listener() for _ in range(per_user)] for user in users}
    pairs = [(user, s) for user in users for s in sockets[user.id]]
    try:
        for start in range(0, len(pairs), CONNECT_AT_ONCE):
            batch = pairs[start : start + CONNECT_AT_ONCE]
            await asyncio.gather(*(s.connect(deployment.base_url, u.token) for u, s in batch))
        owner = users[0]
        repo, _sha = deployment.repo("fanout")
        with PublishTimes(deployment.settings.database_url, deployment.sessions) as published:
            created = await deployment.project(owner, repo.url, COMMAND)
            build_id = created["build"]["id"]
            await asyncio.gather(*(s.status(build_id, "passed") for s in sockets[owner.id]))
            await asyncio.sleep(0.5)  # time for a stray event to reach someone else

        def of_build(key: EventKey) -> bool:
            return bool(key[1] == build_id)

        delays = latencies(published, sockets[owner.id], of_build)
        strays = sum(
            1 for user in users[1:] for s in sockets[user.id] for key in s.arrivals if of_build(key)
        )
    finally:
        await asyncio.gather(*(s.client.disconnect() for _u, s in pairs))
    connected = len(users) * per_user
    return [
        Figure(
            f"Socket.io fan-out, {connected:,} clients ({len(users)} users × {per_user}): "
            "commit → every owner socket, p50 / p99",
            f"{p50_p99(delays)} ({len(delays)} deliveries)",
        ),
        Figure("fan-out: events of that build at other users' sockets", str(strays)),
    ]
