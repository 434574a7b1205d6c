#!/usr/bin/python3
"""zchat without a terminal: one-shot subcommands, script mode, --json, exit codes.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/cli/test_script.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

(or run this file with the same options). Each test has a broker of its own
on a free port (tests/conftest.py) and runs zchat with stdin not a terminal
(a pipe or /dev/null), HOME in the test's temporary directory. Checks the
exit status (0 ok, 1 refused by the broker, 2 usage, 3 no answer) and every
JSON line field by field: the one-shot subcommands register, send (also
--wait), fetch, users, delete and listen; script mode (/commands on stdin)
with the worst outcome as exit status; --help and --version; no broker
listening (exit 3); a malformed --connect or --server-key (exit 2, saying
why); a broker that requires CurveZMQ (the "no reply" reason suggests
--server-key; with it, the client talks); --user before or after the
subcommand. Every stdout line of a --json run must be a JSON object
(checked as each run finishes).

Every wait has a deadline; nothing sleeps to synchronise. Standard library
and pytest only.
"""

import json
import os
import re
import select
import socket
import subprocess
import sys
import time

import pytest
from zchat_testkit import Broker

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22",
             "carol": "carol-password-3", "dave": "dave-password-44"}
# Ends the reason of a "no reply" timeout when --server-key is not given.
NO_REPLY_HINT = (" (if that broker requires encryption, give its public key with "
                 "--server-key)")
RUN_TIMEOUT = 30     # seconds any zchat invocation may take
WAIT = 15            # seconds to wait for a line of output


class Run:
    """The outcome of one zchat invocation."""

    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err
        self.events = []
        self.bad_lines = []
        for line in out.splitlines():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.bad_lines.append(line)

    def __str__(self):
        return (f"zchat {' '.join(self.args)}\n     exit {self.rc}; "
                f"stdout={self.out!r}\n     stderr={self.err!r}")


