// pgwork web: the overview's chart (uPlot) and live refresh. The pages
// work without this file; it only redraws what the server rendered.
"use strict";
(function () {
  function chart() {
    var data = document.getElementById("throughput-data");
    var box = document.getElementById("chart");
    if (!data || !box || typeof uPlot === "undefined") return;
    var t = JSON.parse(data.textContent);
    var xs = [], i;
    for (i = 0; i < t.done.length; i++) xs.push(t.minute0 + 60 * i);
    box.textContent = "";
    new uPlot({
      width: Math.min(box.clientWidth || 900, 1200) - 16, height: 160,
      series: [{}, { label: "done/min", stroke: "#2e7d32", fill: "rgba(46,125,50,.08)" },
               { label: "failed/min", stroke: "#b3261e" }],
      axes: [{}, { size: 50 }],
    }, [xs, t.done, t.failed], box);
  }
  function refresh() {
    if (document.hidden) return;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (fresh && main) { main.replaceWith(fresh); chart(); }
      })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    chart();
    var every = document.body.getAttribute("data-refresh");
    if (every) setInterval(refresh, 1000 * Number(every));
  });
})();
