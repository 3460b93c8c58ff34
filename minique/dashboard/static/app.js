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

  // The live part of the page (#live) refreshes on "refresh" (after an action) and
  // "live-change" (the event stream). htmx drops a request while one of the same element is
  // on the way, and the #live an answer swaps in listens only once it has settled (htmx
  // processes new content in the settle step, 20 ms later, or more on a busy machine): a
  // refresh asked for in either window was lost, and the older answer stayed on the page (a
  // pause shown as "running" until the next change). It is owed instead, and asked for once
  // the answer on the way has settled. (The new #live wears the old one's classes until it
  // settles: the request itself is tracked, up to its settle.)
  var liveRequest = null;
  var liveSince = 0;
  var refreshOwed = null;
  function refreshLive(name) {
    // (A request that never says it landed or settled is given up after 30 s.)
    if (liveRequest && Date.now() - liveSince < 30000) {
      if (refreshOwed !== "refresh") refreshOwed = name;
      return;
    }
    liveRequest = null;
    htmx.trigger(document.body, name);
  }
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.detail.elt && e.detail.elt.id === "live") {
      liveRequest = e.detail.xhr;
      liveSince = Date.now();
    }
  });
  function payOwed() {
    if (liveRequest || !refreshOwed) return;
    var name = refreshOwed;
    refreshOwed = null;
    refreshLive(name);
  }
  function liveDone(xhr) {
    if (!liveRequest || xhr !== liveRequest) return;
    liveRequest = null;
    setTimeout(payOwed, 0);
  }
  // An answer that swapped nothing (an error, a failed send) leaves the old #live, still
  // listening: done when it lands. A swapped one is done when it has settled; should the
  // settle never be heard of, 2 s after it landed.
  function liveLanded(e) {
    var xhr = e.detail.xhr;
    if (!liveRequest || xhr !== liveRequest) return;
    if (e.type === "htmx:afterRequest" && e.detail.successful) {
      setTimeout(function () { liveDone(xhr); }, 2000);
    } else {
      liveDone(xhr);
    }
  }
  ["htmx:afterRequest", "htmx:sendError", "htmx:timeout", "htmx:xhr:abort",
   "htmx:onLoadError"].forEach(function (ev) {
    document.addEventListener(ev, liveLanded);
  });
  document.addEventListener("htmx:afterSettle", function (e) { liveDone(e.detail.xhr); });
  // A refresh that was on its way when jobs were selected (the live macro's condition
  // stops new ones) would swap the selection away, and an action on "the selected" then
  // acts on none (CI: a delete of a checked job deleted nothing). Only the refresh after
  // an action goes in, the selection then being acted on.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var elt = e.detail.elt;
    if (!elt || elt.id !== "live" || !elt.querySelector("input[name=ids]:checked")) return;
    var cause = e.detail.requestConfig && e.detail.requestConfig.triggeringEvent;
    if (!cause || cause.type !== "refresh") e.detail.shouldSwap = false;
  });

  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.verb !== "get") e.detail.headers["X-CSRF-Token"] = cookie("minique_csrf");
  });

  // An action's answer is read off its request, not off htmx:afterRequest: a live refresh
  // that replaced #live while the request was out leaves the button detached, and htmx fires
  // the answer's events on it, where they no longer reach the document (the toast was lost).
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    var xhr = e.detail.xhr;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-action") || !xhr) return;
    xhr.addEventListener("loadend", function () { actionAnswered(elt, xhr); });
  });

  function actionAnswered(elt, xhr) {
    if (xhr.status === 0) {
      toast("The dashboard server did not answer", "error");
      return;
    }
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
    if (xhr.status >= 200 && xhr.status < 300) {
      toast(summary(elt, body), "ok");
      var to = elt.getAttribute("data-redirect");
      if (to) { window.location.href = to; return; }
      refreshLive("refresh");
    } else {
      var msg = body && body.error ? body.error.message : "Request failed (HTTP " + xhr.status + ")";
      toast(msg, "error");
    }
  }

  // The live dot: green while updates arrive, red when the server or Redis is gone.
  function setOnline(ok, why) {
    document.body.classList.toggle("offline", !ok);
    var box = document.getElementById("live-status");
    if (!box) return;
    var text = box.querySelector(".live-text");
    if (text) text.textContent = ok ? "live" : "offline";
    box.title = ok ? "Live: this page updates itself" : why;
  }

  // Server-sent events say when to refresh; polling (in the live macro) is the fallback
  // and runs only while no stream is connected.
  window.miniqueLive = false;
  var streamUrl = document.body.getAttribute("data-stream");
  if (streamUrl && window.EventSource) {
    var es = new EventSource(streamUrl);
    es.addEventListener("status", function (e) {
      if (e.data === "ok") {
        window.miniqueLive = true;
        setOnline(true, "");
        refreshLive("live-change");
      } else {
        setOnline(false, "Redis is unreachable; retrying");
      }
    });
    es.addEventListener("change", function () { refreshLive("live-change"); });
    es.onerror = function () {
      window.miniqueLive = false;  // polling takes over until the stream is back
      setOnline(false, "The dashboard server is unreachable; retrying");
    };
  }

  // A polled page that fails to load (server restarting, Redis down) says so, quietly.
  document.addEventListener("htmx:sendError", function () {
    setOnline(false, "The dashboard server is unreachable; retrying");
  });
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    if (xhr && xhr.status >= 500) setOnline(false, "Redis is unreachable; retrying");
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (!streamUrl || window.miniqueLive || !window.EventSource) setOnline(true, "");
  });

  // "Copy trace": the whole trace as stored, whatever is folded on the page.
  document.addEventListener("click", function (e) {
    var btn = e.target.closest ? e.target.closest("[data-copy]") : null;
    if (!btn) return;
    var src = document.querySelector(btn.getAttribute("data-copy"));
    if (!src) return;
    var text = src.value !== undefined ? src.value : src.textContent;
    function done() { toast("Copied to the clipboard", "ok"); btn.setAttribute("data-copied", "1"); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(src, done); });
    } else {
      fallbackCopy(src, done);
    }
  });

  function fallbackCopy(src, done) {
    // Plain http on another host has no clipboard API: select the hidden textarea and copy.
    src.classList.add("copying");
    src.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    src.classList.remove("copying");
    if (ok) done(); else toast("Copy failed: select the trace and copy it by hand", "error");
  }

  // "Select group" checkboxes tick every job of their group.
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (!t.classList || !t.classList.contains("select-group")) return;
    var group = t.closest(".group");
    group.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = t.checked; });
  });
})();