class Zchat:
    def __init__(self, zchat, endpoint, home):
        self.zchat, self.endpoint, self.home = zchat, endpoint, home
        self.procs = []

    def env(self, user=None, extra=None):
        env = {k: v for k, v in os.environ.items()
               if k not in ("ZCHAT_PASSWORD", "ZCHAT_ENDPOINT")}
        env["HOME"] = str(self.home)
        if user:
            env["ZCHAT_PASSWORD"] = PASSWORDS[user]
        env.update(extra or {})
        return env

    def start(self, args, user=None, connect=True, stdin=None, env=None):
        """Start zchat (with --connect unless connect is False); stdin is a
        string fed through a pipe, or /dev/null when None."""
        argv = [self.zchat] + (["--connect", self.endpoint] if connect else []) + list(args)
        proc = subprocess.Popen(
            argv, env=self.env(user, env), text=True, encoding="utf-8", errors="replace",
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.zchat_args = argv[1:]
        proc.zchat_stdin = stdin
        self.procs.append(proc)
        return proc

    def finish(self, proc, timeout=RUN_TIMEOUT):
        try:
            out, err = proc.communicate(proc.zchat_stdin, timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n<killed: still running after {timeout} s>"
            rc = None
        run = Run(proc.zchat_args, rc, out, err)
        if "--json" in proc.zchat_args and "--help" not in proc.zchat_args:
            assert not run.bad_lines, \
                f"every stdout line of a --json run is a JSON object, not {run.bad_lines!r}: {run}"
        return run

    def run(self, args, user=None, connect=True, stdin=None, env=None, timeout=RUN_TIMEOUT):
        return self.finish(self.start(args, user, connect, stdin, env), timeout)

    def close(self):
        """Kill what is still running (a test that failed half-way)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def read_json_line(proc, timeout=WAIT):
    """The next stdout line of a running process, parsed; None at EOF or
    after the deadline (with the raw text in the second value)."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None, line.decode(errors="replace") + " <no complete line in time>"
        ch = os.read(fd, 1)       # byte by byte: nothing is buffered past the line
        if not ch:
            return None, line.decode(errors="replace") + " <EOF>"
        line += ch
    text = line.decode("utf-8", errors="replace")
    try:
        return json.loads(text), text
    except ValueError:
        return None, text + " <not JSON>"


def is_error(e, code, **fields):
    """An {"event":"error"} with exactly this code, a non-empty reason and
    the given extra fields."""
    return (isinstance(e, dict) and set(e) == {"event", "code", "reason", *fields}
            and e["event"] == "error" and e["code"] == code
            and isinstance(e["reason"], str) and e["reason"] != ""
            and all(e[k] == v for k, v in fields.items()))


def is_message(e, sender, body):
    return (isinstance(e, dict) and set(e) == {"event", "id", "from", "body", "sent_at"}
            and e["event"] == "message" and e["from"] == sender and e["body"] == body
            and isinstance(e["id"], int) and e["id"] >= 1
            and isinstance(e["sent_at"], int) and e["sent_at"] > 1_600_000_000_000)


def is_pending(e, to, body):
    return (isinstance(e, dict) and set(e) == {"event", "id", "to", "body"}
            and e["event"] == "pending" and e["to"] == to and e["body"] == body
            and isinstance(e["id"], int) and e["id"] >= 1)


def dead_endpoint():
    """A TCP endpoint where nothing listens: a port the kernel just handed out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


# -- fixtures ----------------------------------------------------------------

@pytest.fixture
def z(zchat_bin, broker, tmp_path):
    """zchat against this test's broker, HOME in the test's directory."""
    (tmp_path / "home").mkdir()
    runner = Zchat(zchat_bin, broker.endpoint, tmp_path / "home")
    yield runner
    runner.close()


def register(z, user):
    run = z.run(["--json", "register", "--user", user], user=user)
    assert (run.rc == 0 and run.events == [{"event": "registered", "user": user}]
            and not run.bad_lines), f"register {user}: exit 0, registered\n{run}"
    return run


@pytest.fixture
def z2(z):
    """alice and bob registered, nothing else."""
    register(z, "alice")
    register(z, "bob")
    return z


# What alice sends to bob in script mode (/msg, /to then a plain line), in order.
HI = "hi 👋"
SECOND = "second — ¿qué tal?"
THIRD = "third, a plain line: naïve façade"
FOURTH = "fourth ✓ 第四"
LIVE = "live message: café ☕"
PING = "ping from bob: שלום"


@pytest.fixture
def bob_has_four(z2):
    """alice (logged out again) has left four messages for bob: HI, SECOND,
    THIRD, FOURTH."""
    run = z2.run(["--json", "--user", "alice"], user="alice",
                 stdin=f"/msg bob {HI}\n/msg bob {SECOND}\n/to bob\n{THIRD}\n"
                       f"/msg bob {FOURTH}\n")
    ev = run.events
    assert (run.rc == 0 and len(ev) == 5 and is_pending(ev[1], "bob", HI)
            and is_pending(ev[2], "bob", SECOND) and is_pending(ev[3], "bob", THIRD)
            and is_pending(ev[4], "bob", FOURTH)), f"alice sends four messages to bob\n{run}"
    return z2


@pytest.fixture
def bob_fetched_one(bob_has_four):
    """bob has fetched (and so confirmed) the oldest of the four."""
    run = bob_has_four.run(["--json", "fetch", "--user", "bob", "--limit", "1"], user="bob")
    assert run.rc == 0 and len(run.events) == 2, f"bob fetches one\n{run}"
    return bob_has_four


@pytest.fixture
def bob_fetched_all(bob_fetched_one):
    """bob has fetched (and so confirmed) all four, while alice was offline."""
    run = bob_fetched_one.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert run.rc == 0 and len(run.events) == 4, f"bob fetches the other three\n{run}"
    return bob_fetched_one


@pytest.fixture
def zdel(z2):
    """alice, bob, carol and dave registered; alice has left one message for
    carol. Returns (z, the message's id)."""
    register(z2, "carol")
    register(z2, "dave")
    run = z2.run(["--json", "send", "--user", "alice", "carol", "for carol: ¡olé! 🎉"],
                 user="alice")
    assert run.rc == 0 and len(run.events) == 1, f"alice sends to carol\n{run}"
    return z2, run.events[0]["id"]


@pytest.fixture
def carol_deleted(zdel):
    """zdel, then carol deleted with --force (alice offline)."""
    z, carol_msg = zdel
    run = z.run(["--json", "delete", "--user", "carol", "--force"], user="carol")
    assert run.rc == 0 and run.events == [{"event": "deleted", "discarded": 1}], \
        f"delete carol --force\n{run}"
    return z, carol_msg


@pytest.fixture
def carol_deleted_notice_read(carol_deleted):
    """carol_deleted, then alice has logged in once (and so read the
    undeliverable notice stored for her)."""
    z, carol_msg = carol_deleted
    run = z.run(["--json", "fetch", "--user", "alice"], user="alice")
    assert run.rc == 0 and any(e.get("event") == "undeliverable" for e in run.events), \
        f"alice reads the undeliverable notice\n{run}"
    return z, carol_msg


# -- --help, --version -------------------------------------------------------------

def test_help_lists_the_options_and_subcommands(z):
    run = z.run(["--help"], connect=False)
    assert run.rc == 0 and all(w in run.out for w in (
        "--connect", "--json", "--timeout", "--password-file", "--user",
        "--version", "register", "send", "fetch", "users", "delete", "listen",
        "Exit status: 0 ok, 1 refused by the broker, 2 usage, 3 no answer")), str(run)


def test_version(z):
    run = z.run(["--version"], connect=False)
    assert run.rc == 0 and run.out.strip() == "zchat 0.1.0", str(run)


@pytest.mark.parametrize("sub, words", [
    ("register", ["--user"]),
    ("send", ["--user", "--wait", "--lines", "recipient", "text"]),
    ("fetch", ["--user", "--limit"]),
    ("users", ["--user", "pattern"]),
    ("delete", ["--user", "--force"]),
    ("listen", ["--user", "--for"]),
], ids=["register", "send", "fetch", "users", "delete", "listen"])
def test_subcommand_help(z, sub, words):
    run = z.run([sub, "--help"], connect=False)
    assert run.rc == 0 and all(w in run.out for w in words), \
        f"{sub} --help exits 0 and mentions {', '.join(words)}\n{run}"


# -- usage errors: exit 2, no broker needed ---------------------------------------------

@pytest.mark.parametrize("args", [
    pytest.param(["--json", "send", "bob", "hi"], id="send_without_user"),
    pytest.param(["--json", "send", "--user", "alice", "bob"], id="send_without_text"),
    pytest.param(["--json", "send", "--user", "alice", "bob", "--lines", "hi"],
                 id="send_lines_and_text"),
    pytest.param(["--json", "send", "--user", "alice", "bob", "--lines", "--wait"],
                 id="send_lines_and_wait"),
    pytest.param(["--json", "--no-such-flag"], id="unknown_option"),
    pytest.param(["--json", "--timeout", "0", "users", "--user", "alice"], id="timeout_0"),
])
def test_usage_error_exits_2(z, args):
    run = z.run(args, user="alice")
    assert run.rc == 2, str(run)


def test_users_with_no_password_exits_2(z):
    run = z.run(["--json", "users", "--user", "alice"])      # no password anywhere
    assert (run.rc == 2 and len(run.events) == 1
            and is_error(run.events[0], "invalid_argument")
            and run.events[0]["reason"] == "no password given"), str(run)


def test_register_with_no_password_exits_2(z):
    run = z.run(["--json", "register", "--user", "zoe"])
    assert (run.rc == 2 and len(run.events) == 1
            and is_error(run.events[0], "invalid_argument")
            and run.events[0]["reason"] == "no password given"), str(run)


# -- no broker: exit 3 ------------------------------------------------------------

@pytest.mark.parametrize("args", [
    pytest.param(["register", "--user", "alice"], id="register"),
    pytest.param(["users", "--user", "alice"], id="users"),
    pytest.param(["send", "--user", "alice", "bob", "hi ✉"], id="send"),
])
def test_no_broker_exits_3_within_the_deadline(z, args):
    dead = dead_endpoint()
    reason = re.compile(r"no reply from " + re.escape(dead) + r" within 500 ms"
                        + re.escape(NO_REPLY_HINT))
    t0 = time.monotonic()
    run = z.run(["--connect", dead, "--timeout", "0.5", "--json"] + args, user="alice",
                connect=False)
    took = time.monotonic() - t0
    assert (run.rc == 3 and len(run.events) == 1 and is_error(run.events[0], "timeout")
            and reason.fullmatch(run.events[0]["reason"]) is not None and took < 10), \
        f"{run} (took {took:.1f} s)"


def test_no_broker_script_mode_exits_3(z):
    run = z.run(["--connect", dead_endpoint(), "--timeout", "0.5", "--json", "--user", "alice"],
                user="alice", connect=False, stdin="/users\n")
    assert run.rc == 3 and [e.get("code") for e in run.events] == ["timeout"], str(run)


def test_zchat_endpoint_variable_used_without_connect(z):
    dead = dead_endpoint()
    run = z.run(["--timeout", "0.5", "--json", "users", "--user", "alice"], user="alice",
                connect=False, env={"ZCHAT_ENDPOINT": dead})
    assert (run.rc == 3 and len(run.events) == 1 and is_error(run.events[0], "timeout")
            and dead in run.events[0]["reason"]), str(run)


def test_connect_wins_over_zchat_endpoint_variable(z):
    # The broker answers (bad_credentials), so --connect was used.
    run = z.run(["--timeout", "5", "--json", "users", "--user", "nobody-here"],
                user="alice", env={"ZCHAT_ENDPOINT": dead_endpoint()})
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "bad_credentials")), str(run)


# -- accounts ----------------------------------------------------------------

@pytest.mark.parametrize("user", ["alice", "bob"])
def test_register(z, user):
    run = z.run(["--json", "register", "--user", user], user=user)
    assert (run.rc == 0 and run.events == [{"event": "registered", "user": user}]
            and not run.bad_lines), str(run)


def test_register_taken_name_other_case_exits_1(z2):
    run = z2.run(["--json", "register", "--user", "ALICE"], user="alice")
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "username_taken")), str(run)


