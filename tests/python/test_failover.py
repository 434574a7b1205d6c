#!/usr/bin/python3
"""Failover of the Python client (python/, issue 11): a client given several
endpoints moves to another broker when its broker dies, resumes its session
with its token and resends what was unanswered, the caller doing nothing.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python/test_failover.py \\
        --broker build/broker/zchat-broker --python-only

The store is SQLite, so two brokers cannot use one database at once: the
brokers run one after the other on the same database file. Broker A starts
on a port the kernel chose; the client is given A's endpoint and B's
before B exists. B's port comes from free_tcp_port() (bound to port 0 and
closed), which another process could take before B binds it; so the
client gets two candidate endpoints for B, and B starts on the first it can
bind (Broker.on_first_free). The client rotates through all three.

Every wait has a deadline; nothing sleeps to synchronise.
"""

import sys
import threading
import time
from pathlib import Path

import pytest

sys.dont_write_bytecode = True   # keep python/ free of __pycache__
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
import zchat.client as zc  # noqa: E402
from zchat import ZchatClient, ZchatError  # noqa: E402
from zchat_testkit import Broker, TcpRelay, free_tcp_port  # noqa: E402

TIMEOUT = 20          # seconds a client call may take, failover included
FAILOVER_AFTER = 3.0  # seconds without a handshake or reply before moving on
# (3, not 1: under ASan a login can take a second, which is no failure)
PUSH_TIMEOUT = 10

BODIES_BEFORE = [
    "avant la panne : café, naïve, Ærøskøbing, ñandú, Zürich",
    "断线之前：你好，世界 — こんにちは — 안녕하세요",
    "before 👋🏽 🎉 👨‍👩‍👧‍👦 🇫🇷 (ZWJ and flags)",
]
BODIES_AFTER = [
    "بعد الانتقال: مرحبا بالعالم — שלום עולם (right to left)",
    "après la bascule : déjà vu, crème brûlée, Ωμέγα, Дом",
    "mixed ‏עברית‏ + English + 中文 + 😀 + e\u0301 (combining accent)",
]


class Brokers:
    """The brokers of one test, on one store (an SQLite file, or a PostgreSQL
    database with --store postgresql), one after the other. .log() gives all
    their logs (attached to a failing test's report)."""

    def __init__(self, binary, tmp_path, store_spec):
        self.binary, self.tmp_path = binary, tmp_path
        self.db = store_spec
        self.started = []

    def start(self, name, endpoints=None):
        directory = self.tmp_path / name
        directory.mkdir()
        if endpoints is None:
            b = Broker(self.binary, directory, db=self.db)
        else:
            b = Broker.on_first_free(self.binary, directory, endpoints, db=self.db)
        self.started.append((name, b))
        return b

    def log(self):
        return "\n".join(f"--- broker {name} ---\n{b.log()}" for name, b in self.started)

    def stop_all(self):
        for _, b in self.started:
            b.kill()


@pytest.fixture
def brokers(request, broker_bin, tmp_path, store_spec):
    bs = Brokers(broker_bin, tmp_path, store_spec)
    request.node.zchat_broker = bs     # conftest attaches .log() to a failure
    yield bs
    bs.stop_all()


@pytest.fixture
def b_endpoints():
    """Two candidate endpoints for broker B, picked before it exists."""
    return [f"tcp://127.0.0.1:{free_tcp_port()}" for _ in range(2)]


def user(endpoints, name=None, password=None, **kwargs):
    c = ZchatClient(timeout=TIMEOUT, failover_after=FAILOVER_AFTER, **kwargs)
    c.connect(endpoints)
    if name is not None:
        c.login(name, password)
    return c


def kill(broker):
    """SIGKILL: the broker gets no chance to say anything."""
    broker.proc.kill()
    broker.proc.wait(10)


def fetch_all(client):
    """Every waiting message (following `remaining`), each confirmed."""
    messages = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        result = client.fetch()
        messages.extend(result.messages)
        for m in result.messages:
            client.receipt(m["message_id"])
        if result.remaining == 0:
            return messages
    raise AssertionError(f"still messages remaining after {TIMEOUT} s: {messages}")


def failover_events(client):
    """The failover events among the client's buffered pushes."""
    events = []
    while (push := client.next_push(0)) is not None:
        if push.get("type") == ZchatClient.FAILOVER:
            events.append(push)
    return events


