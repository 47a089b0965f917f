// wsload's run page: draws one JSON document (coordinator/html_report.py page_document).
// Frozen (--html): the document embedded below. Live (--dashboard): the same, then
// WSLOAD_DATA_URL polled once a second until the document says the run is over.
// Every value is put in the page as text (textContent), never as markup.
(function () {
  "use strict";
  var COLORS = ["#0969da", "#1a7f37", "#bf3989", "#9a6700", "#cf222e", "#8250df", "#1b7c83",
                "#e16f24", "#57606a", "#0550ae"];
  var charts = {};
  var current = null;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function byId(id) { return document.getElementById(id); }
  function num(v) { return v === null || v === undefined ? "-" : Number(v).toLocaleString("en-US"); }
  function ms(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    var v = seconds * 1000;
    return (v >= 100 ? v.toFixed(1) : v >= 10 ? v.toFixed(2) : v.toFixed(3)) + " ms";
  }
  function pct(v) { return v === null || v === undefined ? "-" : v.toFixed(2) + " %"; }
  function rate(v) { return v === null || v === undefined ? "-" : v.toFixed(1) + " /s"; }

  function table(id, headers, rows, numeric) {
    var t = byId(id);
    t.textContent = "";
    var head = el("thead"), tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", h)); });
    head.appendChild(tr);
    t.appendChild(head);
    var body = el("tbody");
    rows.forEach(function (row) {
      var r = el("tr");
      row.forEach(function (cell, i) {
        var td;
        if (cell && typeof cell === "object") {
          td = el("td", cell.text, cell.cls);
          if (cell.figure) td.setAttribute("data-figure", cell.figure);
        } else {
          td = el("td", cell, numeric && numeric[i] ? "num" : "");
        }
        r.appendChild(td);
      });
      body.appendChild(r);
    });
    t.appendChild(body);
  }

  function banner(doc) {
    var v = doc.verdict, node = byId("verdict");
    var status = v.status;
    node.className = "verdict status-" + status.replace(/ /g, "-");
    node.setAttribute("data-status", status);
    if (doc.live) {
      node.textContent = "RUNNING " + Math.floor(doc.elapsed) + " s of " + doc.duration + " s";
    } else {
      node.textContent = status.toUpperCase();
    }
    var reasons = byId("reasons");
    reasons.textContent = "";
    v.reasons.forEach(function (r) { reasons.appendChild(el("li", r)); });
    if (doc.generator_bound) {
      reasons.appendChild(el("li", "generator-bound: " + doc.generator_bound +
                                   " (the figures describe wsload's limit as much as the target's)", "warn"));
    }
    byId("title").textContent = "wsload " + doc.target;
    document.title = "wsload " + doc.target + " " + (doc.live ? "RUNNING" : status.toUpperCase());
  }

  function tiles(doc) {
    var t = doc.totals, box = byId("tiles");
    var items = [
      ["sent", "sent", num(t.sent)],
      ["received", doc.conversation ? "expects met" : "received", num(t.received)],
      ["success_rate", "success rate", pct(t.success_rate)],
      ["throughput", "throughput", rate(t.throughput)],
      ["p50", "latency p50", ms(doc.latency.p50)],
      ["p99", "latency p99", ms(doc.latency.p99)],
      ["timed_out", "timed out", num(t.timed_out)],
      ["errors", "errors", num(t.errors)],
      doc.live ? ["clients_connected", "connected now", num(t.clients_connected)]
               : ["peak_connected", "peak connected", num(t.peak_connected)],
      ["elapsed", "elapsed", doc.elapsed.toFixed(1) + " s"]
    ];
    box.textContent = "";
    items.forEach(function (it) {
      var tile = el("div", null, "tile");
      var raw = it[0] === "p50" || it[0] === "p99" ? doc.latency[it[0]] :
        it[0] === "elapsed" ? doc.elapsed : t[it[0]];
      tile.setAttribute("data-figure", it[0]);
      tile.setAttribute("data-value", raw === null || raw === undefined ? "" : String(raw));
      tile.appendChild(el("div", it[1], "label"));
      tile.appendChild(el("div", it[2], "value"));
      box.appendChild(tile);
    });
  }

  // Axes start at zero (a count or a latency is never negative).
  function fromZero(u, min, max) {
    if (max === null || max === undefined || !isFinite(max) || max <= 0) return [0, 1];
    return [0, max * 1.08];
  }
  var NINES = [0, 1, 2, 3, 4, 5];
  // x of a distribution chart: "nines" (-log10 of the share above), so the tail gets room.
  function ninesLabel(v, tick) {
    if (v === null || v === undefined) return "-";
    if (v >= 5) return "99.999%";
    var p = 100 * (1 - Math.pow(10, -v));
    var decimals = tick ? Math.max(0, Math.round(v) - 2) : Math.min(3, Math.max(1, Math.ceil(v) - 1));
    return p.toFixed(decimals) + "%";
  }
  var SECONDS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200];
  function toNines(p) { return p >= 100 ? 5 : Math.min(5, -Math.log10(1 - p / 100)); }

  function chartWidth(node) { return Math.max(280, node.clientWidth || 520); }

  // One chart: recreated when its series change, otherwise given the new data.
  function draw(id, labels, data, opts) {
    var node = byId(id);
    var key = labels.join("\u0001") + "|" + (opts.kind || "time");
    var hasData = data.length > 1 && data[0].length > 0;
    var existing = charts[id];
    if (existing && existing.key === key && hasData) {
      // Live: new data, but a chart the reader zoomed into stays zoomed.
      var plot0 = existing.plot, xs = data[0];
      var range = existing.zoomed ? {min: plot0.scales.x.min, max: plot0.scales.x.max}
                                  : {min: xs[0], max: xs[xs.length - 1]};
      plot0.setData(data, false);
      plot0.setScale("x", range);
      return;
    }
    if (existing) { existing.plot.destroy(); delete charts[id]; }
    node.textContent = "";
    if (!hasData) { node.appendChild(el("div", opts.empty || "no data yet", "empty")); return; }
    var nines = opts.kind === "nines";
    var series = [{
      label: nines ? "percentile" : "second",
      value: nines ? function (u, v) { return ninesLabel(v, false); } : undefined
    }];
    labels.forEach(function (label, i) {
      var s = {label: label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false};
      if (opts.unit) s.value = function (u, v) { return v === null || v === undefined ? "-" : (+v.toFixed(3)) + " " + opts.unit; };
      if (opts.bars && i === 0) s.fill = "rgba(207,34,46,0.15)";
      series.push(s);
    });
    var plot = new uPlot({
      width: chartWidth(node),
      height: 240,
      series: series,
      scales: {x: {time: false}, y: {range: fromZero}},
      axes: [
        nines ? {label: "percentile", splits: function () { return NINES; },
                 values: function (u, splits) {
                   return splits.map(function (v) { return ninesLabel(v, true); });
                 }}
              : {label: "seconds into the run", incrs: SECONDS},
        {label: opts.ylabel, size: 60}
      ],
      cursor: {drag: {x: true, y: false}},
      hooks: {setScale: [function (u, scaleKey) {
        var xs = u.data[0], entry = charts[id];
        if (scaleKey !== "x" || !entry || !xs.length) return;
        entry.zoomed = u.scales.x.min > xs[0] || u.scales.x.max < xs[xs.length - 1];
      }]},
      legend: {live: true}
    }, data, node);
    charts[id] = {plot: plot, key: key, zoomed: false};
  }

  function nonNull(arr) { return arr.map(function (v) { return v === null ? null : v; }); }

  function timeCharts(doc) {
    var s = doc.series;
    draw("chart-throughput", ["sent/s", doc.conversation ? "met/s" : "received/s"],
         [s.t, s.sent, s.received], {ylabel: "messages per second"});
    draw("chart-latency", ["p50", "p95", "p99", "max"],
         [s.t, nonNull(s.latency.p50), nonNull(s.latency.p95), nonNull(s.latency.p99),
          nonNull(s.latency.max)], {ylabel: "ms", unit: "ms"});
    draw("chart-connections", ["connected", "connects/s", "disconnects/s", "reconnects/s"],
         [s.t, s.connected, s.connects, s.disconnects, s.reconnects], {ylabel: "clients"});
    var errLabels = ["timed out"].concat(s.error_kinds);
    draw("chart-errors", errLabels, [s.t, s.timed_out].concat(s.errors_by_kind),
         {ylabel: "per second"});
    var keys = ["p50", "p90", "p95", "p99", "p99.9", "max"];
    table("latency-table", ["whole run", "p50", "p90", "p95", "p99", "p99.9", "max"], [
      ["latency"].concat(keys.map(function (k) { return ms(doc.latency[k]); })),
      ["service time"].concat(keys.map(function (k) { return ms(doc.service_time[k]); })),
      ["connect time"].concat(keys.map(function (k) { return ms(doc.connect_time[k]); }))
    ], [false, true, true, true, true, true, true]);
  }

  function distChart(id, named, ylabel) {
    // named: [[label, [[percentile, ms], ...]], ...], all on the same percentiles.
    var drawn = named.filter(function (n) { return n[1].length; });
    if (!drawn.length) { draw(id, [], [[]], {kind: "nines", empty: "no samples"}); return; }
    var xs = drawn[0][1].map(function (pt) { return toNines(pt[0]); });
    var data = [xs].concat(drawn.map(function (n) {
      return n[1].map(function (pt) { return pt[1]; });
    }));
    // uPlot needs x ascending and unique: nines of 99.999 and 100 both cap at 5.
    var keep = xs.map(function (x, i) { return i === 0 || x > xs[i - 1]; });
    data = data.map(function (col) { return col.filter(function (_, i) { return keep[i]; }); });
    draw(id, drawn.map(function (n) { return n[0]; }), data,
         {kind: "nines", ylabel: ylabel, unit: "ms"});
  }

  function thresholds(doc) {
    var section = byId("thresholds-section");
    section.hidden = !doc.thresholds.length;
    table("thresholds", ["threshold", "measured", "result"], doc.thresholds.map(function (t) {
      var result = t.passed ? "PASS" : "FAIL";
      return [t.threshold, t.shown, {text: result, cls: t.passed ? "pass" : "fail",
                                       figure: "threshold"}];
    }));
  }

  function steps(doc) {
    var section = byId("steps-section");
    section.hidden = !doc.steps.length;
    if (!doc.steps.length) return;
    table("steps", ["step", "expected", "met", "timed out", "failed", "lost", "unanswered",
                    "success rate", "latency p50", "latency p99", "service time p99"],
      doc.steps.map(function (s) {
        return [s.name, num(s.expected), num(s.met), num(s.timed_out), num(s.failed), num(s.lost),
                num(s.unanswered), pct(s.success_rate), ms(s.latency.p50), ms(s.latency.p99),
                ms(s.service_time.p99)];
      }), [false, true, true, true, true, true, true, true, true, true, true]);
    var shown = doc.steps.slice(0, doc.series.steps_met.length);
    draw("chart-steps-met", shown.map(function (s) { return s.name; }),
         [doc.series.t].concat(doc.series.steps_met), {ylabel: "per second"});
    distChart("chart-steps-dist", shown.map(function (s) { return [s.name, s.distribution]; }), "ms");
    var sc = byId("scenarios-section");
    sc.hidden = !doc.scenarios.length;
    table("scenarios", ["scenario", "clients", "iterations", "unsolicited"],
      doc.scenarios.map(function (s) { return [s.name, num(s.clients), num(s.iterations), num(s.unsolicited)]; }),
      [false, true, true, true]);
  }

  function fanout(doc) {
    var f = doc.fanout, section = byId("fanout-section");
    section.hidden = !f;
    if (!f) return;
    var t = f.total;
    byId("fanout-line").textContent = "Delivered " + num(t.delivered) + " of " + num(t.expected) +
      " owed (" + pct(t.delivery_rate) + "), " + num(t.missing) + " missing; " + f.clock + "." +
      (doc.live ? " (So far: deliveries still in flight count as missing until the run ends.)" : "");
    var rows = f.topics.slice();
    if (f.topics.length !== 1) rows.push(t);
    table("fanout", ["topic", "published", "expected", "delivered", "missing", "dups",
                     "out of order", "early", "p50", "p99", "max"],
      rows.map(function (r) {
        return [r.name, num(r.published), num(r.expected), num(r.delivered), num(r.missing),
                num(r.duplicates), num(r.out_of_order), num(r.early),
                ms(r.latency_percentiles.p50), ms(r.latency_percentiles.p99),
                ms(r.latency_percentiles.max)];
      }), [false, true, true, true, true, true, true, true, true, true, true]);
    byId("fanout-missing").textContent = f.missing_sample.length ?
      "Missing deliveries (first " + f.missing_sample.length + "): " + f.missing_sample.map(function (m) {
        return m.topic + " #" + m.seq + " to client " + m.client;
      }).join(", ") : (f.more_topics ? "and " + f.more_topics + " more topics (the JSON lists them)" : "");
    distChart("chart-fanout-dist", [["delivery latency", f.distribution]], "ms");
  }

  function render(doc) {
    current = doc;
    document.querySelector("main").hidden = !doc;  // before the run's first second: the banner
    if (!doc) return;
    banner(doc);
    tiles(doc);
    thresholds(doc);
    timeCharts(doc);
    distChart("chart-latency-dist", [["latency", doc.distributions.latency]], "ms");
    distChart("chart-connect-dist", [["connect time", doc.distributions.connect]], "ms");
    steps(doc);
    fanout(doc);
    table("errors", ["kind", "count", "first seen"], doc.errors.length ?
      doc.errors.map(function (e) { return [e.kind, num(e.count), {text: e.text, cls: "text"}]; }) :
      [["none", "0", ""]], [false, true, false]);
    table("parameters", ["parameter", "value"], doc.parameters.map(function (p) {
      return [p[0], {text: p[1], cls: "text"}];
    }));
    table("workers", ["worker", "sent", "received", "timed out", "lost", "status"],
      doc.workers.map(function (w) {
        return [w.id, num(w.sent), num(w.received), num(w.timed_out), num(w.lost), w.status];
      }), [false, true, true, true, true, false]);
    document.body.setAttribute("data-rendered", String((+document.body.getAttribute("data-rendered") || 0) + 1));
  }

  // Live: poll once a second; one request at a time, so a slow page never piles them up.
  // 204: the run has not reported its first second yet. Three failures in a row: the run
  // (and its dashboard) is over; the page keeps what it last showed.
  var failures = 0;
  function poll() {
    if (!window.WSLOAD_DATA_URL || (current && !current.live)) return;
    var ctrl = new AbortController();
    var timer = setTimeout(function () { ctrl.abort(); }, 5000);
    fetch(window.WSLOAD_DATA_URL, {cache: "no-store", signal: ctrl.signal})
      .then(function (r) { return r.status === 200 ? r.json() : null; })
      .then(function (doc) { failures = 0; if (doc) render(doc); }, function () {
        if (++failures < 3) return;
        byId("reasons").textContent = "";
        byId("reasons").appendChild(el("li", "the run's dashboard stopped answering (the run is over)"));
        window.WSLOAD_DATA_URL = "";
      })
      .then(function () { clearTimeout(timer); setTimeout(poll, 1000); });
  }

  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (id) {
      charts[id].plot.setSize({width: chartWidth(byId(id)), height: 240});
    });
  });

  var initial = JSON.parse(byId("wsload-data").textContent);
  window.wsloadDocument = function () { return current; };
  window.wsloadCharts = function () {
    var plots = {};
    Object.keys(charts).forEach(function (id) { plots[id] = charts[id].plot; });
    return plots;
  };
  render(initial);
  if (window.WSLOAD_DATA_URL) setTimeout(poll, initial ? 1000 : 200);
})();
