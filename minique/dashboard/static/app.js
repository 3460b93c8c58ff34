/* minique dashboard: CSRF header on every htmx request, a toast after each action,
   and a refresh of the live parts of the page once an action succeeded. No build step. */
(function () {
  "use strict";

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return "";
  }

  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast " + (kind || "ok");
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.textContent = text;
    box.appendChild(el);
    setTimeout(function () { el.classList.add("gone"); }, 4000);
    setTimeout(function () { el.remove(); }, 4600);
  }

  var COUNTS = ["removed", "retried", "requeued", "deleted", "promoted"];

  function summary(elt, body) {
    var text = elt.getAttribute("data-done") || "Done";
    if (body) {
      COUNTS.forEach(function (k) {
        if (typeof body[k] === "number") text += " · " + k + ": " + body[k];
      });
      if (body.skipped && body.skipped.length) text += " · skipped: " + body.skipped.length;
    }
    return text;
  }

  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.verb !== "get") e.detail.headers["X-CSRF-Token"] = cookie("minique_csrf");
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-action")) return;
    var xhr = e.detail.xhr;
    if (!xhr || xhr.status === 0) {
      toast("The dashboard server did not answer", "error");
      return;
    }
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
    if (xhr.status >= 200 && xhr.status < 300) {
      toast(summary(elt, body), "ok");
      var to = elt.getAttribute("data-redirect");
      if (to) { window.location.href = to; return; }
      htmx.trigger(document.body, "refresh");
    } else {
      var msg = body && body.error ? body.error.message : "Request failed (HTTP " + xhr.status + ")";
      toast(msg, "error");
    }
  });

  // A polled page that fails to load (server restarting) says so once, quietly.
  document.addEventListener("htmx:sendError", function () {
    document.body.classList.add("offline");
  });
  document.addEventListener("htmx:afterSwap", function () {
    document.body.classList.remove("offline");
  });

  // "Select group" checkboxes tick every job of their group.
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (!t.classList || !t.classList.contains("select-group")) return;
    var group = t.closest(".group");
    group.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = t.checked; });
  });
})();