def test_register_weak_password_exits_1(z2):
    run = z2.run(["--json", "register", "--user", "eve"], env={"ZCHAT_PASSWORD": "short"})
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "weak_password")), str(run)


def test_register_bad_name_text_mode_exits_1_message_on_stderr(z2):
    run = z2.run(["register", "--user", "bad name!"], user="alice")
    assert (run.rc == 1 and run.out == "" and run.err.startswith("! ")
            and run.err.rstrip().endswith("(invalid_username)")), str(run)


def test_wrong_password_exits_1(z2):
    run = z2.run(["--json", "users", "--user", "alice"],
                 env={"ZCHAT_PASSWORD": "wrong-password"})
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "bad_credentials")), str(run)


def test_password_file_wins_over_variable(z2, tmp_path):
    pwfile = tmp_path / "alice.pw"
    pwfile.write_text(PASSWORDS["alice"] + "\n")       # the first line is the password
    run = z2.run(["--json", "--password-file", str(pwfile), "users", "--user", "alice"],
                 env={"ZCHAT_PASSWORD": "wrong-password"})
    assert (run.rc == 0
            and run.events == [{"event": "users", "accounts": ["alice", "bob"]}]), str(run)


def test_users_pattern(z2):
    run = z2.run(["--json", "users", "--user", "bob", "A*"], user="bob")
    assert run.rc == 0 and run.events == [{"event": "users", "accounts": ["alice"]}], str(run)


