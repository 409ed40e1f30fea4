// papi-sandbox dashboard: live updates. Every element with data-live-src and data-live-events
// listens to the server's event feed (Server-Sent Events from the ledger's event hub) and, after
// a change, fetches its fragment again and swaps it in place. Nothing else needs JavaScript:
// every action is a plain HTML form.
"use strict";
(function () {
  var DEBOUNCE_MS = 150;
  var status = document.getElementById("live-status");

  function say(text) {
    if (status) status.textContent = text;
  }

  function watch(el) {
    var src = el.getAttribute("data-live-src");
    var events = el.getAttribute("data-live-events");
    var timer = null;
    var busy = false;
    var again = false;

    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(src, { credentials: "same-origin", headers: { "X-Papi-Ui-Fragment": "1" } })
        .then(function (r) {
          if (r.status === 401) { source.close(); say("Session ended: log in again."); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            el.innerHTML = html;
            el.setAttribute("data-live-updated", String(Date.now()));
            say("Updated " + new Date().toLocaleTimeString());
          }
        })
        .catch(function () { say("Live updates interrupted; retrying."); })
        .then(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }

    var source = new EventSource(events);
    function soon() {
      clearTimeout(timer);
      timer = setTimeout(refresh, DEBOUNCE_MS);
    }
    source.addEventListener("entry", soon);
    source.addEventListener("order", soon);  // an order placed, filled, cancelled or expired
    source.addEventListener("open", function () { el.setAttribute("data-live", "connected"); });
    source.addEventListener("error", function () { el.setAttribute("data-live", "reconnecting"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.EventSource || !window.fetch) return;
    var els = document.querySelectorAll("[data-live-src][data-live-events]");
    for (var i = 0; i < els.length; i++) watch(els[i]);
  });
})();