@pytest.mark.parametrize("b_slot", [0, 1], ids=["b_next", "b_after_a_dead_endpoint"])
def test_sends_go_on_through_b_after_a_dies(brokers, b_endpoints, b_slot):
    """b_after_a_dead_endpoint: nothing listens on the first candidate, so
    the client must also move past an endpoint with no broker."""
    a = brokers.start("a")
    endpoints = ",".join([a.endpoint] + b_endpoints)      # the string form
    with user(endpoints) as alice:
        alice.create_account("alice", "alice-password")
        alice.create_account("bob", "bob-password")
        alice.login("alice", "alice-password")
        token = alice.token
        sent = [(alice.send("bob", body), body) for body in BODIES_BEFORE]
        assert alice.endpoint == a.endpoint and alice.failovers == 0

        kill(a)
        b = brokers.start("b", b_endpoints[b_slot:])

        # The caller does nothing special: the sends go on.
        sent += [(alice.send("bob", body), body) for body in BODIES_AFTER]
        assert alice.endpoint == b.endpoint, (alice.endpoint, b.endpoint)
        assert alice.failovers >= 1
        assert alice.username == "alice" and alice.token == token, "resumed by token"
        events = failover_events(alice)
        assert events and events[-1]["to"] == b.endpoint and events[-1]["resumed"], events
        assert events[0]["from"] == a.endpoint and events[0]["reason"] == "disconnected", events

    with user([b.endpoint], "bob", "bob-password") as bob:
        got = fetch_all(bob)
    assert [m["message_id"] for m in got] == [mid for mid, _ in sent], got
    assert [m["body"].encode("utf-8") for m in got] == [body.encode("utf-8") for _, body in sent]
    assert all(m["sender"] == "alice" for m in got), got


def test_send_in_flight_when_a_dies_is_stored_once(brokers, b_endpoints):
    """A commits the send but its reply never reaches the client (a relay
    holds it back); A dies; the client resends through B with the same
    client_msg_id and B's dedup returns the same message_id."""
    a = brokers.start("a")
    relay = TcpRelay(int(a.endpoint.rsplit(":", 1)[1]))
    try:
        with user([relay.endpoint] + b_endpoints) as alice, user([a.endpoint]) as bob_on_a:
            alice.create_account("alice", "alice-password")
            alice.create_account("bob", "bob-password")
            alice.login("alice", "alice-password")
            bob_on_a.login("bob", "bob-password")
            body = "en vol / in flight / 飞行中 / في الطريق ✈️"

            relay.hold_replies()
            result = {}

            def send():
                try:
                    result["mid"] = alice.send("bob", body, client_msg_id=0x0DEC0DE)
                except Exception as e:   # reported by the main thread
                    result["error"] = e

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            # bob, online on A, gets it live: A has committed it.
            live = None
            deadline = time.monotonic() + PUSH_TIMEOUT
            while live is None and (left := deadline - time.monotonic()) > 0:
                push = bob_on_a.next_push(left)
                if push is None:
                    break
                if push.get("type") == zc.DISTRIBUTE_MESSAGE:
                    live = push
            assert live is not None and live["body"] == body, "A did not deliver the send"
            assert "mid" not in result, "the reply should have been held back"

            kill(a)
            b = brokers.start("b", b_endpoints)
            sender.join(TIMEOUT + 5)
            assert not sender.is_alive(), "send() did not return"
            assert "error" not in result, repr(result.get("error"))
            assert result["mid"] == live["message_id"], (result, live)
            assert alice.endpoint == b.endpoint and alice.failovers >= 1
    finally:
        relay.stop()

    with user([b.endpoint], "bob", "bob-password") as bob:
        got = fetch_all(bob)
    assert len(got) == 1, f"stored {len(got)} times: {got}"
    assert got[0]["message_id"] == live["message_id"]
    assert got[0]["body"].encode("utf-8") == body.encode("utf-8")


def test_refused_token_raises_zchat_error(brokers, b_endpoints):
    a = brokers.start("a")
    with user([a.endpoint] + b_endpoints) as alice:
        alice.create_account("alice", "alice-password")
        alice.create_account("bob", "bob-password")
        alice.login("alice", "alice-password")
        with user([a.endpoint]) as other:      # revokes alice's token
            other.login_token("alice", alice.token)
            other.logout()

        kill(a)
        brokers.start("b", b_endpoints)
        with pytest.raises(ZchatError) as info:
            alice.send("bob", "never sent")
        assert info.value.name == "bad_credentials", repr(info.value)
        assert alice.username is None
        events = failover_events(alice)
        assert events and not events[-1]["resumed"], events
        # Logged out, still connected to B: a password login works there.
        assert alice.login("alice", "alice-password")["username"] == "alice"
        assert alice.send("bob", "après la bascule") >= 1


def test_one_endpoint_does_not_fail_over(brokers):
    """One endpoint: no monitor, no failover, the old behaviour."""
    a = brokers.start("a")
    with user(a.endpoint) as alice:
        alice.create_account("alice", "alice-password")
        alice.login("alice", "alice-password")
        assert alice.endpoints == [a.endpoint] and alice._monitor is None
        kill(a)
        alice.timeout = 1.5
        with pytest.raises(TimeoutError):
            alice.send("alice", "nobody there")
        assert alice.failovers == 0 and alice.endpoint == a.endpoint


if __name__ == "__main__":     # the same as python3 -m pytest -q -p no:cacheprovider FILE ...
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__] + sys.argv[1:]))