def test_users_pattern_without_match_is_empty(z2):
    run = z2.run(["--json", "users", "--user", "bob", "zz?"], user="bob")
    assert run.rc == 0 and run.events == [{"event": "users", "accounts": []}], str(run)


def test_users_text_mode(z2):
    run = z2.run(["users", "--user", "bob"], user="bob")
    assert run.rc == 0 and run.out == "* 2 user(s): alice bob\n" and run.err == "", str(run)


# -- script mode: /commands on stdin, exit status = worst outcome -----------------------

def test_script_msg_users_fetch(z2):
    run = z2.run(["--json", "--user", "alice"], user="alice",
                 stdin=f"/msg bob {HI}\n/users\n/fetch\n")
    ev = run.events
    assert (run.rc == 0 and not run.bad_lines and len(ev) == 4
            and ev[0] == {"event": "logged_in", "user": "alice", "pending": 0}
            and is_pending(ev[1], "bob", HI)
            and ev[2] == {"event": "users", "accounts": ["alice", "bob"]}
            and ev[3] == {"event": "fetched", "count": 0, "remaining": 0}), str(run)


def test_script_unknown_command_exits_2_and_the_rest_runs(z2):
    run = z2.run(["--json", "--user", "alice"], user="alice",
                 stdin=f"/msg bob {SECOND}\n/frobnicate\n/users\n")
    ev = run.events
    assert (run.rc == 2 and len(ev) == 4 and is_pending(ev[1], "bob", SECOND)
            and is_error(ev[2], "invalid_argument")
            and ev[2]["reason"] == "unknown command /frobnicate; /help lists them"
            and ev[3]["event"] == "users"), str(run)


def test_script_refused_send_exits_1(z2):
    run = z2.run(["--json", "--user", "alice"], user="alice",
                 stdin="/msg nobody hello? ¿hola? こんにちは\n/users\n")
    ev = run.events
    assert (run.rc == 1 and len(ev) == 3
            and is_error(ev[1], "unknown_recipient", to="nobody")
            and ev[2]["event"] == "users"), str(run)


def test_script_refused_then_usage_error_exits_2(z2):
    run = z2.run(["--json", "--user", "alice"], user="alice",
                 stdin="/msg nobody x\n/msg bob\n")
    ev = run.events
    assert (run.rc == 2 and len(ev) == 3 and is_error(ev[1], "unknown_recipient", to="nobody")
            and is_error(ev[2], "invalid_argument") and ev[2]["reason"].startswith("usage:")), \
        str(run)


def test_script_login_to_plain_lines_logout_quit(z2):
    run = z2.run(["--json"], user="alice",
                 stdin=f"/users\n/login alice\n/to bob\n{THIRD}\n/to\nplain again\n"
                       "/help\n/logout\n/quit\n/users\n")
    ev = run.events
    assert (run.rc == 2 and len(ev) == 5
            and is_error(ev[0], "not_logged_in")
            and ev[1] == {"event": "logged_in", "user": "alice", "pending": 0}
            and is_pending(ev[2], "bob", THIRD)
            and is_error(ev[3], "invalid_argument")
            and ev[3]["reason"].startswith("commands start with /")
            and ev[4] == {"event": "logged_out"}), str(run)


