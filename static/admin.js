/* Buzzi admin dashboard helpers: copy to clipboard, confirm before destructive submits, POST with
 * the page's CSRF token, and the FAQ documents editor. No dependencies; loaded on every page. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // The copied text is kept on window.Buzzi.lastCopied too, so tests can read it without clipboard rights.
  function copy(text) {
    Buzzi.lastCopied = text;
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { fallbackCopy(text); });
    }
    fallbackCopy(text);
    return Promise.resolve();
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the value is still in Buzzi.lastCopied */ }
    document.body.removeChild(area);
  }

  function post(url, data) {
    var body = new URLSearchParams(data || {});
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "X-CSRF-Token": csrfToken(), "Accept": "text/html,application/json" }
    });
  }

  function onCopyClick(event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    copy(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.classList.add("copied");
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1500);
    });
  }

  // <form data-confirm="Delete this webhook?">: asks first, with the native dialog element when present.
  function onSubmit(event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (!question || form.dataset.confirmed === "1") return;
    event.preventDefault();
    ask(question).then(function (yes) {
      if (!yes) return;
      form.dataset.confirmed = "1";
      form.requestSubmit ? form.requestSubmit(event.submitter || undefined) : form.submit();
    });
  }

  function ask(question) {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(question));
    dialog.querySelector("[data-question]").textContent = question;
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "yes");
      });
      dialog.showModal();
    });
  }

  // FAQ documents: rows of title/content, added from a <template> and renumbered on change.
  function renumber(list) {
    Array.prototype.forEach.call(list.querySelectorAll(".doc-row"), function (row, i) {
      Array.prototype.forEach.call(row.querySelectorAll("[data-name]"), function (input) {
        input.name = "doc-" + i + "-" + input.getAttribute("data-name");
        input.id = input.name;
      });
      Array.prototype.forEach.call(row.querySelectorAll("label[data-for]"), function (label) {
        label.htmlFor = "doc-" + i + "-" + label.getAttribute("data-for");
      });
    });
  }

  function onRowsClick(event) {
    var add = event.target.closest("[data-add-row]");
    if (add) {
      var list = document.getElementById(add.getAttribute("data-add-row"));
      var tpl = document.getElementById(list.getAttribute("data-template"));
      list.appendChild(tpl.content.cloneNode(true));
      renumber(list);
      var rows = list.querySelectorAll(".doc-row");
      var first = rows[rows.length - 1].querySelector("input");
      if (first) first.focus();
      return;
    }
    var remove = event.target.closest("[data-remove-row]");
    if (remove) {
      var row = remove.closest(".doc-row");
      var parent = row.parentNode;
      parent.removeChild(row);
      renumber(parent);
    }
  }

  // <select data-show-group="prefix">: shows only the fieldset whose data-group matches the value.
  function syncGroups(select) {
    var prefix = select.getAttribute("data-show-group");
    Array.prototype.forEach.call(document.querySelectorAll("[data-group^='" + prefix + ":']"), function (el) {
      var on = el.getAttribute("data-group") === prefix + ":" + select.value;
      el.hidden = !on;
      Array.prototype.forEach.call(el.querySelectorAll("input, select, textarea"), function (input) {
        input.disabled = !on;
      });
    });
  }

  document.addEventListener("click", onCopyClick);
  document.addEventListener("click", onRowsClick);
  document.addEventListener("submit", onSubmit, true);
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-show-group]")) syncGroups(event.target);
  });
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("select[data-show-group]"), syncGroups);
  });

  var Buzzi = window.Buzzi = { copy: copy, post: post, csrfToken: csrfToken, ask: ask, lastCopied: null };
})();
