/* Buzzi admin dashboard, live parts: the conversation list (polled JSON), one conversation (SSE, human
 * takeover, replies, typing) and the live sessions (SSE snapshots).
 * Every piece of data goes into the page through textContent or attributes, never as HTML. */
(function () {
  "use strict";

  var POLL_MS = 3000;
  var TYPING_EVERY_MS = 2000;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // el("td", {"class": "num"}, "3", child...): strings become text nodes, never markup.
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (attrs[name] !== null && attrs[name] !== undefined && attrs[name] !== false) {
        node.setAttribute(name, attrs[name] === true ? "" : String(attrs[name]));
      }
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function badge(text, extra) {
    return el("span", { "class": "badge" + (extra ? " " + extra : "") }, text);
  }

  // The same format as the server's `when`: "2026-11-26 23:48:28 UTC".
  function when(iso) {
    if (!iso) return "";
    return String(iso).replace("T", " ").split(".")[0].replace(/Z$/, "") + " UTC";
  }

  function setLiveState(text) {
    var node = document.querySelector("[data-live-state]");
    if (node) node.textContent = text;
  }

  function showEmpty(container, empty) {
    var note = container.querySelector("[data-empty]");
    if (note) note.hidden = !empty;
  }

  function post(url, data) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: new URLSearchParams(data || {}),
      headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" }
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var body = {};
        try { body = text ? JSON.parse(text) : {}; } catch (e) { body = {}; }
        return { ok: resp.ok, status: resp.status, data: body };
      });
    });
  }

  // ---- the conversation list -----------------------------------------------------------------

  function conversationRow(row, withCompany) {
    var link = el("a", { href: "/admin/conversations/" + encodeURIComponent(row.id) }, row.customerLabel || row.id);
    return el("tr", { "data-id": row.id },
      withCompany ? el("td", null, row.companyName || row.companyId) : null,
      el("td", null, badge(row.channel)),
      el("td", null, link),
      el("td", null, badge(row.status, "badge-" + row.status)),
      el("td", null, badge(row.owner, "owner-" + row.owner)),
      el("td", { "class": "num" }, row.messageCount),
      el("td", null, when(row.lastMessageAt)));
  }

  function startList(table) {
    var url = table.getAttribute("data-live-list");
    var withCompany = table.hasAttribute("data-company-column");
    var body = table.querySelector("tbody");
    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (resp) {
        if (!resp.ok || !/json/.test(resp.headers.get("Content-Type") || "")) throw new Error(resp.status);
        return resp.json();
      }).then(function (data) {
        var rows = (data.conversations || []).map(function (row) { return conversationRow(row, withCompany); });
        body.replaceChildren.apply(body, rows);
        showEmpty(table.parentNode, rows.length === 0);
        setLiveState("live");
      }).catch(function () {
        setLiveState("offline, retrying");
      }).then(function () { setTimeout(refresh, POLL_MS); });
    }
    setTimeout(refresh, POLL_MS);
    setLiveState("live");
  }

  // ---- one conversation ----------------------------------------------------------------------

  // A reply's delivery state as the server words it (deliveryView: {status, badges: [{text, cls}], detail?}).
  function deliveryBadges(view) {
    var box = el("span", { "class": "delivery", "data-delivery-badges": true });
    (view.badges || []).forEach(function (b) { box.appendChild(badge(b.text, b.cls)); });
    return box;
  }

  function deliveryDetail(view) {
    return view && view.detail ? el("div", { "class": "error-detail", "data-delivery-detail": true }, view.detail) : null;
  }

  // A delivery notification (receipt, failure, resend): the reply's badges change in place.
  function showDelivery(item, view) {
    if (!item || !view) return;
    item.classList.toggle("delivery-failed", view.status === "failed");
    item.setAttribute("data-delivery", view.status);
    var old = item.querySelector("[data-delivery-badges]");
    var badges = deliveryBadges(view);
    if (old) old.replaceWith(badges); else item.querySelector(".status").appendChild(badges);
    var oldDetail = item.querySelector("[data-delivery-detail]");
    var detail = deliveryDetail(view);
    if (oldDetail && detail) oldDetail.replaceWith(detail);
    else if (oldDetail) oldDetail.remove();
    else if (detail) item.appendChild(detail);
  }

  function messageItem(m) {
    var view = m.deliveryView || null;
    var failed = view && view.status === "failed";
    var status = el("span", { "class": "status" });
    // A reply waiting for its resend is "processing" in the inbox: its delivery badge says more.
    if (/^(pending|processing|failed|skipped)$/.test(m.state) && !(view && m.role !== "user")) {
      status.appendChild(badge(m.state, "state-" + m.state));
    }
    if (view) status.appendChild(deliveryBadges(view));
    var detail = deliveryDetail(view);
    if (!detail && m.metadata && m.metadata.error) {
      detail = el("div", { "class": "error-detail" }, m.metadata.error);
    }
    return el("li", { "class": "message role-" + m.role + (failed ? " delivery-failed" : ""), "data-id": m.id,
                      "data-delivery": view ? view.status : null },
      el("div", { "class": "meta" },
        el("span", { "class": "author" }, m.author || m.role),
        badge(m.role, "role"),
        el("time", { datetime: m.createdAt }, when(m.createdAt)),
        status),
      el("div", { "class": "content" }, m.content),
      detail);
  }

  function startConversation(thread) {
    var list = document.getElementById("messages");
    var draft = document.getElementById("draft");
    var draftText = draft.querySelector(".draft-text");
    var activity = document.getElementById("activity");
    var replyForm = document.getElementById("reply-form");
    var replyBox = document.getElementById("reply-content");
    var sendButton = document.getElementById("send-reply");
    var replyState = document.getElementById("reply-state");
    var takeButton = document.getElementById("take-over");
    var releaseButton = document.getElementById("release");
    var ownerLabel = document.getElementById("owner-label");
    var me = (document.querySelector(".user .email") || {}).textContent || "";
    var base = "/admin/conversations/" + encodeURIComponent(thread.getAttribute("data-conversation-id"));
    var typingTimer = null;

    function upsert(m) {
      var item = messageItem(m);
      var old = list.querySelector('li[data-id="' + CSS.escape(m.id) + '"]');
      if (old) list.replaceChild(item, old); else list.appendChild(item);
      if (m.role === "assistant" || m.role === "human") hideDraft();
      showEmpty(thread, false);
      if (!old) item.scrollIntoView({ block: "nearest" });
    }

    function hideDraft() {
      draft.hidden = true;
      draftText.textContent = "";
    }

    function setActivity(text) {
      activity.textContent = text || "";
    }

    function setOwner(owner) {
      var human = owner === "human";
      document.getElementById("takeover").setAttribute("data-owner", owner);
      ownerLabel.textContent = human ? "a person" : "the bot";
      takeButton.hidden = human;
      releaseButton.hidden = !human;
      replyBox.disabled = !human;
      sendButton.disabled = !human;
      replyBox.placeholder = human ? "Write your reply to the customer" : "Take the conversation over to reply";
    }

    function setWindow(c) {
      var node = document.getElementById("window-state");
      if (!node || !c.window) return;
      node.textContent = c.windowLabel || "";
      node.hidden = !c.windowLabel;
      node.setAttribute("data-window-state", c.window.state);
      node.className = "window window-" + c.window.state;
    }

    var handlers = {
      conversation: function (c) { setOwner(c.owner); setWindow(c); },
      message: upsert,
      thinking: function (d) { setActivity("Bot: " + (d.step || "thinking") + "\u2026"); },
      tool_call: function (d) { setActivity("Bot: " + d.tool + " " + d.status); },
      delta: function (d) {
        draft.hidden = false;
        draftText.textContent += d.content || "";
      },
      complete: function () { hideDraft(); setActivity(""); },
      error: function (d) { hideDraft(); setActivity("Bot error: " + (d.message || d.code || "unknown")); },
      notification: function (d) {
        var data = d.data || {};
        if (d.type === "handover") {
          setActivity(data.owner === "human" ? "Taken over by " + (data.by || "a person") : "Released to the bot by "
            + (data.by || "a person"));
        } else if (d.type === "delivery" && data.messageId) {
          showDelivery(list.querySelector('li[data-id="' + CSS.escape(data.messageId) + '"]'), data.deliveryView);
        } else if (d.type === "typing" && data.by !== me) {
          setActivity((data.by || "Someone") + " is typing\u2026");
          clearTimeout(typingTimer);
          typingTimer = setTimeout(function () { setActivity(""); }, 4000);
        }
      }
    };

    var source = new EventSource(thread.getAttribute("data-live-conversation"));
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (ev) {
        var data;
        try { data = JSON.parse(ev.data) || {}; } catch (e) { return; }
        handlers[name](data);
      });
    });
    source.onopen = function () { setLiveState("live"); hideDraft(); };
    source.onerror = function () {
      setLiveState(source.readyState === EventSource.CLOSED ? "offline: reload the page" : "reconnecting\u2026");
    };
    window.addEventListener("pagehide", function () { source.close(); });

    Array.prototype.forEach.call(document.querySelectorAll("form[data-handover]"), function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var action = form.querySelector('input[name="action"]').value;
        post(base + "/handover", { action: action }).then(function (r) {
          if (!r.ok) { replyState.textContent = r.data.error || ("Failed (" + r.status + ")"); return; }
          replyState.textContent = "";
          setOwner(r.data.conversation.owner);
          if (action === "take") replyBox.focus();
        });
      });
    });

    replyForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = replyBox.value;
      if (!text.trim() || sendButton.disabled) return;
      sendButton.disabled = true;
      replyState.textContent = "Sending\u2026";
      post(base + "/reply", { content: text }).then(function (r) {
        if (!r.ok) { replyState.textContent = r.data.error || ("Not sent (" + r.status + ")"); return; }
        replyBox.value = "";
        replyState.textContent = "Sent.";
        r.data.message.author = me || "Support team";
        upsert(r.data.message);
      }).catch(function () {
        replyState.textContent = "Not sent: you seem to be offline.";
      }).then(function () {
        sendButton.disabled = replyBox.disabled;
      });
    });

    // The widget shows "A person is typing…": one notification at most every TYPING_EVERY_MS.
    var lastTyping = 0;
    replyBox.addEventListener("input", function () {
      var now = Date.now();
      if (replyBox.disabled || !replyBox.value.trim() || now - lastTyping < TYPING_EVERY_MS) return;
      lastTyping = now;
      post(base + "/typing", {}).catch(function () { /* best effort */ });
    });
    replyBox.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); sendButton.click(); }
    });
  }

  // ---- live sessions -------------------------------------------------------------------------

  function startSessions(root) {
    var nodes = document.querySelector("#nodes tbody");
    var sessions = document.querySelector("#sessions tbody");
    var count = document.getElementById("session-count");

    function render(snapshot) {
      nodes.replaceChildren.apply(nodes, (snapshot.nodes || []).map(function (n) {
        return el("tr", { "data-id": n.nodeId },
          el("td", { "class": "mono" }, n.nodeId),
          el("td", { "class": "num" }, n.streams),
          el("td", null, n.draining ? badge("draining", "badge-past_due") : badge("up", "badge-ok")),
          el("td", null, when(n.startedAt)));
      }));
      var rows = (snapshot.sessions || []).map(function (s) {
        return el("tr", null,
          el("td", { "class": "mono" }, s.nodeId),
          el("td", null, el("a", { "class": "mono", href: "/admin/conversations/" + encodeURIComponent(s.conversationId) },
            s.conversationId)),
          el("td", null, s.companyName || s.companyId),
          el("td", null, when(s.connectedSince)),
          el("td", { "class": "num" }, s.lastEventId || ""),
          el("td", { "class": "num" }, s.eventsSent));
      });
      sessions.replaceChildren.apply(sessions, rows);
      count.textContent = String(rows.length);
      showEmpty(root, rows.length === 0);
    }

    var source = new EventSource(root.getAttribute("data-live-sessions"));
    source.addEventListener("snapshot", function (ev) {
      try { render(JSON.parse(ev.data)); } catch (e) { /* a malformed snapshot is skipped */ }
    });
    source.onopen = function () { setLiveState("live"); };
    source.onerror = function () {
      setLiveState(source.readyState === EventSource.CLOSED ? "offline: reload the page" : "reconnecting\u2026");
    };
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function start() {
    var list = document.querySelector("table[data-live-list]");
    if (list) startList(list);
    var thread = document.querySelector("[data-live-conversation]");
    if (thread) startConversation(thread);
    var live = document.querySelector("[data-live-sessions]");
    if (live) startSessions(live);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
