#!/usr/bin/python3
"""zchat without a terminal: one-shot subcommands, script mode, --json, exit codes.

    /usr/bin/python3 tests/cli/test_script.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

Starts a broker on a free port in a temporary directory and runs zchat with
stdin not a terminal (a pipe or /dev/null), HOME in the temporary directory.
Checks the exit status (0 ok, 1 refused by the broker, 2 usage, 3 no answer)
and every JSON line field by field: the one-shot subcommands register, send
(also --wait), fetch, users, delete and listen; script mode (/commands on
stdin) with the worst outcome as exit status; --help and --version; no
broker listening (exit 3).

Every wait has a deadline; nothing sleeps to synchronise. The last line is
"N passed, M failed"; exit status 0 only if nothing failed. Standard library
only.
"""

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True   # keep tests/support free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from zchat_testkit import Results, argument_parser, run_with_broker  # noqa: E402

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22",
             "carol": "carol-password-3", "dave": "dave-password-44"}
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
        self.json_runs = 0
        self.unparsed = []      # (run, line) for --json stdout lines that are not JSON

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
            self.json_runs += 1
            self.unparsed += [(run, line) for line in run.bad_lines]
        return run

    def run(self, args, user=None, connect=True, stdin=None, env=None, timeout=RUN_TIMEOUT):
        return self.finish(self.start(args, user, connect, stdin, env), timeout)


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


def help_checks(r, z):
    run = z.run(["--help"], connect=False)
    r.check("--help exits 0 and lists the options and subcommands",
            run.rc == 0 and all(w in run.out for w in (
                "--connect", "--json", "--timeout", "--password-file", "--user",
                "--version", "register", "send", "fetch", "users", "delete", "listen",
                "Exit status: 0 ok, 1 refused by the broker, 2 usage, 3 no answer")),
            str(run))
    run = z.run(["--version"], connect=False)
    r.check("--version prints 'zchat 0.1.0', exits 0",
            run.rc == 0 and run.out.strip() == "zchat 0.1.0", str(run))
    wanted = {"register": ["--user"],
              "send": ["--user", "--wait", "recipient", "text"],
              "fetch": ["--user", "--limit"],
              "users": ["--user", "pattern"],
              "delete": ["--user", "--force"],
              "listen": ["--user", "--for"]}
    for sub, words in wanted.items():
        run = z.run([sub, "--help"], connect=False)
        r.check(f"{sub} --help exits 0 and mentions {', '.join(words)}",
                run.rc == 0 and all(w in run.out for w in words), str(run))


def usage_checks(r, z):
    """Exit status 2 for usage errors, with no broker needed."""
    for args, what in ((["--json", "send", "bob", "hi"], "send without --user"),
                       (["--json", "send", "--user", "alice", "bob"], "send without text"),
                       (["--json", "--no-such-flag"], "an unknown option"),
                       (["--json", "--timeout", "0", "users", "--user", "alice"],
                        "--timeout 0")):
        run = z.run(args, user="alice")
        r.check(f"usage: {what} -> exit 2", run.rc == 2, str(run))
    run = z.run(["--json", "users", "--user", "alice"])      # no password anywhere
    r.check("usage: users with no password (stdin not a terminal) -> exit 2, error",
            run.rc == 2 and len(run.events) == 1
            and is_error(run.events[0], "invalid_argument")
            and run.events[0]["reason"] == "no password given", str(run))
    run = z.run(["--json", "register", "--user", "zoe"])
    r.check("usage: register with no password -> exit 2, error",
            run.rc == 2 and len(run.events) == 1
            and is_error(run.events[0], "invalid_argument")
            and run.events[0]["reason"] == "no password given", str(run))


