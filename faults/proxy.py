"""A TCP proxy that can cut a service off and bring it back on the same port.

The pipeline talks to the Firestore emulator through it. `cut()` closes the
listening socket and every open connection, so clients see what they see when
Firestore is unreachable (connection refused / reset); `restore()` listens
again on the same port. The emulator behind it keeps its data, as Firestore
does through a real outage (restarting the emulator itself would wipe it).
"""

import logging
import socket
import threading

_LOGGER = logging.getLogger(__name__)


class Proxy:
    def __init__(self, target: str, port: int = 0):
        host, target_port = target.rsplit(":", 1)
        self.target = (host, int(target_port))
        self._listener = None
        self._port = port
        self._pairs = set()
        self._lock = threading.Lock()
        self._accepting = None
        self.host_port = None

    def start(self) -> "Proxy":
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self._port))
        self._port = self._listener.getsockname()[1]
        self.host_port = f"127.0.0.1:{self._port}"
        self._listener.listen(128)
        self._accepting = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._accepting.start()
        return self

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.add((client, upstream))
            # A thread per direction: one thread serving both could block in sendall() towards
            # a peer that is itself blocked sending to us (large gRPC messages), a deadlock.
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, client, upstream), daemon=True).start()

    def _pump(self, source, sink, client, upstream):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    return
                sink.sendall(data)
        except OSError:
            return
        finally:
            self._close(client, upstream)

    def _close(self, client, upstream):
        with self._lock:
            self._pairs.discard((client, upstream))
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._listener is not None:
            # shutdown() first: close() alone does not wake the thread blocked in accept(),
            # and the socket would go on accepting.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
            self._accepting.join(5)
        with self._lock:
            pairs = list(self._pairs)
        for client, upstream in pairs:
            self._close(client, upstream)
        _LOGGER.info("proxy %s cut", self.host_port)

    def restore(self) -> None:
        if self._listener is not None:
            return  # not cut
        self.start()
        _LOGGER.info("proxy %s restored", self.host_port)

    def stop(self) -> None:
        self.cut()
