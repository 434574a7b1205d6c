#!/usr/bin/python3
"""Cross-language conversation test: a Python client (the zchat package, python/) and
the C++ terminal client `zchat` talk through a real zchat-broker.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python/test_conversation.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

(or run this file with the same options). alice is the Python client; bob
is driven through zchat's one-shot subcommands with --json (the test_cross_*
tests). --python-only deselects the tests that need zchat (for working on
the Python client before the C++ one is built). Each test has a broker of
its own (tests/conftest.py); every wait has a deadline.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.dont_write_bytecode = True   # keep python/ free of __pycache__
# The package from the source tree (python/), installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
import zchat.client as zc  # noqa: E402
from zchat import ZchatClient, ZchatError  # noqa: E402

ALICE_PASSWORD = "alice-password-1"
BOB_PASSWORD = "bob-password-1"
CLI_TIMEOUT = 30      # seconds any zchat invocation may take
PUSH_TIMEOUT = 15     # seconds to wait for a push


def wait_push(client, want, timeout=PUSH_TIMEOUT):
    """Wait for a push for which want(push) is true. Returns (push or None,
    the other pushes seen meanwhile)."""
    deadline = time.monotonic() + timeout
    others = []
    while (left := deadline - time.monotonic()) > 0:
        push = client.next_push(left)
        if push is None:
            break
        if want(push):
            return push, others
        others.append(push)
    return None, others


def assert_refused(func, code_name):
    """func() must raise ZchatError with that code."""
    with pytest.raises(ZchatError) as info:
        func()
    assert info.value.name == code_name, f"expected {code_name}, got {info.value!r}"


class Cli:
    """Runs the zchat terminal client's one-shot subcommands as bob."""

    def __init__(self, zchat, endpoint):
        self.base = [zchat, "--connect", endpoint, "--json"]
        self.env = dict(os.environ, ZCHAT_PASSWORD=BOB_PASSWORD)
        self.procs = []

    def start(self, *args):
        proc = subprocess.Popen(self.base + list(args), env=self.env, text=True,
                                encoding="utf-8", errors="replace",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def finish(self, proc, timeout=CLI_TIMEOUT):
        """Wait for a started command; return (exit code, JSON events, raw output)."""
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, [], f"timed out after {timeout} s; stdout={out!r} stderr={err!r}"
        events = []
        for line in out.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "<not json>", "line": line})
        return proc.returncode, events, f"exit {proc.returncode}; stdout={out!r} stderr={err!r}"

    def run(self, *args):
        return self.finish(self.start(*args))

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# -- fixtures ----------------------------------------------------------------

@pytest.fixture
def client(broker):
    """A Python client connected to the broker, not logged in."""
    with ZchatClient(timeout=15) as c:
        c.connect(broker.endpoint)
        yield c


@pytest.fixture
def alice_account(client):
    """The client, with the account alice created (not logged in)."""
    name = client.create_account("alice", ALICE_PASSWORD)
    assert name == "alice", f"create_account('alice') returned {name!r}"
    return client


@pytest.fixture
def alice(alice_account):
    """The client, logged in as alice."""
    reply = alice_account.login("alice", ALICE_PASSWORD)
    assert reply.get("username") == "alice", f"alice's login: {reply}"
    return alice_account


@pytest.fixture
def carol(broker, alice):
    """A throwaway account carol, logged in on a second connection, with one
    message from alice waiting. Yields (carol's client, the message id)."""
    with ZchatClient(timeout=15) as c:
        c.connect(broker.endpoint)
        c.create_account("carol", "carol-password")
        c.login("carol", "carol-password")
        mid = alice.send("carol", "soon purged: bientôt purgé 🗑 — 即将清除")
        yield c, mid


@pytest.fixture
def carol_deleted(carol):
    """carol deleted with force (her waiting message purged)."""
    c, mid = carol
    purged = c.delete_account(force=True)
    assert purged == 1, f"delete_account(force=True) purged {purged}"
    return mid


@pytest.fixture
def cli(zchat_bin, broker):
    """zchat --json as bob, against the test's broker (bob not registered)."""
    c = Cli(zchat_bin, broker.endpoint)
    yield c
    c.close()


@pytest.fixture
def bob(cli):
    """bob registered through `zchat register`; yields the Cli."""
    rc, events, raw = cli.run("register", "--user", "bob")
    assert rc == 0 and {"event": "registered", "user": "bob"} in events, \
        f"bob: zchat register: {raw}"
    return cli