def no_broker_checks(r, z):
    """Exit status 3 when nothing answers."""
    dead = dead_endpoint()
    reason = re.compile(r"no reply from " + re.escape(dead) + r" within 500 ms")
    for args, what in ((["register", "--user", "alice"], "register"),
                       (["users", "--user", "alice"], "users"),
                       (["send", "--user", "alice", "bob", "hi"], "send")):
        t0 = time.monotonic()
        run = z.run(["--connect", dead, "--timeout", "0.5", "--json"] + args, user="alice",
                    connect=False)
        took = time.monotonic() - t0
        r.check(f"no broker: {what} -> exit 3 with a timeout error within the deadline",
                run.rc == 3 and len(run.events) == 1 and is_error(run.events[0], "timeout")
                and reason.fullmatch(run.events[0]["reason"]) is not None and took < 10,
                f"{run} (took {took:.1f} s)")
    run = z.run(["--connect", dead, "--timeout", "0.5", "--json", "--user", "alice"],
                user="alice", connect=False, stdin="/users\n")
    r.check("no broker: script mode --user -> exit 3",
            run.rc == 3 and [e.get("code") for e in run.events] == ["timeout"], str(run))
    run = z.run(["--timeout", "0.5", "--json", "users", "--user", "alice"], user="alice",
                connect=False, env={"ZCHAT_ENDPOINT": dead})
    r.check("$ZCHAT_ENDPOINT is used when --connect is not given (exit 3 here)",
            run.rc == 3 and len(run.events) == 1 and is_error(run.events[0], "timeout")
            and dead in run.events[0]["reason"], str(run))
    run = z.run(["--timeout", "5", "--json", "users", "--user", "nobody-here"],
                user="alice", env={"ZCHAT_ENDPOINT": dead})
    r.check("--connect wins over $ZCHAT_ENDPOINT (the broker answers: bad_credentials)",
            run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "bad_credentials"), str(run))


def account_checks(r, z, tmp):
    for user in ("alice", "bob"):
        run = z.run(["--json", "register", "--user", user], user=user)
        r.require(f"register {user}: exit 0, registered",
                  run.rc == 0 and run.events == [{"event": "registered", "user": user}]
                  and not run.bad_lines, str(run))
    run = z.run(["--json", "register", "--user", "ALICE"], user="alice")
    r.check("register ALICE again: exit 1, username_taken",
            run.rc == 1 and len(run.events) == 1 and is_error(run.events[0], "username_taken"),
            str(run))
    run = z.run(["--json", "register", "--user", "eve"], env={"ZCHAT_PASSWORD": "short"})
    r.check("register with a 5-byte password: exit 1, weak_password",
            run.rc == 1 and len(run.events) == 1 and is_error(run.events[0], "weak_password"),
            str(run))
    run = z.run(["register", "--user", "bad name!"], user="alice")
    r.check("register 'bad name!' (text mode): exit 1, message on stderr",
            run.rc == 1 and run.out == ""
            and run.err.startswith("! ") and run.err.rstrip().endswith("(invalid_username)"),
            str(run))
    run = z.run(["--json", "users", "--user", "alice"], env={"ZCHAT_PASSWORD": "wrong-password"})
    r.check("wrong password: exit 1, bad_credentials",
            run.rc == 1 and len(run.events) == 1 and is_error(run.events[0], "bad_credentials"),
            str(run))
    pwfile = tmp / "alice.pw"
    pwfile.write_text(PASSWORDS["alice"] + "\n")
    run = z.run(["--json", "--password-file", str(pwfile), "users", "--user", "alice"],
                env={"ZCHAT_PASSWORD": "wrong-password"})
    r.check("--password-file (first line) wins over $ZCHAT_PASSWORD: users",
            run.rc == 0 and run.events == [{"event": "users", "accounts": ["alice", "bob"]}],
            str(run))
    run = z.run(["--json", "users", "--user", "bob", "A*"], user="bob")
    r.check("users A*: [alice]",
            run.rc == 0 and run.events == [{"event": "users", "accounts": ["alice"]}], str(run))
    run = z.run(["--json", "users", "--user", "bob", "zz?"], user="bob")
    r.check("users zz?: no match, empty list",
            run.rc == 0 and run.events == [{"event": "users", "accounts": []}], str(run))
    run = z.run(["users", "--user", "bob"], user="bob")
    r.check("users (text mode): '* 2 user(s): alice bob'",
            run.rc == 0 and run.out == "* 2 user(s): alice bob\n" and run.err == "", str(run))


