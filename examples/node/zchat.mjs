// A small zchat client for Node.js, written from docs/protocol.md alone.
//
// One ZchatClient holds one ZeroMQ DEALER connection to a broker. Every
// zchat message is one frame holding one MessagePack map (protocol.md
// sections 1-2). Requests return promises that settle with their reply,
// matched by `req`; pushes (`req` 0) are queued and handed out by
// nextPush(). Not handled: reconnecting and the keep-alive PING (call
// ping() yourself when idle; protocol.md 8.2).

import { Dealer } from "zeromq";
import { Encoder, Decoder } from "@msgpack/msgpack";

export const PROTOCOL_VERSION = 1;

// Message type numbers, protocol.md section 3.
export const MessageType = Object.freeze({
  CREATE_ACCOUNT: 1,
  CREATE_SUCCESS: 2,
  CREATE_FAILURE: 3,
  LOGIN_REQUEST: 4,
  LOGIN_SUCCESS: 5,
  LOGIN_FAILURE: 6,
  LOGOUT: 7,
  LOGOUT_SUCCESS: 8,
  LIST_ACCOUNTS: 9,
  ACCOUNT_LIST: 10,
  SEND_MESSAGE: 11,
  MESSAGE_PENDING: 12,
  MESSAGE_FAILURE: 13,
  FETCH_MESSAGES: 14,
  FETCH_RESULT: 15,
  DISTRIBUTE_MESSAGE: 16,
  MESSAGE_RECEIPT: 17,
  MESSAGE_SUCCESS: 18,
  DELETION_REQUEST: 19,
  DELETION_SUCCESS: 20,
  DELETION_FAILURE: 21,
  PING: 22,
  PONG: 23,
  ERROR: 24,
  MESSAGE_UNDELIVERABLE: 25,
  SESSION_ENDED: 26,
  NOTICE_RECEIPT: 27,
  FETCH_NOTICES: 28,
});

// Error code names indexed by their wire number, protocol.md section 6.
// Codes are appended, never renumbered; an unknown one is named code_N.
const ERROR_NAMES = Object.freeze([
  "ok", "malformed", "unknown_type", "unsupported_version", "not_logged_in",
  "already_logged_in", "username_taken", "invalid_username", "weak_password",
  "password_too_long", "bad_credentials", "throttled", "unknown_recipient",
  "body_too_large", "not_yours", "unknown_message", "has_pending",
  "invalid_argument", "storage", "queue_full", "recipient_deleted", "busy",
  "account_deleted", "session_expired", "internal", "shutting_down", "timeout",
]);

// Never on the wire: what a request that got no reply in time is refused with.
const TIMEOUT_CODE = 26;

// The reply or push types that say "refused"; each carries `code` and `reason`.
const FAILURE_TYPES = new Set([
  MessageType.CREATE_FAILURE, MessageType.LOGIN_FAILURE,
  MessageType.MESSAGE_FAILURE, MessageType.DELETION_FAILURE, MessageType.ERROR,
]);

const NOTICE_TYPES = new Set([MessageType.MESSAGE_SUCCESS, MessageType.MESSAGE_UNDELIVERABLE]);

// How many notice ids to remember for dropping repeats (protocol.md 8.7);
// the broker resends at most 1000 per login, so this covers a few rounds.
const NOTICES_REMEMBERED = 10000;

export function errorName(code) {
  return ERROR_NAMES[Number(code)] ?? `code_${code}`;
}

// A refusal from the broker (ERROR or a *_FAILURE reply), or a timeout.
export class ZchatError extends Error {
  constructor(code, reason, reply = null) {
    super(`${errorName(code)} (${code}): ${reason}`);
    this.name = "ZchatError";
    this.code = code;
    this.codeName = errorName(code);
    this.reason = reason;
    this.reply = reply;
  }
}

// The broker refuses floats, even integral ones (protocol.md "Integers").
// With useBigInt64 the encoder writes a BigInt as uint64, but it also writes
// a Number of 2^32 or more as a float64, so such Numbers become BigInts
// first. Numbers past 2^53 - 1 are not exact any more: refuse them.
function wireInteger(value, field) {
  if (typeof value === "bigint") return value;
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`${field} must be an integer below 2^53 (or a BigInt), got ${value}`);
  }
  return value >= 0x1_0000_0000 ? BigInt(value) : value;
}