BODY_A = "hello bob, from Python: naïve ✓"
CMID_A = 0x1234_5678_9abc


@pytest.fixture
def offline_fetch(alice, bob):
    """(a) alice sends to offline bob; bob fetches with the CLI.
    Returns (message id, exit code, events, raw output)."""
    mid = alice.send("bob", BODY_A, client_msg_id=CMID_A)
    rc, events, raw = bob.run("fetch", "--user", "bob")
    return mid, rc, events, raw


BODY_B = "hi alice, from C++: مرحبا 你好 👋"


@pytest.fixture
def online_send_wait(alice, bob):
    """(b) bob sends to alice (online) with --wait; alice takes the push and
    confirms it. Returns (push, other pushes, exit code, events, raw)."""
    proc = bob.start("send", "--user", "bob", "alice", BODY_B, "--wait")
    push, others = wait_push(alice, lambda p: p.get("type") == zc.DISTRIBUTE_MESSAGE)
    if push is not None:
        alice.receipt(push["message_id"])
    rc, events, raw = bob.finish(proc)
    return push, others, rc, events, raw


# -- the Python client alone ---------------------------------------------------

def test_ping(client):
    assert client.ping() >= 0


def test_create_account(client):
    assert client.create_account("alice", ALICE_PASSWORD) == "alice"


def test_create_same_name_other_case_is_username_taken(alice_account):
    assert_refused(lambda: alice_account.create_account("ALICE", ALICE_PASSWORD),
                   "username_taken")


def test_fetch_before_login_is_not_logged_in(alice_account):
    assert_refused(alice_account.fetch, "not_logged_in")


def test_wrong_password_is_bad_credentials(alice_account):
    assert_refused(lambda: alice_account.login("alice", "wrong-password"), "bad_credentials")


def test_login_returns_name_and_token(alice_account):
    reply = alice_account.login("alice", ALICE_PASSWORD)
    assert reply.get("username") == "alice" and len(alice_account.token) == 32, str(reply)


def test_second_login_is_already_logged_in(alice):
    assert_refused(lambda: alice.login("alice", ALICE_PASSWORD), "already_logged_in")


def test_token_login_on_a_second_connection(broker, alice):
    with ZchatClient() as other:
        other.connect(broker.endpoint)
        reply = other.login_token("Alice", alice.token)
    assert reply.get("username") == "alice", str(reply)


def test_delete_without_force_while_pending_is_has_pending(carol):
    c, _ = carol
    assert_refused(c.delete_account, "has_pending")


def test_delete_with_force_purges_the_waiting_message(carol):
    c, _ = carol
    assert c.delete_account(force=True) == 1


def test_sender_gets_undeliverable_recipient_deleted(alice, carol_deleted):
    push, others = wait_push(alice, lambda p: p.get("type") == zc.MESSAGE_UNDELIVERABLE)
    assert (push is not None and push.get("message_id") == carol_deleted
            and zc.error_name(push.get("code", 0)) == "recipient_deleted"), \
        f"push={push} others={others}"


def test_send_to_deleted_account_is_unknown_recipient(alice, carol_deleted):
    assert_refused(lambda: alice.send("carol", "x"), "unknown_recipient")


def _python_user(broker, name, auto_ack=True, batch_pushes=True):
    c = ZchatClient(timeout=15, auto_ack=auto_ack, batch_pushes=batch_pushes)
    c.connect(broker.endpoint)
    c.create_account(name, name + "-password")
    c.login(name, name + "-password")
    return c


def _confirmed_message(broker, sender):
    """sender sends to a new user dave, who confirms it. Returns the message id."""
    with _python_user(broker, "dave") as dave:
        mid = sender.send("dave", "please confirm")
        push, others = wait_push(dave, lambda p: p.get("type") == zc.DISTRIBUTE_MESSAGE)
        assert push is not None and push["message_id"] == mid, f"{push} {others}"
        dave.receipt(mid)
    return mid


