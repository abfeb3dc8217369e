// The Node load generator: socket.io-client sockets over websocket, the cheaper twin of bench/loadgen.py.
//
//     node bench/loadgen.mjs        (started by bench.speed with --generator node)
//
// It speaks bench/loadgen.py's protocol, one JSON command per stdin line and one
// JSON reply per stdout line, with the same ops and replies as its SocketLoad:
// connect, mint, prepare, run, hold, release, close, and the mailbox's fill,
// replay and unreplay (bench/mailbox.py). The floor (raw aiomysql) stays
// Python-only, so `floor` is refused. One difference: when the server goes away, an
// operation in flight fails at once here (socket.io-client rejects pending acks), where
// python-socketio waits out the 10 s timeout (so its error usually lands after the window).
//
// Clock: the driver's `start` and `end` are Python time.monotonic() values, which on
// Linux read CLOCK_MONOTONIC; process.hrtime() reads the same clock (libuv's
// uv_hrtime), so every instant here comes from `now()` below.
//
// socket.io-client comes from tests/e2e/node (`npm ci --prefix tests/e2e/node`).
// The open-files limit is inherited from bench.speed, which raises it.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(new URL("../tests/e2e/node/package.json", import.meta.url));
const { io } = require("socket.io-client");

const TIMEOUT = 10.0; // one operation; longer counts as an error
const SET_KEYS = 8; // the set phase cycles each socket through k0..k7
const MAX_TOKENS = 1000; // tokens a socket keeps from the new-handshake phase, to resume with later
const ERROR_PAUSE_MS = 10; // after an error, so that a dead server does not turn a loop into a busy one
const NOTICE = "notice"; // the event demo:notify sends

/** Seconds on CLOCK_MONOTONIC, the clock of Python's time.monotonic(). */
const now = () => Number(process.hrtime.bigint()) / 1e9;

/** CPU seconds (user + system, every thread) this process has used. */
const cpuNow = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, Math.max(0, seconds * 1000)));

function disconnected() {
  return new Error("socket has been disconnected");
}

const describe = (error) => `${error?.name ?? "Error"}: ${error?.message ?? error}`;

function shuffle(items) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** Python's slice items[first::step]. */
function every(items, first, step) {
  const picked = [];
  for (let i = first; i < items.length; i += step) picked.push(items[i]);
  return picked;
}

/** `promise`, or a TimeoutError after `seconds`; the timer is cleared either way so none pile up. */
function within(promise, seconds, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`${what}: no answer in ${seconds} s`);
      error.name = "TimeoutError";
      reject(error);
    }, seconds * 1000);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Run the `jobs` (functions returning promises), at most `limit` at a time; their results in order. */
