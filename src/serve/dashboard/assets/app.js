// dpplan dashboard: times in the browser's zone (UTC on hover), confirmations before actions,
// and live statuses from the server-sent events of /api/events. No library, no network but
// this server.
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function local(d, ms) {
    var off = -d.getTimezoneOffset(), sign = off >= 0 ? "+" : "-";
    off = Math.abs(off);
    var frac = ms ? "." + String(1000 + d.getMilliseconds()).slice(1) : "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + frac + " " +
      sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
  }
  function times(root) {
    var all = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < all.length; i++) {
      var t = all[i], iso = t.getAttribute("datetime"), d = new Date(iso);
      if (isNaN(d.getTime())) continue;
      var ms = t.classList.contains("ms");
      t.title = (ms ? d.toISOString() : d.toISOString().replace(/\.\d{3}Z$/, "Z")) + " (UTC)";
      t.textContent = local(d, ms);
    }
  }
  function setStatus(el, status) {
    el.textContent = status;
    el.className = "st st-" + status.toLowerCase().replace(/_/g, "-");
  }
  var FINAL = { COMPLETED: 1, WARNING: 1, FAILED: 1, STOPPED: 1, CANCELLED: 1, MISSED: 1,
    BACKUPS_DISABLED: 1, OUTSIDE_WINDOW: 1, STORE_NOT_MOUNTED: 1, STORE_OUT_OF_SPACE: 1,
    INVALID_CONFIG: 1 };
  function say(text) {
    var n = document.getElementById("live");
    if (!n) return;
    n.firstChild.textContent = text + " ";
    n.hidden = false;
  }
  function ready() {
    window.dpplanReady = performance.now();
    document.documentElement.setAttribute("data-ready", "1");
  }
  document.addEventListener("submit", function (e) {
    var q = e.target.getAttribute("data-confirm");
    if (q && !window.confirm(q)) e.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () {
    times(document);
    window.dpplanScripted = performance.now();
    var body = document.body, run = body.getAttribute("data-run");
    if (!body.hasAttribute("data-live") || !window.EventSource) { ready(); return; }
    var es = new EventSource("/api/events"), opened = false;
    es.onopen = function () { if (!opened) { opened = true; ready(); } };
    es.onerror = function () { if (!opened) { opened = true; ready(); } };
    es.addEventListener("task", function (m) {
      var e = JSON.parse(m.data);
      if (run === null || String(e.run) !== run) return;
      var el = document.getElementById("task-" + e.task + "-status");
      if (el) setStatus(el, e.status);
    });
    es.addEventListener("run", function (m) {
      var e = JSON.parse(m.data), el = document.getElementById("run-" + e.run + "-status");
      if (el) setStatus(el, e.status);
      else if (body.hasAttribute("data-runs")) say("New runs have started.");
      if (run !== null && String(e.run) === run && FINAL[e.status]) {
        say("Run " + run + " ended " + e.status + ".");
      }
    });
    es.addEventListener("lagged", function () { say("Some updates were missed."); });
    // A page left behind must give its connection back: browsers open six at most to one
    // server over HTTP/1.1, and a kept page's stream would hold one.
    window.addEventListener("pagehide", function () { es.close(); });
  });
})();
