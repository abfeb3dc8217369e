#!/usr/bin/env node
// Runs the old npm package's client snippet (old_client_snippet.js), unchanged,
// against a real server, in a `vm` context that stands in for a browser:
//
//   io            connects with socket.io-client to SERVER_URL, whatever URL the
//                 snippet passes ("http://your.server.here")
//   localStorage  getItem / setItem / removeItem, persisted to STORAGE_FILE (JSON)
//                 so that a second run with the same file resumes the stored token
//   console.log   each logged value (the gotToken message) goes to stdout as one JSON line
//
// Usage: node run_snippet.js SERVER_URL STORAGE_FILE [STEP ...]
//
//   STEP is run, in order, once the first gotToken has been logged:
//     set:<key>:<json>   emit demo:set {key, value: <json>} and print {"ack": <ack>}
//     get:<key>          emit demo:get {key} and print {"ack": <ack>}
//
// Environment:
//   SNIPPET_TRANSPORT=websocket   connect over websocket only (default: polling, then upgrade)
//   SNIPPET_TIMEOUT_MS            wait for the first gotToken and for each ack (default 10000)
//
// Exit codes: 0 done; 1 usage error or the snippet threw; 2 no gotToken in time
// (or the connection failed); 3 a step got no ack in time.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const { io: connect } = require("socket.io-client");

const SNIPPET_PATH = path.join(__dirname, "old_client_snippet.js");

function fail(code, text) {
  process.stderr.write(`run_snippet: ${text}\n`);
  process.exitCode = code;
}

function printLine(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

// A Web Storage look-alike backed by a JSON file (an object of string values).
class FileStorage {
  constructor(file) {
    this.file = file;
    this.items = {};
    if (fs.existsSync(file)) {
      const text = fs.readFileSync(file, "utf8");
      if (text.trim() !== "") {
        const parsed = JSON.parse(text);
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          throw new Error(`${file} does not hold a JSON object`);
        }
        for (const [key, value] of Object.entries(parsed)) {
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
    this.save();
  }

  removeItem(key) {
    delete this.items[String(key)];
    this.save();
  }

  save() {
    fs.writeFileSync(this.file, JSON.stringify(this.items, null, 2) + "\n");
  }
}

function parseStep(step) {
  let match = /^set:([^:]+):(.*)$/s.exec(step);
  if (match) {
    let value;
    try {
      value = JSON.parse(match[2]);
    } catch (err) {
      throw new Error(`step ${JSON.stringify(step)}: the value is not JSON (${err.message})`);
    }
    return { event: "demo:set", payload: { key: match[1], value } };
  }
  match = /^get:(.+)$/s.exec(step);
  if (match) {
    return { event: "demo:get", payload: { key: match[1] } };
  }
  throw new Error(`unknown step ${JSON.stringify(step)} (expected set:<key>:<json> or get:<key>)`);
}

async function main(argv) {
  const [serverUrl, storageFile, ...stepArgs] = argv;
  if (!serverUrl || !storageFile) {
    fail(1, "usage: node run_snippet.js SERVER_URL STORAGE_FILE [set:<key>:<json> | get:<key>] ...");
    return;
  }
  const timeoutMs = Number(process.env.SNIPPET_TIMEOUT_MS || 10000);
  const websocketOnly = process.env.SNIPPET_TRANSPORT === "websocket";

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
  let settle;
  const firstMessage = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });

  function io(_ignoredUrl) {
    if (socket !== null) {
      throw new Error("the snippet called io() twice");
    }
    socket = connect(serverUrl, {
      reconnection: false,
      timeout: timeoutMs,
      ...(websocketOnly ? { transports: ["websocket"] } : {}),
    });
    socket.on("connect_error", (err) => {
      settle.reject(new Error(`could not connect to ${serverUrl}: ${err.message}`));
    });
    return socket;
  }

  const capturedConsole = {
    log(...args) {
      printLine(args.length === 1 ? args[0] : args);
      // Resolved promises continue after the snippet's handler has returned,
      // so by then it has also stored the token.
      settle.resolve();
    },
  };

  const context = vm.createContext({ io, localStorage, console: capturedConsole });
  const source = fs.readFileSync(SNIPPET_PATH, "utf8");
  try {
    vm.runInContext(source, context, { filename: SNIPPET_PATH });
  } catch (err) {
    fail(1, `the snippet threw: ${err && err.stack ? err.stack : err}`);
    if (socket !== null) socket.disconnect();
    return;
  }
  if (socket === null) {
    fail(1, "the snippet never called io()");
    return;
  }

  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no gotToken from ${serverUrl} within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([firstMessage, timeout]);
  } catch (err) {
    fail(2, err.message);
    socket.disconnect();
    return;
  } finally {
    clearTimeout(timer);
  }

  for (const [index, step] of steps.entries()) {
    try {
      const ack = await socket.timeout(timeoutMs).emitWithAck(step.event, step.payload);
      printLine({ ack });
    } catch (err) {
      fail(3, `step ${JSON.stringify(stepArgs[index])}: no ack within ${timeoutMs} ms (${err.message})`);
      socket.disconnect();
      return;
    }
  }

  socket.disconnect();
}

main(process.argv.slice(2)).then(
  () => {
    // Everything written to stdout is flushed before the process ends.
    process.stdout.write("", () => process.exit(process.exitCode ?? 0));
  },
  (err) => {
    process.stderr.write(`run_snippet: unexpected failure: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