// Decoding with useBigInt64 keeps every uint64 exact. The broker sends each
// integer in its smallest form, so whether a value comes as BigInt depends on
// its size (sent_at always does); turn the ones a Number holds exactly back
// into Numbers so that callers see one type.
function normaliseIntegers(message) {
  for (const [key, value] of Object.entries(message)) {
    if (typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER)
        && value >= BigInt(Number.MIN_SAFE_INTEGER)) {
      message[key] = Number(value);
    }
  }
  return message;
}

// A random client_msg_id start in 1..2^52, so that a counter from it stays
// below 2^53 (protocol.md 8.4) and two processes rarely share ids.
function randomMessageIdSeed() {
  return Math.floor(Math.random() * 2 ** 52) + 1;
}

export class ZchatClient {
  #socket = null;
  #encoder = new Encoder({ useBigInt64: true });
  #decoder = new Decoder({ useBigInt64: true });
  #nextReq = 1;
  #nextClientMsgId = randomMessageIdSeed();
  #sendChain = Promise.resolve();
  #pending = new Map();        // req -> { resolve, reject, timer, quiet }
  #pushes = [];                // pushes not handed out yet
  #pushWaiters = new Set();    // wake-up functions of nextPush() calls
  #fetchCollectors = [];       // DISTRIBUTE_MESSAGE sinks of fetches in flight, oldest first
  #noticesSeen = new Set();    // ids of notices handed out (insertion ordered)
  #closed = false;
  #readLoopDone = null;

  // timeoutMs: how long a request waits for its reply. autoAck: acknowledge
  // every MESSAGE_SUCCESS / MESSAGE_UNDELIVERABLE that nextPush() hands out.
  constructor({ timeoutMs = 10000, autoAck = true } = {}) {
    this.timeoutMs = timeoutMs;
    this.autoAck = autoAck;
    this.username = null;      // as registered, once logged in
    this.token = null;         // Uint8Array(32) from the last LOGIN_SUCCESS
  }

  connect(endpoint) {
    if (this.#socket) throw new Error("already connected");
    // A plain DEALER: no routing id of our own (protocol.md 1), and no
    // linger so that close() never waits for unsent frames.
    this.#socket = new Dealer({ linger: 0 });
    this.#socket.connect(endpoint);
    this.#readLoopDone = this.#readLoop();
  }

  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket?.close();
    await this.#readLoopDone;
    for (const [req, entry] of this.#pending) {
      this.#settle(req, entry, null, new Error("connection closed"));
    }
    for (const wake of this.#pushWaiters) wake();
  }

  // -- requests ---------------------------------------------------------------

  // The name as registered. Does not log in (protocol.md 8.1).
  async createAccount(username, password) {
    const reply = await this.#call(MessageType.CREATE_ACCOUNT, { username, password });
    return reply.username;
  }

  // The LOGIN_SUCCESS map ({username, pending, token}); keeps the token.
  async login(username, password) {
    return this.#loggedIn(await this.#call(MessageType.LOGIN_REQUEST, { username, password }));
  }

  async loginToken(username, token = this.token) {
    return this.#loggedIn(await this.#call(MessageType.LOGIN_REQUEST, { username, token }));
  }

  #loggedIn(reply) {
    this.username = reply.username;
    this.token = reply.token;
    return reply;
  }

  // Note: a LOGOUT revokes the session's token (protocol.md 8.2).
  async logout() {
    await this.#call(MessageType.LOGOUT, {});
    this.username = null;
  }

  // One page: { accounts, cursor }; an empty cursor means the last page.
  async listAccounts({ pattern, limit, cursor } = {}) {
    const fields = {};
    if (pattern !== undefined) fields.pattern = pattern;
    if (limit !== undefined) fields.limit = wireInteger(limit, "limit");
    if (cursor !== undefined) fields.cursor = cursor;
    const reply = await this.#call(MessageType.LIST_ACCOUNTS, fields);
    return { accounts: reply.accounts, cursor: reply.cursor };
  }

