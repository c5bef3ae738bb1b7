"""Wake-ups: a dedicated connection LISTENing on `reportsvc_work`, so an idle worker claims
the moment new steps are queued, instead of at its next poll."""

from __future__ import annotations

import asyncio

from reportsvc.queue.notifications import WORK_CHANNEL, Listener


class Wakeups:
    def __init__(self, database_url: str) -> None:
        # Set when work may be waiting; the claimer clears it before it claims.
        self.hint = asyncio.Event()
        self._listener = Listener(
            database_url,
            {WORK_CHANNEL: self._notified},
            application_name="reportsvc-listen",
            # Anything sent while we were not listening: look now.
            on_connect=self.hint.set,
        )

    @property
    def listening(self) -> bool:
        return self._listener.listening

    async def run(self) -> None:
        await self._listener.run()

    def _notified(self, _payload: str) -> None:
        self.hint.set()
