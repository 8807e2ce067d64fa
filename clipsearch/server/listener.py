"""The HTTP server itself: uvicorn, with a deadline for a request's headers, which uvicorn
lacks (a client that sends one byte a second would hold a connection for ever)."""

from __future__ import annotations

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 200


class HeaderDeadline(H11Protocol):
    """h11's protocol, closing a connection whose request headers are not all in within
    HEADER_TIMEOUT_S of its opening or of its previous answer."""

    deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.deadline is not None and self.conn.their_state is not h11.IDLE:
            self.deadline.cancel()
            self.deadline = None

    def connection_lost(self, exc) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._too_slow)

    def _too_slow(self) -> None:
        self.deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def make_server(app, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=HeaderDeadline,
        limit_concurrency=MAX_CONNECTIONS,
        log_level="warning",
    )
    return uvicorn.Server(config)
