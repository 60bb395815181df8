// Atelier board, projector: full screen, high contrast, and card text sized so the whole board
// fits the screen (60 cards on 1920×1080), then a compact layout, never a scroll bar.
(function () {
  "use strict";
  var root = document.documentElement;

  var fullscreen = document.getElementById("fullscreen-toggle");
  if (fullscreen) {
    if (!document.fullscreenEnabled) fullscreen.hidden = true;
    fullscreen.addEventListener("click", function () {
      if (document.fullscreenElement) document.exitFullscreen();
      else root.requestFullscreen().catch(function () { /* refused: stay as is */ });
    });
    document.addEventListener("fullscreenchange", function () {
      var on = !!document.fullscreenElement;
      fullscreen.setAttribute("aria-pressed", on ? "true" : "false");
      fullscreen.textContent = fullscreen.getAttribute(on ? "data-exit" : "data-enter");
      schedule();
    });
  }

  var contrast = document.getElementById("contrast-toggle");
  function setContrast(on) {
    document.body.classList.toggle("high-contrast", on);
    if (contrast) contrast.setAttribute("aria-pressed", on ? "true" : "false");
  }
  try { setContrast(window.localStorage.getItem("board-contrast") === "1"); } catch (e) { /* private mode */ }
  if (contrast) {
    contrast.addEventListener("click", function () {
      var on = !document.body.classList.contains("high-contrast");
      setContrast(on);
      try { window.localStorage.setItem("board-contrast", on ? "1" : "0"); } catch (e) { /* ignore */ }
      schedule();
    });
  }

  // The largest text that fits wins; at a given size, the simpler layout (one card per row;
  // two; two with a smaller join block; three). Past that, pages that turn every 12 s.
  // Sizes are classes of the stylesheet (data-scale), never an inline style: the page's CSP
  // forbids inline styles, and htmx copies attributes when it swaps the board area.
  var SCALES = ["100", "92", "85", "78", "72", "66"];
  var LAYOUTS = [[1, false], [2, false], [2, true], [3, true]];
  var PAGE_SECONDS = 12;
  var paging = null;  // {lists, perPage, pages, page}
  var pageTimer = null;
  function overflows() { return root.scrollHeight > window.innerHeight + 1; }
  function apply(board, layout, scale) {
    board.setAttribute("data-per-row", String(layout[0]));
    document.body.classList.toggle("is-crowded", layout[1]);
    board.setAttribute("data-scale", scale);
  }
  function show(lists, perPage, page) {
    lists.forEach(function (cards) {
      cards.forEach(function (card, i) {
        card.classList.toggle("is-off-page", i < page * perPage || i >= (page + 1) * perPage);
      });
    });
  }
  function pager(text) {
    var el = document.getElementById("pager");
    if (!el) return;
    el.hidden = !text;
    el.textContent = text;
  }
  function turnPage() {
    if (!paging) return;
    paging.page = (paging.page + 1) % paging.pages;
    show(paging.lists, paging.perPage, paging.page);
    pager(pagerLabel());
  }
  function pagerLabel() {
    var el = document.getElementById("pager");
    var word = el ? el.getAttribute("data-label") : "Page";
    return word + " " + (paging.page + 1) + " / " + paging.pages;
  }
  function paginate(board) {
    var lists = Array.prototype.map.call(board.querySelectorAll(".column"), function (column) {
      return Array.prototype.slice.call(column.querySelectorAll(".card"));
    });
    var most = Math.max.apply(null, lists.map(function (l) { return l.length; }));
    var low = 1, high = most;
    while (low < high) {  // the most cards per column that fit
      var mid = Math.ceil((low + high) / 2);
      show(lists, mid, 0);
      if (overflows()) high = mid - 1; else low = mid;
    }
    var page = paging ? Math.min(paging.page, Math.ceil(most / low) - 1) : 0;
    paging = { lists: lists, perPage: low, pages: Math.ceil(most / low), page: page };
    show(lists, low, page);
    pager(pagerLabel());
    if (!pageTimer) pageTimer = window.setInterval(turnPage, PAGE_SECONDS * 1000);
  }
  function fit() {
    var board = document.getElementById("board");
    if (!board) return;
    Array.prototype.forEach.call(board.querySelectorAll(".is-off-page"), function (card) {
      card.classList.remove("is-off-page");
    });
    for (var s = 0; s < SCALES.length; s++) {
      for (var l = 0; l < LAYOUTS.length; l++) {
        apply(board, LAYOUTS[l], SCALES[s]);
        if (!overflows()) {
          paging = null;
          pager("");
          if (pageTimer) { window.clearInterval(pageTimer); pageTimer = null; }
          return;
        }
      }
    }
    paginate(board);
  }
  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; fit(); });
  }
  var main = document.getElementById("main");
  if (main) new MutationObserver(schedule).observe(main, { childList: true, subtree: true });
  window.addEventListener("resize", schedule);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fit);
  else fit();
})();