async function gatherBounded(jobs, limit) {
  const results = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

/** Operations that complete inside [start, end]: their latencies, and the failures (as Tally in loadgen.py). */
class Tally {
  constructor(start, end) {
    this.start = start;
    this.end = end;
    this.latencies = [];
    this.errors = 0;
    this.samples = [];
  }

  /** `outcome`: null (succeeded now), the instant it succeeded (a number), or what went wrong (a string). */
  record(began, outcome) {
    const at = typeof outcome === "number" ? outcome : now();
    if (at < this.start || at > this.end) return;
    if (typeof outcome !== "string") {
      this.latencies.push(at - began);
      return;
    }
    this.errors += 1;
    if (this.samples.length < 5) this.samples.push(outcome);
  }
}

/** One client's loop: `op` again and again until the window ends (failures to `errors`, by default `tally`). */
async function drive(tally, op, errors = tally) {
  while (now() < tally.end) {
    const began = now();
    let outcome;
    try {
      outcome = await op();
    } catch (error) {
      outcome = describe(error).slice(0, 200);
    }
    (typeof outcome === "string" ? errors : tally).record(began, outcome);
    if (typeof outcome === "string") await sleep(ERROR_PAUSE_MS / 1000);
  }
}

/** `op` every `interval` seconds from a random start until the window ends (late ones go at once, not skipped). */
async function paced(tally, op, interval, errors) {
  let next = now() + Math.random() * interval;
  while (next < tally.end) {
    await sleep(next - now());
    next += interval;
    const began = now();
    let outcome;
    try {
      outcome = await op();
    } catch (error) {
      outcome = describe(error).slice(0, 200);
    }
    (typeof outcome === "string" ? errors : tally).record(began, outcome);
  }
}

/** What one writer was told about its writes: the last acked value per key, and unsure ones after it. */
class Writes {
  constructor(token) {
    this.token = token;
    this.acked = {};
    this.unsure = {}; // sent after the last ack, outcome unknown (timeout, error)
    this.acks = 0;
  }

  outcome(key, value, acked) {
    if (acked) {
      this.acked[key] = value;
      delete this.unsure[key];
      this.acks += 1;
    } else {
      (this.unsure[key] ??= []).push(value);
    }
  }

  asJson() {
    return { token: this.token, acked: this.acked, unsure: this.unsure, acks: this.acks };
  }
}

/** One socket.io-client socket over websocket; `gotToken` resolves the pending waiter. */
class Sock {
  constructor(url, index, auth = undefined) {
    this.index = index;
    // forceNew: a Manager (so a websocket) per socket, as the Python clients have. No permessage-deflate:
    // aiohttp does not ask for it either, so the server does the same work whichever generator drives it
    // (and inflating every frame on Node's zlib thread pool would double this process's CPU per operation).
    this.socket = io(url, {
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      autoConnect: false,
      timeout: TIMEOUT * 1000,
      perMessageDeflate: false,
      auth,
    });
    this.socket.on("gotToken", (message) => {
      if (message?.token) this.latest = String(message.token);
      this.settle((waiter) => waiter.resolve(message));
    });
    // A mailbox message: acknowledged at once, then handed to whoever listens (the notify phase, a replay).
    this.socket.on(NOTICE, (payload, meta, ack) => {
      if (typeof ack === "function") ack();
      this.onNotice?.(payload, meta, now());
    });
    this.onNotice = null;
    this.latest = ""; // the token of the last gotToken
    this.user = null; // logged in as, for the notify phase
    // As socket.io-client does for pending acks: a lost connection fails the wait now, not at the timeout.
    this.socket.on("disconnect", () => this.settle((waiter) => waiter.reject(disconnected())));
    this.waiter = null;
    this.token = "";
    this.tokens = []; // from the new-handshake phase
    this.resumeWith = [];
    this.writes = null;
    this.counter = 0;
  }

  /** Hand the pending gotToken waiter, if any, to `how` (resolve or reject it). */
  settle(how) {
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter !== null) how(waiter);
  }

  /** The next gotToken; set up before whatever provokes it, as the message can come at once. */
  expectToken() {
    const message = new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
    return within(message, TIMEOUT, "gotToken");
  }

  connect() {
    const socket = this.socket;
    const connected = new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    });
    socket.connect();
    return within(connected, TIMEOUT, "connect").catch((error) => {
      this.disconnect();
      throw error;
    });
  }

  /** Fail at once on a closed socket, as python-socketio does, rather than buffer until the timeout. */
  ensureConnected() {
    if (!this.socket.connected) {
      const error = new Error("the socket is not connected");
      error.name = "NotConnected";
      throw error;
    }
  }

  async getToken(token) {
    this.ensureConnected();
    const waiter = this.expectToken();
    this.socket.emit("getToken", { token });
    return await waiter;
  }

  async call(event, data) {
    this.ensureConnected();
    return await this.socket.timeout(TIMEOUT * 1000).emitWithAck(event, data);
  }

  /** Close the socket; a gotToken still awaited fails now (so its timer does not outlive a failed connect). */
  disconnect() {
    this.socket.disconnect();
    this.settle((waiter) => waiter.reject(disconnected()));
  }

  /** Disconnect and wait for the websocket's closing handshake, as python-socketio's disconnect() does,
   * so that an auth loop opens its next connection when the Python one would. */
  async close() {
    // engine.transport.ws is the `ws` WebSocket under socket.io-client; without it, do not wait.
    const ws = this.socket.io.engine?.transport?.ws;
    const closed = ws && ws.readyState !== ws.CLOSED ? new Promise((resolve) => ws.once("close", resolve)) : null;
    this.disconnect();
    if (closed) await within(closed, TIMEOUT, "close").catch(() => {});
  }
}

function status(reply, wanted) {
  return reply?.status === wanted ? null : `status ${JSON.stringify(reply?.status)}: ${JSON.stringify(reply?.errors)}`;
}

/** Exactly {ok: true}, as loadgen.py's `reply == {"ok": True}`. */
const isBareOk = (reply) =>
  reply !== null && typeof reply === "object" && reply.ok === true && Object.keys(reply).length === 1;

/** This process's share of the Socket.IO clients of one system (SocketLoad in loadgen.py). */
class SocketLoad {
  constructor(url, clients, firstIndex) {
    this.url = url;
    this.count = clients;
    this.firstIndex = firstIndex;
    this.socks = [];
    this.held = [];
    this.interval = 0; // the paced phase: seconds between one socket's sends
  }

