"""A small zchat client, written from docs/protocol.md alone.

Needs pyzmq and msgpack (Debian: python3-zmq, python3-msgpack).

    from zchat import ZchatClient, ZchatError
    c = ZchatClient()
    c.connect("tcp://127.0.0.1:5555")
    c.login("alice", "correct horse")
    message_id = c.send("bob", "hello bob")

Failover: connect("tcp://a:5555,tcp://b:5555") (or a list) and the client
moves to the next endpoint when its broker goes away, resumes its session
with the token and resends the requests left unanswered (see ZchatClient).
"""

import itertools
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import msgpack
import zmq
import zmq.utils.monitor

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
    NOTICE_RECEIPT as it does. With batch_pushes (the default) the client
    logs in asking for the batch forms (protocol.md 8.8): one MESSAGE_SUCCESS
    frame may tell of many deliveries, one DISTRIBUTE_MESSAGE of a fetch
    carry many messages; next_push() and fetch() still hand out one dict per
    message. A broker from before batch_pushes refuses such a login
    (malformed): pass batch_pushes=False for it.

    Failover (only when connect() is given more than one endpoint; with one,
    nothing changes): the broker counts as lost when the socket monitor
    reports a disconnect, when no handshake succeeds within `failover_after`
    seconds of connecting, or when a request waits `failover_after` seconds
    with no frame at all arriving. The client then closes the socket, opens
    a new DEALER to the next endpoint (round robin), logs in again with its
    token if it was logged in, and resends every request not yet known to
    be processed, with the same req and the same fields (so a send keeps
    its client_msg_id and the broker's dedup makes the resend safe). The
    caller's blocked call simply returns once the reply comes; it still
    fails with TimeoutError `timeout` seconds after it began. Each failover
    appends a push {"type": "failover", ...} (the type is a str, unlike the
    wire's numbers) and increments `failovers`; `endpoint` is the endpoint
    in use. A refused token raises ZchatError (bad_credentials) from the
    call that was waiting.
    """

    DEDUP_WINDOW = 100_000   # notice ids remembered for dropping repeats
    FAILOVER = "failover"    # the `type` of the failover event push
    # Requests that get no reply when accepted (they never hold up failover).
    NO_REPLY_TYPES = {MESSAGE_RECEIPT, NOTICE_RECEIPT}
    MAX_RECEIPT_IDS = 1000  # ids in one receipt's message_ids

    def __init__(self, timeout=10.0, context=None, auto_ack=True, failover_after=2.0,
                 batch_pushes=True):
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.batch_pushes = batch_pushes
        self.failover_after = failover_after
        self.failovers = 0             # failovers so far
        self._endpoints = []
        self._ep_index = 0
        self._monitor = None           # monitor PAIR socket (failover mode only)
        self._poller = None
        self._opened_at = 0.0          # when the current socket was opened
        self._handshaken = False       # a ZMTP handshake succeeded on it
        self._last_frame = 0.0         # when its last frame arrived
        self._lost = None              # why the broker counts as lost, or None
        self._inflight = OrderedDict() # req -> (type, fields, sent at), not known processed
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
        """Connect to the broker, e.g. "tcp://127.0.0.1:5555". No routing id is set.
        Several endpoints, as "tcp://a:5555,tcp://b:5555" or a list, turn on
        failover (see the class): the first is used until its broker is lost."""
        if isinstance(endpoint, str):
            endpoints = [e.strip() for e in endpoint.split(",") if e.strip()]
        else:
            endpoints = [str(e).strip() for e in endpoint]
        if not endpoints:
            raise ValueError("connect() needs at least one endpoint")
        self.close()
        self._endpoints, self._ep_index = endpoints, 0
        self._inflight.clear()          # nothing of an earlier connection is resent
        self._open()

    @property
    def endpoint(self):
        """The endpoint in use (None before connect())."""
        return self._endpoints[self._ep_index] if self._endpoints else None

    @property
    def endpoints(self):
        """Every endpoint given to connect(), in rotation order."""
        return list(self._endpoints)

    @property
    def _failover_on(self):
        return len(self._endpoints) > 1

    def _open(self):
        """A new DEALER to self.endpoint (and, for failover, its monitor)."""
        self._sock = self._context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 1000)
        if self._failover_on:
            self._monitor = self._sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
            self._poller = zmq.Poller()
            self._poller.register(self._sock, zmq.POLLIN)
            self._poller.register(self._monitor, zmq.POLLIN)
            self._opened_at = self._last_frame = time.monotonic()
            self._handshaken, self._lost = False, None
        self._sock.connect(self.endpoint)

    def _close_socket(self, linger=None):
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = self._poller = None
        if self._sock is not None:
            self._sock.close(linger)
            self._sock = None

    def close(self):
        """Close the socket (a session still open simply ends on the broker side)."""
        self._close_socket()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, msg_type, **fields):
        """Send one request frame; return its req id. None fields are left out."""
        req, self._next_req = self._next_req, self._next_req + 1
        fields = {k: v for k, v in fields.items() if v is not None}
        if self._failover_on:
            self._inflight[req] = (msg_type, fields, time.monotonic())
        self._send_frame(msg_type, req, fields)
        return req

    def _send_frame(self, msg_type, req, fields):
        frame = {"v": PROTOCOL_VERSION, "type": msg_type, "req": req}
        frame.update(fields)
        self._sock.send(msgpack.packb(frame, use_bin_type=True))

    def _read_one(self, deadline):
        """Read and file one frame. Return False if the deadline passed first.
        In failover mode a lost broker is replaced first (that counts as
        progress: True)."""
        if self._failover_on:
            return self._read_one_failover(deadline)
        wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not self._sock.poll(wait_ms, zmq.POLLIN):
            return False
        self._file(self._sock.recv())
        return True

    def _file(self, data):
        """File one received frame: a reply by req, a push in the queue."""
        try:
            msg = msgpack.unpackb(data, raw=False)
        except ValueError:
            return                              # not MessagePack: ignore it
        if not isinstance(msg, dict):
            return
        req = msg.get("req", 0)
        if req:
            self._processed(req, msg)
            self._replies[req] = msg
            return
        for push in self._unbatched(msg):
            if self._fetching is not None and push.get("type") == DISTRIBUTE_MESSAGE:
                self._fetching.append(push)
            else:
                self._pushes.append(push)       # includes an ERROR with req 0

    @staticmethod
    def _unbatched(msg):
        """A push in the single form(s) it stands for: the batch forms of
        MESSAGE_SUCCESS and DISTRIBUTE_MESSAGE (batch_pushes) become one dict
        per message, in order; any other push is itself."""
        if "message_ids" not in msg or msg.get("type") not in (MESSAGE_SUCCESS,
                                                               DISTRIBUTE_MESSAGE):
            return [msg]
        base = {"v": msg.get("v"), "type": msg["type"], "req": 0}
        if msg["type"] == MESSAGE_SUCCESS:
            return [dict(base, message_id=mid, recipient=msg.get("recipient"),
                         client_msg_id=cmid)
                    for mid, cmid in zip(msg["message_ids"], msg.get("client_msg_ids", []))]
        return [dict(base, message_id=mid, sender=sender, body=body, sent_at=sent_at)
                for mid, sender, body, sent_at in zip(msg["message_ids"], msg.get("senders", []),
                                                      msg.get("bodies", []),
                                                      msg.get("sent_ats", []))]

    # -- failover --------------------------------------------------------------

    def _processed(self, req, reply):
        """A reply to `req` came: it, and (replies keeping request order) every
        request sent before it, took effect. A `busy` refusal may overtake
        others (protocol.md 4), so it proves only itself."""
        if req not in self._inflight:
            return
        if reply.get("code") == ERROR_NAMES.index("busy"):
            del self._inflight[req]
            return
        while self._inflight:
            first, _ = self._inflight.popitem(last=False)
            if first == req:
                return

    def _failover_due(self, also_waiting=None):
        """When the current broker counts as lost if nothing arrives, or None.
        also_waiting: when a request outside _inflight (the resuming login)
        was sent."""
        if not self._handshaken:
            return self._opened_at + self.failover_after
        waiting = [sent for t, _, sent in self._inflight.values()
                   if t not in self.NO_REPLY_TYPES]
        if also_waiting is not None:
            waiting.append(also_waiting)
        if not waiting:
            return None
        return max(self._last_frame, min(waiting)) + self.failover_after

    def _drain_monitor(self):
        while self._monitor.poll(0, zmq.POLLIN):
            event = zmq.utils.monitor.recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._handshaken = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._lost = self._lost or "disconnected"

    def _poll_once(self, deadline, also_waiting=None):
        """Wait for one frame or monitor event, up to the deadline or the
        failover timer. Returns the frame's bytes or None; sets self._lost."""
        due = self._failover_due(also_waiting)
        until = deadline if due is None else min(deadline, due)
        wait_ms = max(0, int((until - time.monotonic()) * 1000))
        ready = dict(self._poller.poll(wait_ms))
        if self._monitor in ready:
            self._drain_monitor()
        if self._lost is None and self._sock in ready:
            self._last_frame = time.monotonic()
            return self._sock.recv()
        if self._lost is None and due is not None and time.monotonic() >= due:
            self._lost = "no handshake" if not self._handshaken else "no reply"
        return None

    def _read_one_failover(self, deadline):
        while True:
            if self._lost is not None:
                return self._failover(deadline)
            data = self._poll_once(deadline)
            if data is not None:
                self._file(data)
                return True
            if self._lost is None and time.monotonic() >= deadline:
                return False

    def _failover(self, deadline):
        """Move to the next endpoint, resume the session, resend what was
        unanswered. Returns True once done. Each endpoint gets one full try
        (failover_after), even past the caller's deadline; when the deadline
        has passed after a failed try it returns False, and the broker still
        counts as lost, so the next read goes on with the next endpoint."""
        reason = self._lost
        previous = self.endpoint
        resumed = None
        while True:
            self._close_socket(linger=0)
            self._ep_index = (self._ep_index + 1) % len(self._endpoints)
            self._open()
            self.failovers += 1
            if self.username is None or self.token is None:
                break
            login_req = self._next_req
            self._next_req += 1
            sent = time.monotonic()
            self._send_frame(LOGIN_REQUEST, login_req,
                             self._login_fields(self.username, token=bytes(self.token)))
            while login_req not in self._replies and self._lost is None:
                data = self._poll_once(float("inf"), also_waiting=sent)
                if data is not None:
                    self._file(data)
            if self._lost is not None:          # this one is gone too
                if time.monotonic() >= deadline:
                    return False
                continue
            resumed = self._replies.pop(login_req)
            if resumed.get("type") in FAILURE_TYPES:
                self._inflight.clear()
                self.username = None
                self._pushes.append({"type": self.FAILOVER, "from": previous,
                                     "to": self.endpoint, "reason": reason,
                                     "resumed": False, "resent": 0,
                                     "code": resumed.get("code", 0)})
                raise ZchatError(resumed.get("code", 0),
                                 "failover: token login refused: " + resumed.get("reason", ""),
                                 resumed)
            break
        for req, (msg_type, fields, _) in list(self._inflight.items()):
            self._inflight[req] = (msg_type, fields, time.monotonic())
            self._send_frame(msg_type, req, fields)
        self._pushes.append({"type": self.FAILOVER, "from": previous, "to": self.endpoint,
                             "reason": reason, "resumed": resumed is not None,
                             "pending": (resumed or {}).get("pending", 0),
                             "resent": len(self._inflight)})
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
        return self._logged_in(self._call(LOGIN_REQUEST,
                                          **self._login_fields(username, password=password)))

    def login_token(self, username, token=None):
        """Log in with a token from an earlier login (default: the last one seen)."""
        token = bytes(token if token is not None else self.token)
        return self._logged_in(self._call(LOGIN_REQUEST,
                                          **self._login_fields(username, token=token)))

    def _login_fields(self, username, **credential):
        fields = {"username": username, **credential}
        if self.batch_pushes:
            fields["batch_pushes"] = True
        return fields

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

    def send_many(self, recipient, bodies, client_msg_ids=None):
        """Send several messages to one recipient in one request (SEND_MESSAGE's
        batch form); return their message_ids, in the order of `bodies`. They
        are stored in that order, or, if any would be refused, none is (the
        ZchatError's reply names them all in client_msg_ids). Unless given, the
        client_msg_ids are the next of the counter send() uses (pass the same
        ones to retry safely)."""
        bodies = list(bodies)
        if client_msg_ids is None:
            client_msg_ids = [_next_client_msg_id() for _ in bodies]
        reply = self._call(SEND_MESSAGE, recipient=recipient, bodies=bodies,
                           client_msg_ids=list(client_msg_ids))
        return list(reply["message_ids"])

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

    def receipts(self, message_ids, check=True):
        """Confirm many delivered messages: one MESSAGE_RECEIPT with
        message_ids per 1000 ids, each id as if confirmed alone. Ids the broker
        refuses (someone else's, unknown) change nothing and come back in one
        ERROR per request, whose message_ids names them; the others are
        confirmed. With check=True a PING follows and the refused ids are
        returned (a list, empty when none was refused); a storage failure is
        raised. With check=False it returns None at once."""
        ids = list(message_ids)
        step = self.MAX_RECEIPT_IDS
        reqs = [self._send(MESSAGE_RECEIPT, message_ids=ids[start:start + step])
                for start in range(0, len(ids), step)]
        if not check:
            return None
        self.ping()
        refused = []
        for req in reqs:
            reply = self._replies.pop(req, None)
            if reply is None:
                continue
            if "message_ids" not in reply:
                raise ZchatError(reply.get("code", 0), reply.get("reason", ""), reply)
            refused.extend(reply["message_ids"])
        return refused

    def ack_notice(self, message_id):
        """Acknowledge a MESSAGE_SUCCESS / MESSAGE_UNDELIVERABLE (NOTICE_RECEIPT):
        the broker stops sending it again. No reply when accepted; an unknown
        or repeated one is a no-op. Fire and forget (a refusal is filed as a
        reply nobody waits for)."""
        self._send(NOTICE_RECEIPT, message_id=message_id)

    def ack_notices(self, message_ids):
        """Acknowledge many notices at once: one NOTICE_RECEIPT with
        message_ids per 1000 ids (protocol.md 8.7), fire and forget like
        ack_notice."""
        ids = list(message_ids)
        step = self.MAX_RECEIPT_IDS
        for start in range(0, len(ids), step):
            self._send(NOTICE_RECEIPT, message_ids=ids[start:start + step])

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
