#!/usr/bin/python3
"""The interactive zchat client, used the way a person uses it.

    /usr/bin/python3 tests/cli/test_terminal.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

Starts a broker on a free port in a temporary directory, then runs each
user's zchat in its own pseudo-terminal (with a window size, HOME in the
temporary directory, ZCHAT_PASSWORD unset so that passwords are typed at the
no-echo prompt). alice and bob register, log in and talk; a message arrives
while bob has half a line typed, and that line survives; bob leaves, alice
sends to him while he is offline, bob comes back and fetches. Also /help, an
unknown command, /delete answered "n", line history.

Every wait reads the terminal until a text appears or a deadline passes
(ANSI escape sequences are stripped first); nothing sleeps to synchronise.
The last line is "N passed, M failed"; exit status 0 only if nothing failed.
Standard library only.
"""

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

sys.dont_write_bytecode = True   # keep tests/support free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from zchat_testkit import Results, argument_parser, run_with_broker  # noqa: E402

ALICE_PASSWORD = "alice-secret-1"
BOB_PASSWORD = "bob-secret-22"
WAIT = 15           # seconds any expected text may take to appear
ROWS, COLS = 40, 200

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte escapes.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                  r"|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>]")
CLOCK = r"\[\d\d:\d\d:\d\d\] "


def strip_ansi(text):
    """Screen text without escape sequences, carriage returns or bells."""
    return ANSI.sub("", text).replace("\r", "").replace("\x07", "")


