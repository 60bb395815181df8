// Animator page: drag cards between columns and themes (mouse and touch, via SortableJS).
// The keyboard way is the toolbar (select a card, then "Move to" or "Merge").
(function () {
  "use strict";
  var match = /^\/b\/([^/]+)\/animator/.exec(window.location.pathname);
  if (!match || !window.Sortable) return;
  var code = match[1];

  function targetOf(container) {
    if (container.dataset.theme) return "theme-" + container.dataset.theme;
    return "col-" + container.dataset.column;
  }

  function move(cardId, target) {
    var body = new FormData();
    body.append("target", target);
    fetch("/b/" + code + "/animator/cards/" + cardId + "/move", {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "HX-Request": "true" }
    }).then(function (response) {
      return response.text().then(function (text) {
        var flash = document.getElementById("flash");
        if (flash) flash.innerHTML = response.ok ? "" : text;
      });
    });
  }

  function enable() {
    document.querySelectorAll(".animator-page .cards").forEach(function (container) {
      if (container._sortable) return;
      container._sortable = window.Sortable.create(container, {
        group: "cards",
        animation: 120,
        draggable: ".card",
        filter: "input, textarea, button, select, summary, label",
        preventOnFilter: false,
        onEnd: function (evt) {
          if (evt.from === evt.to) return;
          var id = evt.item.getAttribute("data-card");
          if (id) move(id, targetOf(evt.to));
        }
      });
    });
  }

  new MutationObserver(enable).observe(document.body, { childList: true, subtree: true });
  enable();
})();
