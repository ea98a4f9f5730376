// Upload files with a progress bar each, then refresh the list of stored files.
"use strict";

const drop = document.getElementById("drop");
const picker = document.getElementById("picker");
const uploads = document.getElementById("uploads");
const list = document.getElementById("files");

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function upload(file) {
  const row = document.createElement("li");
  row.className = "upload";
  const name = document.createElement("span");
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = file.size || 1;
  bar.value = 0;
  const status = document.createElement("span");
  status.className = "status";
  status.textContent = "0%";
  row.append(name, " ", bar, " ", status);
  uploads.append(row);

  const form = new FormData();
  form.append("file", file, file.name);
  const request = new XMLHttpRequest();
  request.open("POST", "/upload");
  request.setRequestHeader("Accept", "application/json");
  request.upload.onprogress = (event) => {
    bar.value = event.loaded;
    status.textContent = `${Math.floor((100 * event.loaded) / (event.total || 1))}%`;
  };
  return new Promise((resolve) => {
    request.onload = () => {
      if (request.status === 200) {
        const stored = JSON.parse(request.responseText).files[0];
        bar.value = bar.max;
        status.textContent = stored.duplicate ? "already stored (deduplicated)" : "stored";
        row.dataset.id = stored.id;
        row.classList.add(stored.duplicate ? "duplicate" : "done");
      } else {
        status.textContent = `failed: HTTP ${request.status}`;
        row.classList.add("failed");
      }
      resolve();
      refresh();
    };
    request.onerror = () => { status.textContent = "failed: network error"; resolve(); };
    request.send(form);
  });
}

async function refresh() {
  const response = await fetch("/api/files", { headers: { Accept: "application/json" } });
  const files = (await response.json()).files;
  list.replaceChildren(...files.map((file) => {
    const row = document.createElement("tr");
    row.dataset.id = file.id;
    const link = document.createElement("a");
    link.href = file.url;
    link.textContent = file.id;
    link.className = "hash";
    const remove = document.createElement("button");
    remove.textContent = "delete";
    remove.className = "delete";
    remove.onclick = async () => {
      await fetch(`/api/files/${file.id}`, { method: "DELETE" });
      refresh();
    };
    const download = document.createElement("a");
    download.href = `${file.url}?download=${encodeURIComponent(file.id.slice(0, 12) + file.extension)}`;
    download.textContent = "download";
    download.className = "download";
    const actions = document.createElement("span");
    actions.append(download, " ", remove);
    const cells = [link, `${file.extension || ""}`, human(file.size), actions];
    row.append(...cells.map((content) => {
      const cell = document.createElement("td");
      cell.append(content);
      return cell;
    }));
    return row;
  }));
  document.getElementById("count").textContent = `${files.length} stored`;
}

function send(files) {
  for (const file of files) upload(file);
}

picker.addEventListener("change", () => { send(picker.files); picker.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  send(event.dataTransfer.files);
});
refresh();
