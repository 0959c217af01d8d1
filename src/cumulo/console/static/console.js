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
  // The page's state (a job's) follows its live region: the log and charts stop once it has ended.
  document.addEventListener("htmx:afterSwap", function () {
    var live = document.getElementById("live");
    if (live && live.dataset.state) { document.body.dataset.state = live.dataset.state; }
  });

  // Destructive forms ask first.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });

  function getJSON(url) {
    // x-cumulo-poll: a repeated read (logs, charts); the next one refreshes what this one would have
    return fetch(url, { credentials: "same-origin", headers: { accept: "application/json", "x-cumulo-poll": "1" } }).then(function (r) {
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

  // -- charts: every .charts group, drawn from its data-charts JSON (series.py's shape) -------------
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function axis() {
    var fg = css("--muted"), line = css("--line");
    return { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  }
  function columns(c) { return [c.x].concat(Object.keys(c.series).map(function (l) { return c.series[l]; })); }
  function drawGroup(group, charts) {
    (group._plots || []).forEach(function (p) { p.destroy(); });
    group._plots = [];
    group._charts = charts;
    if (typeof uPlot === "undefined") { return; }
    group.querySelectorAll("[data-chart]").forEach(function (slot) {
      var c = charts[Number(slot.dataset.chart)];
      if (!c) { return; }
      var labels = Object.keys(c.series);
      var opts = {
        width: Math.max(240, slot.clientWidth || 400), height: 200,
        scales: { x: { time: true } },
        axes: [axis(), Object.assign(axis(), { size: 60 })],
        legend: { show: labels.length > 1 },
        series: [{}].concat(labels.map(function (l, i) {
          return { label: l, stroke: i ? css("--chart2") : css("--chart1"), width: 2, spanGaps: false, points: { show: c.x.length < 60 } };
        })),
      };
      group._plots.push(new uPlot(opts, columns(c), slot));
    });
  }
  function startGroup(group) {
    var holder = group;
    if (!holder.dataset.charts) { return; }
    var charts = JSON.parse(holder.dataset.charts).charts;
    drawGroup(group, charts);
    if (holder.dataset.live !== "1" || !holder.dataset.src) { return; }
    var timer = setInterval(function () {
      if (!document.body.contains(group)) { clearInterval(timer); return; }
      if (document.hidden) { return; }
      getJSON(holder.dataset.src).then(function (fresh) {
        if (fresh.charts.length !== group._charts.length) { window.location.reload(); return; }  // a new metric
        group._charts = fresh.charts;
        fresh.charts.forEach(function (c, i) { if (group._plots[i]) { group._plots[i].setData(columns(c)); } });
        if (ended()) { clearInterval(timer); }
      }).catch(function () {});
    }, 2000);
  }
  // every group not drawn yet: at start, and after each poll (charts inside a live region come back new)
  function startCharts() {
    document.querySelectorAll(".charts").forEach(function (g) { if (!g._plots) { startGroup(g); } });
  }
  document.addEventListener("htmx:afterSettle", startCharts);
  var resize;
  window.addEventListener("resize", function () {
    clearTimeout(resize);
    resize = setTimeout(function () {
      document.querySelectorAll(".charts").forEach(function (g) { if (g._charts) { drawGroup(g, g._charts); } });
    }, 200);
  });

  function start() {
    var live = document.getElementById("live");
    if (live && live.dataset.state) { document.body.dataset.state = live.dataset.state; }
    startLogs();
    startCharts();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
