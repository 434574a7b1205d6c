#!/usr/bin/python3
"""The interactive zchat client, used the way a person uses it.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/cli/test_terminal.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

(or run this file with the same options). Each test has a broker of its own
on a free port (tests/conftest.py) and runs each user's zchat in its own
pseudo-terminal (with a window size, HOME in the test's temporary directory,
ZCHAT_PASSWORD unset so that passwords are typed at the no-echo prompt).
alice and bob register (which logs them in), and talk; a message arrives
while bob has half a line typed, and that line survives; bob leaves, alice
sends to him while he is offline, bob comes back and fetches. Also /help,
an unknown command, /delete answered "n", line history, /to, Ctrl-D.
Typing in any script (accents, CJK, emoji, Hebrew, Arabic) reaches the
other user intact, also under LANG=C; Backspace and the cursor keys work
over multi-byte characters, and a half-typed line of wide characters
survives an incoming message; a non-ASCII password typed at the prompt
serves a later one-shot login. Ctrl-C clears the line, or on an empty line
logs out and exits 0; SIGTERM and SIGHUP log out and exit 0; the terminal
modes are restored. Each child gets its locale explicitly (LANG=C.UTF-8
unless a test says otherwise) and the pty as its controlling terminal.

Every wait reads the terminal until a text appears or a deadline passes
(ANSI escape sequences are stripped first); nothing sleeps to synchronise.
Standard library and pytest only.
"""

