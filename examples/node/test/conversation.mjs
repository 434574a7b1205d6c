// Cross-language conversation test: alice is the Node.js client (../zchat.mjs),
// bob is the C++ terminal client `zchat`, driven through its one-shot
// subcommands with --json; both talk through a real zchat-broker that this
// test starts on a free port with a database of its own.
//
//   node test/conversation.mjs --broker PATH/zchat-broker --zchat PATH/zchat
//
// (or $ZCHAT_BROKER and $ZCHAT_CLI). The steps run in order and stop at the
// first failure, since each builds on the ones before; the broker is stopped
// whatever happens. Every wait has a deadline. Exit status 0 when every step
// passed, 1 otherwise, 2 for a usage error.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { ZchatClient, ZchatError, MessageType } from "../zchat.mjs";

const ALICE_PASSWORD = "alice-password-1";
const BOB_PASSWORD = "bob-password-1";
const CLI_TIMEOUT_MS = 30000;      // any one zchat invocation
const PUSH_TIMEOUT_MS = 15000;     // waiting for one push
const BROKER_START_MS = 10000;     // the broker writing its endpoint file
const BROKER_STOP_MS = 10000;      // the broker exiting after SIGTERM

// Every body mixes accents, CJK, emoji (one outside the BMP with a skin-tone
// modifier) and right-to-left scripts, and is compared byte for byte.
const BODY_A = "héllo bob, from Node: 你好 🌍 שלום مرحبا — naïve ✓";
const BODY_B = "hi alice, from C++: ¡olé! 日本語 👋🏽 עברית العربية";
const BODY_C = "soon purged: bientôt purgé 🗑 — 即将清除 — سيُحذف";
const BODY_UNKNOWN = "hello? ¿hola? こんにちは مرحبا";
// Above 2^32 on purpose: a Number that size must still go out as an integer.
const CMID_A = 0x1234_5678_9abc;

// -- helpers -----------------------------------------------------------------

function sameUtf8(actual, expected, what) {
  assert.equal(typeof actual, "string", `${what}: not a string: ${actual}`);
  assert.ok(Buffer.from(actual, "utf8").equals(Buffer.from(expected, "utf8")),
    `${what}: bytes differ\n  got      ${JSON.stringify(actual)}\n  expected ${JSON.stringify(expected)}`);
}

// Waits for a push for which want(push) is true; returns { push, others }
// (push null when none came in time, others the pushes seen meanwhile).
async function waitPush(client, want, timeoutMs = PUSH_TIMEOUT_MS) {
  const deadline = performance.now() + timeoutMs;
  const others = [];
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return { push: null, others };
    const push = await client.nextPush(left);
    if (push === null) return { push: null, others };
    if (want(push)) return { push, others };
    others.push(push);
  }
}

// Runs fn, which must reject with a ZchatError named codeName.
async function assertRefused(fn, codeName) {
  await assert.rejects(fn, (error) => {
    assert.ok(error instanceof ZchatError, `expected ZchatError ${codeName}, got ${error}`);
    assert.equal(error.codeName, codeName, `expected ${codeName}, got ${error.message}`);
    return true;
  });
}

// Polls cond() until it returns something truthy or timeoutMs pass; returns
// its last value. The pause only paces the polling.
async function waitUntil(cond, timeoutMs, intervalMs = 20) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = cond();
    if (value || performance.now() >= deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

// Resolves with the exit code (or signal name) once child has exited, or
// null after timeoutMs.
function waitExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode ?? child.signalCode);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