class Terminal:
    """One zchat process on its own pseudo-terminal.

    Output is read into `screen` (escape sequences stripped); `pos` marks how
    far expect() has consumed it, so each expectation looks only at what
    came after the previous one."""

    def __init__(self, zchat, endpoint, home, name):
        self.name = name
        self.screen = ""
        self.pos = 0
        self._raw = b""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {k: v for k, v in os.environ.items()
               if k not in ("ZCHAT_PASSWORD", "ZCHAT_ENDPOINT", "EDITRC")}
        env.update(HOME=str(home), TERM="xterm", LC_ALL="C.UTF-8")
        self.proc = subprocess.Popen(
            [zchat, "--connect", endpoint], stdin=slave, stdout=slave, stderr=slave,
            env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master

    def _read(self, timeout):
        """Read what the terminal has within `timeout` seconds; False at EOF."""
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:         # EIO: the process is gone and the pty closed
            data = b""
        if not data:
            return False
        self._raw += data
        # Decode only complete UTF-8 sequences; keep a split tail for later.
        text = self._raw.decode("utf-8", errors="ignore")
        keep = len(self._raw) - len(text.encode("utf-8"))
        self._raw = self._raw[len(self._raw) - keep:] if keep else b""
        self.screen += strip_ansi(text)
        return True

    def drain(self):
        """Take in whatever output is already there, without waiting for more."""
        while self._read(0) and select.select([self.master], [], [], 0)[0]:
            pass

    def type(self, keys):
        os.write(self.master, keys.encode("utf-8"))

    def mark(self):
        """Everything read so far, then the current end of the output."""
        self.drain()
        return len(self.screen)

    def expect(self, pattern, timeout=WAIT, regex=False, since=None):
        """Wait until `pattern` (text, or a regex) appears after `pos` (or
        after `since`, for output whose order against other output is not
        fixed). Returns the match (re.Match) or None; moves `pos` past it."""
        rx = re.compile(pattern if regex else re.escape(pattern))
        start = self.pos if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.screen, start)
            if m:
                self.pos = max(self.pos, m.end())
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                m = rx.search(self.screen, start)
                if m:
                    self.pos = max(self.pos, m.end())
                return m

    def recent(self, chars=1500):
        return f"--- {self.name}'s recent screen output ---\n{self.screen[-chars:]}\n---"

    def wait_exit(self, timeout=WAIT):
        """Read until the process exits; its exit code, or None if it did not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            self._read(0.2)
        try:
            return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


class Scenario:
    def __init__(self, r, zchat, endpoint, tmp):
        self.r, self.zchat, self.endpoint, self.tmp = r, zchat, endpoint, tmp
        self.terms = []

    def start(self, name):
        home = self.tmp / f"home-{name}"
        home.mkdir(exist_ok=True)
        t = Terminal(self.zchat, self.endpoint, home, name)
        self.terms.append(t)
        return t

    def see(self, t, name, pattern, regex=False, timeout=WAIT, must=False, since=None):
        """Check that `t` shows `pattern` within the deadline."""
        m = t.expect(pattern, timeout=timeout, regex=regex, since=since)
        (self.r.require if must else self.r.check)(
            name, m is not None,
            f"expected on {t.name}'s screen within {timeout} s: {pattern!r}\n{t.recent()}")
        return m

    def password(self, t, user, password, step):
        """Answer the no-echo password prompt like a person: wait for it, type."""
        self.see(t, f"{step}: password prompt", f"password for {user}: ", must=True)
        mark = t.pos
        t.type(password + "\r")
        return mark

    def register_and_login(self, t, user, password):
        self.see(t, f"{user}: banner", f"zchat: connected to {self.endpoint}", must=True)
        self.see(t, f"{user}: prompt", "zchat> ", must=True)
        t.type(f"/register {user}\r")
        mark = self.password(t, user, password, f"{user}: /register")
        self.see(t, f"{user}: account created",
                 f"* account {user} created; /login {user} to use it", must=True)
        self.r.check(f"{user}: password not echoed at /register",
                     password not in t.screen[mark:], t.recent())
        self.login(t, user, password, pending=0)

    def login(self, t, user, password, pending, prompt=True):
        if prompt:
            self.see(t, f"{user}: prompt before /login", "zchat> ", must=True)
        t.type(f"/login {user}\r")
        mark = self.password(t, user, password, f"{user}: /login")
        if pending:
            self.see(t, f"{user}: logged in, {pending} waiting",
                     f"* logged in as {user}; {pending} undelivered message(s) waiting: "
                     "/fetch to read them", must=True)
        else:
            self.see(t, f"{user}: logged in", f"* logged in as {user}\n", must=True)
        self.see(t, f"{user}: prompt shows the user", f"{user}> ", must=True)
        self.r.check(f"{user}: password not echoed at /login",
                     password not in t.screen[mark:], t.recent())

    def run(self):
        r = self.r
        alice = self.start("alice")
        bob = self.start("bob")
        self.register_and_login(alice, "alice", ALICE_PASSWORD)
        self.register_and_login(bob, "bob", BOB_PASSWORD)

        # /help, an unknown command, /delete answered "n".
        alice.type("/help\r")
        self.see(alice, "/help lists every command",
                 r"(?s)/register NAME.*?/login NAME.*?/logout.*?/users \[PATTERN\].*?"
                 r"/msg NAME TEXT.*?/to \[NAME\].*?/fetch \[N\].*?/delete \[force\].*?"
                 r"/help \[COMMAND\].*?/quit", regex=True)
        self.see(alice, "/help ends with the /to note",
                 "Lines not starting with / go to the /to recipient.")
        alice.type("/help msg\r")
        self.see(alice, "/help msg shows one command", r"/msg NAME TEXT +send TEXT to NAME\n",
                 regex=True)
        alice.type("/frobnicate now\r")
        self.see(alice, "unknown command: error",
                 "! unknown command /frobnicate; /help lists them (invalid_argument)")
        alice.type("just words\r")
        self.see(alice, "plain line without /to: error",
                 "! commands start with / (try /help); /to NAME makes plain lines "
                 "messages to NAME (invalid_argument)")
        alice.type("/delete\r")
        self.see(alice, "/delete asks for confirmation",
                 "Delete the account alice? This cannot be undone. [y/N] ")
        alice.type("n\r")
        self.see(alice, "answer n: not deleted", "* not deleted")
        self.see(alice, "prompt back after /delete", "alice> ")
        alice.type("/users\r")
        self.see(alice, "/users: both accounts (alice still exists)", "* 2 user(s): alice bob")

        # A message arrives while bob has half a line typed.
        bob.pos = bob.mark()
        bob.type("/ms")
        self.see(bob, "bob: half a line echoed", "/ms", must=True)
        a_mark = alice.mark()
        alice.type("/msg bob hello bob, how are you?\r")
        m = self.see(alice, "alice: pending shown",
                     r"\] -> bob: hello bob, how are you\?   \(pending #(\d+)\)", regex=True)
        hello_id = m.group(1) if m else None
        self.see(bob, "bob: incoming line shown above the prompt",
                 CLOCK + r"alice: hello bob, how are you\?\n", regex=True, must=True)
        self.see(bob, "bob: prompt and half line redrawn after it", "bob> /ms")
        b_mark = bob.mark()
        bob.type("g alice reply\r")
        m = self.see(bob, "bob: whole line sent (/ms + g alice reply)",
                     r"\] -> alice: reply   \(pending #(\d+)\)", regex=True, must=True)
        reply_id = m.group(1)
        # The notices and the reply may come in either order: search from marks.
        self.see(alice, "alice: sees 'bob: reply'", CLOCK + r"bob: reply\n", regex=True,
                 since=a_mark)
        if hello_id:
            self.see(alice, "alice: delivered notice for her message",
                     rf"\] ok bob received #{hello_id} \"hello bob, how are you\?\"",
                     regex=True, since=a_mark)
        self.see(bob, "bob: delivered notice for his reply",
                 rf"\] ok alice received #{reply_id} \"reply\"", regex=True, since=b_mark)

        # bob leaves; alice sends twice while he is offline.
        bob.type("/quit\r")
        rc = bob.wait_exit()
        r.check("bob: /quit exits 0", rc == 0, f"exit code {rc}\n{bob.recent()}")
        history = self.tmp / "home-bob" / ".zchat_history"
        text = history.read_text(errors="replace") if history.exists() else ""
        lines = [ln.replace("\\040", " ") for ln in text.splitlines()]
        r.check("bob: history file holds the whole lines typed",
                lines[-3:] == ["/login bob", "/msg alice reply", "/quit"],
                f"{history}: {text!r}")
        r.check("bob: password not in the history file", BOB_PASSWORD not in text, repr(text))

        offline_ids = []
        for body in ("first while you were away", "second while you were away"):
            alice.type(f"/msg bob {body}\r")
            m = self.see(alice, f"alice: pending for {body!r}",
                         rf"\] -> bob: {body}   \(pending #(\d+)\)", regex=True)
            if m:
                offline_ids.append(m.group(1))
        a_mark = alice.mark()

        bob = self.start("bob")
        self.see(bob, "bob again: banner", "zchat: connected to", must=True)
        self.see(bob, "bob again: prompt", "zchat> ", must=True)
        # The history file of the first session is loaded: Up recalls its last line.
        bob.type("\x1b[A")
        self.see(bob, "bob again: Up recalls /quit from the history file", "/quit")
        bob.type("\x1b[B")      # Down: back to the empty line
        self.login(bob, "bob", BOB_PASSWORD, pending=2, prompt=False)
        alice.drain()
        early = [i for i in offline_ids if re.search(rf"received #{i}\b", alice.screen[a_mark:])]
        r.check("alice: no delivered notice while bob has not fetched",
                len(offline_ids) == 2 and not early, alice.recent())

        bob.type("/fetch\r")
        self.see(bob, "bob: /fetch shows both, in order",
                 CLOCK + r"alice: first while you were away\n(?:.*\n)*?"
                 + CLOCK + r"alice: second while you were away\n", regex=True)
        self.see(bob, "bob: fetched 2", "* fetched 2 message(s)\n")
        for i, body in zip(offline_ids, ("first", "second")):
            self.see(alice, f"alice: delivered notice for the {body} offline message",
                     rf"\] ok bob received #{i} \"{body} while you were away\"", regex=True,
                     since=a_mark)
        # Up + Enter repeats the last line.
        bob.type("\x1b[A")
        self.see(bob, "bob: Up recalls /fetch", "bob> /fetch")
        bob.type("\r")
        self.see(bob, "bob: the recalled /fetch runs (nothing left)", "* fetched 0 message(s)")

        # Conversation mode: plain lines go to the /to recipient.
        bob.type("/to alice\r")
        self.see(bob, "/to: notice", "* plain lines go to alice")
        self.see(bob, "/to: the prompt shows the recipient", "bob -> alice> ")
        bob.type("see you later\r")
        self.see(bob, "/to: plain line sent", r"\] -> alice: see you later   \(pending #\d+\)",
                 regex=True)
        self.see(alice, "/to: alice gets the plain line", CLOCK + r"bob: see you later\n",
                 regex=True)

        # Ctrl-U empties the line first: Ctrl-D ends input only on an empty
        # line (on a non-empty one it deletes a character, as in a shell).
        bob.type("\x15")
        bob.type("\x04")        # Ctrl-D
        rc = bob.wait_exit()
        r.check("bob: Ctrl-D exits 0", rc == 0, f"exit code {rc}\n{bob.recent()}")
        alice.type("/quit\r")
        rc = alice.wait_exit()
        r.check("alice: /quit exits 0", rc == 0, f"exit code {rc}\n{alice.recent()}")

    def close(self):
        for t in self.terms:
            t.close()


def main():
    args = argument_parser(__doc__).parse_args()
    r = Results(fail_sep="\n")

    def body(ep, tmp):
        scenario = Scenario(r, args.zchat, ep, tmp)
        try:
            scenario.run()
        finally:
            scenario.close()

    return run_with_broker(args, r, "zchat-tty-", body)


if __name__ == "__main__":
    sys.exit(main())
