"use strict";
// The clipsearch page: the query and filters live in the URL (bookmark, share, reload,
// back), results come from /api/v1/search, and every name is set as text, never as HTML.

const $ = (id) => document.getElementById(id);
const FIELDS = ["query", "folder", "after", "before", "ext", "k"];
const state = { items: [], offset: 0, request: null, upload: null, done: false };

function fromUrl() {
  const p = new URLSearchParams(location.search);
  $("query").value = p.get("q") || "";
  $("folder").value = p.get("in") || "";
  $("after").value = p.get("after") || "";
  $("before").value = p.get("before") || "";
  $("ext").value = p.get("ext") || "";
  $("k").value = p.get("k") || "24";
  if (["in", "after", "before", "ext"].some((f) => p.get(f))) showFilters(true);
  return p.get("similar");
}

function toUrl(similar) {
  const p = new URLSearchParams();
  const put = (key, value) => value && p.set(key, value);
  put("q", $("query").value.trim());
  put("in", $("folder").value.trim());
  put("after", $("after").value);
  put("before", $("before").value);
  put("ext", $("ext").value.trim());
  if ($("k").value !== "24") put("k", $("k").value);
  put("similar", similar);
  const url = `${location.pathname}?${p}`;
  if (url !== location.pathname + location.search) history.pushState({}, "", url);
}

function request(similar) {
  const k = Math.max(1, Math.min(200, parseInt($("k").value, 10) || 24));
  const body = { query: $("query").value.trim(), k };
  if ($("folder").value.trim()) body.in = [$("folder").value.trim()];
  if ($("after").value) body.after = $("after").value;
  if ($("before").value) body.before = $("before").value;
  const ext = $("ext").value.split(/[,\s]+/).filter(Boolean);
  if (ext.length) body.ext = ext;
  if (similar) body.similar_to = parseInt(similar, 10);
  return body;
}

async function post(body, upload) {
  const init = { method: "POST", credentials: "same-origin" };
  if (upload) {
    const form = new FormData();
    form.append("request", JSON.stringify(body));
    form.append("image", upload, upload.name || "pasted.png");
    init.body = form;
  } else {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let response = await fetch("/api/v1/search", init);
  if (response.status === 401 && (await askForKey())) response = await fetch("/api/v1/search", init);
  const data = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

async function askForKey() {
  const key = window.prompt("This clipsearch server needs its API key:");
  if (!key) return false;
  const response = await fetch("/api/v1/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key }),
    credentials: "same-origin",
  });
  if (!response.ok) say("That key is not the server's.");
  return response.ok;
}

function say(text) {
  $("message").textContent = text;
}

async function search(similar, upload) {
  state.items = [];
  state.offset = 0;
  state.done = false;
  state.request = request(similar);
  state.upload = upload || null;
  $("grid").replaceChildren();
  $("summary").textContent = "";
  say("");
  if (!state.request.query && !state.request.similar_to && !state.upload) {
    $("more-row").hidden = true;
    return;
  }
  await more();
}

async function more() {
  const body = { ...state.request, offset: state.offset };
  let data;
  try {
    data = await post(body, state.upload);
  } catch (error) {
    say(error.message);
    return;
  }
  state.items.push(...data.items);
  state.offset += data.items.length;
  state.done = data.items.length < body.k;
  for (const item of data.items) $("grid").append(card(item));
  $("summary").textContent = `${state.items.length} results for ${data.query} (model ${data.model})`;
  if (!state.items.length) say("Nothing matches this search. Try other words, or fewer filters.");
  $("more-row").hidden = !state.items.length;
  $("more").hidden = state.done;
}

function card(item) {
  const figure = document.createElement("figure");
  figure.dataset.id = item.id;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = item.path;
  img.src = item.thumb_url;
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = item.path.split("/").pop();
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = item.score.toFixed(3);
  caption.append(name, score);
  figure.append(img, caption);
  figure.addEventListener("click", () => view(item));
  return figure;
}

function view(item) {
  $("large").src = `${item.thumb_url}?size=1024`;
  $("large").alt = item.path;
  $("v-path").textContent = item.path;
  $("v-date").textContent = item.date.replace("T", " ");
  $("v-size").textContent = `${item.width || "?"} × ${item.height || "?"}, ${(item.size / 1e6).toFixed(2)} MB`;
  $("v-score").textContent = item.score.toFixed(4);
  $("original").href = item.image_url;
  $("find-similar").onclick = () => {
    close();
    $("query").value = "";
    toUrl(String(item.id));
    search(String(item.id));
  };
  $("viewer").hidden = false;
}

function close() {
  $("viewer").hidden = true;
}

function download(name, text, type) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  URL.revokeObjectURL(link.href);
}

function showFilters(open) {
  $("filters").hidden = !open;
  $("toggle-filters").setAttribute("aria-expanded", String(open));
}

function searchByImage(file) {
  if (!file || !file.type.startsWith("image/")) return say("That is not an image.");
  toUrl(null);
  search(null, file);
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  toUrl(null);
  search(null);
});
$("toggle-filters").addEventListener("click", () => showFilters($("filters").hidden));
$("scores").addEventListener("change", () => document.body.classList.toggle("no-scores", !$("scores").checked));
$("more").addEventListener("click", more);
$("close").addEventListener("click", close);
$("viewer").addEventListener("click", (event) => event.target === $("viewer") && close());
$("download-json").addEventListener("click", () =>
  download("clipsearch-results.json", JSON.stringify(state.items, null, 1), "application/json"));
$("download-paths").addEventListener("click", () =>
  download("clipsearch-paths.txt", state.items.map((i) => i.path).join("\n") + "\n", "text/plain"));
document.addEventListener("keydown", (event) => event.key === "Escape" && close());
window.addEventListener("popstate", () => search(fromUrl()));
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  $("drop-veil").hidden = false;
});
document.addEventListener("dragleave", (event) => event.relatedTarget === null && ($("drop-veil").hidden = true));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop-veil").hidden = true;
  searchByImage(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file) searchByImage(file);
});
for (const field of FIELDS.slice(1)) $(field).addEventListener("change", () => state.request && $("search").requestSubmit());
search(fromUrl());
