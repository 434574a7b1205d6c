#!/usr/bin/python3
"""The interactive zchat client, used the way a person uses it.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/cli/test_terminal.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

(or run this file with the same options). Each test has a broker of its own
on a free port (tests/conftest.py) and runs each user's zchat in its own
pseudo-terminal (with a window size, HOME in the test's temporary directory,
ZCHAT_PASSWORD unset so that passwords are typed at the no-echo prompt).
alice and bob register, log in and talk; a message arrives while bob has
half a line typed, and that line survives; bob leaves, alice sends to him
while he is offline, bob comes back and fetches. Also /help, an unknown
command, /delete answered "n", line history, /to, Ctrl-D.

Every wait reads the terminal until a text appears or a deadline passes
(ANSI escape sequences are stripped first); nothing sleeps to synchronise.
Standard library and pytest only.
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

import pytest

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


# -- helpers that assert ---------------------------------------------------------

def see(t, what, pattern, regex=False, timeout=WAIT, since=None):
    """`t` must show `pattern` within the deadline; returns the match."""
    m = t.expect(pattern, timeout=timeout, regex=regex, since=since)
    assert m is not None, (f"{what}: expected on {t.name}'s screen within {timeout} s: "
                           f"{pattern!r}\n{t.recent()}")
    return m


class Terminals:
    """The terminals of one test, each user with a HOME of its own."""

    def __init__(self, zchat, endpoint, tmp):
        self.zchat, self.endpoint, self.tmp = zchat, endpoint, tmp
        self.terms = []

    def home(self, name):
        return self.tmp / f"home-{name}"

    def start(self, name):
        self.home(name).mkdir(exist_ok=True)
        t = Terminal(self.zchat, self.endpoint, self.home(name), name)
        self.terms.append(t)
        return t

    def close(self):
        for t in self.terms:
            t.close()


def password(t, user, pw, step):
    """Answer the no-echo password prompt like a person: wait for it, type."""
    see(t, f"{step}: password prompt", f"password for {user}: ")
    mark = t.pos
    t.type(pw + "\r")
    return mark


def login(t, user, pw, pending, prompt=True):
    if prompt:
        see(t, f"{user}: prompt before /login", "zchat> ")
    t.type(f"/login {user}\r")
    mark = password(t, user, pw, f"{user}: /login")
    if pending:
        see(t, f"{user}: logged in, {pending} waiting",
            f"* logged in as {user}; {pending} undelivered message(s) waiting: "
            "/fetch to read them")
    else:
        see(t, f"{user}: logged in", f"* logged in as {user}\n")
    see(t, f"{user}: prompt shows the user", f"{user}> ")
    assert pw not in t.screen[mark:], f"{user}: password echoed at /login\n{t.recent()}"


def register_and_login(terms, t, user, pw):
    """/register asks for the password once and logs in with it."""
    see(t, f"{user}: banner", f"zchat: connected to {terms.endpoint}")
    see(t, f"{user}: prompt", "zchat> ")
    t.type(f"/register {user}\r")
    mark = password(t, user, pw, f"{user}: /register")
    see(t, f"{user}: account created",
        f"* account {user} created; logging in with the password just typed")
    see(t, f"{user}: logged in after /register", f"* logged in as {user}\n")
    see(t, f"{user}: prompt shows the user", f"{user}> ")
    assert "password for" not in t.screen[mark:], \
        f"{user}: asked for the password again after /register\n{t.recent()}"
    assert pw not in t.screen[mark:], f"{user}: password echoed at /register\n{t.recent()}"


def half_line_exchange(alice, bob):
    """A message arrives while bob has half a line typed; the line survives
    and is sent whole; both get delivered notices."""
    bob.pos = bob.mark()
    bob.type("/ms")
    see(bob, "bob: half a line echoed", "/ms")
    a_mark = alice.mark()
    alice.type("/msg bob hello bob, how are you?\r")
    m = see(alice, "alice: pending shown",
            r"\] -> bob: hello bob, how are you\?   \(pending #(\d+)\)", regex=True)
    hello_id = m.group(1)
    see(bob, "bob: incoming line shown above the prompt",
        CLOCK + r"alice: hello bob, how are you\?\n", regex=True)
    see(bob, "bob: prompt and half line redrawn after it", "bob> /ms")
    b_mark = bob.mark()
    bob.type("g alice reply\r")
    m = see(bob, "bob: whole line sent (/ms + g alice reply)",
            r"\] -> alice: reply   \(pending #(\d+)\)", regex=True)
    reply_id = m.group(1)
    # The notices and the reply may come in either order: search from marks.
    see(alice, "alice: sees 'bob: reply'", CLOCK + r"bob: reply\n", regex=True, since=a_mark)
    see(alice, "alice: delivered notice for her message",
        rf"\] ok bob received #{hello_id} \"hello bob, how are you\?\"", regex=True,
        since=a_mark)
    see(bob, "bob: delivered notice for his reply",
        rf"\] ok alice received #{reply_id} \"reply\"", regex=True, since=b_mark)


def history_lines(terms, name):
    """The lines of NAME's libedit history file (spaces unescaped), and its text."""
    history = terms.home(name) / ".zchat_history"
    text = history.read_text(errors="replace") if history.exists() else ""
    return [ln.replace("\\040", " ") for ln in text.splitlines()], text


