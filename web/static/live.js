// Follows the builds in progress through /events (Server-Sent Events) and
// filters the package list as one types. The page reads without it.
(function () {
  "use strict";
  var tbody = document.querySelector("#active-builds tbody");
  var none = document.getElementById("no-active");
  var status = document.getElementById("live-status");

  function describe(e) {
    if (e.phase === "realising" && e.total > 0) return "realising " + e.done + " of " + e.total + " paths";
    if (e.phase === "compressing" && e.total > 0)
      return "compressing " + (e.done / 1e6).toFixed(1) + " of " + (e.total / 1e6).toFixed(1) + " MB";
    if (e.phase === "failed") return "failed: " + (e.error || "");
    if (e.phase === "done") return "done: " + e.layers + " layers, " + e.bytes + " bytes";
    return e.phase;
  }

  function row(e) {
    var tr = document.getElementById("build-" + e.build);
    if (!tr) {
      tr = document.createElement("tr");
      tr.id = "build-" + e.build;
      tr.dataset.build = e.build;
      ["image", "phase", "elapsed", "bar"].forEach(function (c) {
        var td = document.createElement("td");
        td.className = c;
        tr.appendChild(td);
      });
      var code = document.createElement("code");
      code.textContent = e.name;
      tr.cells[0].appendChild(code);
      tr.cells[3].appendChild(document.createElement("progress"));
      tbody.appendChild(tr);
    }
    return tr;
  }

  function update(e) {
    var tr = row(e);
    tr.dataset.phase = e.phase;
    tr.cells[1].textContent = describe(e);
    tr.cells[2].textContent = e.seconds.toFixed(1);
    var bar = tr.cells[3].firstChild;
    if (e.phase === "done") {
      bar.max = 1; bar.value = 1;
      if (e.key) {
        var a = document.createElement("a");
        a.href = "/image/" + e.key;
        a.appendChild(tr.cells[0].firstChild);
        tr.cells[0].appendChild(a);
      }
    } else if (e.total > 0) {
      bar.max = e.total; bar.value = e.done;
    } else {
      bar.removeAttribute("value");
    }
    if (e.phase === "done" || e.phase === "failed") {
      tr.classList.add(e.phase);
      setTimeout(function () { tr.remove(); none.hidden = tbody.rows.length > 0; }, 30000);
    }
    none.hidden = tbody.rows.length > 0;
  }

  if (tbody && window.EventSource) {
    var es = new EventSource("/events");
    es.addEventListener("build", function (m) { update(JSON.parse(m.data)); });
    es.onopen = function () { status.textContent = "Following /events live."; status.dataset.live = "1"; };
    es.onerror = function () { status.textContent = "Reconnecting to /events…"; };
  }

  var search = document.getElementById("search");
  var list = document.querySelector("#package-list tbody");
  var count = document.getElementById("package-count");
  if (search && list) {
    search.addEventListener("input", function () {
      var q = search.value.toLowerCase(), shown = 0;
      for (var i = 0; i < list.rows.length; i++) {
        var r = list.rows[i], hit = r.textContent.toLowerCase().indexOf(q) >= 0;
        r.hidden = !hit;
        if (hit) shown++;
      }
      count.textContent = shown + " packages shown.";
    });
  }
})();
