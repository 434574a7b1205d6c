"""A small zchat client, written from docs/protocol.md alone.

Needs pyzmq and msgpack (Debian: python3-zmq, python3-msgpack).

    from zchat import ZchatClient, ZchatError
    c = ZchatClient()
    c.connect("tcp://127.0.0.1:5555")
    c.login("alice", "correct horse")
    message_id = c.send("bob", "hello bob")
"""

import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass

import msgpack
import zmq

PROTOCOL_VERSION = 1

# Message type numbers (protocol.md section 3).
CREATE_ACCOUNT, CREATE_SUCCESS, CREATE_FAILURE = 1, 2, 3
LOGIN_REQUEST, LOGIN_SUCCESS, LOGIN_FAILURE = 4, 5, 6
LOGOUT, LOGOUT_SUCCESS = 7, 8
LIST_ACCOUNTS, ACCOUNT_LIST = 9, 10
SEND_MESSAGE, MESSAGE_PENDING, MESSAGE_FAILURE = 11, 12, 13
FETCH_MESSAGES, FETCH_RESULT = 14, 15
DISTRIBUTE_MESSAGE, MESSAGE_RECEIPT, MESSAGE_SUCCESS = 16, 17, 18
DELETION_REQUEST, DELETION_SUCCESS, DELETION_FAILURE = 19, 20, 21
PING, PONG, ERROR = 22, 23, 24
MESSAGE_UNDELIVERABLE, SESSION_ENDED = 25, 26
NOTICE_RECEIPT, FETCH_NOTICES = 27, 28

# client_msg_id source for send(): a counter from a random start, so ids are
# unique within this process and unlikely to meet another process's. It
# stays in 1..2^53-1 (protocol.md 8.4: every language can send that exactly;
# starting below 2^52 leaves 2^52 sends before the end).
_next_client_msg_id = itertools.count(secrets.randbelow(2**52) + 1).__next__

# Sender notices: kept by the broker until acknowledged with NOTICE_RECEIPT.
NOTICE_TYPES = {MESSAGE_SUCCESS, MESSAGE_UNDELIVERABLE}

# Replies that report a refusal; all carry `code` and `reason`.
FAILURE_TYPES = {CREATE_FAILURE, LOGIN_FAILURE, MESSAGE_FAILURE, DELETION_FAILURE, ERROR}

# Error code names (protocol.md section 6). Unknown codes are kept as numbers.
ERROR_NAMES = [
    "ok", "malformed", "unknown_type", "unsupported_version", "not_logged_in",
    "already_logged_in", "username_taken", "invalid_username", "weak_password",
    "password_too_long", "bad_credentials", "throttled", "unknown_recipient",
    "body_too_large", "not_yours", "unknown_message", "has_pending",
    "invalid_argument", "storage", "queue_full", "recipient_deleted", "busy",
    "account_deleted", "session_expired", "internal", "shutting_down",
]


def error_name(code):
    """The wire name of an error code, or "code_N" for a code this client does not know."""
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"code_{code}"


class ZchatError(Exception):
    """The broker refused a request. `code` is the wire number, `name` its
    name, `reason` the broker's text and `reply` the whole decoded frame
    (e.g. reply["retry_after_ms"] for a throttled login)."""

    def __init__(self, code, reason, reply=None):
        self.code, self.name, self.reason = code, error_name(code), reason
        self.reply = reply or {}
        super().__init__(f"{self.name} ({code}): {reason}")


@dataclass
class FetchResult:
    """What one fetch() produced: the DISTRIBUTE_MESSAGE pushes (dicts with
    message_id, sender, body, sent_at) and the broker's count/remaining."""
    messages: list
    count: int
    remaining: int


