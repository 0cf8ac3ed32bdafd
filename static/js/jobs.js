/*
 * Long jobs (bundle exports, fairness audits): poll the job's JSON status until it is done or
 * failed, moving the progress bar, then show the download link or the result.
 * Each .job element names its status endpoint in data-status-url; the JSON has
 * {status, progress (0-100), stage, download_url?, result_url?, error_code?, message?}; a
 * data-result-page attribute names the page to link to when the job is done.
 */
(function () {
  "use strict";
  const POLL_MS = 400;

  function follow(job) {
    const url = job.dataset.statusUrl;
    const bar = job.querySelector("progress");
    const status = job.querySelector(".job-status");
    let stopped = false;

    function finish(html, outcome) {
      stopped = true;
      job.dataset.outcome = outcome;
      status.textContent = "";
      status.appendChild(html);
    }

    function link(href, text, id) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      a.className = "button";
      if (id) a.id = id;
      return a;
    }

    async function poll() {
      if (stopped) return;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        const data = await response.json();
        if (!response.ok) {
          const p = document.createElement("span");
          p.textContent = "Could not read the job: " + (data.message || response.status) + (data.code ? " [" + data.code + "]" : "");
          finish(p, "error");
          return;
        }
        const progress = Math.max(0, Math.min(100, Number(data.progress) || 0));
        bar.value = progress;
        bar.textContent = progress + "%";
        job.dataset.progress = String(progress);
        if (data.status === "done") {
          bar.value = 100;
          const span = document.createElement("span");
          if (data.download_url) {
            span.appendChild(document.createTextNode("Done. "));
            span.appendChild(link(data.download_url, "Download the bundle", job.dataset.kind + "-download"));
            if (data.manifest_sha256) {
              const code = document.createElement("code");
              code.className = "hash job-digest";
              code.textContent = "manifest sha256 " + data.manifest_sha256;
              span.appendChild(code);
            }
          } else if (data.result_url || job.dataset.resultPage) {
            // The page that shows the result, when the job names one; else the API's result.
            span.appendChild(document.createTextNode((data.message || "Done.") + " "));
            span.appendChild(link(job.dataset.resultPage || data.result_url, "Show the result",
                                  job.dataset.kind + "-result-link"));
          } else {
            span.textContent = data.message || "Done.";
          }
          finish(span, "done");
          return;
        }
        if (data.status === "failed") {
          const span = document.createElement("span");
          span.textContent = "Failed" + (data.error_code ? " [" + data.error_code + "]" : "") + (data.message ? ": " + data.message : ".");
          finish(span, "failed");
          return;
        }
        status.textContent = (data.stage || data.status || "working") + " — " + progress + "%";
      } catch (error) {
        status.textContent = "Waiting for the server… (" + error + ")";
      }
      window.setTimeout(poll, POLL_MS);
    }
    poll();
  }

  function start() {
    document.querySelectorAll(".job[data-status-url]").forEach(follow);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
