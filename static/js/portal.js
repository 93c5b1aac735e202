/* Registry Portal: a few lines of local JavaScript, no library besides htmx.
   - <time data-local datetime="ISO">: shows the instant in the viewer's time zone.
   - [data-tz-name]: filled with the viewer's time zone name.
   - [data-copy="#id"]: copies the text of #id to the clipboard.
   - [data-dismiss]: removes its closest [data-dismissable] from the page (for good). */
(function () {
  "use strict";
  var localFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", weekday: "short",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.textContent = localFormat.format(when); el.title = zone; }
    });
    root.querySelectorAll("[data-tz-name]").forEach(function (el) { el.textContent = zone; });
  }

  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else { fallback(text); done(); }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable on the page */ }
    area.remove();
  }

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source) { copyText(source.textContent.trim(), copy); }
      return;
    }
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      var box = dismiss.closest("[data-dismissable]");
      if (box) {
        box.querySelectorAll("code, textarea").forEach(function (el) { el.textContent = ""; el.value = ""; });
        box.remove();
      }
    }
  });

  // Scheduled sync fields only matter for a scheduled sync.
  function toggleSchedule(root) {
    root.querySelectorAll("[data-sync-type]").forEach(function (form) {
      var checked = form.querySelector('input[name="sync_type"]:checked');
      var scheduled = checked && checked.value === "scheduled";
      form.querySelectorAll("[data-scheduled-only]").forEach(function (el) { el.hidden = !scheduled; });
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.name === "sync_type") { toggleSchedule(document); }
  });

  document.addEventListener("DOMContentLoaded", function () { localize(document); toggleSchedule(document); });
  document.addEventListener("htmx:load", function (event) { localize(event.target); toggleSchedule(document); });
})();
