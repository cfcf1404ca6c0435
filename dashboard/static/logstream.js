// Live worker logs: <pre data-log-stream="URL"> receives the lines of the server-sent events at URL.
// Lines are only ever added (the oldest dropped beyond a limit), so the last lines of a worker that
// stopped stay on the page; after a reconnect the replayed lines are not shown twice.
(() => {
  const LIMIT = 1000;
  for (const view of document.querySelectorAll("pre[data-log-stream]")) {
    const seen = new Set();
    const status = document.getElementById(view.dataset.logStatus || "");
    let cleared = false;
    const source = new EventSource(view.dataset.logStream);
    source.onopen = () => { if (status) status.textContent = "live"; };
    source.onerror = () => { if (status) status.textContent = "reconnecting…"; };
    source.addEventListener("problem", (event) => { if (status) status.textContent = event.data; });
    source.onmessage = (event) => {
      const entry = JSON.parse(event.data);
      const key = `${entry.at}|${entry.worker}|${entry.line}`;
      if (seen.has(key)) return;
      seen.add(key);
      if (!cleared) {  // the stream replays the recent lines: they replace the page's placeholder
        view.textContent = "";
        cleared = true;
      }
      const row = document.createElement("span");
      row.className = "log-line";
      row.dataset.worker = entry.worker;
      const id = entry.request_id ? `  [${entry.request_id}]` : "";
      row.textContent = `${entry.worker}  ${entry.line}${id}\n`;
      view.appendChild(row);
      while (view.childElementCount > LIMIT) view.firstElementChild.remove();
      view.scrollTop = view.scrollHeight;
    };
  }
})();
