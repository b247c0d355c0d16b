"""`--follow`: a build's output as it is printed, from Socket.io, after catching up from
`/logs?offset=` — no gap, no repeat, also across a reconnect. Ends with the build."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from typing import Any, TextIO

import httpx
import socketio

from cli.client import TIMEOUT, CliError

FINAL = {"passed", "failed", "canceled"}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def exit_code_of(build: dict[str, Any]) -> int:
    """0 when passed; the build's exit code when it failed with one; 1 otherwise."""
    if build["status"] == "passed":
        return 0
    code = build.get("exitCode")
    return code if isinstance(code, int) and 1 <= code <= 255 else 1


class Follower:
    def __init__(self, server: str, token: str, build_id: int, out: TextIO, err: TextIO) -> None:
        self._server = server
        self._token = token
        self._build_id = build_id
        self._out = out
        self._err = err
        self._next = 0  # offset of the first byte not yet printed
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._spinning = False
        self._spin = itertools.cycle(SPINNER)
        self._http = httpx.AsyncClient(
            base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
        )

    async def _get(self, path: str) -> dict[str, Any]:
        try:
            response = await self._http.get(path)
            data: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise CliError(f"lost Kiln at {self._server} ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise CliError(str(data.get("message") or f"HTTP {response.status_code}"))
        return data

    async def _catch_up(self) -> dict[str, Any]:
        """The build's current record, after printing the output we have not shown yet."""
        build: dict[str, Any] = (await self._get(f"/api/build/{self._build_id}"))["build"]
        logs = await self._get(f"/api/build/{self._build_id}/logs?offset={self._next}")
        self._show(logs["offset"], logs["logs"])
        return build

    def _show(self, offset: int, text: str) -> None:
        data = text.encode()
        end = offset + len(data)
        if end <= self._next:
            return  # printed already
        self._clear_spinner()
        self._out.write(data[max(self._next - offset, 0) :].decode(errors="replace"))
        self._out.flush()
        self._next = end

    def _spinner(self, build: dict[str, Any]) -> None:
        if build["status"] != "queued" or not self._err.isatty():
            self._clear_spinner()
            return
        place = build.get("queuePosition")
        where = f" ({place} in queue)" if place else ""
        self._err.write(f"\r{next(self._spin)} build #{build['id']} queued{where}   ")
        self._err.flush()
        self._spinning = True

    def _clear_spinner(self) -> None:
        if self._spinning:
            self._err.write("\r\033[K")
            self._err.flush()
            self._spinning = False

    async def run(self) -> int:
        # Ctrl-C is ours (see follow): the library would cancel every task and stop the loop.
        client = socketio.AsyncClient(
            reconnection=True, reconnection_delay_max=5, handle_sigint=False
        )
        connected_once = False

        @client.on("connect")  # type: ignore[untyped-decorator]
        async def _connected() -> None:
            nonlocal connected_once
            if connected_once:
                await self._events.put(("reconnected", None))
            connected_once = True

        @client.on("buildStatusUpdate")  # type: ignore[untyped-decorator]
        async def _status(build: dict[str, Any]) -> None:
            if build.get("id") == self._build_id:
                await self._events.put(("status", build))

        @client.on("buildLog")  # type: ignore[untyped-decorator]
        async def _log(event: dict[str, Any]) -> None:
            if event.get("buildId") == self._build_id:
                await self._events.put(("log", event))

        try:
            # Subscribe first, then catch up: nothing printed in between is missed.
            await client.connect(
                self._server,
                auth={"token": self._token},
                transports=["websocket"],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError as exc:
            raise CliError(f"cannot follow: {exc}") from None
        try:
            build = await self._catch_up()
            while build["status"] not in FINAL:
                self._spinner(build)
                try:
                    kind, payload = await asyncio.wait_for(self._events.get(), timeout=0.2)
                except TimeoutError:
                    continue
                if kind == "log":
                    if payload["offset"] > self._next:  # output we never saw: fetch it
                        await self._catch_up()
                    self._show(payload["offset"], payload["chunk"])
                elif kind == "status":
                    build = payload
                else:  # events sent while we were away are lost: ask again
                    build = await self._catch_up()
            await self._catch_up()  # the last lines (and the reason, if any)
            self._clear_spinner()
            return exit_code_of(build)
        finally:
            self._clear_spinner()
            await client.disconnect()
            await self._http.aclose()


def follow(server: str, token: str, build_id: int) -> int:
    """Follow the build to its end; Ctrl-C stops following (KeyboardInterrupt) and leaves it."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt)
        try:
            return await Follower(server, token, build_id, sys.stdout, sys.stderr).run()
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise

    return asyncio.run(main())
