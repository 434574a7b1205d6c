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
    kernel chose; the port is read back from --endpoint-file."""

    def __init__(self, binary, directory):
        self.directory = directory
        self.log_path = directory / "broker.log"
        ep_file = directory / "ep"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", "tcp://127.0.0.1:*", "--db", str(directory / "b.db"),
                 "--pwhash-cost", "min", "--log-level", "warn",
                 "--endpoint-file", str(ep_file)],
                stdout=log, stderr=subprocess.STDOUT)

        def endpoint():
            if self.proc.poll() is not None:
                return f"exited {self.proc.returncode}"
            text = ep_file.read_text() if ep_file.exists() else ""
            return text.strip() if text.endswith("\n") and text.strip() else None

        ep = wait_until(endpoint, 10)
        if ep is None or ep.startswith("exited "):
            self.kill()
            raise RuntimeError(
                f"broker {'did not write its endpoint file within 10 s' if ep is None else ep}"
                f"; log:\n{self.log()}")
        self.endpoint = ep

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


# -- The hand-made harness of tests/cli (until they move to pytest) -----------
import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class Abort(Exception):
    """A check failed (and was counted) that later steps depend on."""


class Results:
    """Counts and prints checks.

    fail_sep goes between a failed check's name and its detail; each script
    keeps its own layout ("\\n     ", "\\n" or ": ")."""

    def __init__(self, fail_sep):
        self.passed = self.failed = 0
        self.fail_sep = fail_sep

    def check(self, name, ok, detail=""):
        """Record one check; print it. Returns ok."""
        if ok:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}{self.fail_sep}{detail}", flush=True)
        return ok

    def require(self, name, ok, detail=""):
        """Like check, but stop the test on failure."""
        if not self.check(name, ok, detail):
            raise Abort(name)


def start_broker(broker, tmp):
    """Start zchat-broker on a free port; return (process, endpoint)."""
    ep_file = tmp / "ep"
    log = open(tmp / "broker.log", "wb")
    proc = subprocess.Popen(
        [broker, "--bind", "tcp://127.0.0.1:*", "--db", str(tmp / "b.db"),
         "--pwhash-cost", "min", "--log-level", "warn", "--endpoint-file", str(ep_file)],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before listening")
        if ep_file.exists():
            text = ep_file.read_text()
            if text.endswith("\n") and text.strip():
                return proc, text.strip()
        time.sleep(0.02)        # polling interval, not synchronisation
    proc.kill()
    proc.wait()
    raise RuntimeError("broker did not write its endpoint file within 10 s")


def stop_broker(proc, r):
    """SIGTERM the broker and expect a clean exit within 10 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=10)
        r.check("broker exits 0 on SIGTERM", rc == 0, f"exit code {rc}")
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        r.check("broker exits 0 on SIGTERM", False, "still running after 10 s")


def argument_parser(doc, zchat_required=True):
    """--broker (required) and --zchat; the description is doc's first line.
    Callers may add options before parse_args()."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--broker", required=True, help="path to zchat-broker")
    ap.add_argument("--zchat", required=zchat_required,
                    help="path to the zchat terminal client")
    return ap


def run_with_broker(args, r, tmp_prefix, body, need_zchat=True, zchat_hint=""):
    """The common main(): in a fresh temporary directory, check that the
    binaries exist, start the broker, run body(ep, tmp), stop the broker
    (printing its log if anything failed) and print "N passed, M failed".
    An Abort stops the checks; any other exception counts as a failure.
    Returns the exit status (0 only if nothing failed)."""
    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmpdir:
        tmp = Path(tmpdir)
        broker = None
        try:
            r.require("broker binary exists", os.access(args.broker, os.X_OK), args.broker)
            if need_zchat:
                r.require("zchat binary exists",
                          args.zchat is not None and os.access(args.zchat, os.X_OK),
                          f"{args.zchat}{zchat_hint}")
            try:
                broker, ep = start_broker(args.broker, tmp)
            except RuntimeError as e:
                r.require("start broker", False, str(e))
            body(ep, tmp)
        except Abort as e:
            print(f"stopping after: {e}")
        except Exception as e:  # noqa: BLE001 - report it and still print the summary
            r.check("unexpected error", False, repr(e))
        finally:
            if broker is not None:
                stop_broker(broker, r)
                if r.failed:
                    print("--- broker log ---\n"
                          + (tmp / "broker.log").read_text(errors="replace"))
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0
