// Atelier board: the little the pages need beyond htmx (no inline script, CSP-safe).
(function () {
  "use strict";

  // Reconnect fast: a venue's Wi-Fi drops for seconds, not minutes.
  if (window.htmx) {
    htmx.config.ws = Object.assign(htmx.config.ws || {}, {
      reconnectDelay: 500,
      reconnectMaxDelay: 5000,
    });
  }

  var SEQ = /^\{"seq":(\d+)/;

  // Remember the last seq seen on the socket's own URL, so that every reconnect
  // (Wi-Fi drop, server restart, phone tab hidden then shown) asks for exactly what it missed.
  document.addEventListener("htmx:ws:after:message:incoming", function (evt) {
    var detail = evt.detail || {};
    var data = detail.message && detail.message.data;
    if (typeof data !== "string") return;
    var match = SEQ.exec(data);
    if (!match || !detail.connection) return;
    try {
      var url = new URL(detail.connection.url);
      url.searchParams.set("since", match[1]);
      detail.connection.url = url.toString();
      document.body.setAttribute("data-seq", match[1]);
    } catch (e) { /* keep the old URL */ }
  });

  document.addEventListener("htmx:ws:after:connection", function () {
    document.body.classList.add("is-live");
    document.body.classList.remove("is-offline");
  });
  document.addEventListener("htmx:ws:close", function () {
    document.body.classList.remove("is-live");
    document.body.classList.add("is-offline");
  });

  // Things drawn from the page itself after every change (live pushes, htmx swaps):
  // my dots on each card, cards per column, the timer.
  function decorate() {
    var ballot = document.getElementById("ballot");
    var mine = {};
    if (ballot) {
      try { mine = JSON.parse(ballot.getAttribute("data-mine-json") || "{}"); } catch (e) { mine = {}; }
    }
    document.querySelectorAll("[data-mine]").forEach(function (el) {
      var n = mine[el.getAttribute("data-mine")] || 0;
      var text = new Array(n + 1).join("\u25CF");
      if (el.textContent !== text) el.textContent = text;
    });
    document.querySelectorAll("[data-count-for]").forEach(function (el) {
      var column = document.getElementById(el.getAttribute("data-count-for"));
      if (!column) return;
      var n = column.querySelectorAll(".card:not(.is-hidden)").length;
      if (el.textContent !== String(n)) el.textContent = String(n);
    });
  }

  // A live refresh replaces a part of the page (the animator's console, the board area):
  // keyboard focus must not fall back to the top of the page. Find the same control again:
  // same id, or same name and value in a form with the same action, or same label.
  var lastFocus = null;
  document.addEventListener("focusin", function (evt) { lastFocus = evt.target; });
  function formAction(el) { return el.form ? el.form.getAttribute("action") : null; }
  function sameControl(old) {
    if (old.id) return document.getElementById(old.id);
    var candidates = document.querySelectorAll(old.tagName);
    for (var i = 0; i < candidates.length; i++) {
      var el = candidates[i];
      if (formAction(el) !== formAction(old)) continue;
      if (old.name ? (el.name === old.name && el.value === old.value)
                   : (el.textContent || "").trim() === (old.textContent || "").trim()) return el;
    }
    return null;
  }
  function restoreFocus() {
    if (!lastFocus || document.contains(lastFocus)) return;
    var active = document.activeElement;
    if (active && active !== document.body) return;
    var found = sameControl(lastFocus);
    if (found && typeof found.focus === "function") {
      found.focus({ preventScroll: true });
      lastFocus = found;
    }
  }


  // New cards: highlighted for a few seconds, and announced politely to screen readers
  // (one announcement per burst: "3 new cards" rather than three interruptions).
  var announcer = document.getElementById("announcer");
  var arrived = [];
  var announceTimer = null;
  function announce() {
    announceTimer = null;
    if (!announcer || !arrived.length) return;
    var text = arrived.length === 1
      ? announcer.getAttribute("data-new-card") + " " + arrived[0]
      : arrived.length + " " + announcer.getAttribute("data-new-cards");
    arrived = [];
    announcer.textContent = text;
  }
  function arrive(node) {
    if (node.nodeType !== 1 || !node.classList || !node.classList.contains("is-new")) return;
    window.setTimeout(function () { node.classList.remove("is-new"); }, 6000);
    var text = node.querySelector(".card-text");
    if (text && text.textContent) arrived.push(text.textContent.slice(0, 140));
    if (!announceTimer) announceTimer = window.setTimeout(announce, 1500);
  }

  // One observer for every change to the page (live pushes, htmx swaps): new cards at once;
  // the page's own decorations and the keyboard focus once per frame.
  var pending = false;
  new MutationObserver(function (mutations) {
    mutations.forEach(function (mutation) { mutation.addedNodes.forEach(arrive); });
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; decorate(); restoreFocus(); });
  }).observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener("DOMContentLoaded", decorate);

  function two(n) { return (n < 10 ? "0" : "") + n; }
  window.setInterval(function () {
    var timer = document.getElementById("timer");
    if (!timer || timer.getAttribute("data-running") !== "true") return;
    if (!timer._startedAt) timer._startedAt = Date.now();
    var left = Math.max(0, Number(timer.getAttribute("data-remaining")) -
                           (Date.now() - timer._startedAt) / 1000);
    var value = timer.querySelector(".timer-value");
    var secs = Math.ceil(left);
    if (value) value.textContent = two(Math.floor(secs / 60)) + ":" + two(secs % 60);
    timer.classList.toggle("is-over", secs <= 0);
  }, 500);

  // Ctrl+Enter / Cmd+Enter posts the card from the text field.
  document.addEventListener("keydown", function (evt) {
    var target = evt.target;
    if (evt.key === "Enter" && (evt.ctrlKey || evt.metaKey) && target && target.id === "card-text") {
      evt.preventDefault();
      if (target.form && target.form.requestSubmit) target.form.requestSubmit();
    }
  });
})();
