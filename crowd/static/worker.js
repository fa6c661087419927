// Argus worker pages: keyboard rating, rationale marking, and a submit that is safe to retry
// (the same client token is sent on every attempt, so the server stores one judgment).
(function () {
  "use strict";
  var form = document.getElementById("task-form");
  if (!form) return;
  var kind = form.dataset.kind;
  var started = Date.now();
  var statusEl = document.getElementById("status");
  var readonly = form.dataset.preview === "1";

  function say(text, cls) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.className = "status" + (cls ? " " + cls : "");
  }

  // ---- keyboard: number keys choose the n-th option of the active question -----------------
  var groups = Array.prototype.slice.call(form.querySelectorAll("fieldset.q"));
  function answered(fs) { return !!fs.querySelector("input:checked"); }
  function activeGroup() {
    var el = document.activeElement;
    for (var i = 0; i < groups.length; i++) if (groups[i].contains(el)) return groups[i];
    for (var j = 0; j < groups.length; j++) if (!answered(groups[j])) return groups[j];
    return groups[groups.length - 1];
  }
  function highlight() {
    var g = activeGroup();
    groups.forEach(function (fs) { fs.classList.toggle("active", fs === g); });
  }
  document.addEventListener("keydown", function (ev) {
    if (readonly || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type === "text"))) return;
    if (!/^[1-9]$/.test(ev.key) || !groups.length) return;
    var g = activeGroup();
    var inputs = g.querySelectorAll("input[type=radio]");
    var k = parseInt(ev.key, 10) - 1;
    if (k >= inputs.length) return;
    ev.preventDefault();
    inputs[k].checked = true;
    inputs[k].focus();
    var idx = groups.indexOf(g);
    for (var n = idx + 1; n < groups.length; n++) {
      if (!answered(groups[n])) { groups[n].querySelector("input").focus(); break; }
    }
    highlight();
  });
  form.addEventListener("change", highlight);
  form.addEventListener("focusin", highlight);
  highlight();

  // ---- rationale marking: click = point, drag = box, keyboard arrows + Enter -----------------
  var marker = document.getElementById("marker");
  var marks = [];
  if (marker) {
    var img = marker.querySelector("img");
    var max = parseInt(marker.dataset.max || "5", 10);
    var countEl = document.getElementById("mark-count");
    var cursor = { x: 0.5, y: 0.5 };
    var cursorEl = document.createElement("div");
    cursorEl.className = "mark-pt";
    cursorEl.style.opacity = "0.35";
    cursorEl.hidden = true;
    marker.appendChild(cursorEl);
    var drag = null, dragEl = null;

    function rel(ev) {
      var r = img.getBoundingClientRect();
      return { x: Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)),
               y: Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height)) };
    }
    function place(el, m) {
      if (m.length === 2) { el.style.left = (m[0] * 100) + "%"; el.style.top = (m[1] * 100) + "%"; }
      else {
        el.style.left = (m[0] * 100) + "%"; el.style.top = (m[1] * 100) + "%";
        el.style.width = ((m[2] - m[0]) * 100) + "%"; el.style.height = ((m[3] - m[1]) * 100) + "%";
      }
    }
    function render() {
      Array.prototype.slice.call(marker.querySelectorAll(".mark-pt.m, .mark-box.m")).forEach(function (e) { e.remove(); });
      marks.forEach(function (m) {
        var el = document.createElement("div");
        el.className = (m.length === 2 ? "mark-pt" : "mark-box") + " m";
        place(el, m);
        marker.appendChild(el);
      });
      countEl.textContent = marks.length + (marks.length === 1 ? " mark" : " marks") + " (at most " + max + ")";
    }
    function add(m) {
      if (marks.length >= max) { say("You can place at most " + max + " marks. Undo one to add another.", "error"); return; }
      marks.push(m.map(function (v) { return Math.round(v * 10000) / 10000; }));
      render();
    }
    if (!marker.dataset.readonly) {
      marker.addEventListener("pointerdown", function (ev) {
        ev.preventDefault();
        drag = rel(ev);
        marker.setPointerCapture(ev.pointerId);
      });
      marker.addEventListener("pointermove", function (ev) {
        if (!drag) return;
        var p = rel(ev);
        if (!dragEl) { dragEl = document.createElement("div"); dragEl.className = "mark-box"; marker.appendChild(dragEl); }
        place(dragEl, [Math.min(drag.x, p.x), Math.min(drag.y, p.y), Math.max(drag.x, p.x), Math.max(drag.y, p.y)]);
      });
      marker.addEventListener("pointerup", function (ev) {
        if (!drag) return;
        var p = rel(ev), d = drag;
        drag = null;
        if (dragEl) { dragEl.remove(); dragEl = null; }
        if (Math.abs(p.x - d.x) > 0.03 && Math.abs(p.y - d.y) > 0.03) {
          add([Math.min(d.x, p.x), Math.min(d.y, p.y), Math.max(d.x, p.x), Math.max(d.y, p.y)]);
        } else {
          add([p.x, p.y]);
        }
      });
      marker.addEventListener("keydown", function (ev) {
        var step = 0.05, moved = true;
        if (ev.key === "ArrowLeft") cursor.x = Math.max(0, cursor.x - step);
        else if (ev.key === "ArrowRight") cursor.x = Math.min(1, cursor.x + step);
        else if (ev.key === "ArrowUp") cursor.y = Math.max(0, cursor.y - step);
        else if (ev.key === "ArrowDown") cursor.y = Math.min(1, cursor.y + step);
        else if (ev.key === " ") { ev.preventDefault(); add([cursor.x, cursor.y]); return; }
        else moved = false;
        if (moved) { ev.preventDefault(); cursorEl.hidden = false; place(cursorEl, [cursor.x, cursor.y]); }
      });
      marker.addEventListener("focus", function () { cursorEl.hidden = false; place(cursorEl, [cursor.x, cursor.y]); });
      marker.addEventListener("blur", function () { cursorEl.hidden = true; });
      document.getElementById("mark-undo").addEventListener("click", function () { marks.pop(); render(); });
      document.getElementById("mark-clear").addEventListener("click", function () { marks = []; render(); });
    }
    render();
  }

  // ---- answers -------------------------------------------------------------------------------
  function val(name) {
    var el = form.querySelector("input[name='" + name + "']:checked");
    return el ? el.value : null;
  }
  function buildAnswer() {
    if (kind === "rate_arguments") {
      var args = {};
      Array.prototype.forEach.call(form.querySelectorAll("fieldset[id^='q-arg-']"), function (fs) {
        var rank = fs.id.slice(6);
        args[rank] = val("arg_" + rank);
      });
      var m = val("match");
      return { arguments: args, match: m === null ? null : parseInt(m, 10),
               comment: (form.querySelector("#comment") || {}).value || "" };
    }
    if (kind === "name_feature") {
      var c = val("coherence");
      return { name: form.querySelector("#name").value, coherence: c === null ? null : parseInt(c, 10) };
    }
    if (kind === "mark_rationale") {
      return { points: marks.filter(function (m) { return m.length === 2; }),
               boxes: marks.filter(function (m) { return m.length === 4; }) };
    }
    return { label: val("label") };
  }
  function missing(answer) {
    if (kind === "rate_arguments") {
      for (var r in answer.arguments) if (!answer.arguments[r]) return "q-arg-" + r;
      if (answer.match === null) return "q-match";
    } else if (kind === "name_feature") {
      if (!answer.name.trim()) return "name";
      if (answer.coherence === null) return "q-coherence";
    } else if (kind === "mark_rationale") {
      if (!marks.length) return "marker";
    } else if (!answer.label) return "q-label";
    return null;
  }
  function focusField(id) {
    var el = document.getElementById(id);
    if (!el) return;
    var target = el.tagName === "FIELDSET" ? el.querySelector("input") : el;
    (target || el).focus();
  }
  function fieldFromServer(field) {
    if (!field) return null;
    var m = /^answer\.arguments\.(\w+)/.exec(field);
    if (m) return "q-arg-" + m[1];
    if (field === "answer.match") return "q-match";
    if (field === "answer.coherence") return "q-coherence";
    if (field === "answer.name") return "name";
    if (field === "answer.label") return "q-label";
    if (/^answer\.(points|boxes)/.test(field)) return "marker";
    return null;
  }

  var sending = false;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (readonly || sending) return;
    var answer = buildAnswer();
    var gap = missing(answer);
    if (gap) { say("Please answer every question before you continue.", "error"); focusField(gap); return; }
    if (form.dataset.practice === "1") {
      say("Practice answer checked. It was not recorded. When you are ready, start the tasks.", "ok");
      var start = document.getElementById("start");
      if (start) start.focus();
      return;
    }
    var body = JSON.stringify({
      assignment_token: form.elements.assignment_token.value,
      client_token: form.elements.client_token.value,
      duration_s: Math.round((Date.now() - started) / 100) / 10,
      answer: answer
    });
    var button = document.getElementById("submit");
    sending = true; button.disabled = true;
    say("Saving…");
    var attempt = 0;
    function send() {
      attempt += 1;
      fetch(form.dataset.submitUrl, { method: "POST", headers: { "Content-Type": "application/json" }, body: body,
                                      credentials: "omit" })
        .then(function (resp) {
          return resp.json().catch(function () { return {}; }).then(function (data) { return { resp: resp, data: data }; });
        })
        .then(function (r) {
          if (r.resp.status === 200 || r.resp.status === 201) {
            say("Saved.", "ok");
            window.location.assign(form.dataset.nextUrl);
          } else if (r.resp.status >= 500 || r.resp.status === 429) {
            retry();
          } else {
            sending = false; button.disabled = false;
            say((r.data && r.data.message) || ("Could not save (" + r.resp.status + ")."), "error");
            focusField(fieldFromServer(r.data && r.data.field));
          }
        })
        .catch(retry);
    }
    function retry() {
      if (attempt >= 6) {
        sending = false; button.disabled = false;
        say("The connection failed. Your answer is kept on this page; press Submit to try again.", "error");
        return;
      }
      say("Connection problem, retrying…");
      setTimeout(send, Math.min(8000, 500 * Math.pow(2, attempt)));
    }
    send();
  });
})();
