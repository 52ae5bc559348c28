// The Imports page's behaviour (served as /customer-import/page.js; the CSP allows no inline script).
//
// - Progress: every few seconds the page asks progress.json how its unfinished runs stand and
//   updates them in place: no reload, so a file chosen for upload stays chosen. A run that ended is
//   swapped whole (its icon and status together); a run's own page swaps in its outcome.
// - Theme: it follows Airflow's light or dark mode (the frame's parent), live.
// - Links out of the page (to an Airflow run, or a report in a new tab) are opened by Airflow's own
//   window: the frame Airflow shows the page in may not navigate the window or open one itself.
"use strict";

(function () {
  const body = document.body;
  const airflow = (() => { try { return window.parent !== window ? window.parent : null; } catch (e) { return null; } })();

  // --- theme ---------------------------------------------------------------------------------
  function airflowIsDark() {
    try {
      const root = airflow && airflow.document.documentElement;
      if (root) return root.classList.contains("dark") || getComputedStyle(root).colorScheme === "dark";
    } catch (e) { /* not Airflow's frame */ }
    return window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  function applyTheme() { document.documentElement.dataset.theme = airflowIsDark() ? "dark" : "light"; }
  applyTheme();
  try {
    if (airflow) new MutationObserver(applyTheme).observe(airflow.document.documentElement,
      { attributes: true, attributeFilter: ["class", "style", "data-theme"] });
  } catch (e) { /* not Airflow's frame */ }
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

  // --- links out -------------------------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-airflow], a[data-new-tab]");
    if (!link || !airflow) return;
    event.preventDefault();
    if (link.dataset.newTab !== undefined) {
      airflow.open(link.href, "_blank", "noopener");
    } else {  // Airflow's UI routes on its own history: push the route, let its router follow
      airflow.history.pushState({}, "", link.getAttribute("href"));
      airflow.dispatchEvent(new PopStateEvent("popstate"));
    }
  });

  // --- drop zone -----------------------------------------------------------------------------
  function dropZone() {
    const zone = document.querySelector("[data-drop-zone]");
    if (!zone) return;
    const input = zone.querySelector("input[type=file]");
    const chosen = zone.querySelector("[data-chosen]");
    const show = () => { chosen.textContent = input.files.length ? input.files[0].name : ""; };
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
      event.preventDefault(); zone.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer.files.length) { input.files = event.dataTransfer.files; show(); }
    });
  }
  dropZone();

  // --- progress --------------------------------------------------------------------------------
  const progressUrl = body.dataset.progress;
  if (!progressUrl) return;
  function set(row, name, value) {
    row.querySelectorAll(`[data-field="${name}"]`).forEach((cell) => { cell.textContent = value; });
  }
  async function freshPage() {
    const answer = await fetch(location.href, { credentials: "same-origin" });
    return new DOMParser().parseFromString(await answer.text(), "text/html");
  }
  async function refreshInPlace() {  // new or finished runs: swap the list's parts, never the upload form
    const fresh = await freshPage();
    for (const id of ["imports", "waiting", "set-aside"]) {
      const now = document.getElementById(id), next = fresh.getElementById(id);
      if (now && next) now.replaceWith(next);
      else if (now) now.remove();
      else if (next) document.getElementById("listing").append(next);
    }
    for (const key of ["newest", "changed", "busy"]) body.dataset[key] = fresh.body.dataset[key];
  }
  async function showEnded() {  // a run's own page, once its run ended: its outcome and actions, no reload
    const fresh = await freshPage();
    body.replaceChildren(...fresh.body.childNodes);
    for (const key of ["newest", "changed", "busy"]) body.dataset[key] = fresh.body.dataset[key];
    document.title = fresh.title;
    dropZone();
  }
  async function poll() {
    const runs = [...document.querySelectorAll("[data-run][data-status=running]")].map((el) => el.dataset.run);
    const url = new URL(progressUrl, location.href);
    runs.forEach((id) => url.searchParams.append("run", id));
    url.searchParams.set("newest", body.dataset.newest || "0");
    try {
      const answer = await (await fetch(url, { credentials: "same-origin" })).json();
      let changed = answer.newer || answer.changed !== body.dataset.changed;
      for (const [id, run] of Object.entries(answer.runs)) {
        if (run.status !== "running") { changed = true; continue; }  // ended: swapped whole below, icon and words
        document.querySelectorAll(`[data-run="${id}"]`).forEach((row) => {
          set(row, "progress", run.progress || "");
          ["rows", "inserted", "updated", "unchanged", "rejected"].forEach((n) => set(row, n, run[n] ?? ""));
          const bar = row.querySelector("progress");
          if (bar) { if (run.percent === null) bar.removeAttribute("value"); else bar.value = run.percent; }
        });
      }
      const own = answer.runs[body.dataset.newest];  // on a run's own page: that run
      if (changed && document.getElementById("imports-page")) await refreshInPlace();
      else if (own && own.status !== "running" && document.getElementById("run-page")) await showEnded();
    } catch (e) { /* the next poll tries again */ }
    const busy = document.querySelector("[data-run][data-status=running]") || body.dataset.busy === "true";
    setTimeout(poll, busy ? 3000 : 15000);  // while idle, a slower look for what others start
  }
  setTimeout(poll, body.dataset.busy === "true" ? 3000 : 15000);
})();
