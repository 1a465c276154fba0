/* Buzzi web chat widget: <script src=".../widget.js" data-company="c_..." data-agent="a_..."
 * [data-open="true"] [data-title] [data-api-base]>. No dependencies, no build step. It renders in an
 * open Shadow DOM root so page CSS cannot clash; all message text goes in through textContent. */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector("script[data-company][data-agent][src*='widget.js']");
  if (!script || window.__buzziWidgetLoaded) return;
  window.__buzziWidgetLoaded = true;

  function attr(name) { return script.getAttribute("data-" + name); }
  var cfg = {
    company: attr("company") || "",
    agent: attr("agent") || "",
    title: attr("title") || "Chat with us",
    open: attr("open") === "true",
    // The API lives next to the script (cross-origin embeds work without configuration).
    api: (attr("api-base") || new URL(script.src, location.href).href.replace(/\/widget\.js(\?.*)?$/, ""))
      .replace(/\/+$/, "")
  };
  var KEY = "buzzi:" + cfg.company + ":" + cfg.agent;
  // Storage can be blocked (privacy modes): then the chat still works, it just forgets on reload.
  function stored(method, k, v) { try { return localStorage[method](KEY + ":" + k, v); } catch (e) { return null; } }
  var store = {
    get: function (k) { return stored("getItem", k); },
    set: function (k, v) { stored("setItem", k, v); },
    del: function (k) { stored("removeItem", k); }
  };

  var CSS = [
    ":host{all:initial;font:14px/1.4 system-ui,sans-serif;color:#1d2330}",
    "*{box-sizing:border-box}",
    ".bubble{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;",
    "background:#2f5bea;cursor:pointer;box-shadow:0 4px 14px #0004;z-index:99999}",
    ".bubble svg{width:26px;height:26px;fill:#fff}",
    ":focus-visible{outline:3px solid #f5a623;outline-offset:2px}",
    ".panel{position:fixed;right:20px;bottom:88px;width:360px;max-width:calc(100vw - 40px);height:520px;",
    "max-height:calc(100vh - 110px);display:flex;flex-direction:column;background:#fff;border-radius:12px;",
    "box-shadow:0 8px 30px #0004;overflow:hidden;z-index:99999}",
    ".panel[hidden]{display:none}",
    "header{display:flex;align-items:center;justify-content:space-between;padding:12px 14px;",
    "background:#2f5bea;color:#fff}",
    "header h2{margin:0;font-size:15px;font-weight:600}",
    ".close{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}",
    ".messages{flex:1;overflow-y:auto;margin:0;padding:12px;list-style:none;background:#f6f7fb}",
    ".msg{max-width:85%;margin:6px 0;padding:8px 11px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}",
    ".msg.user{margin-left:auto;background:#2f5bea;color:#fff}",
    ".msg.assistant{background:#fff;border:1px solid #e1e4ec}",
    ".msg.human{background:#e9f7ef;border:1px solid #9fd8b5}",
    ".msg.failed{opacity:.6;border:1px dashed #c0392b}",
    ".who{display:block;font-size:11px;font-weight:600;color:#1e7b45;margin-bottom:2px}",
    ".system{text-align:center;color:#5b6275;font-size:12px;margin:8px 0}",
    ".system.error{color:#b03a2e}",
    ".status{min-height:20px;padding:2px 14px;font-size:12px;color:#5b6275;background:#f6f7fb}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e1e4ec}",
    "textarea{flex:1;resize:none;height:40px;padding:9px;border:1px solid #c9cedb;border-radius:8px;font:inherit}",
    "form button{padding:0 14px;border:0;border-radius:8px;background:#2f5bea;color:#fff;font:inherit;cursor:pointer}",
    "form button:disabled{opacity:.5}"
  ].join("");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text != null) node.textContent = text;
    return node;
  }

  // ---- DOM
  var host = el("div", { id: "buzzi-chat-widget" });
  var root = host.attachShadow({ mode: "open" });
  root.appendChild(el("style", {}, CSS));
  var bubble = el("button", { type: "button", "class": "bubble", "aria-label": "Open chat",
    "aria-expanded": "false", "aria-controls": "buzzi-panel" });
  // A drawn icon: emoji fonts are not everywhere.
  var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.appendChild(document.createElementNS(svg.namespaceURI, "path"))
    .setAttribute("d", "M4 4h16v12H8l-4 4z");
  bubble.appendChild(svg);
  var panel = el("section", { id: "buzzi-panel", "class": "panel", role: "dialog", "aria-label": cfg.title });
  panel.hidden = true;
  var header = el("header");
  var closeBtn = el("button", { type: "button", "class": "close", "aria-label": "Close chat" }, "\u00D7");
  header.appendChild(el("h2", {}, cfg.title));
  header.appendChild(closeBtn);
  var list = el("ol", { "class": "messages", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  var status = el("div", { "class": "status", role: "status", "aria-live": "polite" });
  var form = el("form", { "aria-label": "Send a message" });
  var input = el("textarea", { name: "message", rows: "1", maxlength: "4000", placeholder: "Type your message\u2026",
    "aria-label": "Your message" });
  var sendBtn = el("button", { type: "submit", "aria-label": "Send message" }, "Send");
  form.appendChild(input);
  form.appendChild(sendBtn);
  [header, list, status, form].forEach(function (n) { panel.appendChild(n); });
  root.appendChild(panel);
  root.appendChild(bubble);

  // ---- rendering
  var rendered = {};   // message id -> its <li>, so a replayed `complete` never renders twice
  var partial = null;  // the assistant bubble that deltas are streaming into

  function scrollDown() { list.scrollTop = list.scrollHeight; }
  function setStatus(text) { status.textContent = text || ""; }

  function addMessage(role, content, id) {
    if (id && rendered[id]) { setBody(rendered[id], content); return rendered[id]; }
    var li = el("li", { "class": "msg " + role });
    if (role === "human") li.appendChild(el("span", { "class": "who" }, "Support team"));
    li.appendChild(el("span", { "class": "body" }));
    setBody(li, content);
    if (id) { li.setAttribute("data-id", id); rendered[id] = li; }
    list.appendChild(li);
    scrollDown();
    return li;
  }
  function setBody(li, text) { li.querySelector(".body").textContent = text; }

  function systemLine(text, isError) {
    list.appendChild(el("li", { "class": "system" + (isError ? " error" : "") }, text));
    scrollDown();
  }

  function dropPartial() {
    if (partial) partial.remove();
    partial = null;
  }

  // ---- HTTP
  function api(method, path, body) {
    return fetch(cfg.api + path, {
      method: method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        return { status: resp.status, data: data, headers: resp.headers };
      });
    });
  }

  // ---- session and stream
  var sessionId = null, source = null, starting = null, wait = 1000;

  function chat(path) { return "/api/chat/" + encodeURIComponent(sessionId) + path; }

  function start() {
    if (!starting) {
      starting = resume().then(function (ok) { return ok || createSession(); });
      starting.catch(function () { starting = null; });
    }
    return starting;
  }

  function resume() {
    var sid = store.get("session");
    if (!sid) return Promise.resolve(false);
    sessionId = sid;
    return api("GET", chat("/messages")).then(function (r) {
      if (r.status === 401) { store.del("session"); return false; }
      if (r.status !== 200) throw new Error(r.status);
      (r.data.messages || []).forEach(function (m) {
        addMessage(m.role === "user" || m.role === "human" ? m.role : "assistant", m.content, m.id);
      });
      var last = (r.data.messages || []).slice(-1)[0];
      if (last && /^(pending|processing)$/.test(last.status)) setStatus("The assistant is answering\u2026");
      // Resume from the older of "last seen here" and "end of this history": nothing is missed, and
      // a replayed answer that the history already shows is deduplicated by its message id.
      var seen = store.get("lastEventId"), end = r.data.lastEventId || "0";
      openStream(seen && Number(seen) < Number(end) ? seen : end);
      return true;
    });
  }

  function createSession() {
    return api("POST", "/api/chat/sessions", { companyId: cfg.company, agentId: cfg.agent }).then(function (r) {
      if (r.status !== 201) {
        systemLine(r.status === 404 ? "This chat is not available." : "The chat could not start, sorry.", true);
        throw new Error(r.status);
      }
      sessionId = r.data.sessionId;
      store.set("session", sessionId);
      store.del("lastEventId");
      // "0" = from the beginning of this new session: nothing can slip by before the stream opens.
      openStream("0");
      return true;
    });
  }

  function openStream(lastEventId) {
    if (source) source.close();
    // The server ends the stream after each answer; EventSource reconnects by itself with Last-Event-ID.
    source = new EventSource(cfg.api + chat("/stream?lastEventId=" + encodeURIComponent(lastEventId)));
    ["thinking", "tool_call", "delta", "complete", "error", "notification"].forEach(function (name) {
      source.addEventListener(name, function (ev) {
        wait = 1000;
        if (ev.lastEventId) store.set("lastEventId", ev.lastEventId);
        var data;
        try { data = JSON.parse(ev.data) || {}; } catch (e) { return; }
        handlers[name](data);
      });
    });
    source.onerror = function () {
      // CLOSED: the browser gave up (a 401 after the session expired, a 503 from a draining node).
      // Refused again and again (429: too many tabs)? Back off, up to 30 s.
      if (source && source.readyState === EventSource.CLOSED) { source = null; recover(wait); wait = Math.min(wait * 2, 3e4); }
    };
  }

  function recover(delay) {
    setTimeout(function () {
      api("GET", chat("/messages")).then(function (r) {
        if (r.status === 401) {
          systemLine("Your chat session ended; a new one has started.");
          return (starting = createSession());
        }
        if (r.status !== 200) throw new Error(r.status);
        openStream(store.get("lastEventId") || r.data.lastEventId || "0");
      }).catch(function () { recover(Math.min(delay * 2, 30000)); });
    }, delay);
  }

  var handlers = {
    thinking: function (d) { setStatus((d.step || "Thinking") + "\u2026"); },
    tool_call: function (d) {
      setStatus(d.status === "executing" ? "Using " + d.tool + "\u2026" : d.tool + " " + d.status);
    },
    delta: function (d) {
      if (!partial) (partial = addMessage("assistant", "")).classList.add("streaming");
      var body = partial.querySelector(".body");
      body.textContent += d.content || "";
      scrollDown();
    },
    complete: function (d) {
      var meta = d.metadata || {}, id = meta.messageId, text = d.content || "";
      setStatus("");
      if (meta.author === "human") return addMessage("human", text, id);
      // The complete content is authoritative: it replaces whatever the deltas built up (or missed),
      // and an answer already shown (a replay after reconnecting) is updated, never repeated.
      var li = (id && rendered[id]) || partial || addMessage("assistant", "");
      if (li !== partial) dropPartial();
      partial = null;
      li.classList.remove("streaming");
      setBody(li, text);
      if (id) { li.setAttribute("data-id", id); rendered[id] = li; }
      scrollDown();
    },
    error: function (d) {
      dropPartial();
      if (d.code === "interrupted") { setStatus("One moment, the answer is being written again\u2026"); return; }
      // Events were trimmed before we read them: history has them.
      if (d.code === "resync") { source.close(); source = null; return resume(); }
      setStatus("");
      systemLine(d.retryable ? "Sorry, something went wrong. Please try again."
        : "Sorry, the assistant can't answer right now.", true);
    },
    notification: function (d) {
      var data = d.data || {};
      if (d.type === "handover") {
        systemLine(data.owner === "human" ? "A person will answer you here shortly."
          : "You're back with the assistant.");
      } else if (d.type === "typing") {
        setStatus((data.author === "human" ? "A person" : "The assistant") + " is typing\u2026");
      }
    }
  };

  // ---- sending
  function send(text, retried) {
    sendBtn.disabled = true;
    var li = retried || addMessage("user", text);
    setStatus("Sending\u2026"); // before the POST: its answer may stream in before the 202 does
    return start().then(function () {
      return api("POST", chat("/message"), { content: text });
    }).then(function (r) {
      if (r.status === 202) {
        if (r.data.messageId) { li.setAttribute("data-id", r.data.messageId); rendered[r.data.messageId] = li; }
        return;
      }
      if (r.status === 401 && !retried) {
        // The session expired: start a new conversation and send again.
        store.del("session");
        starting = null;
        return send(text, li);
      }
      li.classList.add("failed");
      setStatus("");
      if (r.status === 429) {
        var wait = r.data.retryAfter || Number(r.headers.get("Retry-After")) || 60;
        systemLine("Too many messages: please slow down and try again in " + wait + " s.", true);
      } else if (r.status === 400) {
        systemLine("That message could not be sent: " + (r.data.error || "it is not valid") + ".", true);
      } else {
        systemLine("Your message could not be sent. Please try again.", true);
      }
      input.value = input.value || text;
    }).catch(function () {
      li.classList.add("failed");
      setStatus("");
      systemLine("You seem to be offline. Please try again.", true);
    }).then(function () { sendBtn.disabled = false; });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text || sendBtn.disabled) return;
    input.value = "";
    send(text);
    input.focus();
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendBtn.click(); // Shift+Enter still makes a new line
    }
  });

  // ---- open / close
  function setOpen(open) {
    panel.hidden = !open;
    bubble.setAttribute("aria-expanded", String(open));
    // Focus follows the panel: into the input on open, back to the bubble on close.
    if (open) start();
    (open ? input : bubble).focus();
  }
  bubble.addEventListener("click", function () { setOpen(panel.hidden); });
  closeBtn.addEventListener("click", function () { setOpen(false); });
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") setOpen(false); });

  function mount() {
    document.body.appendChild(host);
    if (cfg.open) setOpen(true);
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
