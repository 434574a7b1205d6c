"""Helpers for the Python end-to-end tests (tests/cli/test_script.py,
tests/cli/test_terminal.py, tests/python/test_conversation.py), used by the
pytest fixtures in tests/conftest.py: starting and stopping a real
zchat-broker on a free port in a directory of its own, and waiting for a
condition with a deadline. Also, for tests/python/test_failover.py: a
broker on a given endpoint and database, a free port to give it, and a TCP
relay that can hold back a broker's replies. Standard library only.
"""

import selectors
import signal
import socket
import subprocess
import threading
import time


def wait_until(cond, timeout, interval=0.02):
    """Call cond() until it returns something true or `timeout` seconds
    pass; return its last value. `interval` paces the polling, it does not
    synchronise anything."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_tcp_port():
    """A port on 127.0.0.1 that was free a moment ago (bound to port 0, then
    closed). Someone else may take it before it is used: see
    Broker.on_first_free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AddressInUse(RuntimeError):
    """The broker could not bind its endpoint: something else holds it."""


class Broker:
    """A zchat-broker process listening on tcp://127.0.0.1 at a port the
    kernel chose (or on `bind`, when given); the endpoint is read back from
    --endpoint-file. Its database is `db`, by default b.db in `directory`.
    With --metrics-bind among extra_args, .metrics_url is the metrics URL
    (the endpoint file's second line); otherwise it is None."""

    def __init__(self, binary, directory, extra_args=(), bind="tcp://127.0.0.1:*", db=None):
        self.directory = directory
        self.log_path = directory / "broker.log"
        ep_file = directory / "ep"
        if ep_file.exists():
            ep_file.unlink()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", bind, "--db", str(db or directory / "b.db"),
                 "--pwhash-cost", "min", "--log-level", "warn",
                 "--endpoint-file", str(ep_file), *extra_args],
                stdout=log, stderr=subprocess.STDOUT)

        lines_wanted = 2 if "--metrics-bind" in extra_args else 1

        def endpoint():
            if self.proc.poll() is not None:
                return f"exited {self.proc.returncode}"
            text = ep_file.read_text() if ep_file.exists() else ""
            lines = text.splitlines() if text.endswith("\n") else []
            return text if len(lines) >= lines_wanted else None

        ep = wait_until(endpoint, 10)
        if ep is None or ep.startswith("exited "):
            self.kill()
            if "Address already in use" in self.log():
                raise AddressInUse(f"broker could not bind {bind}; log:\n{self.log()}")
            raise RuntimeError(
                f"broker {'did not write its endpoint file within 10 s' if ep is None else ep}"
                f"; log:\n{self.log()}")
        lines = ep.splitlines()
        self.endpoint = lines[0].strip()
        self.metrics_url = lines[1].strip() if len(lines) > 1 else None

    @classmethod
    def on_first_free(cls, binary, directory, endpoints, **kwargs):
        """Start a broker on the first of `endpoints` it can bind (ports from
        free_tcp_port() may have been taken since). AddressInUse if none."""
        for i, endpoint in enumerate(endpoints):
            try:
                return cls(binary, directory, bind=endpoint, **kwargs)
            except AddressInUse:
                if i == len(endpoints) - 1:
                    raise

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=10):
        """SIGTERM; the exit code, or None if it was still running after
        `timeout` seconds (it is killed then)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class TcpRelay:
    """Listens on 127.0.0.1 at a port the kernel chose (.endpoint) and
    forwards each connection to 127.0.0.1:target_port, both ways, in a
    daemon thread. After hold_replies(), bytes from the target are dropped:
    the client sees a connected peer that never answers. When either side
    of a connection closes, both are closed. stop() ends it all."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self._hold = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def hold_replies(self):
        self._hold.set()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        peers = {}   # socket -> (the other side, True if it is the target side)

        def drop(sock):
            other, _ = peers.pop(sock, (None, None))
            for s in (sock, other):
                if s is not None:
                    peers.pop(s, None)
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    s.close()

        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                sock = key.fileobj
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    try:
                        upstream = socket.create_connection(self.target, timeout=5)
                    except OSError:
                        client.close()
                        continue
                    peers[client], peers[upstream] = (upstream, False), (client, True)
                    sel.register(client, selectors.EVENT_READ)
                    sel.register(upstream, selectors.EVENT_READ)
                    continue
                if sock not in peers:
                    continue
                other, from_target = peers[sock]
                try:
                    data = sock.recv(65536)
                    if data and not (from_target and self._hold.is_set()):
                        other.sendall(data)
                except OSError:
                    data = b""
                if not data:
                    drop(sock)
        for sock in list(peers):
            drop(sock)
        sel.close()
        self.listener.close()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