def script_checks(r, z):
    """Script mode: /commands on stdin, exit status = worst outcome."""
    run = z.run(["--json", "--user", "alice"], user="alice",
                stdin="/msg bob hi\n/users\n/fetch\n")
    ev = run.events
    r.check("script: /msg, /users, /fetch -> exit 0 and exactly these JSON lines",
            run.rc == 0 and not run.bad_lines and len(ev) == 4
            and ev[0] == {"event": "logged_in", "user": "alice", "pending": 0}
            and is_pending(ev[1], "bob", "hi")
            and ev[2] == {"event": "users", "accounts": ["alice", "bob"]}
            and ev[3] == {"event": "fetched", "count": 0, "remaining": 0}, str(run))

    run = z.run(["--json", "--user", "alice"], user="alice",
                stdin="/msg bob second\n/frobnicate\n/users\n")
    ev = run.events
    r.check("script: an unknown command -> exit 2, error line, the rest still runs",
            run.rc == 2 and len(ev) == 4 and is_pending(ev[1], "bob", "second")
            and is_error(ev[2], "invalid_argument")
            and ev[2]["reason"] == "unknown command /frobnicate; /help lists them"
            and ev[3]["event"] == "users", str(run))

    run = z.run(["--json", "--user", "alice"], user="alice",
                stdin="/msg nobody hello?\n/users\n")
    ev = run.events
    r.check("script: a refused send -> exit 1, error with code unknown_recipient and to",
            run.rc == 1 and len(ev) == 3
            and is_error(ev[1], "unknown_recipient", to="nobody")
            and ev[2]["event"] == "users", str(run))

    run = z.run(["--json", "--user", "alice"], user="alice",
                stdin="/msg nobody x\n/msg bob\n")
    ev = run.events
    r.check("script: refused then a usage error -> exit 2 (the worst)",
            run.rc == 2 and len(ev) == 3 and is_error(ev[1], "unknown_recipient", to="nobody")
            and is_error(ev[2], "invalid_argument") and ev[2]["reason"].startswith("usage:"),
            str(run))

    run = z.run(["--json"], user="alice",
                stdin="/users\n/login alice\n/to bob\nthird, a plain line\n/to\nplain again\n"
                      "/help\n/logout\n/quit\n/users\n")
    ev = run.events
    r.check("script: /login, /to, plain lines, /logout, /quit stops reading",
            run.rc == 2 and len(ev) == 5
            and is_error(ev[0], "not_logged_in")
            and ev[1] == {"event": "logged_in", "user": "alice", "pending": 0}
            and is_pending(ev[2], "bob", "third, a plain line")
            and is_error(ev[3], "invalid_argument")
            and ev[3]["reason"].startswith("commands start with /")
            and ev[4] == {"event": "logged_out"}, str(run))

    run = z.run(["--user", "alice"], user="alice", stdin="/msg bob fourth\n/msg nobody x\n")
    r.check("script (text mode): pending on stdout, the refusal on stderr, exit 1",
            run.rc == 1
            and re.fullmatch(r"\* logged in as alice\n\[\d\d:\d\d:\d\d\] -> bob: fourth   "
                             r"\(pending #\d+\)\n", run.out) is not None
            and re.fullmatch(r"\[\d\d:\d\d:\d\d\] x to nobody failed: no account named "
                             r"'nobody' \(unknown_recipient\)\n", run.err) is not None,
            str(run))


def fetch_checks(r, z):
    """bob has four messages waiting: hi, second, third..., fourth (script_checks)."""
    run = z.run(["--json", "fetch", "--user", "bob", "--limit", "1"], user="bob")
    ev = run.events
    r.check("fetch --limit 1: exit 0, the oldest message, count 1 remaining 3",
            run.rc == 0 and len(ev) == 2 and is_message(ev[0], "alice", "hi")
            and ev[1] == {"event": "fetched", "count": 1, "remaining": 3}, str(run))
    run = z.run(["--json", "fetch", "--user", "bob"], user="bob")
    ev = run.events
    r.check("fetch: exit 0, the other three in order, count 3 remaining 0",
            run.rc == 0 and len(ev) == 4 and is_message(ev[0], "alice", "second")
            and is_message(ev[1], "alice", "third, a plain line")
            and is_message(ev[2], "alice", "fourth")
            and ev[0]["id"] < ev[1]["id"] < ev[2]["id"]
            and ev[3] == {"event": "fetched", "count": 3, "remaining": 0}, str(run))
    run = z.run(["--json", "fetch", "--user", "bob"], user="bob")
    r.check("fetch again: nothing (the first fetches confirmed every message)",
            run.rc == 0 and run.events == [{"event": "fetched", "count": 0, "remaining": 0}],
            str(run))
    # alice was offline while bob confirmed: the notices wait for her login.
    run = z.run(["--json", "fetch", "--user", "alice"], user="alice")
    delivered = [e for e in run.events if e.get("event") == "delivered"]
    r.check("alice's next login shows the four stored delivered notices",
            run.rc == 0 and len(delivered) == 4
            and all(set(e) == {"event", "id", "to"} and e["to"] == "bob"
                    and isinstance(e["id"], int) for e in delivered)
            and run.events[-1] == {"event": "fetched", "count": 0, "remaining": 0}, str(run))