// A zchat-broker on tcp://127.0.0.1 at a port the kernel chose, read back
// from --endpoint-file; its database and log in a temporary directory.
class Broker {
  static async start(binary) {
    const broker = new Broker();
    broker.directory = mkdtempSync(join(tmpdir(), "zchat-node-"));
    broker.logPath = join(broker.directory, "broker.log");
    const endpointFile = join(broker.directory, "ep");
    const log = openSync(broker.logPath, "w");
    broker.child = spawn(binary, [
      "--bind", "tcp://127.0.0.1:*", "--db", join(broker.directory, "b.db"),
      "--pwhash-cost", "min", "--log-level", "warn", "--endpoint-file", endpointFile,
    ], { stdio: ["ignore", log, log] });
    closeSync(log);
    const spawnError = new Promise((resolve) => broker.child.once("error", resolve));
    let failure = null;
    spawnError.then((error) => { failure = `cannot start ${binary}: ${error.message}`; });

    // The file is complete once it ends with a newline.
    const endpoint = await waitUntil(() => {
      if (failure) return failure;
      if (broker.child.exitCode !== null) return `exited ${broker.child.exitCode}`;
      const text = existsSync(endpointFile) ? readFileSync(endpointFile, "utf8") : "";
      return text.endsWith("\n") && text.trim() ? text.trim() : null;
    }, BROKER_START_MS);
    if (!endpoint || !endpoint.startsWith("tcp://")) {
      const why = endpoint ?? `did not write its endpoint file within ${BROKER_START_MS} ms`;
      await broker.stop();
      throw new Error(`broker ${why}; log:\n${broker.log()}`);
    }
    broker.endpoint = endpoint;
    return broker;
  }

  log() {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  // SIGTERM; the exit code, or null if it was still running after
  // BROKER_STOP_MS (it is killed then).
  async stop() {
    let code = await waitExit(this.child, 0);
    if (code === null) {
      this.child.kill("SIGTERM");
      code = await waitExit(this.child, BROKER_STOP_MS);
      if (code === null) this.kill();
    }
    return code;
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }

  removeDirectory() {
    rmSync(this.directory, { recursive: true, force: true });
  }
}

// Runs zchat's one-shot subcommands as bob: zchat --connect EP --json ARGS,
// with the password in $ZCHAT_PASSWORD.
class Cli {
  constructor(binary, endpoint) {
    this.base = ["--connect", endpoint, "--json"];
    this.binary = binary;
    this.env = { ...process.env, ZCHAT_PASSWORD: BOB_PASSWORD };
    this.children = new Set();
  }

  // Starts a command; finish() waits for it.
  start(args, env = this.env) {
    const child = spawn(this.binary, [...this.base, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    const out = [];
    const err = [];
    child.stdout.on("data", (chunk) => out.push(chunk));
    child.stderr.on("data", (chunk) => err.push(chunk));
    const closed = new Promise((resolve) => {
      child.once("error", (error) => resolve({ code: null, error }));
      child.once("close", (code, signal) => resolve({ code: code ?? signal }));
    });
    return { child, closed, args, out, err };
  }

  // { rc, events, raw }: the exit code, the JSON events printed on stdout,
  // and a description of the run for failure messages.
  async finish(run, timeoutMs = CLI_TIMEOUT_MS) {
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    let result = await Promise.race([run.closed, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") {
      run.child.kill("SIGKILL");
      await run.closed;
      result = { code: null, error: new Error(`timed out after ${timeoutMs} ms`) };
    }
    this.children.delete(run.child);
    const stdout = Buffer.concat(run.out).toString("utf8");
    const stderr = Buffer.concat(run.err).toString("utf8");
    const events = stdout.split("\n").filter((line) => line !== "").map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        return { event: "<not json>", line };
      }
    });
    const raw = `zchat ${run.args.join(" ")}: ${result.error ? result.error.message : `exit ${result.code}`}`
      + `; stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`;
    return { rc: result.code, events, raw };
  }

  run(args, env) {
    return this.finish(this.start(args, env));
  }