def quit_and_wait(t):
    t.type("/quit\r")
    rc = t.wait_exit()
    assert rc == 0, f"{t.name}: /quit should exit 0, exit code {rc}\n{t.recent()}"


# -- fixtures ----------------------------------------------------------------

@pytest.fixture
def terms(zchat_bin, broker, tmp_path):
    ts = Terminals(zchat_bin, broker.endpoint, tmp_path)
    yield ts
    ts.close()


@pytest.fixture
def alice(terms):
    """alice registered and logged in on her terminal."""
    t = terms.start("alice")
    register_and_login(terms, t, "alice", ALICE_PASSWORD)
    return t


@pytest.fixture
def bob(terms):
    """bob registered and logged in on his terminal."""
    t = terms.start("bob")
    register_and_login(terms, t, "bob", BOB_PASSWORD)
    return t


# -- tests ---------------------------------------------------------------------

@pytest.mark.parametrize("user, pw", [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)],
                         ids=["alice", "bob"])
def test_register_and_login_without_echo(terms, user, pw):
    register_and_login(terms, terms.start(user), user, pw)


def test_help_lists_every_command(alice):
    alice.type("/help\r")
    see(alice, "/help lists every command",
        r"(?s)/register NAME.*?/login NAME.*?/logout.*?/users \[PATTERN\].*?"
        r"/msg NAME TEXT.*?/to \[NAME\].*?/fetch \[N\].*?/delete \[force\].*?"
        r"/help \[COMMAND\].*?/quit", regex=True)
    see(alice, "/help ends with the /to note",
        "Lines not starting with / go to the /to recipient.")


def test_help_for_one_command(alice):
    alice.type("/help msg\r")
    see(alice, "/help msg shows one command", r"/msg NAME TEXT +send TEXT to NAME\n", regex=True)


def test_unknown_command_is_an_error(alice):
    alice.type("/frobnicate now\r")
    see(alice, "unknown command: error",
        "! unknown command /frobnicate; /help lists them (invalid_argument)")


def test_plain_line_without_recipient_is_an_error(alice):
    alice.type("just words\r")
    see(alice, "plain line without /to: error",
        "! commands start with / (try /help); /to NAME makes plain lines "
        "messages to NAME (invalid_argument)")


def test_delete_answered_no_keeps_the_account(alice, bob):
    alice.type("/delete\r")
    see(alice, "/delete asks for confirmation",
        "Delete the account alice? This cannot be undone. [y/N] ")
    alice.type("n\r")
    see(alice, "answer n: not deleted", "* not deleted")
    see(alice, "prompt back after /delete", "alice> ")
    alice.type("/users\r")
    see(alice, "/users: both accounts (alice still exists)", "* 2 user(s): alice bob")


def test_incoming_message_redraws_the_half_typed_line(alice, bob):
    half_line_exchange(alice, bob)


def test_quit_exits_0_and_history_holds_the_whole_lines_typed(terms, alice, bob):
    half_line_exchange(alice, bob)
    quit_and_wait(bob)
    lines, text = history_lines(terms, "bob")
    assert lines[-3:] == ["/register bob", "/msg alice reply", "/quit"], \
        f"{terms.home('bob') / '.zchat_history'}: {text!r}"
    assert BOB_PASSWORD not in text, f"bob's password in the history file: {text!r}"


def test_alice_quit_exits_0(alice):
    quit_and_wait(alice)


