#!/usr/bin/python3
"""The broker's metrics endpoint (--metrics-bind): scraped over HTTP while
Python clients chat, the counts must move as the conversation says.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python/test_metrics.py \\
        --broker build/broker/zchat-broker --python-only

Counters are counted when the batch that did the work commits, which is
before its replies leave, so they are exact as soon as a reply arrived.
Gauges of the transport (connections, sessions) are refreshed after the
replies are sent, so the test waits for them with a deadline.
"""

import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zmq

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from zchat import ZchatClient, ZchatError  # noqa: E402
from zchat_testkit import wait_until  # noqa: E402

pytestmark = pytest.mark.broker_args("--metrics-bind", "127.0.0.1:0")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
BODIES = ["héllo wörld", "你好，世界", "🌍🚀 emoji", "שלום עולם", "مرحبا بالعالم"]


def scrape(url):
    """The page as {(name, frozenset(labels)): value}; checks the format."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode("utf-8")
    samples = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels, value = m.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no # TYPE line"
        key = (name, frozenset(LABEL.findall(labels or "")))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples, type_, outcome):
    return value(samples, "zchat_requests_total", type=type_, outcome=outcome)


@pytest.fixture
def url(broker):
    assert broker.metrics_url and broker.metrics_url.startswith("http://127.0.0.1:")
    return broker.metrics_url


def wait_for(url, name, want, **labels):
    """Scrape until `name` has the value `want` (10 s deadline)."""
    got = wait_until(lambda: value(scrape(url), name, **labels) == want, 10)
    assert got, f"{name}{labels} stayed {value(scrape(url), name, **labels)}, want {want}"


def test_counts_move_with_the_conversation(broker, url):
    start = scrape(url)
    assert value(start, "zchat_build_info", version="0.1.0") == 1
    assert value(start, "zchat_accounts") == 0
    assert value(start, "zchat_queue_depth") == 0
    assert value(start, "zchat_sessions") == 0
    assert value(start, "zchat_messages_accepted_total") == 0

    with ZchatClient(timeout=15) as alice, ZchatClient(timeout=15) as bob:
        alice.connect(broker.endpoint)
        bob.connect(broker.endpoint)
        alice.create_account("alice", "alice-password-1")
        alice.create_account("bob", "bob-password-1")
        alice.login("alice", "alice-password-1")
        s = scrape(url)
        assert requests(s, "CREATE_ACCOUNT", "ok") == 2
        assert requests(s, "LOGIN_REQUEST", "ok") == 1
        assert value(s, "zchat_accounts") == 2
        wait_for(url, "zchat_sessions", 1)
        wait_for(url, "zchat_connections", 2)

        # Offline bob: every message is queued.
        for body in BODIES:
            alice.send("bob", body)
        with pytest.raises(ZchatError):
            alice.send("nobody", "x")
        with pytest.raises(ZchatError):
            bob.login("bob", "wrong-password")
        s = scrape(url)
        assert value(s, "zchat_messages_accepted_total") == len(BODIES)
        assert value(s, "zchat_messages_queued_total") == len(BODIES)
        assert value(s, "zchat_messages_delivered_live_total") == 0
        assert value(s, "zchat_queue_depth") == len(BODIES)
        assert requests(s, "SEND_MESSAGE", "ok") == len(BODIES)
        assert requests(s, "SEND_MESSAGE", "unknown_recipient") == 1
        assert requests(s, "LOGIN_REQUEST", "bad_credentials") == 1

        # bob logs in, fetches and confirms two of them.
        bob.login("bob", "bob-password-1")
        fetched = bob.fetch()
        assert [m["body"] for m in fetched.messages] == BODIES
        for m in fetched.messages[:2]:
            bob.receipt(m["message_id"])
        s = scrape(url)
        assert value(s, "zchat_messages_fetched_total") == len(BODIES)
        assert value(s, "zchat_messages_confirmed_total") == 2
        assert value(s, "zchat_queue_depth") == len(BODIES) - 2
        assert value(s, "zchat_notices_pending") == 2
        wait_for(url, "zchat_sessions", 2)

        # alice takes her delivery notices (the client acknowledges them).
        for _ in range(2):
            push = alice.next_push(15)
            assert push is not None and push["type"] == 18  # MESSAGE_SUCCESS
        alice.ping()
        assert value(scrape(url), "zchat_notices_pending") == 0

        # Online bob: delivered live.
        alice.send("bob", "live ✓ 🎉")
        s = scrape(url)
        assert value(s, "zchat_messages_delivered_live_total") == 1
        assert value(s, "zchat_messages_accepted_total") == len(BODIES) + 1
        assert value(s, "zchat_queue_depth") == len(BODIES) - 1

        # A frame that is not a request.
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.connect(broker.endpoint)
        raw.send(b"\xc1 not msgpack")
        assert raw.poll(10_000), "no answer to a malformed frame"
        raw.recv()
        raw.close(0)
        assert requests(scrape(url), "undecoded", "malformed") == 1

        s = scrape(url)
        batches = value(s, "zchat_batch_requests_count")
        assert batches > 0
        assert value(s, "zchat_batch_requests_bucket", le="+Inf") == batches
        assert value(s, "zchat_commit_seconds_count") > 0
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                         if k[0] == "zchat_commit_seconds_bucket")
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "histogram buckets must be cumulative"
        assert counts[-1] == value(s, "zchat_commit_seconds_count")
        frames = value(s, "zchat_frames_received_total")
        assert frames >= 2 + 2 + len(BODIES) + 1 + 1

        alice.logout()
        bob.logout()
        wait_for(url, "zchat_sessions", 0)
    # Closed: the transport's count goes back to zero.
    wait_for(url, "zchat_connections", 0)


@pytest.mark.parametrize("batch_pushes", [True, False])
def test_frames_sent_count_a_batch_form_once(broker, url, batch_pushes):
    names = ("carla", "dmitri") if batch_pushes else ("erik", "fatima")
    with ZchatClient(timeout=15) as sender, \
            ZchatClient(timeout=15, batch_pushes=batch_pushes) as reader:
        sender.connect(broker.endpoint)
        reader.connect(broker.endpoint)
        sender.create_account(names[0], "pässwörd-one")
        sender.create_account(names[1], "pässwörd-two")
        sender.login(names[0], "pässwörd-one")
        for body in BODIES:
            sender.send(names[1], body)
        reader.login(names[1], "pässwörd-two")
        before = value(scrape(url), "zchat_frames_sent_total")
        fetched = reader.fetch()
        assert [m["body"] for m in fetched.messages] == BODIES
        sent = value(scrape(url), "zchat_frames_sent_total") - before
        # The pushes and FETCH_RESULT: one DISTRIBUTE_MESSAGE for all five
        # in the batch form, else one each.
        assert sent == (1 if batch_pushes else len(BODIES)) + 1


def test_a_batch_send_is_one_frame_each_way_and_counts_each_message(broker, url):
    with ZchatClient(timeout=15) as sender:
        sender.connect(broker.endpoint)
        sender.create_account("gita", "pässwörd-one")
        sender.create_account("hamid", "pässwörd-two")   # away
        sender.login("gita", "pässwörd-one")
        before = scrape(url)
        ids = sender.send_many("hamid", BODIES)
        after = scrape(url)
        assert len(ids) == len(BODIES)

        def grew(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)
        assert grew("zchat_frames_received_total") == 1
        assert grew("zchat_frames_sent_total") == 1      # one MESSAGE_PENDING
        assert grew("zchat_messages_accepted_total") == len(BODIES)
        assert grew("zchat_messages_queued_total") == len(BODIES)
        assert requests(after, "SEND_MESSAGE", "ok") - \
            requests(before, "SEND_MESSAGE", "ok") == 1


def test_only_get_metrics_is_served(url):
    base = url.rsplit("/", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/other", timeout=10)
    assert info.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"),
                               timeout=10)
    assert info.value.code == 405
