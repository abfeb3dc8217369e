#!/usr/bin/env node
// Runs the old npm package's client snippet (old_client_snippet.js), unchanged, followed by
// NOTICE_LINES, the few lines an application adds to take messages that waited for its
// session (SPEC §8), in the same `vm` context as run_snippet.js:
//
//   io            connects with socket.io-client to SERVER_URL, whatever URL the snippet passes
//   localStorage  persisted to STORAGE_FILE (JSON), so a second run resumes the stored token
//   console.log   one JSON line per call: a gotToken message as it is, a notice as
//                 ["notice", payload, meta]
//
// Usage: node run_notice_snippet.js SERVER_URL STORAGE_FILE [STEP ...]
//
//   STEP is run, in order, once the first gotToken has been logged:
//     login:<userId>   emit user:login {userId} and print {"ack": <ack>}; the rotated token's
//                      gotToken comes before the ack, so the snippet has stored it by then
//     notices:<n>      wait until n notices in all have been logged (and so acknowledged)
//
// Environment: SNIPPET_TIMEOUT_MS (default 10000), the wait for gotToken and for each step.
//
// Exit codes: 0 done; 1 usage error or the snippet threw; 2 no gotToken in time (or the
// connection failed); 3 a step did not complete in time.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const { io: connect } = require("socket.io-client");

const SNIPPET_PATH = path.join(__dirname, "old_client_snippet.js");

// What an application adds to the snippet: show each message, then acknowledge it.
const NOTICE_LINES = `
socket.on("notice", function(payload, meta, ack){
console.log("notice", payload, meta);
ack();
});
`;

function fail(code, text) {
  process.stderr.write(`run_notice_snippet: ${text}\n`);
  process.exitCode = code;
}

function printLine(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

class FileStorage {
  constructor(file) {
    this.file = file;
    this.items = {};
    if (fs.existsSync(file)) {
      const text = fs.readFileSync(file, "utf8");
      if (text.trim() !== "") {
        for (const [key, value] of Object.entries(JSON.parse(text))) {
          this.items[key] = String(value);
        }
      }
    }
  }

  getItem(key) {
    key = String(key);
    return Object.prototype.hasOwnProperty.call(this.items, key) ? this.items[key] : null;
  }

  setItem(key, value) {
    this.items[String(key)] = String(value);
    fs.writeFileSync(this.file, JSON.stringify(this.items, null, 2) + "\n");
  }

  removeItem(key) {
    delete this.items[String(key)];
    fs.writeFileSync(this.file, JSON.stringify(this.items, null, 2) + "\n");
  }
}

function parseStep(step) {
  let match = /^login:(.+)$/s.exec(step);
  if (match) return { kind: "login", userId: match[1] };
  match = /^notices:(\d+)$/.exec(step);
  if (match) return { kind: "notices", count: Number(match[1]) };
  throw new Error(`unknown step ${JSON.stringify(step)} (expected login:<userId> or notices:<n>)`);
}

function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main(argv) {
  const [serverUrl, storageFile, ...stepArgs] = argv;
  if (!serverUrl || !storageFile) {
    fail(1, "usage: node run_notice_snippet.js SERVER_URL STORAGE_FILE [login:<userId> | notices:<n>] ...");
    return;
  }
  const timeoutMs = Number(process.env.SNIPPET_TIMEOUT_MS || 10000);
  let steps;
  let localStorage;
  try {
    steps = stepArgs.map(parseStep);
    localStorage = new FileStorage(storageFile);
  } catch (err) {
    fail(1, err.message);
    return;
  }

  let socket = null;
  let gotFirst;
  let connectFailed;
  const firstToken = new Promise((resolve, reject) => {
    gotFirst = resolve;
    connectFailed = reject;
  });
  let noticesLogged = 0;
  const noticeWaiters = [];

  function io(_ignoredUrl) {
    if (socket !== null) throw new Error("the snippet called io() twice");
    socket = connect(serverUrl, { reconnection: false, timeout: timeoutMs, transports: ["websocket"] });
    socket.on("connect_error", (err) => connectFailed(new Error(`could not connect to ${serverUrl}: ${err.message}`)));
    return socket;
  }

  const capturedConsole = {
    log(...args) {
      if (args.length > 1 && args[0] === "notice") {
        printLine(args);
        noticesLogged += 1;
        // Checked after the handler's ack() has run (a resolved promise continues later).
        for (const waiter of noticeWaiters) waiter();
      } else {
        printLine(args.length === 1 ? args[0] : args);
        gotFirst();
      }
    },
  };

  const context = vm.createContext({ io, localStorage, console: capturedConsole });
  try {
    vm.runInContext(fs.readFileSync(SNIPPET_PATH, "utf8"), context, { filename: SNIPPET_PATH });
    vm.runInContext(NOTICE_LINES, context, { filename: "notice_lines.js" });
  } catch (err) {
    fail(1, `the snippet threw: ${err && err.stack ? err.stack : err}`);
    if (socket !== null) socket.disconnect();
    return;
  }

  try {
    await within(timeoutMs, firstToken, "gotToken");
  } catch (err) {
    fail(2, err.message);
    socket.disconnect();
    return;
  }

  for (const [index, step] of steps.entries()) {
    try {
      if (step.kind === "login") {
        const ack = await socket.timeout(timeoutMs).emitWithAck("user:login", { userId: step.userId });
        printLine({ ack });
      } else {
        const reached = new Promise((resolve) => {
          const check = () => noticesLogged >= step.count && resolve();
          noticeWaiters.push(check);
          check();
        });
        await within(timeoutMs, reached, `${step.count} notices`);
      }
    } catch (err) {
      fail(3, `step ${JSON.stringify(stepArgs[index])}: ${err.message}`);
      socket.disconnect();
      return;
    }
  }
  // The acks went out before this, on the same connection: the server has them first.
  socket.disconnect();
}

main(process.argv.slice(2)).then(
  () => process.stdout.write("", () => process.exit(process.exitCode ?? 0)),
  (err) => {
    process.stderr.write(`run_notice_snippet: unexpected failure: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
