/* tilec report page: interaction only (the page is complete without it). Inlined, no network. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tilec-data").textContent);
  var tip = document.getElementById("tip");

  function fmtBytes(n) {
    var units = ["KiB", "MiB", "GiB", "TiB"];
    var sign = n < 0 ? "-" : "";
    n = Math.abs(n);
    if (n < 1024) { return sign + Math.round(n) + " B"; }
    for (var i = 0; i < units.length; i++) {
      n /= 1024;
      if (n < 1024 || i === units.length - 1) {
        return sign + n.toFixed(n < 10 ? 2 : 1) + " " + units[i];
      }
    }
    return String(n);
  }
  function pct(part, whole) { return whole ? (100 * part / whole).toFixed(1) + " %" : "-"; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c];
    });
  }
  function hex(c) { return [1, 3, 5].map(function (k) { return parseInt(c.substr(k, 2), 16); }); }
  /* Same colour scale as tilec.report.html.heat_colour. */
  function heat(f) {
    if (!(f > 0)) { return data.unused; }
    var scale = data.scale, pos = f * (scale.length - 1);
    if (f > 1) { scale = data.over; pos = Math.min(f - 1, 1) * (scale.length - 1); }
    var i = Math.min(Math.floor(pos), scale.length - 2);
    var t = pos - i, a = hex(scale[i]), b = hex(scale[i + 1]);
    return "#" + [0, 1, 2].map(function (k) {
      var v = Math.round(a[k] * (1 - t) + b[k] * t);
      return (v < 16 ? "0" : "") + v.toString(16);
    }).join("");
  }
  function showTip(ev, text) {
    tip.textContent = text;
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth) { x = ev.clientX - tip.offsetWidth - 10; }
    if (y + tip.offsetHeight > window.innerHeight) { y = ev.clientY - tip.offsetHeight - 10; }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }
  function inRanges(ranges, t) {
    for (var i = 0; i < ranges.length; i++) {
      if (ranges[i][0] <= t && t < ranges[i][1]) { return true; }
    }
    return false;
  }

  /* ------------------------------------------------------------------ heatmap */
  var heatmap = document.getElementById("heatmap");
  var current = data.peak.slice();  /* bytes shown per tile (peak, or one step) */
  var mode = "peak", shownStep = data.peak_step;
  if (heatmap) {
    var rects = heatmap.querySelectorAll("#tiles rect");
    var index = new Map();
    for (var i = 0; i < rects.length; i++) { index.set(rects[i], i); }
    var info = document.getElementById("tile-info");

    var describe = function (t) {
      var cols = data.cols, r = Math.floor(t / cols), c = t % cols;
      var lines = ["<b>tile " + t + "</b> (row " + r + ", col " + c + ")"];
      var shown = current[t];
      if (mode === "step") {
        lines.push("at step " + shownStep + ": " + fmtBytes(shown) + " (" + pct(shown, data.budget)
          + " of budget)");
      }
      lines.push("peak " + fmtBytes(data.peak[t]) + " (" + pct(data.peak[t], data.budget)
        + " of budget)" + (data.tile_step && data.peak[t] ? " at step " + data.tile_step[t] : ""));
      if (data.tile_cats && data.peak[t]) {
        var parts = data.tile_cats[t], total = 0, bar = "", list = [];
        parts.forEach(function (v) { total += v; });
        parts.forEach(function (v, k) {
          if (!v) { return; }
          bar += "<span style=\"width:" + (100 * v / total).toFixed(2) + "%;background:"
            + data.colours[k] + "\" title=\"" + esc(data.cats[k]) + "\"></span>";
          list.push("<span class=\"sw\" style=\"background:" + data.colours[k] + "\"></span>"
            + esc(data.cats[k]) + " " + fmtBytes(v));
        });
        lines.push("<div class=\"bar\">" + bar + "</div>" + list.join(" "));
      }
      var ops = data.ops.filter(function (o) { return inRanges(o[3], t); });
      if (ops.length) {
        lines.push("runs " + ops.length + " op" + (ops.length > 1 ? "s" : "") + ": "
          + ops.slice(0, 8).map(function (o) {
            return "<code>" + esc(o[0]) + "</code> (step " + o[2] + ")";
          }).join(", ") + (ops.length > 8 ? ", ..." : ""));
      }
      return lines.join("<br>");
    };
    heatmap.addEventListener("mousemove", function (ev) {
      var t = index.get(ev.target);
      if (t === undefined) { hideTip(); return; }
      info.innerHTML = describe(t);
      showTip(ev, "tile " + t + ": " + fmtBytes(current[t]) + " (" + pct(current[t], data.budget)
        + ")");
    });
    heatmap.addEventListener("mouseleave", hideTip);

    var recolour = function () {
      for (var t = 0; t < rects.length; t++) {
        rects[t].setAttribute("fill", heat(data.budget ? current[t] / data.budget : 0));
      }
    };
    var select = document.getElementById("heat-mode");
    var slider = document.getElementById("heat-step");
    var label = document.getElementById("heat-step-label");
    var atStep = function (s) {
      var occ = new Array(data.tiles).fill(0);
      (data.buffers || []).forEach(function (b) {
        if (b[0] <= s && s < b[1]) {
          b[4].forEach(function (r) { for (var t = r[0]; t < r[1]; t++) { occ[t] += b[2]; } });
        }
      });
      return occ;
    };
    var update = function () {
      mode = select.value;
      slider.disabled = mode !== "step" || !data.buffers;
      if (mode === "step" && data.buffers) {
        shownStep = Number(slider.value);
        current = atStep(shownStep);
        var ops = data.steps[shownStep] || [];
        label.textContent = "step " + shownStep + ": " + ops.slice(0, 3).join(", ")
          + (ops.length > 3 ? " ..." : "");
      } else {
        current = data.peak.slice();
        label.textContent = data.buffers ? "" : "(no buffers in this plan)";
      }
      recolour();
    };
    if (select && slider) {
      select.addEventListener("change", update);
      slider.addEventListener("input", update);
    }
  }

  /* ------------------------------------------------------------------ charts */
  function hookChart(id, rows) {
    var svg = document.getElementById(id);
    if (!svg || !rows || !rows.length) { return; }
    var cursor = svg.querySelector("line.cursor");
    var left = data.chart_x[0], width = data.chart_x[1];
    svg.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect();
      var sx = (ev.clientX - box.left) * (svg.viewBox.baseVal.width / box.width);
      var s = Math.floor((sx - left) / width * rows.length);
      if (s < 0 || s >= rows.length) { hideTip(); cursor.setAttribute("visibility", "hidden");
        return; }
      var x = left + width * (s + 0.5) / rows.length;
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
      cursor.setAttribute("visibility", "visible");
      var total = 0, lines = [];
      rows[s].forEach(function (v, k) {
        total += v;
        if (v) { lines.push(data.cats[k] + ": " + fmtBytes(v)); }
      });
      var ops = data.steps[s] || [];
      showTip(ev, "step " + s + (ops.length ? " · " + ops.slice(0, 3).join(", ")
        + (ops.length > 3 ? " ..." : "") : "") + "\ntotal " + fmtBytes(total) + "\n"
        + lines.reverse().join("\n"));
    });
    svg.addEventListener("mouseleave", function () {
      hideTip(); cursor.setAttribute("visibility", "hidden");
    });
  }
  hookChart("chart-tile", data.timeline_tile);
  hookChart("chart-chip", data.timeline_chip);

  /* ------------------------------------------------------------------ ops table */
  var table = document.getElementById("ops");
  if (table) {
    var heads = table.querySelectorAll("th");
    var body = table.tBodies[0];
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("asc");
        heads.forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var num = th.getAttribute("data-type") === "num";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col], d;
          if (num) { d = Number(x.getAttribute("data-v")) - Number(y.getAttribute("data-v")); }
          else { d = x.textContent.localeCompare(y.textContent); }
          return asc ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    var outline = document.getElementById("outline");
    var tiles = heatmap ? heatmap.querySelectorAll("#tiles rect") : [];
    body.addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr");
      if (!tr || !outline) { return; }
      var was = tr.classList.contains("sel");
      body.querySelectorAll("tr.sel").forEach(function (r) { r.classList.remove("sel"); });
      outline.textContent = "";
      if (was) { return; }
      tr.classList.add("sel");
      var op = data.ops[Number(tr.getAttribute("data-op"))];
      var ns = "http://www.w3.org/2000/svg";
      op[3].forEach(function (r) {
        /* one outline per piece of the range that lies on one display row */
        var t = r[0];
        while (t < r[1]) {
          var rowEnd = (Math.floor(t / data.cols) + 1) * data.cols, end = Math.min(r[1], rowEnd);
          var a = tiles[t], b = tiles[end - 1];
          if (!a || !b) { break; }
          var box = document.createElementNS(ns, "rect");
          var x = Number(a.getAttribute("x")), y = Number(a.getAttribute("y"));
          box.setAttribute("x", x - 1);
          box.setAttribute("y", y - 1);
          box.setAttribute("width", Number(b.getAttribute("x")) + Number(b.getAttribute("width"))
            - x + 2);
          box.setAttribute("height", Number(a.getAttribute("height")) + 2);
          box.setAttribute("class", "outline");
          outline.appendChild(box);
          t = end;
        }
      });
      if (heatmap) { heatmap.scrollIntoView({ block: "nearest" }); }
    });
  }
  document.documentElement.setAttribute("data-ready", "1");
})();