def test_python_client_acknowledges_notices(broker):
    with _python_user(broker, "erin") as erin:
        mid = _confirmed_message(broker, erin)
        push, others = wait_push(erin, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
        assert push is not None and push["message_id"] == mid, f"{push} {others}"
        # next_push acknowledged it: the broker has nothing left to resend.
        assert erin.fetch_notices() == (0, 0)
        token = erin.token
    with ZchatClient(timeout=15) as again:
        again.connect(broker.endpoint)
        again.login_token("erin", token)
        assert again.fetch_notices() == (0, 0)
        assert again.next_push(0) is None, "an acknowledged notice came back"


def test_unacknowledged_notice_comes_back_at_next_login(broker):
    with _python_user(broker, "erin", auto_ack=False) as erin:
        mid = _confirmed_message(broker, erin)
        push, others = wait_push(erin, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
        assert push is not None and push["message_id"] == mid, f"{push} {others}"
        # Not acknowledged: FETCH_NOTICES pushes it again, next_push drops the repeat.
        assert erin.fetch_notices() == (1, 0)
        assert erin.next_push(0) is None, "a repeated notice was handed out twice"
        token = erin.token
    with ZchatClient(timeout=15) as again:     # the next login gets it again
        again.connect(broker.endpoint)
        again.login_token("erin", token)
        push, others = wait_push(again, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
        assert push is not None and push["message_id"] == mid, f"{push} {others}"
        assert again.fetch_notices() == (0, 0), "handed out, so acknowledged"


def _success_ids(client, n):
    """The message ids of the next n distinct MESSAGE_SUCCESS pushes."""
    got = set()
    while len(got) < n:
        push, others = wait_push(client, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
        assert push is not None, f"{others}"
        got.add(push["message_id"])
    return got


def test_ack_notices_acknowledges_a_list_in_one_request(broker):
    with _python_user(broker, "frida", auto_ack=False) as frida, \
            _python_user(broker, "gil") as gil:
        ids = [frida.send("gil", body) for body in ("Grüße", "你好", "👋", "مرحبا")]
        for mid in ids:
            push, others = wait_push(gil, lambda p: p.get("type") == zc.DISTRIBUTE_MESSAGE)
            assert push is not None, f"{others}"
            gil.receipt(push["message_id"])
        assert _success_ids(frida, len(ids)) == set(ids)
        frida.ack_notices(ids[:3])
        assert frida.fetch_notices() == (1, 0), "the fourth is not acknowledged"
        frida.ack_notices(ids)  # the first three again: no-ops
        assert frida.fetch_notices() == (0, 0)


def test_receipts_confirm_a_list_and_name_the_refused_ids(broker):
    with _python_user(broker, "hana") as hana, _python_user(broker, "ivo") as ivo, \
            _python_user(broker, "jun") as jun:
        to_ivo = [hana.send("ivo", body) for body in ("Grüße", "你好", "👋")]
        to_jun = hana.send("jun", "مرحبا")
        for _ in to_ivo:
            push, others = wait_push(ivo, lambda p: p.get("type") == zc.DISTRIBUTE_MESSAGE)
            assert push is not None, f"{others}"
        # Jun's message is not Ivo's to confirm: refused, the rest confirmed.
        assert ivo.receipts(to_ivo + [to_jun]) == [to_jun]
        assert _success_ids(hana, len(to_ivo)) == set(to_ivo)
        assert ivo.receipts(to_ivo) == [], "repeats are accepted"
        assert jun.fetch().count == 1, "Jun's message still waits for Jun"


def _raw_frames(client, want_type, n, timeout=PUSH_TIMEOUT):
    """The next n frames of want_type straight off the client's socket (as
    the wire has them, before the client splits a batch), others dropped."""
    import msgpack
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        if client._sock.poll(100):
            msg = msgpack.unpackb(client._sock.recv(), raw=False)
            if msg.get("type") == want_type:
                frames.append(msg)
    return frames


@pytest.mark.parametrize("batch_pushes", [True, False])
def test_a_receipt_of_many_is_told_in_one_frame_to_batch_pushes_sessions(
        broker, batch_pushes):
    with _python_user(broker, "kai", batch_pushes=batch_pushes) as kai, \
            _python_user(broker, "lena") as lena:
        bodies = ("Grüße", "你好", "👋", "مرحبا")
        cmids = [9001, 9002, 9003, 9004]
        ids = [kai.send("lena", b, client_msg_id=c) for b, c in zip(bodies, cmids)]
        for _ in ids:
            push, others = wait_push(lena, lambda p: p.get("type") == zc.DISTRIBUTE_MESSAGE)
            assert push is not None, f"{others}"
        assert lena.receipts(list(reversed(ids))) == []
        if batch_pushes:
            frames = _raw_frames(kai, zc.MESSAGE_SUCCESS, 1)
            assert len(frames) == 1, frames
            assert frames[0]["recipient"] == "lena"
            assert frames[0]["message_ids"] == list(reversed(ids))
            assert frames[0]["client_msg_ids"] == list(reversed(cmids))
            assert "message_id" not in frames[0]
        else:
            frames = _raw_frames(kai, zc.MESSAGE_SUCCESS, len(ids))
            assert [f["message_id"] for f in frames] == list(reversed(ids))
            assert all("message_ids" not in f for f in frames)
        # The client hands the stored notices out one by one after a login,
        # whatever form they came in.
        with ZchatClient(timeout=15, batch_pushes=batch_pushes) as again:
            again.connect(broker.endpoint)
            again.login_token("kai", kai.token)
            got = []
            while len(got) < len(ids):
                push, others = wait_push(again, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
                assert push is not None, f"{got} {others}"
                got.append((push["message_id"], push["client_msg_id"], push["recipient"]))
            assert got == [(i, c, "lena") for i, c in zip(ids, cmids)]
            assert again.fetch_notices() == (0, 0), "each was acknowledged"


@pytest.mark.parametrize("batch_pushes", [True, False])
def test_a_fetch_comes_in_few_frames_to_batch_pushes_sessions(broker, batch_pushes):
    bodies = ["Grüße", "你好", "👋", "مرحبا", "שלום"]
    with _python_user(broker, "nico") as nico:
        nico.create_account("olga", "olga-password")   # olga is away
        ids = [nico.send("olga", b) for b in bodies]
    with ZchatClient(timeout=15, batch_pushes=batch_pushes) as olga:
        olga.connect(broker.endpoint)
        olga.login("olga", "olga-password")
        # The frames as the wire has them (their FETCH_RESULT dropped).
        olga._send(zc.FETCH_MESSAGES, limit=1000)
        frames = _raw_frames(olga, zc.DISTRIBUTE_MESSAGE, 1 if batch_pushes else len(ids))
        if batch_pushes:
            assert len(frames) == 1, frames
            assert frames[0]["message_ids"] == ids
            assert frames[0]["bodies"] == bodies
            assert frames[0]["senders"] == ["nico"] * len(ids)
            assert len(frames[0]["sent_ats"]) == len(ids)
        else:
            assert [f["message_id"] for f in frames] == ids
            assert [f["body"] for f in frames] == bodies
        # Not confirmed: fetch() hands them out again, one dict each.
        got = olga.fetch()
        assert got.count == len(ids)
        assert [m["message_id"] for m in got.messages] == ids
        assert [m["body"] for m in got.messages] == bodies
        assert all(m["sender"] == "nico" for m in got.messages)
        assert olga.receipts(ids) == []
        assert olga.fetch().count == 0


def test_send_many_stores_in_order_or_not_at_all(broker):
    bodies = ["Grüße", "你好", "👋", "مرحبا", "שלום"]
    with _python_user(broker, "pia") as pia:
        pia.create_account("quinn", "quinn-password")   # quinn is away
        cmids = [7005, 7001, 7004, 7002, 7003]
        # The wire: one request, one MESSAGE_PENDING pairing ids with cmids.
        req = pia._send(zc.SEND_MESSAGE, recipient="quinn", bodies=bodies,
                        client_msg_ids=cmids)
        reply = pia._wait(req)
        assert reply["type"] == zc.MESSAGE_PENDING
        assert reply["client_msg_ids"] == cmids
        ids = reply["message_ids"]
        assert ids == sorted(ids) and len(set(ids)) == len(bodies)
        assert "message_id" not in reply
        # A retry of the whole batch names the same messages.
        assert pia.send_many("quinn", bodies, client_msg_ids=cmids) == ids
        # Refused whole: one body over the limit stores none of the others.
        with pytest.raises(ZchatError) as info:
            pia.send_many("quinn", ["ok", "x" * 16385, "also ok"],
                          client_msg_ids=[8001, 8002, 8003])
        assert info.value.name == "body_too_large"
        assert "message 2 of 3" in info.value.reason
        assert info.value.reply["client_msg_ids"] == [8001, 8002, 8003]
        assert_refused(lambda: pia.send_many("nobody", bodies), "unknown_recipient")
        more = pia.send_many("quinn", ["¡hola!"])
    with ZchatClient(timeout=15) as quinn:
        quinn.connect(broker.endpoint)
        assert quinn.login("quinn", "quinn-password")["pending"] == len(bodies) + 1
        got = quinn.fetch()
        assert [m["message_id"] for m in got.messages] == ids + more
        assert [m["body"] for m in got.messages] == bodies + ["¡hola!"]


# -- alice (Python) and bob (zchat CLI) ------------------------------------------

def test_cross_bob_registers_with_zchat(cli):
    rc, events, raw = cli.run("register", "--user", "bob")
    assert rc == 0 and {"event": "registered", "user": "bob"} in events, raw


def test_cross_a_send_to_offline_bob_returns_an_id(alice, bob):
    assert alice.send("bob", BODY_A, client_msg_id=CMID_A) >= 1


def test_cross_a_bob_fetch_exits_0(offline_fetch):
    _, rc, _, raw = offline_fetch
    assert rc == 0, raw


def test_cross_a_bob_fetches_alices_message(offline_fetch):
    mid, _, events, raw = offline_fetch
    msgs = [e for e in events if e.get("event") == "message"]
    assert (len(msgs) == 1 and msgs[0].get("id") == mid and msgs[0].get("from") == "alice"
            and msgs[0].get("body") == BODY_A and isinstance(msgs[0].get("sent_at"), int)), raw


def test_cross_a_bob_fetched_count_1_remaining_0(offline_fetch):
    _, _, events, raw = offline_fetch
    assert events[-1:] == [{"event": "fetched", "count": 1, "remaining": 0}], raw


def test_cross_a_alice_gets_success_for_the_confirmed_message(alice, offline_fetch):
    mid = offline_fetch[0]
    push, others = wait_push(alice, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
    assert (push is not None and push.get("message_id") == mid
            and push.get("recipient") == "bob" and push.get("client_msg_id") == CMID_A), \
        f"push={push} others={others}"


def test_cross_b_alice_gets_the_message_from_bob(online_send_wait):
    push, others, *_ = online_send_wait
    assert (push is not None and push.get("sender") == "bob"
            and push.get("body") == BODY_B), f"push={push} others={others}"


def test_cross_b_bob_send_wait_exits_0(online_send_wait):
    *_, rc, _, raw = online_send_wait
    assert rc == 0, raw


def test_cross_b_bob_pending_with_alices_message_id(online_send_wait):
    push, others, _, events, raw = online_send_wait
    assert push is not None, f"alice got no DISTRIBUTE_MESSAGE; others={others}; {raw}"
    assert {"event": "pending", "id": push["message_id"], "to": "alice",
            "body": BODY_B} in events, raw


def test_cross_b_bob_delivered_with_the_same_id(online_send_wait):
    push, others, _, events, raw = online_send_wait
    assert push is not None, f"alice got no DISTRIBUTE_MESSAGE; others={others}; {raw}"
    assert events[-1:] == [{"event": "delivered", "id": push["message_id"], "to": "alice"}], raw


def test_cross_c_alice_lists_alice_and_bob(alice, bob):
    names = alice.list_all_accounts()
    assert names == ["alice", "bob"], str(names)


def test_cross_c_alice_pages_one_by_one(alice, bob):
    paged = alice.list_all_accounts(page_size=1)
    assert paged == ["alice", "bob"], str(paged)


def test_cross_c_alice_lists_pattern(alice, bob):
    only_bob = alice.list_accounts("B*")
    assert only_bob == (["bob"], ""), str(only_bob)


def test_cross_c_bob_zchat_users_sees_alice_and_bob(alice, bob):
    rc, events, raw = bob.run("users", "--user", "bob")
    users = [e for e in events if e.get("event") == "users"]
    assert rc == 0 and len(users) == 1 \
        and {"alice", "bob"} <= set(users[0].get("accounts", [])), raw


def test_cross_d_send_to_unknown_user_exits_1_unknown_recipient(bob):
    rc, events, raw = bob.run("send", "--user", "bob", "nobody", "hello? ¿hola? こんにちは")
    errors = [e for e in events if e.get("event") == "error"]
    assert rc == 1 and len(errors) == 1 and errors[0].get("code") == "unknown_recipient" \
        and isinstance(errors[0].get("reason"), str), raw


if __name__ == "__main__":     # the same as python3 -m pytest -q -p no:cacheprovider FILE ...
    sys.dont_write_bytecode = True
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__] + sys.argv[1:]))