  // Every matching name, following cursors until the empty one. A page may
  // be short, even empty, while the cursor is not (protocol.md 8.3).
  async listAllAccounts({ pattern, pageSize = 1000 } = {}) {
    const names = [];
    let cursor;
    do {
      const page = await this.listAccounts({ pattern, limit: pageSize, cursor });
      names.push(...page.accounts);
      cursor = page.cursor;
    } while (cursor !== "");
    return names;
  }

  // The broker's message_id. Give the same clientMsgId to retry a send
  // safely (protocol.md 8.4); by default it is the next value of a counter.
  async send(recipient, body, clientMsgId = this.#nextClientMsgId++) {
    const reply = await this.#call(MessageType.SEND_MESSAGE, {
      recipient, body, client_msg_id: wireInteger(clientMsgId, "clientMsgId"),
    });
    return reply.message_id;
  }

  // { messages, count, remaining }: messages are the DISTRIBUTE_MESSAGE maps
  // this fetch produced, which arrive before its FETCH_RESULT (protocol.md 4).
  // They are not confirmed: send receipt() for each one kept.
  async fetch(limit) {
    const messages = [];
    this.#fetchCollectors.push(messages);
    try {
      const fields = limit === undefined ? {} : { limit: wireInteger(limit, "limit") };
      const reply = await this.#call(MessageType.FETCH_MESSAGES, fields);
      return { messages, count: reply.count, remaining: reply.remaining };
    } finally {
      this.#fetchCollectors.splice(this.#fetchCollectors.indexOf(messages), 1);
    }
  }

  // Confirms a message. An accepted receipt has no reply, so with check a
  // PING follows it: its PONG means the receipt was handled (replies come in
  // request order), and a refusal is thrown. Without check, a refusal is
  // queued as a push-like ERROR for nextPush().
  async receipt(messageId, { check = true } = {}) {
    await this.#quietRequest(MessageType.MESSAGE_RECEIPT, messageId, check);
  }

  // Acknowledges a MESSAGE_SUCCESS / MESSAGE_UNDELIVERABLE (protocol.md 8.7).
  async ackNotice(messageId, { check = true } = {}) {
    await this.#quietRequest(MessageType.NOTICE_RECEIPT, messageId, check);
  }

  // { count, remaining }: the unacknowledged notices are pushed again first;
  // nextPush() hands out those not seen before.
  async fetchNotices(limit) {
    const fields = limit === undefined ? {} : { limit: wireInteger(limit, "limit") };
    const reply = await this.#call(MessageType.FETCH_NOTICES, fields);
    return { count: reply.count, remaining: reply.remaining };
  }

  // The number of undelivered messages purged with the account.
  async deleteAccount({ force = false } = {}) {
    const reply = await this.#call(MessageType.DELETION_REQUEST, { force });
    this.username = null;
    return reply.purged;
  }

  // Round-trip time in milliseconds.
  async ping() {
    const start = performance.now();
    await this.#call(MessageType.PING, {});
    return performance.now() - start;
  }

  // -- pushes ---------------------------------------------------------------

  // The next push as a map (push.type is e.g. MessageType.DISTRIBUTE_MESSAGE),
  // or null when none arrives within timeoutMs. Repeated notices are dropped
  // by message_id; with autoAck, each notice handed out is acknowledged.
  async nextPush(timeoutMs = this.timeoutMs) {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      while (this.#pushes.length > 0) {
        const push = this.#pushes.shift();
        if (this.#handOut(push)) return push;
      }
      const left = deadline - performance.now();
      if (left <= 0 || this.#closed) return null;
      await this.#pushArrival(left);
    }
  }

  #handOut(push) {
    if (!NOTICE_TYPES.has(push.type)) return true;
    const id = push.message_id;
    const repeat = this.#noticesSeen.has(id);
    if (!repeat) {
      this.#noticesSeen.add(id);
      if (this.#noticesSeen.size > NOTICES_REMEMBERED) {
        this.#noticesSeen.delete(this.#noticesSeen.values().next().value);
      }
    }
    // A repeat is acknowledged again: the first acknowledgement may be lost.
    if (this.autoAck && this.username !== null) {
      this.ackNotice(id, { check: false }).catch(() => {});
    }
    return !repeat;
  }

  #pushArrival(timeoutMs) {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#pushWaiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, timeoutMs);
      this.#pushWaiters.add(wake);
    });
  }

  #queuePush(push) {
    this.#pushes.push(push);
    for (const wake of this.#pushWaiters) wake();
  }

  // -- transport --------------------------------------------------------------

  #send(type, fields) {
    if (!this.#socket || this.#closed) throw new Error("not connected");
    const req = this.#nextReq++;
    // The envelope first, then the fields; key order is free, but this is
    // the broker's own order (protocol.md 2).
    const frame = this.#encoder.encode({ v: PROTOCOL_VERSION, type, req, ...fields });
    // zeromq allows one send in flight per socket: chain them, which also
    // keeps requests in the order they were made.
    // A failed send fails only its own request, not the ones after it.
    this.#sendChain = this.#sendChain.catch(() => {}).then(() => this.#socket.send(frame));
    return { req, sent: this.#sendChain };
  }

  // Sends a request; resolves with its reply, rejects with ZchatError on a
  // refusal or when no reply comes within timeoutMs.
  #call(type, fields) {
    const { req, sent } = this.#send(type, fields);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(req);
        reject(new ZchatError(TIMEOUT_CODE, `no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.#pending.set(req, { resolve, reject, timer, quiet: false });
      sent.catch((error) => this.#settle(req, this.#pending.get(req), null, error));
    });
  }

  // MESSAGE_RECEIPT and NOTICE_RECEIPT: no reply when accepted. Such a
  // request is known to be accepted once a reply to any later request comes
  // (replies come in request order, protocol.md 4), so it waits for that.
  async #quietRequest(type, messageId, check) {
    const { req, sent } = this.#send(type, { message_id: wireInteger(messageId, "messageId") });
    const outcome = new Promise((resolve, reject) => {
      this.#pending.set(req, { resolve, reject, timer: null, quiet: true });
    });
    sent.catch((error) => this.#settle(req, this.#pending.get(req), null, error));
    // A refusal may come while the PING below is still in flight: handle it
    // now (so Node does not call it unhandled), and rethrow it after the PONG.
    outcome.catch(() => {});
    if (check) {
      await this.ping();
      await outcome;
    } else {
      outcome.catch((error) => {
        if (error instanceof ZchatError) this.#queuePush(error.reply);
      });
    }
  }

  #settle(req, entry, reply, error = null) {
    if (!entry) return;
    this.#pending.delete(req);
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else if (reply && FAILURE_TYPES.has(reply.type)) {
      entry.reject(new ZchatError(reply.code, reply.reason, reply));
    } else entry.resolve(reply);
  }

  async #readLoop() {
    for (;;) {
      let frames;
      try {
        frames = await this.#socket.receive();
      } catch (error) {
        if (this.#closed) return;
        // Not expected on a DEALER without a receive timeout: give up on
        // every request in flight rather than leave them hanging.
        for (const [req, entry] of this.#pending) this.#settle(req, entry, null, error);
        return;
      }
      // The broker sends exactly one frame per message (protocol.md 1).
      if (frames.length !== 1) continue;
      let message;
      try {
        message = this.#decoder.decode(frames[0]);
      } catch {
        continue;   // not MessagePack: nothing can be matched to it
      }
      if (message === null || typeof message !== "object" || Array.isArray(message)) continue;
      this.#dispatch(normaliseIntegers(message));
    }
  }

  #dispatch(message) {
    const req = message.req;
    if (req === 0) {
      // A push, or an ERROR about a frame whose req could not be read.
      const collector = this.#fetchCollectors[0];
      if (collector && message.type === MessageType.DISTRIBUTE_MESSAGE) collector.push(message);
      else this.#queuePush(message);
      return;
    }
    // Every request before this one that has no reply of its own (an
    // accepted receipt) will never get one now.
    for (const [earlier, entry] of this.#pending) {
      if (entry.quiet && earlier < req) this.#settle(earlier, entry, null);
    }
    const entry = this.#pending.get(req);
    if (entry) this.#settle(req, entry, message);
    // A reply nobody waits for (its request timed out) is dropped.
  }
}
