// The demos' page: Uppy's Dashboard uploading through tus, and the list of stored files.
import { Dashboard, Tus, Uppy } from "./vendor/uppy.js";

const uploader = document.getElementById("uploader");
const transfers = document.getElementById("transfers");
const errors = document.getElementById("errors");
const list = document.getElementById("files");
const announcer = document.getElementById("announcer");
const confirmDelete = document.getElementById("confirm-delete");
const maxSize = Number(uploader.dataset.maxSize) || null;

/** Return ``bytes`` in binary units: 1536 -> "1.5 KiB". */
export function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Say ``text`` to screen readers (the live region re-announces a repeated text). */
function announce(text) {
  announcer.textContent = "";
  requestAnimationFrame(() => { announcer.textContent = text; });
}

/** Show one error, in the page's one error style, until dismissed. */
function showError(text) {
  const item = document.createElement("p");
  item.className = "error";
  const message = document.createElement("span");
  message.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.textContent = "×";
  dismiss.setAttribute("aria-label", "Dismiss this error");
  dismiss.onclick = () => item.remove();
  item.append(message, dismiss);
  errors.append(item);
}

/** The server's own words for a failed response: its JSON "error", else its text. */
function serverMessage(status, body) {
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch { /* not JSON: the text as sent */ }
  return body.trim() || `HTTP ${status}`;
}

/** Fetch ``url``; on an HTTP error or a network failure throw an Error with the message to show. */
async function call(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, ...options });
  } catch (error) {
    throw new Error(`network error: ${error.message}`);
  }
  const body = await response.text();
  if (!response.ok) throw new Error(serverMessage(response.status, body));
  return JSON.parse(body);
}

// ---- uploads -------------------------------------------------------------------------
const uppy = new Uppy({
  autoProceed: true,
  restrictions: { maxFileSize: maxSize },
});
uppy.use(Dashboard, {
  inline: true,
  target: uploader,
  width: "100%",
  height: 360,
  showProgressDetails: true,
  proudlyDisplayPoweredByUppy: false,
  disableInformer: true, // errors go to #errors, in the page's one error style
  note: maxSize ? `Up to ${human(maxSize)} per file` : null,
});
uppy.use(Tus, {
  endpoint: uploader.dataset.endpoint,
  chunkSize: 1 << 20,
  // Retry a lost connection soon and for about half a minute: a restarting server is
  // back within seconds, and the upload resumes from what the server kept.
  retryDelays: [0, 250, 500, 1000, 1000, 1000, 2000, 2000, 3000, 5000, 5000, 10000],
  removeFingerprintOnSuccess: true,
});
// Uppy's Dashboard draws a lone file as a listitem with no list around it (its
// FileList's single-file branch sets no role): give that wrapper the role.
new MutationObserver(() => {
  for (const files of uploader.querySelectorAll(".uppy-Dashboard-files:not([role])")) {
    files.setAttribute("role", "list");
  }
}).observe(uploader, { childList: true, subtree: true });
window.uppy = uppy; // for the browser test and for curious people in the console

const rows = new Map(); // Uppy file id -> its line in #transfers

function transferRow(file) {
  let row = rows.get(file.id);
  if (!row) {
    row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-label", `Upload of ${file.name}`);
    const state = document.createElement("span");
    state.className = "state";
    row.append(name, bar, state);
    row.dataset.file = file.id;
    rows.set(file.id, row);
    transfers.append(row);
  }
  return row;
}

const speeds = new Map(); // Uppy file id -> {time, bytes, rate}

uppy.on("upload-progress", (file, progress) => {
  if (!file) return;
  const row = transferRow(file);
  const total = progress.bytesTotal || file.size || 0;
  const now = performance.now();
  const last = speeds.get(file.id);
  let rate = last ? last.rate : 0;
  if (last && now > last.time) {
    const current = ((progress.bytesUploaded - last.bytes) * 1000) / (now - last.time);
    rate = last.rate ? 0.7 * last.rate + 0.3 * current : current;
  }
  speeds.set(file.id, { time: now, bytes: progress.bytesUploaded, rate });
  row.querySelector("progress").max = total || 1;
  row.querySelector("progress").value = progress.bytesUploaded;
  const left = rate > 0 ? Math.ceil((total - progress.bytesUploaded) / rate) : null;
  row.querySelector(".state").textContent =
    `${human(progress.bytesUploaded)} of ${human(total)}` +
    (rate > 0 ? ` · ${human(rate)}/s` : "") + (left !== null ? ` · ${left} s left` : "");
});

uppy.on("upload-success", (file, response) => {
  const row = transferRow(file);
  row.classList.add("done");
  row.querySelector("progress").value = row.querySelector("progress").max;
  row.querySelector(".state").textContent = `${human(file.size)} · stored`;
  speeds.delete(file.id);
});

uppy.on("upload-error", (file, error) => {
  const response = error && error.originalResponse;
  const text = response ? serverMessage(response.getStatus(), response.getBody() || "") : error.message;
  const row = file && transferRow(file);
  if (row) row.querySelector(".state").textContent = "failed: retry in the panel above";
  showError(`${file ? file.name : "upload"}: ${text}`);
  announce(`Upload of ${file ? file.name : "a file"} failed`);
});