class ZchatClient:
    """One connection to a zchat broker over a ZeroMQ DEALER socket.

    Requests block until their reply arrives (or `timeout` seconds pass:
    TimeoutError). Replies are matched by `req`; pushes (req 0) that arrive
    meanwhile are buffered and handed out by next_push(). Refusals raise
    ZchatError.

    Sender notices (MESSAGE_SUCCESS, MESSAGE_UNDELIVERABLE) come again after
    every login until acknowledged: next_push() hands each out once (repeats
    are dropped by message_id) and, with auto_ack, acknowledges it with
    NOTICE_RECEIPT as it does.
    """

    DEDUP_WINDOW = 100_000   # notice ids remembered for dropping repeats

    def __init__(self, timeout=10.0, context=None, auto_ack=True):
        self.timeout = timeout
        self.auto_ack = auto_ack
        self._notices_seen = set()     # notice message ids handed out
        self._notices_order = deque()  # the same ids, oldest first
        self._context = context or zmq.Context.instance()
        self._sock = None
        self._next_req = 1
        self._replies = {}        # req -> reply that arrived before anyone asked for it
        self._pushes = deque()    # buffered pushes, oldest first
        self._fetching = None     # list collecting DISTRIBUTE_MESSAGE during fetch()
        self.username = None
        self.token = None

    # -- transport -----------------------------------------------------------

    def connect(self, endpoint):
        """Connect to the broker, e.g. "tcp://127.0.0.1:5555". No routing id is set."""
        self._sock = self._context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 1000)
        self._sock.connect(endpoint)

    def close(self):
        """Close the socket (a session still open simply ends on the broker side)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, msg_type, **fields):
        """Send one request frame; return its req id. None fields are left out."""
        req, self._next_req = self._next_req, self._next_req + 1
        frame = {"v": PROTOCOL_VERSION, "type": msg_type, "req": req}
        frame.update({k: v for k, v in fields.items() if v is not None})
        self._sock.send(msgpack.packb(frame, use_bin_type=True))
        return req

    def _read_one(self, deadline):
        """Read and file one frame. Return False if the deadline passed first."""
        wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not self._sock.poll(wait_ms, zmq.POLLIN):
            return False
        try:
            msg = msgpack.unpackb(self._sock.recv(), raw=False)
        except ValueError:
            return True                         # not MessagePack: ignore it
        if not isinstance(msg, dict):
            return True
        req = msg.get("req", 0)
        if req:
            self._replies[req] = msg
        elif self._fetching is not None and msg.get("type") == DISTRIBUTE_MESSAGE:
            self._fetching.append(msg)
        else:
            self._pushes.append(msg)            # includes an ERROR with req 0
        return True

    def _wait(self, req, timeout=None):
        """Wait for the reply to `req`; raise ZchatError if it is a refusal."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while req not in self._replies:
            if not self._read_one(deadline):
                raise TimeoutError(f"no reply to request {req}")
        reply = self._replies.pop(req)
        if reply.get("type") in FAILURE_TYPES:
            raise ZchatError(reply.get("code", 0), reply.get("reason", ""), reply)
        return reply

    def _call(self, msg_type, **fields):
        return self._wait(self._send(msg_type, **fields))

    def next_push(self, timeout=None):
        """Return the next push (a dict; see `type`), or None after `timeout` seconds.
        A notice already handed out is not returned again (it is acknowledged
        again instead, with auto_ack: the first acknowledgement may be lost)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while not self._pushes:
                if not self._read_one(deadline):
                    return None
            push = self._pushes.popleft()
            if push.get("type") not in NOTICE_TYPES:
                return push
            mid = push.get("message_id")
            repeat = mid in self._notices_seen
            if not repeat:
                self._notices_seen.add(mid)
                self._notices_order.append(mid)
                if len(self._notices_order) > self.DEDUP_WINDOW:
                    self._notices_seen.discard(self._notices_order.popleft())
            if self.auto_ack and self._sock is not None and self.username is not None:
                self.ack_notice(mid)
            if not repeat:
                return push

    # -- requests ------------------------------------------------------------

    def create_account(self, username, password):
        """Register an account (does not log in). Returns the name as registered."""
        return self._call(CREATE_ACCOUNT, username=username, password=password).get("username")

    def login(self, username, password):
        """Log in with a password. Returns the LOGIN_SUCCESS dict (username, pending, token)."""
        return self._logged_in(self._call(LOGIN_REQUEST, username=username, password=password))

    def login_token(self, username, token=None):
        """Log in with a token from an earlier login (default: the last one seen)."""
        token = bytes(token if token is not None else self.token)
        return self._logged_in(self._call(LOGIN_REQUEST, username=username, token=token))

    def _logged_in(self, reply):
        self.username, self.token = reply.get("username"), reply.get("token")
        return reply

    def logout(self):
        """End the session. The broker also revokes this session's token (even
        the one a password login issued), so log in by password next time."""
        self._call(LOGOUT)
        self.username = None

    def list_accounts(self, pattern=None, limit=None, cursor=None):
        """One page of account names. Returns (names, cursor); cursor "" means the end."""
        reply = self._call(LIST_ACCOUNTS, pattern=pattern, limit=limit, cursor=cursor or None)
        return list(reply.get("accounts", [])), reply.get("cursor", "")

    def list_all_accounts(self, pattern=None, page_size=1000):
        """Every matching account name, following cursors (pages may be empty)."""
        names, cursor = [], None
        while True:
            page, cursor = self.list_accounts(pattern, page_size, cursor)
            names.extend(page)
            if not cursor:
                return names

    def send(self, recipient, body, client_msg_id=None):
        """Send a message; return the broker's message_id. Unless given, the
        client_msg_id is the next of a randomly seeded counter, in 1..2^53-1
        (pass the same one to retry safely)."""
        if client_msg_id is None:
            client_msg_id = _next_client_msg_id()
        reply = self._call(SEND_MESSAGE, recipient=recipient, body=body,
                           client_msg_id=client_msg_id)
        return reply["message_id"]

    def fetch(self, limit=None):
        """Fetch waiting messages. Returns a FetchResult; the messages are the
        DISTRIBUTE_MESSAGE pushes that arrived before FETCH_RESULT (a live
        message arriving in between is included too; duplicates removed).
        Confirm each with receipt()."""
        self._fetching = []
        try:
            reply = self._call(FETCH_MESSAGES, limit=limit)
            seen, messages = set(), []
            for m in self._fetching:
                if m.get("message_id") not in seen:
                    seen.add(m.get("message_id"))
                    messages.append(m)
        finally:
            self._fetching = None
        return FetchResult(messages, reply.get("count", 0), reply.get("remaining", 0))

    def receipt(self, message_id, check=True):
        """Confirm a delivered message. An accepted receipt has no reply, so with
        check=True a PING follows it: replies come in request order, so a
        refusal (ERROR not_yours, unknown_message, storage) arrives before the
        PONG and is raised. With check=False it returns at once; a later
        refusal is filed as a reply nobody waits for."""
        req = self._send(MESSAGE_RECEIPT, message_id=message_id)
        if check:
            self.ping()
            refusal = self._replies.pop(req, None)
            if refusal is not None:
                raise ZchatError(refusal.get("code", 0), refusal.get("reason", ""), refusal)

    def ack_notice(self, message_id):
        """Acknowledge a MESSAGE_SUCCESS / MESSAGE_UNDELIVERABLE (NOTICE_RECEIPT):
        the broker stops sending it again. No reply when accepted; an unknown
        or repeated one is a no-op. Fire and forget (a refusal is filed as a
        reply nobody waits for)."""
        self._send(NOTICE_RECEIPT, message_id=message_id)

    def fetch_notices(self, limit=None):
        """Ask for the notices not yet acknowledged (oldest message first). They
        arrive as pushes before the reply and are handed out by next_push()
        (repeats dropped). Returns (count, remaining)."""
        reply = self._call(FETCH_NOTICES, limit=limit)
        return reply.get("count", 0), reply.get("remaining", 0)

    def delete_account(self, force=False):
        """Delete the logged-in account; returns the number of purged messages.
        Without force, waiting messages give ZchatError has_pending
        (err.reply["pending"] says how many)."""
        reply = self._call(DELETION_REQUEST, force=bool(force))
        self.username = None
        return reply.get("purged", 0)

    def ping(self):
        """Round trip to the broker (also keeps the session alive). Returns seconds."""
        start = time.monotonic()
        self._call(PING)
        return time.monotonic() - start