def test_script_text_mode_pending_on_stdout_refusal_on_stderr(z2):
    run = z2.run(["--user", "alice"], user="alice",
                 stdin=f"/msg bob {FOURTH}\n/msg nobody x\n")
    assert (run.rc == 1
            and re.fullmatch(r"\* logged in as alice\n\[\d\d:\d\d:\d\d\] -> bob: "
                             + re.escape(FOURTH) + r"   \(pending #\d+\)\n",
                             run.out) is not None
            and re.fullmatch(r"\[\d\d:\d\d:\d\d\] x to nobody failed: no account named "
                             r"'nobody' \(unknown_recipient\)\n", run.err) is not None), \
        str(run)


# -- fetch: bob has four messages waiting ------------------------------------------

def test_fetch_limit_1_gives_the_oldest(bob_has_four):
    run = bob_has_four.run(["--json", "fetch", "--user", "bob", "--limit", "1"], user="bob")
    ev = run.events
    assert (run.rc == 0 and len(ev) == 2 and is_message(ev[0], "alice", HI)
            and ev[1] == {"event": "fetched", "count": 1, "remaining": 3}), str(run)


def test_fetch_gives_the_other_three_in_order(bob_fetched_one):
    run = bob_fetched_one.run(["--json", "fetch", "--user", "bob"], user="bob")
    ev = run.events
    assert (run.rc == 0 and len(ev) == 4 and is_message(ev[0], "alice", SECOND)
            and is_message(ev[1], "alice", THIRD)
            and is_message(ev[2], "alice", FOURTH)
            and ev[0]["id"] < ev[1]["id"] < ev[2]["id"]
            and ev[3] == {"event": "fetched", "count": 3, "remaining": 0}), str(run)


def test_fetch_again_gives_nothing(bob_fetched_all):
    # The first fetches confirmed every message.
    run = bob_fetched_all.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert (run.rc == 0
            and run.events == [{"event": "fetched", "count": 0, "remaining": 0}]), str(run)


def test_sender_sees_the_stored_delivered_notices_at_next_login(bob_fetched_all):
    # alice was offline while bob confirmed: the notices wait for her login.
    run = bob_fetched_all.run(["--json", "fetch", "--user", "alice"], user="alice")
    delivered = [e for e in run.events if e.get("event") == "delivered"]
    assert (run.rc == 0 and len(delivered) == 4
            and all(set(e) == {"event", "id", "to"} and e["to"] == "bob"
                    and isinstance(e["id"], int) for e in delivered)
            and run.events[-1] == {"event": "fetched", "count": 0, "remaining": 0}), str(run)


# -- send --lines -----------------------------------------------------------------

LINES = ["Grüße 👋", "你好，世界", "", "مرحبا بالعالم", "שלום"]


def test_send_lines_one_message_a_line_in_order(z2):
    text = "\n".join(LINES[:1]) + "\r\n" + "\n".join(LINES[1:]) + "\n"
    run = z2.run(["--json", "send", "--user", "alice", "bob", "--lines"],
                 user="alice", stdin=text)
    sent = [line for line in LINES if line]
    assert (run.rc == 0 and len(run.events) == len(sent)
            and all(is_pending(e, "bob", b) for e, b in zip(run.events, sent))), \
        f"a pending line for each non-empty line, CR dropped\n{run}"
    ids = [e["id"] for e in run.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), str(run)
    fetch = z2.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert (fetch.rc == 0 and len(fetch.events) == len(sent) + 1
            and all(is_message(e, "alice", b) and e["id"] == i
                    for e, b, i in zip(fetch.events, sent, ids))), \
        f"bob fetches them in order\n{fetch}"


def test_send_lines_refused_sends_none_exit_1(z2):
    text = "ça va ?\n" + "é" * 8193 + "\nadiós\n"   # the second is 16386 bytes
    run = z2.run(["--json", "send", "--user", "alice", "bob", "--lines"],
                 user="alice", stdin=text)
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "body_too_large", to="bob")), str(run)
    fetch = z2.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert fetch.rc == 0 and fetch.events == [
        {"event": "fetched", "count": 0, "remaining": 0}], f"none was sent\n{fetch}"


# -- send --wait -------------------------------------------------------------------

