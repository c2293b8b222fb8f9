"""A real webhook receiver: an HTTP/1.1 server on a loopback port that can be down (nothing listening: the
connection is refused) and then up, recording each JSON body it receives."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any


class WebhookReceiver:
    """``url`` is fixed from the start; ``await up()`` starts listening on it, ``await down()`` stops."""

    def __init__(self) -> None:
        # Bound but not listening: a connection to it is refused, as to a webhook whose server is down.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/mailgate"
        self.received: list[dict[str, Any]] = []
        #: The status answered while up (500: up but failing).
        self.status = 200
        self._server: asyncio.Server | None = None

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, sock=self._socket)

    async def down(self) -> None:
        """Stop listening for good (a new receiver is needed to listen again)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._socket.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            is_json = lines[0].startswith("POST ") and headers.get("content-type") == "application/json"
            if is_json and self.status == 200:
                self.received.append(json.loads(body))
            answer = f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(answer.encode())
            await writer.drain()
        finally:
            writer.close()
