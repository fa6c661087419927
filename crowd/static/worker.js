// Argus worker pages: keyboard rating, rationale marking, practice feedback, a lease countdown,
// drafts that survive a reload, time counted only while the page is visible, a notice when the
// task is open in two tabs, and a submit that is safe to retry (the same client token is sent on
// every attempt, so the server stores one judgment).
(function () {
  "use strict";
  var form = document.getElementById("task-form");
  if (!form) return;
  var kind = form.dataset.kind;
  var statusEl = document.getElementById("status");
  var readonly = form.dataset.preview === "1";
  var practice = form.dataset.practice === "1";
  var assignment = form.dataset.assignment || null;
  var nextUrl = form.dataset.nextUrl;

  function say(text, cls) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.className = "status" + (cls ? " " + cls : "");
  }
  function clearError() {  // an error about a missing answer is stale once the worker answers
    if (statusEl && /\berror\b/.test(statusEl.className)) say("");
  }
  function show(id, text) {
    var el = document.getElementById(id);
    if (!el) return null;
    if (text !== undefined) el.textContent = text;
    el.hidden = false;
    return el;
  }

  // ---- storage that may be missing (MTurk's iframe can block it) ---------------------------
  var store = null;
  try { store = window.localStorage; store.setItem("argus-probe", "1"); store.removeItem("argus-probe"); }
  catch (e) { store = null; }
  var draftKey = assignment ? "argus-draft:" + assignment : null;
  function readDraft() {
    if (!store || !draftKey) return null;
    try { return JSON.parse(store.getItem(draftKey) || "null"); } catch (e) { return null; }
  }

  // ---- active time: counted only while the page is visible, kept across reloads -------------
  var draft = readDraft();
  var activeMs = draft && typeof draft.activeMs === "number" ? draft.activeMs : 0;
  var visibleSince = document.visibilityState === "visible" ? Date.now() : null;
  function activeNow() { return activeMs + (visibleSince === null ? 0 : Date.now() - visibleSince); }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { if (visibleSince === null) visibleSince = Date.now(); }
    else if (visibleSince !== null) { activeMs += Date.now() - visibleSince; visibleSince = null; saveDraft(); }
  });

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
    changed();
  });
  form.addEventListener("change", function () { highlight(); changed(); });
  form.addEventListener("input", changed);
  form.addEventListener("focusin", highlight);
  highlight();

  // ---- rationale marking: click = point, drag = box, keyboard arrows + Space -----------------
  var marker = document.getElementById("marker");
  var marks = [];
  var renderMarks = function () {};
  if (marker) {
    var img = marker.querySelector("img");
    var max = parseInt(marker.dataset.max || "5", 10);
    var countEl = document.getElementById("mark-count");
    var cursor = { x: 0.5, y: 0.5 };
    var cursorEl = document.createElement("div");
    cursorEl.className = "mark-pt cursor";
    cursorEl.hidden = true;
    marker.appendChild(cursorEl);
    var drag = null, dragEl = null;

    var rel = function (ev) {
      var r = img.getBoundingClientRect();
      return { x: Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)),
               y: Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height)) };
    };
    var place = function (el, m) {
      el.style.left = (m[0] * 100) + "%"; el.style.top = (m[1] * 100) + "%";
      if (m.length === 4) {
        el.style.width = ((m[2] - m[0]) * 100) + "%"; el.style.height = ((m[3] - m[1]) * 100) + "%";
      }
    };
    renderMarks = function () {
      Array.prototype.slice.call(marker.querySelectorAll(".mark-pt.m, .mark-box.m")).forEach(function (e) { e.remove(); });
      marks.forEach(function (m) {
        var el = document.createElement("div");
        el.className = (m.length === 2 ? "mark-pt" : "mark-box") + " m";
        place(el, m);
        marker.appendChild(el);
      });
      countEl.textContent = marks.length + (marks.length === 1 ? " mark" : " marks") + " (at most " + max + ")";
    };
    var add = function (m) {
      if (marks.length >= max) { say("You can place at most " + max + " marks. Undo one to add another.", "error"); return; }
      marks.push(m.map(function (v) { return Math.round(v * 10000) / 10000; }));
      renderMarks();
      clearError();
      changed();
    };
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
      document.getElementById("mark-undo").addEventListener("click", function () { marks.pop(); renderMarks(); changed(); });
      document.getElementById("mark-clear").addEventListener("click", function () { marks = []; renderMarks(); changed(); });
    }
    renderMarks();
  }

  // ---- drafts: what is on the page survives a reload of the same lease -----------------------
  function snapshot() {
    var values = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[type=radio]:checked"), function (el) { values[el.name] = el.value; });
    Array.prototype.forEach.call(form.querySelectorAll("input[type=text], textarea"), function (el) { values[el.name] = el.value; });
    return { values: values, marks: marks, activeMs: activeNow(), savedAt: Date.now() };
  }
  function saveDraft() {
    if (!store || !draftKey || readonly || finished) return;
    try { store.setItem(draftKey, JSON.stringify(snapshot())); } catch (e) { /* full or blocked: no draft */ }
  }
  function dropDraft() {
    if (!store || !draftKey) return;
    try { store.removeItem(draftKey); } catch (e) { /* ignore */ }
  }
  function changed() { clearError(); saveDraft(); }
  var finished = false;
  if (draft && draft.values && !readonly) {
    var restored = 0;
    Object.keys(draft.values).forEach(function (name) {
      var v = draft.values[name];
      var radios = form.querySelectorAll("input[type=radio][name='" + name + "']");
      if (radios.length) {
        Array.prototype.forEach.call(radios, function (r) { if (r.value === v) { r.checked = true; restored++; } });
      } else {
        var el = form.querySelector("[name='" + name + "']");
        if (el && typeof v === "string" && v) { el.value = v; restored++; }
      }
    });
    if (marker && Array.isArray(draft.marks) && draft.marks.length) { marks = draft.marks; renderMarks(); restored++; }
    if (restored) show("draft-notice", "Your unsent answers on this task were restored.");
    highlight();
  }
  // drop drafts of other (finished or expired) leases, so storage does not fill up
  if (store && draftKey) {
    try {
      for (var i = store.length - 1; i >= 0; i--) {
        var k = store.key(i);
        if (k && k.indexOf("argus-draft:") === 0 && k !== draftKey) {
          var d = JSON.parse(store.getItem(k) || "{}");
          if (!d.savedAt || Date.now() - d.savedAt > 7 * 86400000) store.removeItem(k);
        }
      }
    } catch (e) { /* ignore */ }
  }
  window.addEventListener("pagehide", saveDraft);

  // ---- the lease countdown --------------------------------------------------------------------
  var timer = document.getElementById("timer");
  var expired = false;
  if (timer && !readonly) {
    var left0 = parseInt(timer.dataset.secondsLeft, 10);
    var leaseSeconds = parseInt(form.dataset.leaseSeconds || "0", 10) || left0;
    var warnAt = Math.max(10, Math.min(60, Math.floor(leaseSeconds / 5)));
    var shownAt = Date.now();
    var leftEl = document.getElementById("timer-left");
    var warned = false;
    var tick = function () {
      var left = Math.max(0, left0 - Math.floor((Date.now() - shownAt) / 1000));
      leftEl.textContent = Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2);
      if (left <= warnAt && !warned) {
        warned = true;
        timer.classList.add("warn");
        show("timer-warning", "Less than " + (warnAt >= 60 ? "a minute" : warnAt + " seconds") +
             " left for this task. Please submit soon.");
      }
      if (left === 0 && !expired) {
        expired = true;
        timer.classList.add("over");
        show("timer-warning", "Time is up for this task. You can still submit: if the task is still free your " +
             "answer is kept, otherwise you get a new task and keep your place.");
        clearInterval(timerId);
      }
    };
    var timerId = setInterval(tick, 1000);
    tick();
  }

  // ---- two tabs on one task: tell each about the other ------------------------------------------
  var channel = null;
  var tabId = Math.random().toString(36).slice(2);
  if (assignment && !readonly && typeof BroadcastChannel === "function") {
    channel = new BroadcastChannel("argus-tasks");
    var twoTabs = function () {
      show("tab-notice", "This task is also open in another tab or window. Only the answer submitted first is " +
           "kept, so please work in one tab and close the other.");
    };
    channel.onmessage = function (ev) {
      var m = ev.data || {};
      if (m.assignment !== assignment || m.tab === tabId) return;
      if (m.type === "open") { twoTabs(); channel.postMessage({ type: "here", assignment: assignment, tab: tabId }); }
      else if (m.type === "here") twoTabs();
      else if (m.type === "submitted") {
        finished = true;
        dropDraft();
        show("tab-notice", "This task was submitted in another tab, so the answer on this page will not be saved.");
        var b = document.getElementById("submit");
        if (b) { b.textContent = "Go to the next task"; }
        form.dataset.goNext = "1";
      }
    };
    channel.postMessage({ type: "open", assignment: assignment, tab: tabId });
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
    var el = id && document.getElementById(id);
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
  function postJson(url, body) {
    return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
                        credentials: "omit" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) { return { resp: resp, data: data }; });
      });
  }

  // ---- practice: checked by the server, right or wrong and why ----------------------------------
  function checkPractice(answer) {
    var button = document.getElementById("practice-submit");
    button.disabled = true;
    say("Checking…");
    postJson(form.dataset.checkUrl, { visit_token: form.dataset.visitToken, index: parseInt(form.dataset.index, 10),
                                      answer: answer })
      .then(function (r) {
        button.disabled = false;
        var d = r.data || {};
        if (r.resp.status !== 200) {
          say(d.message || "Could not check the answer; please try again.", "error");
          focusField(fieldFromServer(d.field));
          return;
        }
        say(d.feedback + (d.counted ? "" : " (Only your first answer to each practice item counts.)"),
            d.correct ? "ok" : "error");
        if (d.state === "failed") { window.location.assign(d.finish_url); return; }
        if (d.state === "passed") {
          say(d.feedback + " You passed the practice: you can start the tasks.", d.correct ? "ok" : "error");
          var start = show("start");
          if (start) start.focus();
        } else if (d.checked < d.of) {
          show("practice-next-js");
        }
      })
      .catch(function () {
        button.disabled = false;
        say("The connection failed; press Check again.", "error");
      });
  }

  var sending = false;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (readonly || sending) return;
    if (form.dataset.goNext === "1") { window.location.assign(nextUrl); return; }
    var answer = buildAnswer();
    var gap = missing(answer);
    if (gap) { say("Please answer every question before you continue.", "error"); focusField(gap); return; }
    if (practice) { checkPractice(answer); return; }
    var body = {
      assignment_token: form.elements.assignment_token.value,
      client_token: form.elements.client_token.value,
      duration_s: Math.round(activeNow() / 100) / 10,
      answer: answer
    };
    var button = document.getElementById("submit");
    sending = true; button.disabled = true;
    saveDraft();
    say("Saving…");
    var attempt = 0;
    function moveOn(text) {
      finished = true;
      dropDraft();
      say(text, "ok");
      window.location.assign(nextUrl);
    }
    function send() {
      attempt += 1;
      postJson(form.dataset.submitUrl, body)
        .then(function (r) {
          var d = r.data || {};
          if (r.resp.status === 201 || (r.resp.status === 200 && attempt > 1)) {
            // 200 on a retry: our own first attempt was stored, its answer got lost
            if (channel) channel.postMessage({ type: "submitted", assignment: assignment, tab: tabId });
            moveOn("Saved.");
          } else if (r.resp.status === 200) {
            finished = true;
            dropDraft();
            sending = false; button.disabled = false;
            button.textContent = "Go to the next task";
            form.dataset.goNext = "1";
            say("This task had already been submitted (in another tab or window), so the answer on this page " +
                "was not saved.", "error");
          } else if (r.resp.status === 409 && d.field === "assignment") {
            moveOn("Time ran out for this task and it went to someone else. Loading a new task…");
          } else if (r.resp.status >= 500 || r.resp.status === 429) {
            retry();
          } else {
            sending = false; button.disabled = false;
            say(d.message || ("Could not save (" + r.resp.status + ")."), "error");
            focusField(fieldFromServer(d.field));
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