def test_send_wait_pending_then_delivered_once_fetched(z2):
    body = "are you there? ¿estás ahí?"
    proc = z2.start(["--json", "--timeout", "20", "send", "--user", "alice", "--wait", "bob"]
                    + body.split(" "), user="alice")
    first, raw = read_json_line(proc)
    assert is_pending(first, "bob", body), f"send --wait prints pending at once: {raw}"
    fetch = z2.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert (fetch.rc == 0 and len(fetch.events) == 2
            and is_message(fetch.events[0], "alice", body)
            and fetch.events[0]["id"] == first["id"]), f"bob fetches it\n{fetch}"
    run = z2.finish(proc)
    assert (run.rc == 0
            and run.events == [{"event": "delivered", "id": first["id"], "to": "bob"}]), \
        f"then delivered with the same id, exit 0; first line {raw!r}\n{run}"


def test_send_wait_not_fetched_times_out_exit_3(z2):
    body = "nobody reads this — 誰も読まない"
    # --timeout bounds every request (login, send, logout), not only the
    # wait for bob: 3 s, so that a slow login under ASan is not the timeout.
    run = z2.run(["--json", "--timeout", "3", "send", "--user", "alice", "bob", "--wait", body],
                 user="alice")
    ev = run.events
    assert (run.rc == 3 and len(ev) == 2 and is_pending(ev[0], "bob", body)
            and is_error(ev[1], "timeout")
            and ev[1]["reason"] == "not confirmed by the recipient in time"), str(run)
    run = z2.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert (run.rc == 0 and len(run.events) == 2
            and is_message(run.events[0], "alice", body)), f"bob fetches the unread one\n{run}"


def test_send_wait_to_unknown_user_exits_1_at_once(z2):
    run = z2.run(["--json", "send", "--user", "alice", "nobody", "hello", "--wait"],
                 user="alice")
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "unknown_recipient", to="nobody")), str(run)


# -- listen --------------------------------------------------------------------

def test_listen_prints_pushes_as_they_come_and_confirms(z2):
    """One scenario: a stored notice first, then a live message (confirmed:
    the sender's --wait ends), then nothing until --for runs out."""
    # A notice stored for bob (offline) is pushed right after listen logs in:
    # its line tells us that bob's session is up.
    run = z2.run(["--json", "send", "--user", "bob", "alice", PING], user="bob")
    assert run.rc == 0 and len(run.events) == 1, f"bob sends to offline alice\n{run}"
    bob_msg = run.events[0]["id"]
    run = z2.run(["--json", "fetch", "--user", "alice"], user="alice")
    assert run.rc == 0 and any(is_message(e, "bob", PING) for e in run.events), \
        f"alice fetches it (bob is offline: the notice is stored)\n{run}"
    t0 = time.monotonic()
    listen = z2.start(["--json", "listen", "--user", "bob", "--for", "8"], user="bob")
    first, raw = read_json_line(listen)
    assert first == {"event": "delivered", "id": bob_msg, "to": "alice"}, \
        f"listen: the stored delivered notice first: {raw}"
    send = z2.run(["--json", "--timeout", "20", "send", "--user", "alice", "--wait", "bob"]
                  + LIVE.split(" "), user="alice")
    second, raw = read_json_line(listen)
    assert is_message(second, "alice", LIVE), f"listen: alice's message live: {raw}"
    assert (send.rc == 0 and len(send.events) == 2
            and is_pending(send.events[0], "bob", LIVE)
            and send.events[1] == {"event": "delivered", "id": send.events[0]["id"],
                                   "to": "bob"}), \
        f"send --wait: delivered once listen showed it, exit 0\n{send}"
    run = z2.finish(listen)
    took = time.monotonic() - t0
    assert run.rc == 0 and run.events == [] and 7.5 <= took < 20, \
        f"listen --for 8: exits 0 after about 8 s with nothing more\n{run} (took {took:.1f} s)"


@pytest.mark.parametrize("name, args", [
    ("users", ["users", "--user", "alice"]),
    ("listen", ["listen", "--user", "alice", "--for", "1"]),
], ids=["users", "listen"])
def test_stored_notice_printed_by_any_subcommand_that_logs_in(z2, name, args):
    """A notice stored while alice was offline is pushed right after her next
    login, and the broker forgets it then: whatever subcommand logs in must
    print it."""
    run = z2.run(["--json", "send", "--user", "alice", "bob", f"before {name}: ünïcode ✓"],
                 user="alice")
    assert run.rc == 0 and len(run.events) == 1, f"alice sends to bob\n{run}"
    mid = run.events[0]["id"]
    run = z2.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert run.rc == 0 and len(run.events) == 2, \
        f"bob fetches it (alice is offline: the notice is stored)\n{run}"
    run = z2.run(["--json"] + args, user="alice")
    assert run.rc == 0 and {"event": "delivered", "id": mid, "to": "bob"} in run.events, \
        str(run)


# -- delete ----------------------------------------------------------------------

def test_delete_while_a_message_waits_exits_1_has_pending(zdel):
    z, _ = zdel
    run = z.run(["--json", "delete", "--user", "carol"], user="carol")
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "has_pending")), str(run)


