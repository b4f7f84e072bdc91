/* report.html / compare / history pages. Data comes from the inline JSON blob; every value from
   the run is written with textContent, never as HTML. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /* Figure toggles: a button with data-figure sets show-FIGURE on the .figset elements of its section. */
  document.querySelectorAll(".fig-btn").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var scope = btn.closest("section") || document;
      scope.querySelectorAll(".fig-btn").forEach(function (b) { b.classList.toggle("on", b === btn); });
      scope.querySelectorAll(".figset").forEach(function (set) {
        set.className = set.className.replace(/\bshow-\S+/g, "").trim() + " show-" + btn.dataset.figure;
      });
    });
  });

  var blob = document.getElementById("report-data");
  var body = document.getElementById("browser-body");
  if (!blob || !body) return;
  var data = JSON.parse(blob.textContent);
  var rows = data.rows, examples = data.examples, PAGE = 25;
  var state = { kind: "all", row: "", slice: "", sort: "id", q: "", page: 0 };
  var $ = function (id) { return document.getElementById(id); };

  // header and selectors
  var head = el("tr");
  ["example", "text", "gold"].forEach(function (h) { head.appendChild(el("th", "", h)); });
  rows.forEach(function (r, i) {
    head.appendChild(el("th", "", r.label));
    var o = el("option", "", r.label); o.value = String(i); $("f-row").appendChild(o);
  });
  $("browser-head").appendChild(head);
  var sliceValues = [];
  (data.slices || []).forEach(function (name) {
    var seen = {};
    examples.forEach(function (e) { var v = String((e.s || {})[name]); seen[v] = (seen[v] || 0) + 1; });
    Object.keys(seen).sort(function (a, b) { return seen[b] - seen[a]; }).slice(0, 200).forEach(function (v) {
      var o = el("option", "", name + " = " + v + " (" + seen[v] + ")"); o.value = String(sliceValues.length);
      sliceValues.push([name, v]); $("f-slice").appendChild(o);
    });
  });
  if (!sliceValues.length) $("f-slice-label").style.display = "none";

  function rowsOf() { return state.row === "" ? rows.map(function (_, i) { return i; }) : [Number(state.row)]; }

  function keep(e) {
    var idx = rowsOf(), a = e.a;
    if (state.slice !== "") {
      var sv = sliceValues[Number(state.slice)];
      if (String((e.s || {})[sv[0]]) !== sv[1]) return false;
    }
    if (state.kind === "wrong" && !idx.some(function (i) { return a[i] && !a[i][4]; })) return false;
    if (state.kind === "invalid" && !idx.some(function (i) { return a[i] && a[i][1] !== "valid"; })) return false;
    if (state.kind === "confident" && !idx.some(function (i) {
      return a[i] && !a[i][4] && a[i][1] === "valid" && a[i][3] !== null && a[i][3] >= data.confident; })) return false;
    if (state.kind === "disagree") {
      var seen = {}, n = 0;
      a.forEach(function (x) { if (x && !seen[x[0]]) { seen[x[0]] = 1; n++; } });
      if (n < 2) return false;
    }
    if (state.q) {
      var q = state.q, hit = (e.t || "").toLowerCase().indexOf(q) >= 0 || e.id.toLowerCase().indexOf(q) >= 0;
      if (!hit) hit = a.some(function (x) { return x && ((x[0] || "").toLowerCase().indexOf(q) >= 0 || (x[2] || "").toLowerCase().indexOf(q) >= 0); });
      if (!hit) return false;
    }
    return true;
  }

  function errConf(e) {
    var best = -1;
    rowsOf().forEach(function (i) { var x = e.a[i]; if (x && !x[4] && x[3] !== null && x[3] > best) best = x[3]; });
    return best;
  }

  function natural(a, b) { return a.id.localeCompare(b.id, undefined, { numeric: true }); }

  function render() {
    var list = examples.filter(keep);
    if (state.sort === "len-desc") list.sort(function (a, b) { return (b.t || "").length - (a.t || "").length || natural(a, b); });
    else if (state.sort === "len-asc") list.sort(function (a, b) { return (a.t || "").length - (b.t || "").length || natural(a, b); });
    else if (state.sort === "conf") list.sort(function (a, b) { return errConf(b) - errConf(a) || natural(a, b); });
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    $("browser-count").textContent = list.length + " of " + examples.length + " examples";
    $("browser-count").dataset.count = String(list.length);
    $("p-page").textContent = " page " + (state.page + 1) + " of " + pages + " ";
    var frag = document.createDocumentFragment();
    list.slice(state.page * PAGE, state.page * PAGE + PAGE).forEach(function (e) {
      var tr = el("tr"); tr.dataset.id = e.id;
      tr.appendChild(el("td", "eid", e.id));
      tr.appendChild(el("td", "text", e.t === null || e.t === undefined ? "(text not recorded)" : e.t));
      tr.appendChild(el("td", "", e.g));
      e.a.forEach(function (x) {
        var td = el("td", "ans");
        if (!x) { td.textContent = "–"; tr.appendChild(td); return; }
        var d = el("details"), s = el("summary");
        s.appendChild(el("span", x[1] !== "valid" ? "inv" : (x[4] ? "ok" : "bad"), x[0]));
        if (x[3] !== null) s.appendChild(el("span", "conf", x[3].toFixed(2)));
        d.appendChild(s);
        d.appendChild(el("div", "muted", "outcome: " + x[1]));
        d.appendChild(el("pre", "raw", x[2] === null ? "(no text)" : x[2]));
        td.appendChild(d); tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    body.textContent = "";
    body.appendChild(frag);
  }

  function on(id, ev, key) {
    $(id).addEventListener(ev, function () {
      state[key] = key === "q" ? $(id).value.trim().toLowerCase() : $(id).value;
      state.page = 0; render();
    });
  }
  on("f-kind", "change", "kind"); on("f-row", "change", "row"); on("f-slice", "change", "slice");
  on("f-sort", "change", "sort"); on("f-search", "input", "q");
  $("p-prev").addEventListener("click", function () { if (state.page > 0) { state.page--; render(); } });
  $("p-next").addEventListener("click", function () { state.page++; render(); });
  render();
})();