  async connect() {
    this.socks = Array.from({ length: this.count }, (_, i) => new Sock(this.url, this.firstIndex + i));
    await gatherBounded(
      this.socks.map((s) => () => s.connect()),
      50,
    );
  }

  async mint() {
    return String((await this.socks[0].getToken("")).token);
  }

  async prepare(phase, params) {
    if (phase === "resume") await this.prepareResume(params.tokens ?? []);
    else if (phase === "set") await this.prepareSet();
    else if (phase === "shared") await this.prepareShared(String(params.token));
    else if (phase === "notify" || phase === "paced") {
      await this.prepareNotify(Number(params.clients));
      this.interval = Number(params.interval ?? 0);
    }
    return {};
  }

  /** Each socket logged in as its own user (once: a retried phase keeps them), sending to the next socket's. */
  async prepareNotify(clients) {
    const total = clients > 0 ? clients : this.socks.length;
    await Promise.all(
      this.socks.map(async (sock) => {
        sock.target = `u${(sock.index + 1) % total}`;
        if (sock.user !== null) return;
        await sock.getToken("");
        const reply = await sock.call("user:login", { userId: `u${sock.index}` });
        if (reply?.ok !== true) throw new Error(`user:login: ${JSON.stringify(reply)}`);
        sock.user = `u${sock.index}`;
      }),
    );
  }

  /** Each socket resumes its share of the given tokens, else its own from the new phase, else a fresh one. */
  async prepareResume(given) {
    shuffle(given);
    for (const [i, sock] of this.socks.entries()) {
      sock.resumeWith = given.length ? every(given, i, this.socks.length) : [...sock.tokens];
      if (!sock.resumeWith.length) sock.resumeWith = [String((await sock.getToken("")).token)];
      shuffle(sock.resumeWith);
    }
  }

  /** A fresh session per socket, which it then writes to. */
  async prepareSet() {
    const replies = await Promise.all(this.socks.map((s) => s.getToken("")));
    this.socks.forEach((sock, i) => {
      sock.token = String(replies[i].token);
      sock.writes = new Writes(sock.token);
    });
  }

  /** Every socket on the one shared token. */
  async prepareShared(shared) {
    const replies = await Promise.all(this.socks.map((s) => s.getToken(shared)));
    const bad = replies.filter((r) => r?.status !== "resumed");
    if (bad.length) {
      throw new Error(`${bad.length} sockets could not resume the shared token: ${JSON.stringify(bad[0])}`);
    }
    for (const sock of this.socks) {
      sock.token = shared;
      sock.writes = new Writes(shared);
    }
  }

  /** One operation of `phase` on `sock`: resolves null, the instant it succeeded, or what went wrong. */
  op(phase, sock) {
    switch (phase) {
      case "new":
        return async () => {
          const reply = await sock.getToken("");
          if (sock.tokens.length < MAX_TOKENS && reply?.token) sock.tokens.push(String(reply.token));
          return status(reply, "created");
        };
      case "resume":
        return async () => {
          const token = sock.resumeWith[sock.counter % sock.resumeWith.length];
          sock.counter += 1;
          return status(await sock.getToken(token), "resumed");
        };
      case "auth":
        return () => this.authHandshake(sock.index);
      case "set":
      case "shared":
        return this.setOp(phase, sock);
      case "get":
        return async () => {
          const reply = await sock.call("demo:get", { key: "k1" });
          return reply !== null && typeof reply === "object" && reply.ok === true
            ? null
            : `reply ${JSON.stringify(reply)}`;
        };
      default:
        throw new Error(`unknown phase ${JSON.stringify(phase)}`);
    }
  }

  /** Connect with auth {token: ""}, wait for gotToken, disconnect: a fresh socket per operation. */
  async authHandshake(index) {
    const fresh = new Sock(this.url, index, { token: "" });
    const waiter = fresh.expectToken();
    waiter.catch(() => {}); // a failed connect rejects the waiter, which nobody awaits then
    try {
      await fresh.connect();
      const reply = await waiter;
      // The latency ends with gotToken; the disconnect belongs to the loop, not to it.
      const arrived = now();
      return status(reply, "created") ?? arrived;
    } finally {
      await fresh.close();
    }
  }

  setOp(phase, sock) {
    const writes = sock.writes;
    if (writes === null) throw new Error(`${phase}: not prepared`);
    return async () => {
      sock.counter += 1;
      const key = phase === "set" ? `k${sock.counter % SET_KEYS}` : `s${sock.index}`;
      const value = sock.counter;
      let reply;
      try {
        reply = await sock.call("demo:set", { key, value });
      } catch (error) {
        writes.outcome(key, value, false);
        throw error;
      }
      const acked = isBareOk(reply);
      writes.outcome(key, value, acked);
      return acked ? null : `reply ${JSON.stringify(reply)}`;
    };
  }

