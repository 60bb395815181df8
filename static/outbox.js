// Phone outbox: a card typed on a phone is never lost and never doubled.
// Each card is saved on the phone (localStorage) with its idempotency key before it is sent,
// shown as "waiting", and sent again in order, with the same key, until the server answers.
// Without JavaScript the post form is a plain form; this only enhances it.
(function () {
  "use strict";
  var form = document.getElementById("post-form");
  var match = /^\/b\/([^/]+)/.exec(window.location.pathname);
  if (!form || !match || !window.fetch || !window.localStorage) return;
  var code = match[1];
  var KEY = "atelier-outbox:" + code;
  var say = {
    waiting: form.getAttribute("data-waiting") || "…",
    sent: form.getAttribute("data-sent") || "✓",
    queued: form.getAttribute("data-queued") || "…",
    retake: form.getAttribute("data-retake") || "↺"
  };

  // The outbox takes the form over from htmx; the action stays for the no-JS path.
  ["hx-post", "hx-target", "hx-swap"].forEach(function (name) { form.removeAttribute(name); });

  function load() {
    try { return JSON.parse(window.localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function save(queue) {
    try { window.localStorage.setItem(KEY, JSON.stringify(queue)); } catch (e) { /* full */ }
  }
  function newKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID().replace(/-/g, "");
    return Date.now().toString(16) + Math.random().toString(16).slice(2);
  }
  function feedback(text, kind) {
    var box = form.querySelector(".post-feedback");
    if (!box) return;
    box.textContent = "";
    if (!text) return;
    var span = document.createElement("span");
    span.className = kind || "ok";
    span.textContent = text;
    box.appendChild(span);
  }

  function pendingCard(item) {
    var id = "pending-" + item.client_id;
    var card = document.getElementById(id);
    if (card) return card;
    card = document.createElement("article");
    card.id = id;
    card.className = "card is-pending";
    var text = document.createElement("p");
    text.className = "card-text";
    text.textContent = item.text;
    var status = document.createElement("p");
    status.className = "card-status";
    status.textContent = say.waiting;
    card.appendChild(text);
    card.appendChild(status);
    var column = document.getElementById("cards-" + item.column_id);
    if (column) column.appendChild(card);
    return card;
  }

  function forget(item) {
    save(load().filter(function (other) { return other.client_id !== item.client_id; }));
  }

  function acknowledged(item, html) {
    forget(item);
    if (!load().length) feedback(say.sent, "ok");
    var pending = document.getElementById("pending-" + item.client_id);
    var holder = document.createElement("template");
    holder.innerHTML = html;
    var card = holder.content.querySelector("article.card");
    if (card && !document.getElementById(card.id)) {
      var column = document.getElementById("cards-" + item.column_id);
      if (pending && pending.parentNode) pending.parentNode.replaceChild(card, pending);
      else if (column) column.appendChild(card);
      if (window.htmx && window.htmx.process) window.htmx.process(card);
    }
    if (pending && pending.parentNode) pending.parentNode.removeChild(pending);
  }

  function refused(item, message) {
    forget(item);
    var card = pendingCard(item);
    card.className = "card is-pending is-refused";
    var status = card.querySelector(".card-status");
    status.textContent = message;
    status.className = "card-status error";
    var again = document.createElement("button");
    again.type = "button";
    again.className = "small";
    again.textContent = say.retake;
    again.addEventListener("click", function () {
      var field = form.querySelector("textarea[name=text]");
      if (field && !field.value) field.value = item.text;
      if (card.parentNode) card.parentNode.removeChild(card);
      if (field) field.focus();
    });
    card.appendChild(again);
  }

  var sending = false;
  var timer = null;
  var delay = 1000;

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(flush, delay);
    delay = Math.min(delay * 2, 15000);
  }

  function flush() {
    if (sending) return;
    var queue = load();
    if (!queue.length) return;
    var item = queue[0];
    pendingCard(item);
    sending = true;
    var body = new URLSearchParams();
    body.append("column_id", item.column_id);
    body.append("text", item.text);
    body.append("client_id", item.client_id);
    window.fetch("/b/" + code + "/cards", {
      method: "POST", body: body, credentials: "same-origin", headers: { "X-Outbox": "1" }
    }).then(function (response) {
      return response.text().then(function (text) { return { status: response.status, text: text }; });
    }).then(function (answer) {
      sending = false;
      if (answer.status >= 200 && answer.status < 300) {
        acknowledged(item, answer.text);
        delay = 1000;
        flush();
      } else if (answer.status === 408 || answer.status === 429 || answer.status >= 500) {
        feedback(say.queued, "warn");
        later();  // the server is busy or gone: nothing was stored, the same key is safe
      } else {
        var message = answer.text;
        try { message = JSON.parse(answer.text).text || message; } catch (e) { /* keep */ }
        refused(item, message);
        flush();
      }
    }, function () {
      sending = false;  // offline, or the connection dropped: maybe stored, the key says
      feedback(say.queued, "warn");
      later();
    });
  }

  form.addEventListener("submit", function (evt) {
    evt.preventDefault();
    var field = form.querySelector("textarea[name=text]");
    var column = form.querySelector("input[name=column_id]:checked");
    var key = form.querySelector("input[name=client_id]");
    if (!field || !column || !key || !field.value.trim()) return;
    var item = { client_id: key.value, column_id: column.value, text: field.value };
    var queue = load();
    queue.push(item);
    save(queue);
    field.value = "";
    key.value = newKey();
    pendingCard(item);
    feedback(navigator.onLine === false ? say.queued : "", "warn");
    field.focus();
    flush();
  });

  window.addEventListener("online", function () { delay = 1000; flush(); });
  document.addEventListener("htmx:ws:after:connection", function () { delay = 1000; flush(); });
  load().forEach(pendingCard);
  flush();
})();
