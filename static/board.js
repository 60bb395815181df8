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

  // Ctrl+Enter / Cmd+Enter posts the card from the text field.
  document.addEventListener("keydown", function (evt) {
    var target = evt.target;
    if (evt.key === "Enter" && (evt.ctrlKey || evt.metaKey) && target && target.id === "card-text") {
      evt.preventDefault();
      if (target.form && target.form.requestSubmit) target.form.requestSubmit();
    }
  });
})();
