"""Helpers for the Python end-to-end tests (tests/cli/test_script.py,
tests/cli/test_terminal.py, tests/python/test_conversation.py), used by the
pytest fixtures in tests/conftest.py: starting and stopping a real
zchat-broker on a free port in a directory of its own, and waiting for a
condition with a deadline. Standard library only.
"""

import signal
import subprocess
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


class Broker:
    """A zchat-broker process listening on tcp://127.0.0.1 at a port the
    kernel chose; the port is read back from --endpoint-file. With
    --metrics-bind among extra_args, .metrics_url is the metrics URL (the
    endpoint file's second line); otherwise it is None."""

    def __init__(self, binary, directory, extra_args=()):
        self.directory = directory
        self.log_path = directory / "broker.log"
        ep_file = directory / "ep"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", "tcp://127.0.0.1:*", "--db", str(directory / "b.db"),
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
            raise RuntimeError(
                f"broker {'did not write its endpoint file within 10 s' if ep is None else ep}"
                f"; log:\n{self.log()}")
        lines = ep.splitlines()
        self.endpoint = lines[0].strip()
        self.metrics_url = lines[1].strip() if len(lines) > 1 else None

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
