// The demo page. The token handling is the old socket.io-mysql-session client snippet's:
// the token lives in localStorage under "token", is sent with getToken on every connection,
// and a gotToken that carries a token replaces it. One addition, for several tabs of one
// browser (they share localStorage): see followOtherTabs. The rest shows what the session holds,
// and the notices its mailbox delivers (showNotice: acknowledged once shown).
(function () {
  "use strict";

  // The Socket.IO client is not part of this repository: the server serves it from the npm
  // package when one is installed; otherwise it comes from the Socket.IO CDN.
  var LOCAL_CLIENT = "/vendor/socket.io.min.js";
  var CDN_CLIENT = {
    src: "https://cdn.socket.io/4.8.3/socket.io.min.js",
    integrity: "sha384-kzavj5fiMwLKzzD1f8S7TeoVIEi7uKHvbTA3ueZkrzYq75pNQUiUi6Dy98Q3fxb0",
  };

  var STATUS_TEXT = {
    created: "a new session was created for this browser",
    resumed: "the stored token was accepted: same session as before",
    rotated: "logged in: the session moved to a new token, the old one is dead",
    expired: "the stored session had expired; this is a new one",
    not_found: "the stored session no longer exists (ended elsewhere?); this is a new one",
    invalid: "the stored token was malformed; this is a new one",
    unavailable: "the session store cannot be reached; retrying",
    rate_limited: "too many handshakes from this connection; retrying later",
  };

  var $ = function (id) { return document.getElementById(id); };
  var socket = null;
  var counted = false; // one visit per page load
  var queue = Promise.resolve(); // view refreshes run one after another
  var retryDelay = 2000;
  var retryTimer = null;
  var held = ""; // the token of the session this tab is in
  var FOLLOW_DELAY = 500; // ms for another tab's localStorage write to reach this one
  var seen = new Set(); // ids of the notices shown in this session (ids count per session)
  var MAX_NOTICES = 20;

  function loadScript(src, integrity) {
    return new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = src;
      if (integrity) {
        script.integrity = integrity;
        script.crossOrigin = "anonymous";
      }
      script.onload = resolve;
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }

  function loadClient() {
    return loadScript(LOCAL_CLIENT).then(
      function () { return "served by this server"; },
      function () {
        return loadScript(CDN_CLIENT.src, CDN_CLIENT.integrity).then(function () { return "cdn.socket.io"; });
      }
    );
  }

  // An event with an acknowledgement, as a promise; a lost or late reply becomes an error reply.
  function call(event, payload) {
    return new Promise(function (resolve) {
      socket.timeout(5000).emit(event, payload, function (err, reply) {
        resolve(err ? { ok: false, error: "Timeout" } : reply);
      });
    });
  }

  function show(element, visible) { element.hidden = !visible; }

  function notice(text, kind) {
    var box = $("notice");
    box.textContent = text;
    box.className = "notice" + (kind ? " notice-" + kind : "");
    show(box, Boolean(text));
  }

  function shortToken(token) {
    return token ? token.slice(0, 6) + "…" + token.slice(-4) : "–";
  }

  function when(seconds) {
    var date = new Date(seconds * 1000);
    var today = date.toDateString() === new Date().toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function setConnection(online) {
    var pill = $("connection");
    pill.textContent = online ? "connected" : "offline";
    pill.className = "pill " + (online ? "pill-on" : "pill-off");
  }

  function logToken(message) {
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    var badge = document.createElement("span");
    badge.className = "badge badge-" + message.status;
    badge.textContent = message.status;
    var token = document.createElement("code");
    token.textContent = shortToken(message.token);
    item.append(time, badge, token);
    var list = $("events");
    list.prepend(item);
    while (list.children.length > 6) { list.lastElementChild.remove(); }
  }

  function showToken(message) {
    var status = $("status");
    status.textContent = message.status;
    status.className = "badge badge-" + message.status;
    $("status-text").textContent = STATUS_TEXT[message.status] || message.errors || "";
    $("token").textContent = shortToken(localStorage.getItem("token") || "");
    $("token").title = "localStorage.token";
    $("expires").textContent = message.expires ? when(message.expires) : "–";
  }

  function askForToken() {
    socket.emit("getToken", { token: localStorage.getItem("token") || "" });
  }

  function adopt(message) {
    if (message.token != "") {
      // Another session (not this one under a new token): its notices are numbered from 1.
      if (message.token !== held && message.status !== "rotated") { seen.clear(); }
      localStorage.setItem("token", message.token);
      held = message.token;
    }
    showToken(message);
    if (message.token == "") {
      retryLater();
      return;
    }
    retryDelay = 2000;
    refresh();
  }

  // Tabs of one browser share the token. When this tab's session ends because another tab
  // logged in (the old token dies) or out, the server hands this tab a fresh session; storing
  // its token would overwrite the other tab's new one. So, when the stored token is no longer
  // the one that ended, resume that instead; and follow the token another tab stores.
  function followOtherTabs(message) {
    var ended = held;
    setTimeout(function () {
      if (held !== ended) {
        return; // this tab has moved on meanwhile (it followed another tab's token)
      }
      var stored = localStorage.getItem("token") || "";
      if (stored && stored !== ended && stored !== message.token) {
        askForToken();
      } else {
        adopt(message);
      }
    }, FOLLOW_DELAY);
  }

  function onStorage(event) {
    // Only the latest value: tabs that stored tokens at the same moment agree on the last one.
    if (event.key === "token" && event.newValue && event.newValue !== held &&
        event.newValue === localStorage.getItem("token") && socket.connected) {
      askForToken();
    }
  }

  // Store down or too many handshakes: ask again later, backing off (the server counts handshakes).
  function retryLater() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(function () { if (socket.connected) { askForToken(); } }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  function showVisits() {
    return call("demo:get", { key: "visits" }).then(function (reply) {
      var visits = reply.ok && typeof reply.value === "number" ? reply.value : 0;
      if (counted || !reply.ok) { return visits; }
      counted = true;
      return call("demo:set", { key: "visits", value: visits + 1 }).then(function (ack) {
        if (ack.ok) { return visits + 1; }
        counted = false;
        return visits;
      });
    }).then(function (visits) { $("visits").textContent = String(visits); });
  }

  // A notice from the session's mailbox: delivered at least once, so one whose acknowledgement was
  // lost comes again on the next connection, under the same id; it is acknowledged, not shown twice.
  // meta.replayed: it waited in the mailbox (sent while no page held the session), not live.
  function showNotice(payload, meta) {
    if (seen.has(meta.id)) { return; }
    seen.add(meta.id);
    var item = document.createElement("li");
    item.dataset.id = String(meta.id);
    var time = document.createElement("time");
    time.dateTime = new Date(meta.sentAt).toISOString();
    time.textContent = when(meta.sentAt / 1000);
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = payload && typeof payload.text === "string" ? payload.text : JSON.stringify(payload);
    var id = document.createElement("code");
    id.textContent = "#" + meta.id;
    item.append(time, text, id);
    if (meta.replayed === true) {
      var badge = document.createElement("span");
      badge.className = "badge badge-waited";
      badge.textContent = "waited";
      badge.title = "sent while no page held this session; delivered on connection";
      item.append(badge);
    }
    var list = $("notices");
    list.prepend(item);
    while (list.children.length > MAX_NOTICES) { list.lastElementChild.remove(); }
    show($("notices-empty"), false);
  }

  function renderSessions(sessions) {
    var rows = sessions.map(function (s) {
      var row = document.createElement("tr");
      if (s.current) { row.className = "current"; }
      var id = document.createElement("td");
      var code = document.createElement("code");
      code.textContent = s.id.slice(0, 10);
      id.append(code);
      if (s.current) {
        var tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = "this browser";
        id.append(" ", tag);
      }
      row.append(id);
      [s.created, s.lastSeen, s.expires].forEach(function (seconds) {
        var cell = document.createElement("td");
        cell.textContent = when(seconds);
        row.append(cell);
      });
      return row;
    });
    $("sessions").replaceChildren.apply($("sessions"), rows);
    $("end-others").disabled = sessions.length < 2;
  }

  function showSessions() {
    return call("user:sessions", {}).then(function (reply) {
      if (reply.ok) { renderSessions(reply.sessions); }
    });
  }

  function showAccount() {
    return call("demo:get", { key: "userId" }).then(function (reply) {
      var user = reply.ok && reply.value !== "" ? String(reply.value) : "";
      $("user").textContent = user;
      if (user && !$("notify-user").value) { $("notify-user").value = user; }
      show($("login-form"), !user);
      show($("logged-in"), Boolean(user));
      show($("sessions-card"), Boolean(user));
      return user ? showSessions() : undefined;
    });
  }

  function refresh() {
    queue = queue.then(showVisits).then(showAccount).catch(function (error) {
      notice("Could not read the session: " + error, "error");
    });
    return queue;
  }

  function checkHealth() {
    fetch("/healthz", { cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (body) { $("health").textContent = body.store + " (" + body.status + ")"; })
      .catch(function () { $("health").textContent = "no answer"; });
  }

  function bindControls() {
    $("login-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var userId = $("user-id").value.trim();
      if (!userId) { return; }
      notice("");
      // The server answers with gotToken (status "rotated"), which refreshes the view.
      call("user:login", { userId: userId }).then(function (ack) {
        if (ack.ok) { $("user-id").value = ""; } else { notice("Login refused: " + ack.error, "error"); }
      });
    });
    $("logout").addEventListener("click", function () {
      notice("");
      // The server ends the session and pushes the fresh one's token (status "created").
      call("user:logout", {}).then(function (ack) {
        if (!ack.ok) { notice("Logout failed: " + ack.error, "error"); }
      });
    });
    $("notify-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var userId = $("notify-user").value.trim();
      var text = $("notify-text").value;
      if (!userId || !text) { return; }
      $("notify-result").textContent = "sending…";
      call("demo:notify", { userId: userId, text: text }).then(function (ack) {
        if (ack.ok) {
          $("notify-text").value = "";
          $("notify-result").textContent =
            "Queued for " + ack.queued + " session" + (ack.queued === 1 ? "" : "s") + ".";
        } else {
          $("notify-result").textContent = "Not sent: " + ack.error;
        }
      });
    });
    $("refresh-sessions").addEventListener("click", function () {
      queue = queue.then(showSessions);
    });
    $("end-others").addEventListener("click", function () {
      call("user:endOtherSessions", {}).then(function (ack) {
        if (ack.ok) {
          notice("Ended " + ack.ended + " other session" + (ack.ended === 1 ? "" : "s") + ".", "ok");
        } else {
          notice("Could not end the other sessions: " + ack.error, "error");
        }
        queue = queue.then(showSessions);
      });
    });
  }

  function main(source) {
    $("client-source").textContent = source;
    socket = io();
    // On every (re)connection: a new connection has no session until it asks.
    socket.on("connect", function () {
      setConnection(true);
      askForToken();
    });
    socket.on("disconnect", function () { setConnection(false); });
    // Answers to getToken, and pushes: login (rotated), logout (created), ended elsewhere (not_found).
    socket.on("gotToken", function (message) {
      logToken(message);
      var ended = message.status === "not_found" || message.status === "expired";
      if (ended && held) {
        followOtherTabs(message);
      } else {
        adopt(message);
      }
    });
    // Messages from the session's mailbox come as event(payload, meta, ack); they come again on
    // every connection until acknowledged, so acknowledge each one once it is shown.
    socket.on("notice", function (payload, meta, ack) {
      showNotice(payload, meta);
      ack();
    });
    window.addEventListener("storage", onStorage);
    bindControls();
    checkHealth();
  }

  loadClient().then(main, function () {
    $("client-source").textContent = "not available";
    setConnection(false);
    notice("The Socket.IO client could not be loaded (no local copy and no CDN).", "error");
  });
})();