  /** The notify phases: each socket sends to the next socket's user; the receivers count.
   *
   * `notify`: each socket sends again as soon as its last send was answered (as fast as the server
   * goes); `paced`: each one every `interval` seconds from a random start (a fixed rate well below
   * both systems' capacity, so that the latency is the path's, not a queue's). An operation is a
   * delivery: its latency runs from the sender's call to the receiver's `notice` (same process, or
   * the same clock in another). The send's own round trip (stored, then acked) is kept apart, as
   * `send_latencies`. A message that arrives out of id order, twice, or marked replayed is an error.
   */
  async runNotify(tally, interval) {
    const sends = new Tally(tally.start, tally.end);
    for (const sock of this.socks) {
      let last = 0;
      sock.onNotice = (payload, meta, at) => {
        const id = Number(meta?.id);
        if (!(id > last) || meta?.replayed !== false) {
          tally.record(at, `notice ${JSON.stringify(meta)} after id ${last}`);
        } else {
          tally.record(Number(payload?.text), at);
        }
        last = Math.max(last, id);
      };
    }
    const send = (sock) => async () => {
      const reply = await sock.call("demo:notify", { userId: sock.target, text: String(now()) });
      return reply?.ok === true && reply.queued === 1 ? null : `reply ${JSON.stringify(reply)}`;
    };
    const loop = (sock) =>
      interval > 0 ? paced(sends, send(sock), interval, tally) : drive(sends, send(sock), tally);
    await Promise.all(this.socks.map(loop));
    // Whatever is still on its way is acknowledged, not counted.
    for (const sock of this.socks) sock.onNotice = null;
    return { send_latencies: sends.latencies.map((x) => Math.round(x * 1e7) / 1e7) };
  }

  async run(phase, tally) {
    if (phase === "notify") return await this.runNotify(tally, 0);
    if (phase === "paced") return await this.runNotify(tally, this.interval);
    const ops = this.socks.map((s) => this.op(phase, s)); // an unprepared phase fails before any load
    await Promise.all(ops.map((op) => drive(tally, op)));
    if (phase !== "set" && phase !== "shared") return {};
    return { writes: this.socks.filter((s) => s.writes !== null).map((s) => s.writes.asJson()) };
  }

  /** `count` more idle sockets, each with a session made by the auth handshake. */
  async hold(count, concurrency) {
    const fresh = Array.from({ length: count }, (_, i) => new Sock(this.url, i, { token: "" }));
    const statuses = {};
    const one = async (sock) => {
      const waiter = sock.expectToken();
      waiter.catch(() => {}); // a failed connect rejects the waiter, which nobody awaits then
      await sock.connect();
      const reply = await waiter;
      const key = String(reply?.status);
      statuses[key] = (statuses[key] ?? 0) + 1;
    };
    // Kept even if one fails, so that release and close still disconnect the ones that connected.
    this.held.push(...fresh);
    await gatherBounded(
      fresh.map((s) => () => one(s)),
      concurrency,
    );
    return { held: this.held.length, statuses };
  }

  release() {
    for (const sock of this.held) sock.disconnect();
    this.held = [];
  }

  close() {
    this.release();
    for (const sock of this.socks) sock.disconnect();
  }
}

/** A session of `user` with `count` messages waiting and no socket (bench/mailbox.py's setup): its token.
 *
 * One socket logs in as `user` (the session's token rotates: the new one is kept) and goes; another
 * sends `count` demo:notify to `user`, `concurrency` at a time, each queued in that one session.
 */
async function fill(url, user, count, concurrency) {
  const receiver = new Sock(url, 0, { token: "" });
  const made = receiver.expectToken();
  made.catch(() => {}); // a failed connect rejects the waiter, which nobody awaits then
  let token;
  try {
    await receiver.connect();
    const first = String((await made).token);
    const reply = await receiver.call("user:login", { userId: user });
    if (reply?.ok !== true || receiver.latest === first) throw new Error(`user:login: ${JSON.stringify(reply)}`);
    token = receiver.latest;
  } finally {
    await receiver.close();
  }
  const sender = new Sock(url, 0);
  try {
    await sender.connect();
    const began = now();
    const replies = await gatherBounded(
      Array.from({ length: count }, (_, i) => () => sender.call("demo:notify", { userId: user, text: `m${i}` })),
      concurrency,
    );
    const bad = replies.filter((r) => !(r?.ok === true && r.queued === 1));
    if (bad.length) throw new Error(`${bad.length} of ${count} demo:notify failed: ${JSON.stringify(bad[0])}`);
    return { token, seconds: now() - began };
  } finally {
    sender.disconnect();
  }
}