def test_delete_with_nothing_waiting(zdel):
    z, _ = zdel
    run = z.run(["--json", "delete", "--user", "dave"], user="dave")
    assert run.rc == 0 and run.events == [{"event": "deleted", "discarded": 0}], str(run)


def test_delete_force_discards_the_waiting_message(zdel):
    z, _ = zdel
    run = z.run(["--json", "delete", "--user", "carol", "--force"], user="carol")
    assert run.rc == 0 and run.events == [{"event": "deleted", "discarded": 1}], str(run)


def test_sender_gets_undeliverable_notice_at_next_login(carol_deleted):
    z, carol_msg = carol_deleted
    run = z.run(["--json", "fetch", "--user", "alice"], user="alice")
    und = [e for e in run.events if e.get("event") == "undeliverable"]
    assert (run.rc == 0 and len(und) == 1
            and set(und[0]) == {"event", "id", "to", "code", "reason"}
            and und[0]["id"] == carol_msg and und[0]["to"] == "carol"
            and und[0]["code"] == "recipient_deleted" and isinstance(und[0]["reason"], str)), \
        str(run)


def test_deleted_account_gone_from_the_list(carol_deleted_notice_read):
    z, _ = carol_deleted_notice_read
    run = z.run(["--json", "users", "--user", "alice"], user="alice")
    assert (run.rc == 0 and len(run.events) == 1 and run.events[0].get("event") == "users"
            and "carol" not in run.events[0].get("accounts", [])), str(run)


def test_send_to_deleted_account_exits_1_unknown_recipient(carol_deleted_notice_read):
    z, _ = carol_deleted_notice_read
    run = z.run(["--json", "send", "--user", "alice", "carol", "still there?"], user="alice")
    assert (run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "unknown_recipient", to="carol")), str(run)


# A script's /delete is its own confirmation: refused while messages wait
# (exit 1, has_pending), done when none do.

def test_script_delete_with_a_message_waiting_is_refused(z2):
    run = z2.run(["--json", "send", "--user", "alice", "bob", "wait for me: انتظرني"],
                 user="alice")
    assert run.rc == 0, f"alice leaves a message for bob\n{run}"
    run = z2.run(["--json", "--user", "bob"], user="bob", stdin="/delete\n")
    assert (run.rc == 1 and run.events[0].get("event") == "logged_in"
            and is_error(run.events[-1], "has_pending")), str(run)
    run = z2.run(["--json", "users", "--user", "bob"], user="bob")
    assert run.rc == 0, f"bob still exists\n{run}"


def test_script_delete_with_nothing_waiting_deletes(z2):
    run = z2.run(["--json", "send", "--user", "alice", "bob", "wait for me: انتظرني"],
                 user="alice")
    assert run.rc == 0, f"alice leaves a message for bob\n{run}"
    run = z2.run(["--json", "fetch", "--user", "bob"], user="bob")
    assert run.rc == 0, f"bob reads it\n{run}"
    run = z2.run(["--json", "--user", "bob"], user="bob", stdin="/delete\n")
    assert run.rc == 0 and run.events[-1] == {"event": "deleted", "discarded": 0}, str(run)
    run = z2.run(["--json", "users", "--user", "bob"], user="bob")
    assert run.rc == 1 and is_error(run.events[0], "bad_credentials"), \
        f"bob is gone: his login fails with bad_credentials\n{run}"


# -- bad endpoints and keys: exit 2, nothing sent --------------------------------

@pytest.mark.parametrize("endpoint", ["garbage", "tcp://127.0.0.1", "bogus://x:1",
                                      "tcp://127.0.0.1:notaport"])
def test_bad_connect_endpoint_exits_2_saying_why(z, endpoint):
    run = z.run(["--connect", endpoint, "--json", "users", "--user", "alice"],
                user="alice", connect=False)
    assert (run.rc == 2 and len(run.events) == 1
            and is_error(run.events[0], "invalid_argument")
            and run.events[0]["reason"].startswith(f"--connect {endpoint}: not a usable "
                                                   "ZeroMQ endpoint")), str(run)


def test_bad_endpoint_from_the_variable_text_mode_exits_2(z):
    run = z.run(["users", "--user", "alice"], user="alice", connect=False,
                env={"ZCHAT_ENDPOINT": "garbage"})
    assert (run.rc == 2 and run.out == ""
            and run.err.startswith("! $ZCHAT_ENDPOINT garbage: not a usable ZeroMQ endpoint")
            and "Traceback" not in run.err and "terminate" not in run.err), str(run)


def test_bad_endpoint_script_mode_exits_2(z):
    run = z.run(["--connect", "garbage"], connect=False, stdin="/users\n")
    assert run.rc == 2 and "not a usable ZeroMQ endpoint" in run.err, str(run)


