"""A real TCP proxy a test can break the ways real outages do, in front of a live service.

`CuttableProxy` forwards 127.0.0.1:<port> to a real server. A test switches it between:

- `cut()`: stop listening and drop every open connection (a crashed server);
- `refuse()`: stop listening, leave open connections be (a server that stopped accepting);
- `blackhole()`: accept new connections and never answer them, and hold what open ones carry
  until `restore()` (a hung server, a network partition);
- `delay(seconds)`: forward every chunk after a delay (a slow server or network);
- `starting_up()`: answer every new connection as PostgreSQL does while it recovers:
  `FATAL 57P03 the database system is starting up`;
- `restore()`: forward again, listening on the same port, as a restarted server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Literal

Mode = Literal["forward", "blackhole", "starting_up"]

# PostgreSQL's wire protocol: the SSLRequest code, and the server's answer to a start-up while
# it recovers (an ErrorResponse: severity, SQLSTATE, message).
_SSL_REQUEST = 80877103
_STARTING_UP_FIELDS = b"SFATAL\x00VFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00"
STARTING_UP_RESPONSE = b"E" + struct.pack("!I", 4 + len(_STARTING_UP_FIELDS)) + _STARTING_UP_FIELDS


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a real server; see the module docstring for the faults."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode = "forward"
        self.latency = 0.0
        #: Connections accepted since the proxy started, whatever the mode.
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def restore(self) -> None:
        """Forward again, without delay, listening on the same port."""
        self.mode, self.latency = "forward", 0.0
        self._flowing.set()
        await self.start()

    async def cut(self) -> None:
        """Stop listening and drop every open connection, as a crashed server would."""
        server = self._stop_listening()
        # Abort before waiting: since Python 3.12 wait_closed() waits for open connections.
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones carry on."""
        self._stop_listening()

    def _stop_listening(self) -> asyncio.Server | None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        return server

    async def blackhole(self) -> None:
        """Accept and never answer; open connections carry nothing until `restore()`."""
        self.mode = "blackhole"
        self._flowing.clear()
        await self.start()

    async def delay(self, seconds: float) -> None:
        """Forward every chunk, both ways, `seconds` late."""
        self.mode, self.latency = "forward", seconds
        self._flowing.set()
        await self.start()

    async def starting_up(self) -> None:
        """Answer new connections with PostgreSQL's 57P03 "starting up"; drop the open ones."""
        await self.cut()
        self.mode = "starting_up"
        self._flowing.set()
        await self.start()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        self._writers.add(client_writer)
        try:
            if not self.listening:
                # Accepted just before a cut, and run after it: the cut has already aborted
                # the connections it saw, and (since Python 3.12) waits for this one to end.
                return
            if self.mode == "blackhole":
                await self._swallow(client_reader)
                return
            if self.mode == "starting_up":
                await self._answer_starting_up(client_reader, client_writer)
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            if not self.listening:  # cut while connecting
                server_writer.transport.abort()
                return
            self._writers.add(server_writer)
            await asyncio.gather(
                self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
            )
        finally:
            client_writer.transport.abort()
            self._writers.discard(client_writer)

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    @staticmethod
    async def _answer_starting_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if length == 8 and struct.unpack("!I", body)[0] == _SSL_REQUEST:
                    writer.write(b"N")  # no TLS; the client sends its start-up message next
                    continue
                writer.write(STARTING_UP_RESPONSE)
                await writer.drain()
                return

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                # Black-holed: held until restored, as TCP retransmits across a partition.
                await self._flowing.wait()
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
