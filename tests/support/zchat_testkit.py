"""Helpers for the Python end-to-end tests (tests/cli/test_script.py,
tests/cli/test_terminal.py, tests/python/test_conversation.py), used by the
pytest fixtures in tests/conftest.py: starting and stopping a real
zchat-broker on a free port in a directory of its own, and waiting for a
condition with a deadline. Also, for tests/python/test_failover.py: a
broker on a given endpoint and database, a free port to give it, and a TCP
relay that can hold back a broker's replies. And Postgres, a throwaway
PostgreSQL server for running the same tests with --store postgresql.
Standard library only.
"""

import glob
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
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


class Postgres:
    """A throwaway PostgreSQL server (Debian's postgresql-15): initdb in a
    temporary directory, listening on a Unix socket there only, fsync off.
    Under root it runs as the 'postgres' user (PostgreSQL refuses root).
    new_database() creates an empty database and returns its URI for
    zchat-broker --store; stop() stops the server and removes everything."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("no PostgreSQL server: apt-get install postgresql-15")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="zchat-pytest-pg-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "sock")
        os.mkdir(self.sock)
        self.as_owner = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sock, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.databases = 0
        self._run(["initdb", "-D", self.data, "-A", "trust", "-U", "zchat",
                   "-E", "UTF8", "--no-locale", "--no-sync"])
        self._run(["pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-o",
                   f"-k {self.sock} -c listen_addresses= -p 5432 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200", "start"])

    def _run(self, argv):
        argv = [*self.as_owner, os.path.join(self.bin, argv[0]), *argv[1:]]
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd=self.dir, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n"
                               f"{done.stdout.decode(errors='replace')}")

    def new_database(self):
        self.databases += 1
        name = f"t{self.databases}"
        self._run(["createdb", "-h", self.sock, "-p", "5432", "-U", "zchat", name])
        return f"postgresql:///{name}?host={self.sock}&port=5432&user=zchat"

    def stop(self):
        try:
            self._run(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class AddressInUse(RuntimeError):
    """The broker could not bind its endpoint: something else holds it."""


class Broker:
    """A zchat-broker process listening on tcp://127.0.0.1 at a port the
    kernel chose (or on `bind`, when given); the endpoint is read back from
    --endpoint-file. Its database is `db`, by default b.db in `directory`:
    an SQLite file, or a postgresql:// URI (passed as --store).
    With --metrics-bind among extra_args, .metrics_url is the metrics URL
    (the endpoint file's second line); otherwise it is None."""

    def __init__(self, binary, directory, extra_args=(), bind="tcp://127.0.0.1:*", db=None):
        self.directory = directory
        self.log_path = directory / "broker.log"
        ep_file = directory / "ep"
        if ep_file.exists():
            ep_file.unlink()
        db = str(db or directory / "b.db")
        store = ["--store", db] if db.startswith("postgresql://") else ["--db", db]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", bind, *store,
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