@pytest.mark.parametrize("key", ["abc", "x" * 39 + "~", "0" * 41],
                         ids=["short", "not_z85", "too_long"])
def test_malformed_server_key_exits_2_saying_why(z, key):
    run = z.run(["--server-key", key, "--json", "users", "--user", "alice"], user="alice")
    assert (run.rc == 2 and len(run.events) == 1
            and is_error(run.events[0], "invalid_argument")
            and run.events[0]["reason"].startswith(f"--server-key {key}: neither a "
                                                   "CurveZMQ public key")), str(run)


def test_server_key_file_with_garbage_exits_2(z, tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("not-a-key\n")
    run = z.run(["--server-key", str(bad), "users", "--user", "alice"], user="alice")
    assert run.rc == 2 and "neither a CurveZMQ public key" in run.err, str(run)


# -- a broker that requires CurveZMQ ---------------------------------------------

@pytest.fixture
def curve_broker(broker_bin, tmp_path):
    """A broker with a CurveZMQ key: (broker, its public key, the .pub file)."""
    secret = tmp_path / "broker.key"
    keygen = subprocess.run([broker_bin, "keygen", str(secret)], capture_output=True,
                            text=True, timeout=30)
    assert keygen.returncode == 0, f"zchat-broker keygen: {keygen}"
    public = keygen.stdout.strip()
    directory = tmp_path / "curve-broker"
    directory.mkdir()
    b = Broker(broker_bin, directory, extra_args=["--curve-secret", str(secret)])
    yield b, public, tmp_path / "broker.key.pub"
    assert b.stop() == 0, f"curve broker exit code; log:\n{b.log()}"


def test_plaintext_client_against_a_curve_broker_is_told_about_server_key(z, curve_broker):
    b, _, _ = curve_broker
    run = z.run(["--connect", b.endpoint, "--timeout", "1", "--json", "register",
                 "--user", "alice"], user="alice", connect=False)
    assert (run.rc == 3 and len(run.events) == 1 and is_error(run.events[0], "timeout")
            and run.events[0]["reason"].endswith(NO_REPLY_HINT)), str(run)


def test_server_key_talks_to_a_curve_broker(z, curve_broker):
    b, public, pubfile = curve_broker
    run = z.run(["--connect", b.endpoint, "--server-key", public, "--json", "register",
                 "--user", "alice"], user="alice", connect=False)
    assert run.rc == 0 and run.events == [{"event": "registered", "user": "alice"}], str(run)
    run = z.run(["--connect", b.endpoint, "--server-key", str(pubfile), "--json", "users",
                 "--user", "alice"], user="alice", connect=False)
    assert run.rc == 0 and run.events == [{"event": "users", "accounts": ["alice"]}], str(run)


# -- --user before or after the subcommand ---------------------------------------------

@pytest.mark.parametrize("args", [
    pytest.param(["--user", "carol", "register"], id="before"),
    pytest.param(["register", "--user", "carol"], id="after"),
    pytest.param(["--user", "carol", "register", "--user", "carol"], id="both_same"),
])
def test_user_before_or_after_the_subcommand(z, args):
    run = z.run(["--json"] + args, user="carol")
    assert run.rc == 0 and run.events == [{"event": "registered", "user": "carol"}], str(run)


def test_user_before_send(z2):
    run = z2.run(["--json", "--user", "alice", "send", "bob", "from the front"], user="alice")
    assert (run.rc == 0 and len(run.events) == 1
            and is_pending(run.events[0], "bob", "from the front")), str(run)


def test_two_different_users_exit_2(z):
    run = z.run(["--user", "carol", "register", "--user", "dave"], user="carol")
    assert run.rc == 2 and "--user given twice" in run.err, str(run)


def test_no_user_anywhere_exits_2_saying_where_it_goes(z):
    run = z.run(["register"], user="carol")
    assert (run.rc == 2 and "register: --user NAME is required" in run.err
            and "zchat --user NAME register" in run.err), str(run)


def test_one_shot_register_suggests_the_shell_command(z):
    run = z.run(["register", "--user", "carol"], user="carol")
    assert (run.rc == 0 and run.out == "* account carol created; log in with: zchat "
            "--user carol\n" and "/login" not in run.out), str(run)


def test_script_register_keeps_suggesting_login(z):
    run = z.run([], user="carol", stdin="/register carol\n")
    assert (run.rc == 0 and run.out == "* account carol created; /login carol to use it\n"), \
        str(run)


if __name__ == "__main__":     # the same as python3 -m pytest -q -p no:cacheprovider FILE ...
    sys.dont_write_bytecode = True
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__] + sys.argv[1:]))