/** Connect with auth {token} and take the replay: instants (from the connect call) and what came, in order.
 *
 * The socket stays connected (and keeps acknowledging) until `unreplay`, so that the driver can
 * watch the store empty the mailbox first.
 */
async function replay(state, url, token, count) {
  const sock = new Sock(url, 0, { token });
  state.replaying = sock;
  state.replayed = [];
  const ids = state.replayed;
  let replayedAll = true;
  let first = null;
  let done;
  const all = new Promise((resolve) => {
    done = resolve;
  });
  sock.onNotice = (payload, meta, at) => {
    ids.push(Number(meta?.id));
    if (meta?.replayed !== true) replayedAll = false;
    first ??= at;
    if (ids.length === count) done(at);
  };
  const waiter = sock.expectToken();
  waiter.catch(() => {}); // a failed connect rejects the waiter, which nobody awaits then
  const began = now();
  await sock.connect();
  const connected = now();
  const reply = await waiter;
  const gotToken = now();
  if (reply?.status !== "resumed") throw new Error(`replay: gotToken ${JSON.stringify(reply)}`);
  const last = await within(all, 120, `replay of ${count} (${ids.length} came)`);
  return {
    began,
    connected_s: connected - began,
    token_s: gotToken - began,
    first_s: first - began,
    last_s: last - began,
    received: ids.length,
    in_order: ids.every((id, i) => i === 0 || id > ids[i - 1]),
    replayed_all: replayedAll,
    first_id: ids[0],
    last_id: ids.at(-1),
  };
}

/** End the replay's socket; how many messages it got in all (more than asked: some came twice). */
async function unreplay(state) {
  const received = state.replayed?.length ?? 0;
  await state.replaying?.close();
  state.replaying = null;
  state.replayed = null;
  return { received };
}

/** Drive `phase` until `end`; the reply of a `run` command, CPU measured over [start, end] only. */
async function timed(load, phase, start, end) {
  const tally = new Tally(start, end);
  const sampler = (async () => {
    await sleep(start - now());
    const before = cpuNow();
    await sleep(end - now());
    return cpuNow() - before;
  })();
  const extra = await load.run(phase, tally);
  const cpu = await sampler;
  return {
    latencies: tally.latencies.map((x) => Math.round(x * 1e7) / 1e7),
    errors: tally.errors,
    error_samples: tally.samples,
    cpu,
    ...extra,
  };
}

/** One command; its reply (without `ok`). `state.load` is this process's SocketLoad, once connected. */
async function handle(state, command) {
  const op = command.op;
  switch (op) {
    case "connect":
      state.load = new SocketLoad(command.url, command.clients, command.first_index);
      await state.load.connect();
      return {};
    case "floor":
      throw new Error("floor: the Node generator drives Socket.IO only; bench.speed sends floor to Python");
    case "hold":
      state.load ??= new SocketLoad(command.url, 0, 0);
      return await state.load.hold(command.count, command.concurrency ?? 50);
    case "release":
      state.load?.release();
      return {};
    case "fill":
      return await fill(command.url, String(command.user), command.count, command.concurrency ?? 20);
    case "replay":
      return await replay(state, command.url, String(command.token), command.count);
    case "unreplay":
      return await unreplay(state);
    case "close":
      state.load?.close();
      await unreplay(state);
      return {};
  }
  const load = state.load;
  if (!load) throw new Error(`${op}: connect first`);
  switch (op) {
    case "mint":
      return { token: await load.mint() };
    case "prepare":
      return await load.prepare(command.phase, command.params ?? {});
    case "run":
      return await timed(load, command.phase, command.start, command.end);
    default:
      throw new Error(`unknown op ${JSON.stringify(op)}`);
  }
}

function reply(message) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(message) + "\n", resolve));
}

async function serve() {
  const state = { load: null, replaying: null, replayed: null };
  // Commands one at a time, in order: the driver waits for each reply before it depends on it.
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    let answer;
    let command = {};
    try {
      command = JSON.parse(line);
      answer = { ok: true, ...(await handle(state, command)) };
    } catch (error) {
      answer = { ok: false, error: describe(error).slice(0, 500) };
    }
    await reply(answer);
    if (command.op === "close") break;
  }
  // Stdin closed or `close` answered: sockets may still be in their close handshakes; nothing is owed to them.
  process.exit(0);
}

await serve();
