// asyncplugin console: live updates over server-sent events, relative times, and the
// remote_status_input disclosure. No framework, no build step; loaded from the console itself
// (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  var body = document.body;
  var offset = 0; // the engine's clock minus the browser's, in seconds

  function setNow(now) {
    if (typeof now === "number" && isFinite(now)) {
      offset = now - Date.now() / 1000;
    }
  }

  function serverNow() {
    return Date.now() / 1000 + offset;
  }

  // The same format as the server's `relative`.
  function relative(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 1) return Math.round(seconds * 1000) + "ms";
    if (seconds < 60) return seconds.toFixed(1) + "s";
    var minutes = Math.floor(seconds / 60), secs = Math.floor(seconds) % 60;
    if (minutes < 60) return minutes + "m" + String(secs).padStart(2, "0") + "s";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) return hours + "h" + String(minutes).padStart(2, "0") + "m";
    return Math.floor(hours / 24) + "d" + String(hours % 24).padStart(2, "0") + "h";
  }

  function tick() {
    var now = serverNow();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = relative(now - parseFloat(el.dataset.since));
    });
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = parseFloat(el.dataset.due) - now;
      el.textContent = due <= 0 ? "due now" : "in " + relative(due);
    });
  }

  function status(text) {
    var el = document.getElementById("live-status");
    if (el) {
      el.hidden = false;
      el.textContent = text;
    }
  }

  function fetchText(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(
      function (response) {
        if (!response.ok) throw new Error(response.status + " " + response.statusText);
        return response.text();
      }
    );
  }

  function withParam(url, key, value) {
    var parsed = new URL(url, window.location.href);
    parsed.searchParams.set(key, value);
    return parsed.pathname + parsed.search;
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  // -- the tasks page ------------------------------------------------------------------------

  function reloadRows() {
    var rows = document.getElementById("task-rows");
    if (!rows) return;
    fetchText(withParam(window.location.href, "fragment", "rows"))
      .then(function (html) {
        rows.innerHTML = html;
        var empty = document.getElementById("no-tasks");
        if (empty) empty.hidden = rows.children.length > 0;
      })
      .catch(function () {});
  }

  function onRow(data) {
    var rows = document.getElementById("task-rows");
    var row = fromHtml(data.html);
    var existing = document.getElementById("task-" + data.id);
    if (existing) {
      existing.replaceWith(row);
    } else if (body.dataset.firstPage === "true") {
      rows.insertBefore(row, rows.firstElementChild);
      var size = parseInt(body.dataset.pageSize, 10) || 50;
      while (rows.children.length > size) rows.lastElementChild.remove();
      var empty = document.getElementById("no-tasks");
      if (empty) empty.hidden = true;
    } else {
      return;
    }
    row.classList.add("flash");
  }

  function onRemove(data) {
    var existing = document.getElementById("task-" + data.id);
    if (existing) existing.remove();
  }

  // -- the task page -------------------------------------------------------------------------

  var pending = null;
  function reloadTask() {
    if (pending) return; // one reload in flight; the next event schedules another
    var live = document.getElementById("live");
    if (!live) return;
    pending = fetchText(withParam(window.location.pathname, "fragment", "live"))
      .then(function (html) {
        live.innerHTML = html;
        tick();
      })
      .catch(function () {})
      .then(function () {
        pending = null;
      });
  }

  function setupRemoteInput() {
    var link = document.getElementById("show-remote-input");
    var out = document.getElementById("remote-input-value");
    if (!link || !out) return;
    link.addEventListener("click", function (event) {
      event.preventDefault();
      if (!out.hidden) {
        out.hidden = true;
        out.textContent = "";
        link.textContent = "Show remote_status_input";
        return;
      }
      fetch(link.href, { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status + " " + response.statusText);
          return response.text();
        })
        .then(function (text) {
          out.textContent = text;
          out.hidden = false;
          link.textContent = "Hide remote_status_input";
        })
        .catch(function (err) {
          out.textContent = "could not fetch it: " + err.message;
          out.hidden = false;
        });
    });
  }

  // -- the event stream ----------------------------------------------------------------------

  function connect() {
    var url = body.dataset.events;
    if (!url || !window.EventSource) return;
    var opened = false;
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      status("live");
      if (opened) {
        // A reconnect: changes may have been missed meanwhile.
        if (body.dataset.page === "tasks") reloadRows();
        else reloadTask();
      }
      opened = true;
    });
    source.addEventListener("error", function () {
      status("reconnecting\u2026");
    });
    source.addEventListener("row", function (event) {
      var data = JSON.parse(event.data);
      setNow(data.now);
      onRow(data);
    });
    source.addEventListener("remove", function (event) {
      onRemove(JSON.parse(event.data));
    });
    source.addEventListener("task", function (event) {
      var data = JSON.parse(event.data);
      setNow(data.now);
      reloadTask();
    });
  }

  setNow(parseFloat(body.dataset.now));
  setupRemoteInput();
  connect();
  window.setInterval(tick, 1000);
})();