uppy.on("restriction-failed", (file, error) => {
  const name = file ? file.name : "a file";
  if (file && maxSize && file.size > maxSize) {
    // Exact bytes where the rounded sizes would read the same ("8.0 MiB, over 8.0 MiB").
    const exact = human(file.size) === human(maxSize);
    const size = exact ? `${file.size} bytes` : human(file.size);
    const limit = exact ? `${maxSize} bytes (${human(maxSize)})` : human(maxSize);
    showError(`${name} was not sent: it is ${size}, over the limit of ${limit} per file.`);
  } else {
    showError(`${name} was not sent: ${error.message}`);
  }
});

uppy.on("upload-pause", (file, paused) => {
  if (!file) return;
  announce(`${file.name} ${paused ? "paused" : "resumed"}`);
  speeds.delete(file.id);
  if (paused) {
    const { bytesUploaded, bytesTotal } = uppy.getFile(file.id).progress;
    transferRow(file).querySelector(".state").textContent =
      `${human(bytesUploaded || 0)} of ${human(bytesTotal || file.size || 0)} · paused`;
  }
});

uppy.on("file-removed", (file) => {
  rows.get(file.id)?.remove();
  rows.delete(file.id);
  speeds.delete(file.id);
});

uppy.on("complete", (result) => {
  const stored = result.successful ? result.successful.length : 0;
  const failed = result.failed ? result.failed.length : 0;
  if (stored || failed) {
    announce(`${stored} file${stored === 1 ? "" : "s"} uploaded` + (failed ? `, ${failed} failed` : ""));
  }
  if (stored) refresh(); // once per batch, however many files it had
  // The list below is what is stored now; a finished line here would go stale
  // once its file is deleted, so only unfinished uploads keep theirs.
  for (const file of result.successful || []) {
    rows.get(file.id)?.remove();
    rows.delete(file.id);
  }
});

function addFiles(files, source) {
  for (const file of files) {
    try {
      uppy.addFile({ name: file.name, type: file.type, data: file, source });
    } catch (error) {
      // restriction-failed has shown refused files; say anything else (a duplicate) here
      if (!error.isRestriction) showError(`${file.name}: ${error.message}`);
    }
  }
}

// A file dropped anywhere on the page is caught; drops on the Dashboard are Uppy's own.
let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  if (!event.dataTransfer || !event.dataTransfer.types.includes("Files")) return;
  dragDepth++;
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) document.body.classList.remove("dragging");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  document.body.classList.remove("dragging");
  if (uploader.contains(event.target)) return;
  addFiles(event.dataTransfer ? event.dataTransfer.files : [], "drop");
});

// Paste from the clipboard (a screenshot, or files copied in a file manager).
document.addEventListener("paste", (event) => {
  const files = event.clipboardData ? [...event.clipboardData.files] : [];
  if (!files.length) return;
  event.preventDefault();
  addFiles(files, "paste");
});

// ---- stored files --------------------------------------------------------------------
// The server draws the list (templates/_files.html), in the page and again after a change;
// the script only adds what needs it: copy-link and the delete dialog.

/** Make the rows of the list work with the script (they work without it as drawn). */
function enhance() {
  for (const item of list.querySelectorAll("li[data-id]")) {
    const link = item.querySelector("a.name");
    const file = { id: item.dataset.id, name: link.textContent, url: link.href };
    item.querySelector("button.copy").onclick = () => copyLink(file);
    const remove = item.querySelector("a.delete");
    remove.setAttribute("role", "button"); // it opens the dialog now, not the page
    remove.onclick = (event) => {
      event.preventDefault();
      askDelete(file, remove);
    };
  }
  document.getElementById("count").textContent = list.dataset.count;
  list.dataset.loaded = String(Number(list.dataset.loaded || 0) + 1);
}

async function copyLink(file) {
  try {
    await navigator.clipboard.writeText(file.url);
    announce(`Link to ${file.name} copied`);
  } catch (error) {
    showError(`Could not copy the link to ${file.name}: ${error.message}`);
  }
}

function askDelete(file, opener) {
  document.getElementById("confirm-name").textContent = file.name;
  confirmDelete.returnValue = "";
  confirmDelete.onclose = async () => {
    opener.focus();
    if (confirmDelete.returnValue !== "delete") return;
    try {
      const result = await call(`${list.dataset.api}/${file.id}`, { method: "DELETE" });
      const gone = result.removed && result.removed.length;
      announce(`Deleted ${file.name}` + (gone ? "; its bytes were removed" : ""));
    } catch (error) {
      showError(`Could not delete ${file.name}: ${error.message}`);
    }
    refresh();
  };
  confirmDelete.showModal();
}

/** Draw the list again, as the server draws it now. */
export async function refresh() {
  let drawn;
  try {
    let response;
    try {
      response = await fetch(list.dataset.api, { headers: { Accept: "text/html" } });
    } catch (error) {
      throw new Error(`network error: ${error.message}`);
    }
    const html = await response.text();
    if (!response.ok) throw new Error(serverMessage(response.status, html));
    drawn = new DOMParser().parseFromString(html, "text/html").getElementById("files");
    if (!drawn) throw new Error("the server sent no list");
  } catch (error) {
    showError(`Could not load the stored files: ${error.message}`);
    return;
  }
  list.replaceChildren(...drawn.childNodes);
  list.dataset.count = drawn.dataset.count;
  enhance();
}

const sweep = document.querySelector("form.sweep");
sweep.onsubmit = async (event) => {
  event.preventDefault();
  try {
    const result = await call(sweep.dataset.api, { method: "POST" });
    announce(`Clean-up removed ${result.removed.length} file${result.removed.length === 1 ? "" : "s"}`);
  } catch (error) {
    showError(`Clean-up failed: ${error.message}`);
  }
  refresh();
};

enhance();