  killAll() {
    for (const child of this.children) child.kill("SIGKILL");
  }
}

// -- the conversation ----------------------------------------------------------

async function conversation(broker, zchatBinary, step) {
  const alice = new ZchatClient({ timeoutMs: 15000, autoAck: false });
  const bob = new Cli(zchatBinary, broker.endpoint);
  try {
    alice.connect(broker.endpoint);
    await conversationSteps(alice, bob, step);
  } finally {
    bob.killAll();
    await alice.close();
  }
}

async function conversationSteps(alice, bob, step) {
  await step("alice (node) pings the broker", async () => {
    assert.ok((await alice.ping()) >= 0);
  });

  await step("alice (node) creates her account", async () => {
    assert.equal(await alice.createAccount("alice", ALICE_PASSWORD), "alice");
  });

  await step("the same name in other case is username_taken", async () => {
    await assertRefused(() => alice.createAccount("ALICE", ALICE_PASSWORD), "username_taken");
  });

  await step("bob registers with zchat register", async () => {
    const { rc, events, raw } = await bob.run(["register", "--user", "bob"]);
    assert.ok(rc === 0 && events.some((e) => e.event === "registered" && e.user === "bob"), raw);
  });

  await step("a request before login is not_logged_in", async () => {
    await assertRefused(() => alice.fetch(), "not_logged_in");
  });

  await step("alice's wrong password is bad_credentials", async () => {
    await assertRefused(() => alice.login("alice", "wrong-password"), "bad_credentials");
  });

  await step("bob's wrong password is bad_credentials in zchat too", async () => {
    const env = { ...process.env, ZCHAT_PASSWORD: "wrong-password" };
    const { rc, events, raw } = await bob.run(["users", "--user", "bob"], env);
    const errors = events.filter((e) => e.event === "error");
    assert.ok(rc === 1 && errors.length === 1 && errors[0].code === "bad_credentials", raw);
  });

  await step("alice logs in: her name, a 32-byte token, nothing pending", async () => {
    const reply = await alice.login("alice", ALICE_PASSWORD);
    assert.equal(reply.username, "alice");
    assert.ok(reply.token instanceof Uint8Array && reply.token.length === 32, `token ${reply.token}`);
    assert.equal(reply.pending, 0);
  });

  // (a) alice -> offline bob, fetched by zchat; alice is told it arrived.
  let midA;
  await step("alice sends to offline bob and gets a message id", async () => {
    midA = await alice.send("bob", BODY_A, CMID_A);
    assert.ok(Number.isSafeInteger(midA) && midA >= 1, `message_id ${midA}`);
  });

  await step("bob fetches alice's message with zchat fetch, body byte-exact", async () => {
    const { rc, events, raw } = await bob.run(["fetch", "--user", "bob"]);
    assert.equal(rc, 0, raw);
    const messages = events.filter((e) => e.event === "message");
    assert.equal(messages.length, 1, raw);
    assert.equal(messages[0].id, midA, raw);
    assert.equal(messages[0].from, "alice", raw);
    sameUtf8(messages[0].body, BODY_A, "body bob fetched");
    assert.ok(Number.isSafeInteger(messages[0].sent_at) && messages[0].sent_at > 0, raw);
    assert.deepEqual(events.at(-1), { event: "fetched", count: 1, remaining: 0 }, raw);
  });

  await step("alice gets MESSAGE_SUCCESS for it and acknowledges it", async () => {
    const { push, others } = await waitPush(alice, (p) => p.type === MessageType.MESSAGE_SUCCESS);
    assert.ok(push, `no MESSAGE_SUCCESS; others: ${JSON.stringify(others)}`);
    assert.equal(push.message_id, midA);
    assert.equal(push.recipient, "bob");
    assert.equal(push.client_msg_id, CMID_A);
    await alice.ackNotice(midA);
    // Requests are handled in order: the acknowledgement is done by now.
    assert.deepEqual(await alice.fetchNotices(), { count: 0, remaining: 0 });
  });

  // (b) bob -> online alice with send --wait; alice confirms; bob sees it.
  await step("bob's send --wait reaches online alice, who confirms it", async () => {
    const run = bob.start(["send", "--user", "bob", "alice", BODY_B, "--wait"]);
    const { push, others } = await waitPush(alice, (p) => p.type === MessageType.DISTRIBUTE_MESSAGE);
    if (push) await alice.receipt(push.message_id);
    const { rc, events, raw } = await bob.finish(run);
    assert.ok(push, `alice got no DISTRIBUTE_MESSAGE; others: ${JSON.stringify(others)}; ${raw}`);
    assert.equal(push.sender, "bob");
    sameUtf8(push.body, BODY_B, "body alice received");
    assert.ok(Number.isSafeInteger(push.sent_at) && push.sent_at > 0, `sent_at ${push.sent_at}`);
    assert.equal(rc, 0, raw);
    const pending = events.find((e) => e.event === "pending");
    assert.ok(pending && pending.id === push.message_id && pending.to === "alice", raw);
    sameUtf8(pending.body, BODY_B, "body in bob's pending event");
    assert.deepEqual(events.at(-1), { event: "delivered", id: push.message_id, to: "alice" }, raw);
  });

  // (c) listing accounts.
  await step("alice lists every account", async () => {
    assert.deepEqual(await alice.listAllAccounts(), ["alice", "bob"]);
  });

  await step("alice lists with wildcards, any case", async () => {
    assert.deepEqual(await alice.listAccounts({ pattern: "B*" }), { accounts: ["bob"], cursor: "" });
    assert.deepEqual(await alice.listAccounts({ pattern: "?l*e" }), { accounts: ["alice"], cursor: "" });
    assert.deepEqual(await alice.listAccounts({ pattern: "*x*" }), { accounts: [], cursor: "" });
  });

  await step("alice pages through the accounts one by one with cursors", async () => {
    const first = await alice.listAccounts({ limit: 1 });
    assert.deepEqual(first.accounts, ["alice"]);
    assert.ok(first.cursor !== "", "a first page of 1 of 2 names must have a cursor");
    const names = [...first.accounts];
    let cursor = first.cursor;
    for (let pages = 0; cursor !== "" && pages < 10; pages++) {
      const page = await alice.listAccounts({ limit: 1, cursor });
      names.push(...page.accounts);
      cursor = page.cursor;
    }
    assert.equal(cursor, "", "paging did not end");
    assert.deepEqual(names, ["alice", "bob"]);
    // A cursor belongs to its pattern.
    await assertRefused(() => alice.listAccounts({ pattern: "b*", cursor: first.cursor }),
      "invalid_argument");
  });

  await step("bob's zchat users sees alice and bob", async () => {
    const { rc, events, raw } = await bob.run(["users", "--user", "bob"]);
    const users = events.filter((e) => e.event === "users");
    assert.ok(rc === 0 && users.length === 1, raw);
    assert.deepEqual([...users[0].accounts].sort(), ["alice", "bob"], raw);
  });

  // (d) refusals.
  await step("alice's send to an unknown user is unknown_recipient", async () => {
    await assertRefused(() => alice.send("nobody", BODY_UNKNOWN), "unknown_recipient");
  });

  await step("bob's zchat send to an unknown user exits 1 with unknown_recipient", async () => {
    const { rc, events, raw } = await bob.run(["send", "--user", "bob", "nobody", BODY_UNKNOWN]);
    const errors = events.filter((e) => e.event === "error");
    assert.ok(rc === 1 && errors.length === 1 && errors[0].code === "unknown_recipient"
      && typeof errors[0].reason === "string", raw);
  });

  // (e) deleting accounts.
  let midC;
  await step("alice sends bob a message he will never read", async () => {
    midC = await alice.send("bob", BODY_C);
    assert.ok(midC > midA, `message_id ${midC}`);
  });

  await step("bob's zchat delete without --force is has_pending", async () => {
    const { rc, events, raw } = await bob.run(["delete", "--user", "bob"]);
    const errors = events.filter((e) => e.event === "error");
    assert.ok(rc === 1 && errors.length === 1 && errors[0].code === "has_pending", raw);
  });

  await step("bob's zchat delete --force discards it", async () => {
    const { rc, events, raw } = await bob.run(["delete", "--user", "bob", "--force"]);
    assert.ok(rc === 0 && events.some((e) => e.event === "deleted" && e.discarded === 1), raw);
  });

  await step("alice gets MESSAGE_UNDELIVERABLE recipient_deleted and acknowledges it", async () => {
    const { push, others } = await waitPush(alice, (p) => p.type === MessageType.MESSAGE_UNDELIVERABLE);
    assert.ok(push, `no MESSAGE_UNDELIVERABLE; others: ${JSON.stringify(others)}`);
    assert.equal(push.message_id, midC);
    assert.equal(push.recipient, "bob");
    assert.equal(push.code, 20);   // recipient_deleted
    await alice.ackNotice(midC);
    assert.deepEqual(await alice.fetchNotices(), { count: 0, remaining: 0 });
  });

  await step("a send to the deleted bob is unknown_recipient", async () => {
    await assertRefused(() => alice.send("bob", BODY_A), "unknown_recipient");
  });

  await step("alice deletes her own account and is logged out", async () => {
    assert.equal(await alice.deleteAccount(), 0);
    await assertRefused(() => alice.fetch(), "not_logged_in");
    await assertRefused(() => alice.login("alice", ALICE_PASSWORD), "bad_credentials");
  });
}

// -- main ----------------------------------------------------------------------

async function main() {
  let options;
  try {
    ({ values: options } = parseArgs({
      options: { broker: { type: "string" }, zchat: { type: "string" } },
    }));
  } catch (error) {
    console.error(`conversation.mjs: ${error.message}`);
    return 2;
  }
  const brokerBinary = options.broker ?? process.env.ZCHAT_BROKER;
  const zchatBinary = options.zchat ?? process.env.ZCHAT_CLI;
  if (!brokerBinary || !zchatBinary) {
    console.error("usage: node test/conversation.mjs --broker PATH --zchat PATH"
      + " (or $ZCHAT_BROKER and $ZCHAT_CLI)");
    return 2;
  }
  for (const path of [brokerBinary, zchatBinary]) {
    if (!existsSync(path)) {
      console.error(`conversation.mjs: ${path}: no such file`);
      return 2;
    }
  }

  const broker = await Broker.start(brokerBinary);
  // Should the test be interrupted, the broker must not outlive it.
  const killBroker = () => broker.kill();
  process.on("exit", killBroker);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(signal, () => { killBroker(); process.exit(1); });
  }

  let passed = 0;
  let failed = null;
  const step = async (name, fn) => {
    if (failed) return;
    try {
      await fn();
      passed++;
      console.log(`ok ${passed} - ${name}`);
    } catch (error) {
      failed = name;
      console.log(`not ok ${passed + 1} - ${name}`);
      console.log(String(error.stack ?? error).replace(/^/gm, "    "));
    }
  };

  try {
    await conversation(broker, zchatBinary, step);
  } catch (error) {
    failed ??= "(outside any step)";
    console.log(`not ok - ${error.stack ?? error}`);
  } finally {
    const code = await broker.stop();
    if (code !== 0 && !failed) {
      failed = "broker exit";
      console.log(`not ok - the broker should exit 0 on SIGTERM, got ${code ?? "still running, killed"}`);
    }
    if (failed) console.log(`zchat-broker log:\n${broker.log() || "(empty)"}`);
    broker.removeDirectory();
  }
  if (failed) {
    console.log(`FAILED at: ${failed} (${passed} steps passed before it)`);
    return 1;
  }
  console.log(`all ${passed} steps passed`);
  return 0;
}

process.exitCode = await main();