def test_up_recalls_the_previous_sessions_history(terms, bob):
    quit_and_wait(bob)
    bob = terms.start("bob")
    see(bob, "bob again: banner", "zchat: connected to")
    see(bob, "bob again: prompt", "zchat> ")
    # The history file of the first session is loaded: Up recalls its last line.
    bob.type("\x1b[A")
    see(bob, "bob again: Up recalls /quit from the history file", "/quit")
    bob.type("\x1b[B")      # Down: back to the empty line, so /login is typed alone
    login(bob, "bob", BOB_PASSWORD, pending=0, prompt=False)


# Typed text stays ASCII here: zchat's line editor drops non-ASCII keys (it
# never calls setlocale, so libedit decodes input in the "C" locale).
OFFLINE = ("first while you were away", "second while you were away")


def test_messages_sent_while_offline_are_fetched_on_return(terms, alice, bob):
    quit_and_wait(bob)
    offline_ids = []
    for body in OFFLINE:
        alice.type(f"/msg bob {body}\r")
        m = see(alice, f"alice: pending for {body!r}",
                rf"\] -> bob: {re.escape(body)}   \(pending #(\d+)\)", regex=True)
        offline_ids.append(m.group(1))
    a_mark = alice.mark()

    bob = terms.start("bob")
    see(bob, "bob again: banner", "zchat: connected to")
    login(bob, "bob", BOB_PASSWORD, pending=2)
    alice.drain()
    early = [i for i in offline_ids if re.search(rf"received #{i}\b", alice.screen[a_mark:])]
    assert not early, f"alice: delivered notice while bob has not fetched\n{alice.recent()}"

    bob.type("/fetch\r")
    see(bob, "bob: /fetch shows both, in order",
        CLOCK + "alice: " + re.escape(OFFLINE[0]) + r"\n(?:.*\n)*?"
        + CLOCK + "alice: " + re.escape(OFFLINE[1]) + r"\n", regex=True)
    see(bob, "bob: fetched 2", "* fetched 2 message(s)\n")
    for i, body in zip(offline_ids, OFFLINE):
        see(alice, f"alice: delivered notice for {body!r}",
            rf"\] ok bob received #{i} \"{re.escape(body)}\"", regex=True, since=a_mark)


def test_up_enter_repeats_the_last_line(terms, alice, bob):
    quit_and_wait(bob)              # offline: the message waits for /fetch
    alice.type("/msg bob one to fetch\r")
    see(alice, "alice: pending shown", r"-> bob: one to fetch   \(pending #\d+\)", regex=True)
    bob = terms.start("bob")
    login(bob, "bob", BOB_PASSWORD, pending=1)
    bob.type("/fetch\r")
    see(bob, "bob: /fetch shows alice's message", "alice: one to fetch\n")
    see(bob, "bob: fetched 1", "* fetched 1 message(s)\n")
    bob.type("\x1b[A")
    see(bob, "bob: Up recalls /fetch", "bob> /fetch")
    bob.type("\r")
    see(bob, "bob: the recalled /fetch runs (nothing left)", "* fetched 0 message(s)")


def test_to_makes_plain_lines_messages(alice, bob):
    bob.type("/to alice\r")
    see(bob, "/to: notice", "* plain lines go to alice")
    see(bob, "/to: the prompt shows the recipient", "bob -> alice> ")
    body = "see you later"
    bob.type(body + "\r")
    see(bob, "/to: plain line sent", rf"\] -> alice: {re.escape(body)}   \(pending #\d+\)",
        regex=True)
    see(alice, "/to: alice gets the plain line", CLOCK + rf"bob: {re.escape(body)}\n",
        regex=True)


def test_ctrl_d_on_an_empty_line_exits_0(bob):
    bob.type("/to alice\r")
    see(bob, "/to: the prompt shows the recipient", "bob -> alice> ")
    # Ctrl-U empties the line first: Ctrl-D ends input only on an empty line
    # (on a non-empty one it deletes a character, as in a shell).
    bob.type("\x15")
    bob.type("\x04")        # Ctrl-D
    rc = bob.wait_exit()
    assert rc == 0, f"bob: Ctrl-D should exit 0, exit code {rc}\n{bob.recent()}"


if __name__ == "__main__":     # the same as python3 -m pytest -q -p no:cacheprovider FILE ...
    sys.dont_write_bytecode = True
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__] + sys.argv[1:]))
