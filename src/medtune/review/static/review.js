// medtune review: keyboard shortcuts for the judging screen. Served by the app (script-src 'self'); no inline
// handlers. a / b / t choose; 1-5 grade A, shift+1-5 grade B (0 clears); u / shift+u flag A / B unsafe;
// r shows or hides the reference; Enter submits (ctrl+Enter from the text box; Esc leaves it).
(function () {
  "use strict";
  var form = document.getElementById("judge");
  if (!form) { return; }
  var reference = document.getElementById("reference");
  var reason = document.getElementById("reason");
  var REF_KEY = "medtune-review-reference-open";

  function check(selector) {
    var input = form.querySelector(selector);
    if (input) { input.checked = true; input.dispatchEvent(new Event("change", { bubbles: true })); }
  }

  function toggle(id) {
    var box = document.getElementById(id);
    if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
  }

  var reasonBox = document.getElementById("reason-box");

  function flagged() {
    ["a", "b"].forEach(function (side) {
      var box = document.getElementById("unsafe-" + side);
      var panel = document.getElementById("answer-" + side);
      if (box && panel) { panel.classList.toggle("flagged", box.checked); }
    });
    var any = form.querySelector("input[name^='unsafe_']:checked") !== null;
    if (reason) {
      reason.required = any;
      // the reason box shows while an answer is flagged (or it holds text); without this script it always shows
      if (reasonBox) { reasonBox.hidden = !any && !reason.value.trim(); }
    }
    return any;
  }

  form.addEventListener("change", function (event) {
    var any = flagged();
    if (event.target.name && event.target.name.indexOf("unsafe_") === 0 && event.target.checked && any && reason &&
        !reason.value.trim()) {
      reason.focus();
    }
  });
  flagged();

  if (reference) {
    try { reference.open = window.localStorage.getItem(REF_KEY) === "1"; } catch (e) { /* storage off */ }
    reference.addEventListener("toggle", function () {
      try { window.localStorage.setItem(REF_KEY, reference.open ? "1" : "0"); } catch (e) { /* storage off */ }
    });
  }

  function digit(event) {
    var m = /^(Digit|Numpad)([0-5])$/.exec(event.code || "");
    if (m) { return m[2]; }
    return /^[0-5]$/.test(event.key) ? event.key : null;
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && /^(text|search|email|number)$/.test(target.type)));
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (typing) {
      if (event.key === "Escape") { target.blur(); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var key = (event.key || "").toLowerCase();
    var grade = digit(event);
    if (grade !== null) {
      var side = event.shiftKey ? "b" : "a";
      check(grade === "0" ? "input[name='grade_" + side + "'][value='']" : "#grade-" + side + "-" + grade);
    } else if (key === "a") {
      check("#choice-a");
    } else if (key === "b") {
      check("#choice-b");
    } else if (key === "t") {
      check("#choice-tie");
    } else if (key === "u") {
      toggle(event.shiftKey ? "unsafe-b" : "unsafe-a");
    } else if (key === "r") {
      if (reference) { reference.open = !reference.open; }
    } else if (event.key === "Enter") {
      if (target && (target.tagName === "A" || target.tagName === "BUTTON" || target.tagName === "SUMMARY")) {
        return;  // the focused control's own action
      }
      event.preventDefault();
      form.requestSubmit();
    } else {
      return;
    }
    event.preventDefault();
  });
}());
