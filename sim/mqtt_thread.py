"""paho-mqtt's network loop on a thread of its own, waiting with the platform's selector
(epoll on Linux) through paho's external-loop API (`socket()`, `want_write()`, `loop_read()`,
`loop_write()`, `loop_misc()`, the socket callbacks).

paho's own `loop_start()` waits with `select.select()`, which refuses file descriptors at or
above FD_SETSIZE (1024) and reports that as a lost connection. A simulator process with a home
unit per subject holds more descriptors than that, so a HIL tag's modem session opened late got
a high one and never connected: its tag looked silent to the backend."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt

WAIT_S = 0.05  # longest wait between keep-alive checks (loop_misc) and looks at the stop flag


class NetworkThread:
    """Runs one client's network traffic until its connection closes or stop() is called.
    Other threads publish, subscribe and disconnect as usual: paho queues the packet and asks
    (through on_socket_register_write) for the socket to be watched for writing, which wakes
    this thread."""

    def __init__(self, client: mqtt.Client, name: str) -> None:
        self.client = client
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        client.on_socket_register_write = self._wake
        client.on_socket_unregister_write = self._wake

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        self._wake()
        if wait:
            self._thread.join()

    def _wake(self, *_args: Any) -> None:
        # Failing means a wake-up is already pending, or the thread has ended.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        watched: Any = None  # the client's socket (paho's SocketLike) being watched
        try:
            while not self._stop.is_set():
                sock = self.client.socket()
                if sock is None:
                    return  # the connection closed (a disconnect, or the broker went away)
                events = selectors.EVENT_READ
                if self.client.want_write():
                    events |= selectors.EVENT_WRITE
                if sock is not watched:
                    if watched is not None:
                        sel.unregister(watched)
                    sel.register(sock, events)
                    watched = sock
                else:
                    sel.modify(sock, events)
                for key, mask in sel.select(WAIT_S):
                    if key.fileobj is self._wake_r:
                        self._drain()
                        continue
                    if mask & selectors.EVENT_READ:
                        self.client.loop_read()
                    if mask & selectors.EVENT_WRITE and self.client.socket() is not None:
                        self.client.loop_write()
                self.client.loop_misc()
            if self.client.socket() is not None and self.client.want_write():
                self.client.loop_write()  # stopped after a disconnect(): send its DISCONNECT
        finally:
            sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: drained
            while self._wake_r.recv(4096):
                pass