def wait_checks(r, z):
    """send --wait: pending, then delivered once bob fetches."""
    proc = z.start(["--json", "--timeout", "20", "send", "--user", "alice", "--wait", "bob",
                    "are", "you", "there?"], user="alice")
    first, raw = read_json_line(proc)
    got = r.check("send --wait: prints pending at once",
                  is_pending(first, "bob", "are you there?"), raw)
    if got:
        fetch = z.run(["--json", "fetch", "--user", "bob"], user="bob")
        r.check("send --wait: bob fetches it",
                fetch.rc == 0 and len(fetch.events) == 2
                and is_message(fetch.events[0], "alice", "are you there?")
                and fetch.events[0]["id"] == first["id"], str(fetch))
    run = z.finish(proc)
    r.check("send --wait: then delivered with the same id, exit 0",
            got and run.rc == 0
            and run.events == [{"event": "delivered", "id": first["id"], "to": "bob"}],
            f"first line {raw!r}; {run}")

    run = z.run(["--json", "--timeout", "1", "send", "--user", "alice", "bob", "--wait",
                 "nobody reads this"], user="alice")
    ev = run.events
    r.check("send --wait, not fetched: pending, then timeout error, exit 3",
            run.rc == 3 and len(ev) == 2 and is_pending(ev[0], "bob", "nobody reads this")
            and is_error(ev[1], "timeout")
            and ev[1]["reason"] == "not confirmed by the recipient in time", str(run))
    run = z.run(["--json", "send", "--user", "alice", "nobody", "hello", "--wait"],
                user="alice")
    r.check("send --wait to an unknown user: exit 1 at once",
            run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "unknown_recipient", to="nobody"), str(run))
    # Leave bob's queue empty for what follows.
    run = z.run(["--json", "fetch", "--user", "bob"], user="bob")
    r.check("bob fetches the unread one",
            run.rc == 0 and len(run.events) == 2
            and is_message(run.events[0], "alice", "nobody reads this"), str(run))


def listen_checks(r, z):
    """listen prints pushes as they come and confirms messages."""
    # A notice stored for bob (offline) is pushed right after listen logs in:
    # its line tells us that bob's session is up.
    run = z.run(["--json", "send", "--user", "bob", "alice", "ping from bob"], user="bob")
    r.require("bob sends to offline alice", run.rc == 0 and len(run.events) == 1, str(run))
    bob_msg = run.events[0]["id"]
    run = z.run(["--json", "fetch", "--user", "alice"], user="alice")
    r.check("alice fetches it (bob is offline: the notice is stored)",
            run.rc == 0 and any(is_message(e, "bob", "ping from bob") for e in run.events),
            str(run))
    t0 = time.monotonic()
    listen = z.start(["--json", "listen", "--user", "bob", "--for", "8"], user="bob")
    first, raw = read_json_line(listen)
    r.check("listen: the stored delivered notice first",
            first == {"event": "delivered", "id": bob_msg, "to": "alice"}, raw)
    send = z.run(["--json", "--timeout", "20", "send", "--user", "alice", "--wait", "bob",
                  "live", "message"], user="alice")
    second, raw = read_json_line(listen)
    r.check("listen: alice's message live",
            is_message(second, "alice", "live message"), raw)
    r.check("send --wait: delivered once listen showed it, exit 0",
            send.rc == 0 and len(send.events) == 2
            and is_pending(send.events[0], "bob", "live message")
            and send.events[1] == {"event": "delivered", "id": send.events[0]["id"],
                                   "to": "bob"}, str(send))
    run = z.finish(listen)
    took = time.monotonic() - t0
    r.check("listen --for 8: exits 0 after about 8 s with nothing more",
            run.rc == 0 and run.events == [] and 7.5 <= took < 20,
            f"{run} (took {took:.1f} s)")


def stored_notice_checks(r, z):
    """A notice stored while alice was offline is pushed right after her next
    login, and the broker forgets it then: whatever subcommand logs in must
    print it."""
    for name, args in (("users", ["users", "--user", "alice"]),
                       ("listen", ["listen", "--user", "alice", "--for", "1"])):
        run = z.run(["--json", "send", "--user", "alice", "bob", f"before {name}"],
                    user="alice")
        r.require("alice sends to bob", run.rc == 0 and len(run.events) == 1, str(run))
        mid = run.events[0]["id"]
        run = z.run(["--json", "fetch", "--user", "bob"], user="bob")
        r.require("bob fetches it (alice is offline: the notice is stored)",
                  run.rc == 0 and len(run.events) == 2, str(run))
        run = z.run(["--json"] + args, user="alice")
        r.check(f"{name}: prints the stored delivered notice pushed at login",
                run.rc == 0 and {"event": "delivered", "id": mid, "to": "bob"} in run.events,
                str(run))


