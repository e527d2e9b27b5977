"""An OpenAI-compatible chat-completions server on loopback, whose every answer a test scripts.

It speaks HTTP/1.1 itself over asyncio streams (in the test's own event loop), so a test can
make it do what real providers do on a bad day: answer slowly, answer 429 with Retry-After or
500, stall between two chunks, or drop the connection midway through a streamed answer. It
counts tokens like providers report them (`usage`: in a whole answer, and as a last chunk of
a stream that asks with `stream_options.include_usage`), or leaves them out as some
OpenAI-compatible servers do, and can answer a stream request with the whole completion. It
records every request (its arrival time, headers and JSON body) and how many were in flight at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Reply:
    """One scripted answer. 200 streams `pieces` (with `stream: true`) or sends them joined."""

    status: int = 200
    retry_after: str | None = None
    # Seconds before the status line, and between two streamed chunks.
    delay: float = 0.0
    chunk_delay: float = 0.0
    pieces: tuple[str, ...] = ("The answer", " is in the passages [1].")
    # Drop the connection after this many chunks, without [DONE] or the chunked body's end.
    cut_after: int | None = None
    # Send `usage` (see `ChatServer.usage`); False: never, as servers that do not count.
    usage: bool = True
    # Answer the whole completion as JSON even when asked to stream.
    whole: bool = False
    # Stream every chunk at once, in two writes split in the middle of a chunk: what a
    # client reads when it comes back to a stream late.
    together: bool = False


@dataclass(frozen=True)
class Seen:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]

    def prompt(self) -> str:
        return "\n".join(str(message["content"]) for message in self.body["messages"])


@dataclass
class ChatServer:
    """Counts as `usage`: the prompt's blank-separated words and the answer's pieces (not the
    service's own estimate, so a test tells the two apart)."""

    default: Reply = field(default_factory=Reply)
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    @staticmethod
    def usage(seen: Seen, reply: Reply) -> dict[str, int]:
        prompt, completion = len(seen.prompt().split()), len(reply.pieces)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def script(self, *replies: Reply) -> None:
        """The next answers, in order; after them, `default`."""
        self.replies.extend(replies)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self.in_flight -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = {}
        for line in head.split("\r\n")[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = orjson.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
        seen = Seen(time.monotonic(), headers, body)
        self.requests.append(seen)
        reply = self.replies.popleft() if self.replies else self.default
        await asyncio.sleep(reply.delay)
        if reply.status != 200:
            payload = orjson.dumps({"error": {"message": "scripted", "code": reply.status}})
            extra = f"Retry-After: {reply.retry_after}\r\n" if reply.retry_after else ""
            writer.write(
                f"HTTP/1.1 {reply.status} Scripted\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            return
        if not body.get("stream") or reply.whole:
            completion: dict[str, Any] = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(reply.pieces)},
                        "finish_reason": "stop",
                    }
                ],
            }
            if reply.usage:
                completion["usage"] = self.usage(seen, reply)
            payload = orjson.dumps(completion)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        held = b""
        for number, piece in enumerate(reply.pieces):
            if reply.cut_after is not None and number == reply.cut_after:
                writer.transport.abort()  # mid-answer: no [DONE], no end of the chunked body
                return
            chunk = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            event = b"data: " + orjson.dumps(chunk) + b"\n\n"
            if reply.together:
                held += event
                continue
            self._chunk(writer, event)
            await writer.drain()
            await asyncio.sleep(reply.chunk_delay)
        if held:
            middle = len(held) // 2
            self._chunk(writer, held[:middle])
            await writer.drain()
            self._chunk(writer, held[middle:])
        options = body.get("stream_options") or {}
        if reply.usage and options.get("include_usage"):
            # As OpenAI sends it: a last chunk with no choices.
            last = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": self.usage(seen, reply),
            }
            self._chunk(writer, b"data: " + orjson.dumps(last) + b"\n\n")
        self._chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