import fcntl
import os
import re
import select
import signal
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

    def __init__(self, zchat, endpoint, home, name, locale=None):
        self.name = name
        self.screen = ""
        self.pos = 0
        self._raw = b""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        # The locale comes from `locale` alone (LANG=C.UTF-8 unless told).
        env = {k: v for k, v in os.environ.items()
               if k not in ("ZCHAT_PASSWORD", "ZCHAT_ENDPOINT", "EDITRC", "LANG",
                            "LANGUAGE") and not k.startswith("LC_")}
        env.update(HOME=str(home), TERM="xterm")
        env.update(locale or {"LANG": "C.UTF-8"})
        self.proc = subprocess.Popen(
            [zchat, "--connect", endpoint], stdin=slave, stdout=slave, stderr=slave,
            env=env, start_new_session=True, close_fds=True,
            # The pty becomes the session's controlling terminal, as in a
            # terminal window: Ctrl-C is then SIGINT from the tty driver.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
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

    def start(self, name, locale=None):
        self.home(name).mkdir(exist_ok=True)
        t = Terminal(self.zchat, self.endpoint, self.home(name), name, locale)
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


OFFLINE = ("first while you were away: café", "second — 你好, 🌍")


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


# -- typing in any script ------------------------------------------------------

SCRIPTS = {
    "accents": "interrupting you héllo naïve façade ñandú",
    "cjk": "你好，世界 こんにちは 안녕하세요",
    "emoji": "party 🎉 world 🌍 wave 👋🏽 flag 🇫🇷",
    "hebrew": "שלום עולם",
    "arabic": "مرحبا بالعالم",
    "mixed": "héllo 🌍 你好 שלום abc",
}


def send_typed(sender, receiver, to, body, what):
    """`sender` types /msg TO BODY; the sender's pending line and the
    receiver's incoming line both carry BODY intact."""
    s_mark = sender.mark()
    sender.type(f"/msg {to} {body}\r")
    see(sender, f"{what}: pending shown with the text intact",
        rf"\] -> {to}: {re.escape(body)}   \(pending #\d+\)", regex=True, since=s_mark)
    see(receiver, f"{what}: received intact",
        CLOCK + rf"{sender.name}: {re.escape(body)}\n", regex=True)


@pytest.mark.parametrize("script", list(SCRIPTS), ids=list(SCRIPTS))
def test_typed_text_in_any_script_reaches_the_other_user(alice, bob, script):
    send_typed(alice, bob, "bob", SCRIPTS[script], f"alice types {script}")


def test_lang_c_falls_back_to_utf8_for_typing(terms):
    """LANG=C (not UTF-8): typing still works, in both directions."""
    c = {"LANG": "C"}
    alice = terms.start("alice", locale=c)
    register_and_login(terms, alice, "alice", ALICE_PASSWORD)
    bob = terms.start("bob", locale=c)
    register_and_login(terms, bob, "bob", BOB_PASSWORD)
    send_typed(alice, bob, "bob", SCRIPTS["mixed"], "alice (LANG=C)")
    send_typed(bob, alice, "alice", SCRIPTS["cjk"] + " " + SCRIPTS["arabic"], "bob (LANG=C)")


def test_backspace_and_cursor_keys_over_multibyte_characters(alice, bob):
    # 語 and 本 erased with two Backspaces, then 本! retyped.
    alice.type("/msg bob 日本語")
    see(alice, "alice: CJK echoed", "/msg bob 日本語")
    alice.type("\x7f\x7f本!")
    # Left over the emoji, insert before it; Ctrl-A / Ctrl-E move over the
    # whole line of wide characters.
    alice.type(" a🌍b\x1b[D\x1b[Dé\x05ç")
    send_typed_mark = alice.mark()
    alice.type("\r")
    body = "日本! aé🌍bç"
    see(alice, "alice: the edited line is sent",
        rf"\] -> bob: {re.escape(body)}   \(pending #\d+\)", regex=True,
        since=send_typed_mark)
    see(bob, "bob: the edited line arrives", CLOCK + rf"alice: {re.escape(body)}\n",
        regex=True)
    # Ctrl-A, then Right ten times lands after "/msg bob é" (each wide
    # character one step); Ctrl-K kills the rest; X is typed there.
    alice.type("/msg bob éé你好🌍\x01\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C"
               "\x1b[C\x1b[C\x0bX\r")
    see(bob, "bob: Ctrl-A, Right x10 over wide characters, Ctrl-K, X",
        CLOCK + r"alice: éX\n", regex=True)


def test_line_with_wide_characters_redrawn_when_a_message_arrives(alice, bob):
    """bob has CJK and emoji half typed, cursor moved left; a message
    arrives; the line is redrawn and editing goes on where it was."""
    bob.pos = bob.mark()
    bob.type("/msg alice 你好🌍世界")
    see(bob, "bob: wide text echoed", "/msg alice 你好🌍世界")
    bob.type("\x1b[D\x1b[D")                 # cursor before 世
    send_typed(alice, bob, "bob", "مرحبا 😀 こんにちは", "alice, mid-line")
    see(bob, "bob: prompt and half line redrawn", "bob> /msg alice 你好🌍世界")
    bob.type("→")                            # inserted at the cursor, before 世
    b_mark = bob.mark()
    bob.type("\r")
    body = "你好🌍→世界"
    see(bob, "bob: the line sent with the insertion where the cursor was",
        rf"\] -> alice: {re.escape(body)}   \(pending #\d+\)", regex=True, since=b_mark)
    see(alice, "alice: receives it", CLOCK + rf"bob: {re.escape(body)}\n", regex=True)


NON_ASCII_PASSWORD = "pässwörd-日本-🔑"


def test_non_ascii_password_typed_then_used_by_a_one_shot_login(terms, zchat_bin):
    dora = terms.start("dora")
    see(dora, "dora: prompt", "zchat> ")
    dora.type("/register dora\r")
    see(dora, "dora: password prompt", "password for dora: ")
    mark = dora.pos
    # A wrong last character (a multi-byte one) erased with Backspace.
    dora.type(NON_ASCII_PASSWORD[:-1] + "語\x7f" + NON_ASCII_PASSWORD[-1] + "\r")
    see(dora, "dora: registered and logged in",
        "* account dora created; logging in with the password just typed")
    see(dora, "dora: logged in", "* logged in as dora\n")
    assert "日本" not in dora.screen[mark:], f"password echoed\n{dora.recent()}"
    quit_and_wait(dora)
    env = {k: v for k, v in os.environ.items() if k not in ("ZCHAT_ENDPOINT",)}
    env.update(ZCHAT_PASSWORD=NON_ASCII_PASSWORD, HOME=str(terms.home("dora")))
    run = subprocess.run([zchat_bin, "--connect", terms.endpoint, "--json", "users",
                          "--user", "dora"], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and '"accounts":["dora"]' in run.stdout, \
        f"one-shot login with the password typed at the terminal: {run}"


# -- Ctrl-C, signals -------------------------------------------------------------

def terminal_restored(t):
    """The pty's modes after zchat exited: echo and line editing back on."""
    lflag = termios.tcgetattr(t.master)[3]
    return bool(lflag & termios.ECHO) and bool(lflag & termios.ICANON)


def test_ctrl_c_clears_the_line_then_leaves_on_an_empty_line(terms, alice, bob):
    alice.type("/msg bob never sent 你好")
    see(alice, "alice: text echoed", "/msg bob never sent 你好")
    alice.type("\x03")
    see(alice, "Ctrl-C: the dropped line marked ^C", "/msg bob never sent 你好^C\n")
    see(alice, "Ctrl-C: a fresh prompt", "alice> ")
    alice.type("/users\r")
    see(alice, "the cleared line is gone: /users runs alone", "* 2 user(s): alice bob")
    see(alice, "the prompt back after /users", "alice> ")
    b_mark = bob.mark()
    alice.type("\x03")                      # on an empty line: leave
    see(alice, "Ctrl-C on an empty line logs out", "* logged out")
    rc = alice.wait_exit()
    assert rc == 0, f"alice: Ctrl-C on an empty line should exit 0, got {rc}\n{alice.recent()}"
    assert terminal_restored(alice), "terminal modes not restored after Ctrl-C"
    assert "never sent" not in bob.screen[b_mark:], bob.recent()
    lines, text = history_lines(terms, "alice")
    assert lines[-1] == "/users", f"history saved on Ctrl-C: {text!r}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_logs_out_and_exits_0(alice, sig):
    alice.type("/msg bob half typed")
    see(alice, "alice: text echoed", "/msg bob half typed")
    alice.proc.send_signal(sig)
    see(alice, f"{sig.name}: logged out", "* logged out")
    rc = alice.wait_exit()
    assert rc == 0, f"alice: {sig.name} should exit 0, got {rc}\n{alice.recent()}"
    assert terminal_restored(alice), f"terminal modes not restored after {sig.name}"


def test_ctrl_c_at_the_password_prompt_cancels_it(terms):
    t = terms.start("erin")
    see(t, "erin: prompt", "zchat> ")
    t.type("/register erin\r")
    see(t, "erin: password prompt", "password for erin: ")
    t.type("half\x03")
    see(t, "Ctrl-C at the password prompt: no password", "! no password given")
    see(t, "the prompt is back", "zchat> ")
    quit_and_wait(t)


if __name__ == "__main__":     # the same as python3 -m pytest -q -p no:cacheprovider FILE ...
    sys.dont_write_bytecode = True
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__] + sys.argv[1:]))