def delete_checks(r, z):
    for user in ("carol", "dave"):
        run = z.run(["--json", "register", "--user", user], user=user)
        r.require(f"register {user}", run.rc == 0, str(run))
    run = z.run(["--json", "send", "--user", "alice", "carol", "for carol"], user="alice")
    r.require("alice sends to carol", run.rc == 0 and len(run.events) == 1, str(run))
    carol_msg = run.events[0]["id"]

    run = z.run(["--json", "delete", "--user", "carol"], user="carol")
    r.check("delete while a message waits, no --force: exit 1, has_pending",
            run.rc == 1 and len(run.events) == 1 and is_error(run.events[0], "has_pending"),
            str(run))
    run = z.run(["--json", "delete", "--user", "dave"], user="dave")
    r.check("delete with nothing waiting: exit 0, deleted 0",
            run.rc == 0 and run.events == [{"event": "deleted", "discarded": 0}], str(run))
    run = z.run(["--json", "delete", "--user", "carol", "--force"], user="carol")
    r.check("delete --force: exit 0, deleted discarding 1",
            run.rc == 0 and run.events == [{"event": "deleted", "discarded": 1}], str(run))
    run = z.run(["--json", "fetch", "--user", "alice"], user="alice")
    und = [e for e in run.events if e.get("event") == "undeliverable"]
    r.check("alice's next login: undeliverable notice with every field",
            run.rc == 0 and len(und) == 1
            and set(und[0]) == {"event", "id", "to", "code", "reason"}
            and und[0]["id"] == carol_msg and und[0]["to"] == "carol"
            and und[0]["code"] == "recipient_deleted" and isinstance(und[0]["reason"], str),
            str(run))
    run = z.run(["--json", "users", "--user", "alice"], user="alice")
    r.check("carol is gone from the list",
            run.rc == 0 and len(run.events) == 1 and run.events[0].get("event") == "users"
            and "carol" not in run.events[0].get("accounts", []), str(run))
    run = z.run(["--json", "send", "--user", "alice", "carol", "still there?"], user="alice")
    r.check("send to the deleted carol: exit 1, unknown_recipient",
            run.rc == 1 and len(run.events) == 1
            and is_error(run.events[0], "unknown_recipient", to="carol"), str(run))
    # A script's /delete is its own confirmation: refused while messages
    # wait (exit 1, has_pending), done when none do.
    run = z.run(["--json", "send", "--user", "alice", "bob", "wait for me"], user="alice")
    r.require("alice leaves a message for bob", run.rc == 0, str(run))
    run = z.run(["--json", "--user", "bob"], user="bob", stdin="/delete\n")
    r.check("script /delete with a message waiting: refused, has_pending, exit 1",
            run.rc == 1 and run.events[0].get("event") == "logged_in"
            and is_error(run.events[-1], "has_pending"), str(run))
    run = z.run(["--json", "users", "--user", "bob"], user="bob")
    r.check("bob still exists", run.rc == 0, str(run))
    run = z.run(["--json", "fetch", "--user", "bob"], user="bob")
    r.require("bob reads it", run.rc == 0, str(run))
    run = z.run(["--json", "--user", "bob"], user="bob", stdin="/delete\n")
    r.check("script /delete with nothing waiting: deleted, exit 0",
            run.rc == 0 and run.events[-1] == {"event": "deleted", "discarded": 0},
            str(run))
    run = z.run(["--json", "users", "--user", "bob"], user="bob")
    r.check("bob is gone: his login fails with bad_credentials",
            run.rc == 1 and is_error(run.events[0], "bad_credentials"), str(run))


def main():
    args = argument_parser(__doc__).parse_args()
    r = Results(fail_sep="\n     ")

    def body(ep, tmp):
        (tmp / "home").mkdir()
        z = Zchat(args.zchat, ep, tmp / "home")
        help_checks(r, z)
        usage_checks(r, z)
        no_broker_checks(r, z)
        account_checks(r, z, tmp)
        script_checks(r, z)
        fetch_checks(r, z)
        wait_checks(r, z)
        listen_checks(r, z)
        stored_notice_checks(r, z)
        delete_checks(r, z)
        r.check(f"every stdout line of the {z.json_runs} --json runs is a JSON object",
                z.json_runs > 30 and not z.unparsed,
                "\n     ".join(f"{line!r} from {run}" for run, line in z.unparsed))

    return run_with_broker(args, r, "zchat-script-", body)


if __name__ == "__main__":
    sys.exit(main())
