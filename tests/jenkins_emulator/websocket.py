"""Just enough RFC 6455 for the agent channel: the server side of the handshake and text frames.

Jenkins' inbound agents use WebSocket (`<url>wsagents/`), so the stand-in does too: a proxy or a
test that blocks `Upgrade` sees the same failure as with a real agent.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import BinaryIO

_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def accept_key(client_key: str) -> str:
    return base64.b64encode(hashlib.sha1((client_key + _GUID).encode()).digest()).decode()


class Closed(Exception):
    """The peer closed the connection or sent a close frame."""


class WebSocket:
    """A server-side connection over an already upgraded socket; `send` is thread-safe."""

    def __init__(self, sock: socket.socket, rfile: BinaryIO) -> None:
        self.sock, self.rfile = sock, rfile
        self._write = threading.Lock()
        self.closed = False

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise Closed('eof')
        return data

    def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        fin, opcode, masked, length = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        if length == 126:
            length = struct.unpack('!H', self._read(2))[0]
        elif length == 127:
            length = struct.unpack('!Q', self._read(8))[0]
        mask = self._read(4) if masked else b''
        payload = self._read(length)
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return fin, opcode, payload

    def receive(self) -> str:
        """The next text message; answers pings; raises Closed (also on socket timeout -> OSError)."""
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = self._frame()
            if opcode == PING:
                self._send(PONG, payload)
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                self.close()
                raise Closed('close frame')
            if opcode in (TEXT, BINARY, CONT):
                parts.append(payload)
                if fin:
                    return b''.join(parts).decode('utf-8', 'replace')

    def send(self, text: str) -> None:
        self._send(TEXT, text.encode('utf-8'))

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack('!H', n)
        else:
            head += bytes([127]) + struct.pack('!Q', n)
        with self._write:
            if self.closed and opcode != CLOSE:
                raise Closed('closed')
            self.sock.sendall(head + payload)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._send(CLOSE, struct.pack('!H', 1000))
        except OSError:
            pass
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
