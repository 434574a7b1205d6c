#!/usr/bin/python3
"""Cross-language conversation test: a Python client (examples/python) and
the C++ terminal client `zchat` talk through a real zchat-broker.

    /usr/bin/python3 tests/python/test_conversation.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

alice is the Python client; bob is driven through zchat's one-shot
subcommands with --json. --python-only skips the zchat parts (for working
on the Python client before the C++ one is built). Every wait has a
deadline; the last line is "N passed, M failed"; exit status 0 only if
nothing failed.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True   # keep examples/python free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import zchat_client as zc  # noqa: E402
from zchat_client import ZchatClient, ZchatError  # noqa: E402
from zchat_testkit import Results, argument_parser, run_with_broker  # noqa: E402

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


def expect_error(func, code_name):
    """Run func; return "" if it raised ZchatError with that code, else a description."""
    try:
        func()
    except ZchatError as e:
        return "" if e.name == code_name else f"got {e!r}"
    return "no error raised"


class Cli:
    """Runs the zchat terminal client's one-shot subcommands as bob."""

    def __init__(self, zchat, endpoint):
        self.base = [zchat, "--connect", endpoint, "--json"]
        self.env = dict(os.environ, ZCHAT_PASSWORD=BOB_PASSWORD)

    def start(self, *args):
        return subprocess.Popen(self.base + list(args), env=self.env, text=True,
                                encoding="utf-8", errors="replace",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

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


def python_checks(r, ep, alice):
    """alice's own account and the Python client's basic calls."""
    r.check("ping", alice.ping() >= 0)
    r.require("alice: create_account", alice.create_account("alice", ALICE_PASSWORD) == "alice")
    r.check("create 'ALICE' again -> username_taken",
            not (d := expect_error(lambda: alice.create_account("ALICE", ALICE_PASSWORD),
                                   "username_taken")), d)
    r.check("fetch before login -> not_logged_in",
            not (d := expect_error(alice.fetch, "not_logged_in")), d)
    r.check("wrong password -> bad_credentials",
            not (d := expect_error(lambda: alice.login("alice", "wrong-password"),
                                   "bad_credentials")), d)
    reply = alice.login("alice", ALICE_PASSWORD)
    r.require("alice: login", reply.get("username") == "alice" and len(alice.token) == 32,
              str(reply))
    r.check("second login -> already_logged_in",
            not (d := expect_error(lambda: alice.login("alice", ALICE_PASSWORD),
                                   "already_logged_in")), d)

    with ZchatClient() as other:           # token login on a second connection
        other.connect(ep)
        reply = other.login_token("Alice", alice.token)
        r.check("token login on a second connection", reply.get("username") == "alice",
                str(reply))

    with ZchatClient() as carol:           # a throwaway account to delete
        carol.connect(ep)
        carol.create_account("carol", "carol-password")
        carol.login("carol", "carol-password")
        mid = alice.send("carol", "soon purged")
        r.check("delete without force -> has_pending",
                not (d := expect_error(carol.delete_account, "has_pending")), d)
        r.check("delete with force purges 1", carol.delete_account(force=True) == 1)
        push, _ = wait_push(alice, lambda p: p.get("type") == zc.MESSAGE_UNDELIVERABLE)
        r.check("alice gets MESSAGE_UNDELIVERABLE recipient_deleted",
                push is not None and push.get("message_id") == mid
                and zc.error_name(push.get("code", 0)) == "recipient_deleted", str(push))
    r.check("send to deleted carol -> unknown_recipient",
            not (d := expect_error(lambda: alice.send("carol", "x"), "unknown_recipient")), d)


def cross_checks(r, cli, alice):
    """The conversation between alice (Python) and bob (zchat CLI)."""
    rc, events, raw = cli.run("register", "--user", "bob")
    r.require("bob: zchat register", rc == 0 and
              {"event": "registered", "user": "bob"} in events, raw)

    # (a) alice -> bob while bob is offline; bob fetches with the CLI.
    body_a = "hello bob, from Python: naïve ✓"
    cmid = 0x1234_5678_9abc
    mid = alice.send("bob", body_a, client_msg_id=cmid)
    r.check("(a) alice: send to offline bob", mid >= 1)
    rc, events, raw = cli.run("fetch", "--user", "bob")
    msgs = [e for e in events if e.get("event") == "message"]
    r.check("(a) bob: zchat fetch exits 0", rc == 0, raw)
    r.check("(a) bob: fetched alice's message",
            len(msgs) == 1 and msgs[0].get("id") == mid and msgs[0].get("from") == "alice"
            and msgs[0].get("body") == body_a and isinstance(msgs[0].get("sent_at"), int), raw)
    r.check("(a) bob: fetched count 1 remaining 0",
            events[-1:] == [{"event": "fetched", "count": 1, "remaining": 0}], raw)
    push, others = wait_push(alice, lambda p: p.get("type") == zc.MESSAGE_SUCCESS)
    r.check("(a) alice: MESSAGE_SUCCESS for the message bob confirmed",
            push is not None and push.get("message_id") == mid
            and push.get("recipient") == "bob" and push.get("client_msg_id") == cmid,
            f"push={push} others={others}")

    # (b) bob -> alice (online) with --wait; alice confirms; the CLI sees it delivered.
    body_b = "hi alice, from C++"
    proc = cli.start("send", "--user", "bob", "alice", body_b, "--wait")
    push, others = wait_push(alice, lambda p: p.get("type") == zc.DISTRIBUTE_MESSAGE)
    got = r.check("(b) alice: DISTRIBUTE_MESSAGE from bob",
                  push is not None and push.get("sender") == "bob"
                  and push.get("body") == body_b, f"push={push} others={others}")
    if got:
        alice.receipt(push["message_id"])
    rc, events, raw = cli.finish(proc)
    r.check("(b) bob: zchat send --wait exits 0", rc == 0, raw)
    if got:
        bmid = push["message_id"]
        r.check("(b) bob: pending with alice's message id",
                {"event": "pending", "id": bmid, "to": "alice", "body": body_b} in events, raw)
        r.check("(b) bob: delivered with the same id",
                events[-1:] == [{"event": "delivered", "id": bmid, "to": "alice"}], raw)

    # (c) listings from both sides.
    names = alice.list_all_accounts()
    r.check("(c) alice lists alice and bob", names == ["alice", "bob"], str(names))
    paged = alice.list_all_accounts(page_size=1)
    r.check("(c) alice pages one by one", paged == ["alice", "bob"], str(paged))
    only_bob = alice.list_accounts("B*")
    r.check("(c) alice lists pattern B*", only_bob == (["bob"], ""), str(only_bob))
    rc, events, raw = cli.run("users", "--user", "bob")
    users = [e for e in events if e.get("event") == "users"]
    r.check("(c) bob: zchat users sees alice and bob", rc == 0 and len(users) == 1
            and {"alice", "bob"} <= set(users[0].get("accounts", [])), raw)

    # (d) a refusal from the broker, seen through the CLI.
    rc, events, raw = cli.run("send", "--user", "bob", "nobody", "hello?")
    errors = [e for e in events if e.get("event") == "error"]
    r.check("(d) bob: send to unknown user exits 1 with unknown_recipient",
            rc == 1 and len(errors) == 1 and errors[0].get("code") == "unknown_recipient"
            and isinstance(errors[0].get("reason"), str), raw)


def main():
    ap = argument_parser(__doc__, zchat_required=False)
    ap.add_argument("--python-only", action="store_true", help="skip the zchat parts")
    args = ap.parse_args()
    r = Results(fail_sep=": ")

    def body(ep, tmp):
        with ZchatClient(timeout=15) as alice:
            alice.connect(ep)
            python_checks(r, ep, alice)
            if not args.python_only:
                cross_checks(r, Cli(args.zchat, ep), alice)

    return run_with_broker(args, r, "zchat-py-", body, need_zchat=not args.python_only,
                           zchat_hint=" (use --python-only to skip the zchat parts)")


if __name__ == "__main__":
    sys.exit(main())
