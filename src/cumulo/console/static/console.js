// cumulo console: live logs, charts (uPlot), confirmations and polite polling. No build step.
(function () {
  "use strict";

  // Polling: skip a poll while the tab is hidden, or while the keyboard focus is inside the region
  // (replacing it would throw the focus away); the next tick catches up.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    if (elt && elt.hasAttribute("data-poll") && (document.hidden || elt.contains(document.activeElement))) {
      e.preventDefault();
    }
  });
  // A live region whose page state changed (e.g. a job ended): reload once so the actions match.
  document.addEventListener("htmx:afterSwap", function (e) {
    var live = document.getElementById("live");
    if (live && live.dataset.state && document.body.dataset.state && live.dataset.state !== document.body.dataset.state) {
      var terminal = ["Succeeded", "Failed", "Cancelled"];
      document.body.dataset.state = live.dataset.state;
      if (terminal.indexOf(live.dataset.state) >= 0) { window.location.reload(); }
    }
  });

  // Destructive forms ask first.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } }).then(function (r) {
      var type = r.headers.get("content-type") || "";
      if (r.redirected || type.indexOf("application/json") < 0) {  // signed out meanwhile: show the login page
        window.location.reload();
        throw new Error("not signed in");
      }
      return r.json().then(function (body) {
        if (!r.ok) { throw new Error(body.detail || body.title || ("HTTP " + r.status)); }
        return body;
      });
    });
  }

  function ended() {
    return ["Succeeded", "Failed", "Cancelled"].indexOf(document.body.dataset.state || "") >= 0;
  }

  // -- logs: follow one rank of one attempt ------------------------------------------------------
  function startLogs() {
    var pre = document.getElementById("log");
    if (!pre) { return; }
    var attemptSel = document.getElementById("log-attempt");
    var rankSel = document.getElementById("log-rank");
    var follow = document.getElementById("log-follow");
    var status = document.getElementById("log-status");
    var state = { offset: 0, attempt: null, gen: 0, timer: null };

    function reset() {
      state.gen += 1; state.offset = 0; state.attempt = null; pre.textContent = "";
      if (state.timer) { clearTimeout(state.timer); }
      tick(state.gen);
    }
    function tick(gen) {
      var params = new URLSearchParams({ rank: rankSel.value || "0", offset: String(state.offset) });
      var chosen = attemptSel.value || (state.attempt ? String(state.attempt) : "");
      if (chosen) { params.set("attempt", chosen); }
      getJSON(pre.dataset.src + "?" + params.toString()).then(function (chunk) {
        if (gen !== state.gen) { return; }
        if (!attemptSel.value && state.attempt && chunk.attempt !== state.attempt) { return reset(); }
        state.attempt = chunk.attempt || null;
        if (chunk.data) {
          pre.appendChild(document.createTextNode(chunk.data));
          if (follow.checked) { pre.scrollTop = pre.scrollHeight; }
        }
        state.offset = chunk.offset;
        if (chunk.complete) {
          status.textContent = chunk.attempt ? "Attempt " + chunk.attempt + " has ended; this is all of its log." : "No attempt has started yet.";
          // "latest": a retry may start a new attempt, so keep looking until the job has ended
          if (!attemptSel.value && !ended()) { state.timer = setTimeout(function () { tick(gen); }, 2000); }
          return;
        }
        status.textContent = chunk.attempt ? "Following attempt " + chunk.attempt + ", rank " + chunk.rank + "." : "Waiting for the first attempt.";
        // a full chunk means more is waiting: read on at once; otherwise look again in a second
        state.timer = setTimeout(function () { tick(gen); }, chunk.data && chunk.data.length >= 1048576 ? 0 : 1000);
      }).catch(function (err) {
        if (gen !== state.gen) { return; }
        status.textContent = "Log unavailable: " + err.message;
        state.timer = setTimeout(function () { tick(gen); }, 3000);
      });
    }
    attemptSel.addEventListener("change", reset);
    rankSel.addEventListener("change", reset);
    follow.addEventListener("change", function () { if (follow.checked) { pre.scrollTop = pre.scrollHeight; } });
    reset();
  }

  // -- charts --------------------------------------------------------------------------------------
  var plots = [];
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function axis() {
    var fg = css("--muted"), line = css("--line");
    return { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  }
  function drawCharts(root, charts) {
    plots.forEach(function (p) { p.destroy(); });
    plots = [];
    var slots = root.querySelectorAll("[data-chart]");
    slots.forEach(function (slot) {
      var c = charts[Number(slot.dataset.chart)];
      if (!c || typeof uPlot === "undefined") { return; }
      var labels = Object.keys(c.series);
      var width = Math.max(240, slot.clientWidth || 400);
      var opts = {
        width: width, height: 200,
        scales: { x: { time: true } },
        axes: [axis(), Object.assign(axis(), { size: 60 })],
        legend: { show: labels.length > 1 },
        series: [{}].concat(labels.map(function (l, i) {
          return { label: l, stroke: i ? css("--chart2") : css("--chart1"), width: 2, spanGaps: false, points: { show: c.x.length < 60 } };
        })),
      };
      var data = [c.x].concat(labels.map(function (l) { return c.series[l]; }));
      plots.push(new uPlot(opts, data, slot));
    });
  }
  function startCharts() {
    var holder = document.getElementById("charts-data");
    if (!holder) { return; }
    var data = JSON.parse(holder.textContent);
    var root = holder.parentElement;
    drawCharts(root, data.charts);
    var count = data.charts.length;
    if (holder.dataset.live !== "1") { return; }
    setInterval(function () {
      if (document.hidden) { return; }
      getJSON(holder.dataset.src).then(function (fresh) {
        if (fresh.charts.length !== count) { window.location.reload(); return; }  // a new metric appeared
        data.charts = fresh.charts;
        fresh.charts.forEach(function (c, i) {
          var p = plots[i];
          if (!p) { return; }
          p.setData([c.x].concat(Object.keys(c.series).map(function (l) { return c.series[l]; })));
        });
      }).catch(function () {});
    }, 2000);
    var resize;
    window.addEventListener("resize", function () {
      clearTimeout(resize);
      resize = setTimeout(function () { drawCharts(root, data.charts); }, 200);
    });
  }

  function start() {
    var live = document.getElementById("live");
    if (live && live.dataset.state) { document.body.dataset.state = live.dataset.state; }
    startLogs();
    startCharts();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
