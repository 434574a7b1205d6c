#!/usr/bin/python3
"""script/cluster: a throwaway PostgreSQL and three brokers sharing it.
Clients on different brokers chat live, and SIGTERM stops everything and
removes the cluster's directory.

    ZCHAT_BUILD_DIR=build /usr/bin/python3 -m pytest -q -p no:cacheprovider \\
        tests/python/test_cluster.py --python-only

(script/cluster runs with ZCHAT_NO_BUILD=1 on the binaries already built in
$ZCHAT_BUILD_DIR.) Every wait has a deadline.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.dont_write_bytecode = True
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
from zchat import ZchatClient  # noqa: E402

BODY = "entre brokers: héllo 你好 🌍 שלום مرحبا"


@pytest.fixture
def cluster():
    build = os.environ.get("ZCHAT_BUILD_DIR")
    if not build:
        pytest.fail("ZCHAT_BUILD_DIR must name the build directory", pytrace=False)
    env = dict(os.environ, ZCHAT_NO_BUILD="1", ZCHAT_BUILD_DIR=str(Path(build).resolve()))
    proc = subprocess.Popen([str(ROOT / "script" / "cluster"), "--base-port", "0"],
                            cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    endpoints, directory = [], None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.match(r"broker \d+: (\S+) \(log: (\S+)/broker\d+\.log\)", line):
            endpoints.append(m.group(1))
            directory = m.group(2)
        if line.startswith("clients:"):
            break
    if len(endpoints) != 3:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"script/cluster did not come up: {''.join(lines)}{out}{err}")
    yield proc, endpoints, directory
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_clients_on_different_brokers_chat_live(cluster):
    proc, (e0, e1, e2), directory = cluster
    with ZchatClient(timeout=15) as carol, ZchatClient(timeout=15) as dave:
        carol.connect(e1)
        dave.connect(e2)
        carol.create_account("carol", "password123")
        dave.create_account("dave", "password123")
        carol.login("carol", "password123")
        dave.login("dave", "password123")
        message_id = carol.send("dave", BODY)
        push = dave.next_push(15)
        assert push is not None, "no live delivery from broker 1 to broker 2"
        assert push["type"] == 16 and push["body"] == BODY
        assert push["message_id"] == message_id
        dave.receipt(message_id)
        success = carol.next_push(15)
        assert success is not None and success["type"] == 18, success
        assert success["message_id"] == message_id
    # A third client, on broker 0, sees both accounts.
    with ZchatClient(timeout=15) as erin:
        erin.connect(e0)
        erin.create_account("erin", "password123")
        erin.login("erin", "password123")
        assert erin.list_all_accounts() == ["carol", "dave", "erin"]

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("script/cluster did not stop within 30 s of SIGTERM")
    assert proc.returncode == 0
    assert not Path(directory).exists(), "the cluster's directory was not removed"
