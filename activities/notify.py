"""Notices to the outside world (GitHub commit statuses, notification hooks) as activities.

`notify_plan` is a local activity the workflow asks once (what the project has configured);
the senders are regular activities with their own retry policies (workflows.build), so a slow
or dead receiver is retried with back-off and never holds up the build. They run on the event
loop: their waits are network waits.
"""

from __future__ import annotations

from temporalio import activity

from activities.errors import temporal_errors
from kiln.notifications import Delivery, Notice, Notifier, NotifyPlan


class NotifyActivities:
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    @activity.defn(name="notify_plan")
    def notify_plan(self, build_id: int) -> NotifyPlan:
        """Whether the build's project sends commit statuses, and its hooks (ids, events)."""
        return self._notifier.plan(build_id)

    @activity.defn(name="send_github_status")
    async def send_github_status(self, notice: Notice) -> Delivery:
        """One commit status; a GitHub that does not answer (or answers 5xx) is retried."""
        with temporal_errors():
            return await self._notifier.send_status(notice)

    @activity.defn(name="send_hook")
    async def send_hook(self, notice: Notice) -> Delivery:
        """One signed notice to one hook; a receiver that fails is retried."""
        with temporal_errors():
            return await self._notifier.send_hook(notice)
