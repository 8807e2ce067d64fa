"use strict";
// The clipsearch page: the query, its filters and a similar-to image live in the URL
// (bookmark, share, reload, back), results come from /api/v1/search, and every name is
// set as text, never as HTML. Only the newest search's answers are shown: each search
// has a serial number, and an answer to an older one is dropped.

const FILTERS = { folder: "in", after: "after", before: "before", ext: "ext", camera: "camera", near: "near", "min-score": "min", sort: "sort", k: "k" };
const LABELS = { folder: "Folder", after: "After", before: "Before", ext: "Type", camera: "Camera", near: "Near", "min-score": "Min score", sort: "Sort" };
const state = {
  items: [], offset: 0, request: null, upload: null, uploadUrl: null, similar: null,
  more: false, serial: 0, loading: false, viewing: -1, returnFocus: null, retry: null,
};

function fromUrl() {
  const p = new URLSearchParams(location.search);
  $("query").value = p.get("q") || "";
  for (const [field, key] of Object.entries(FILTERS)) $(field).value = p.get(key) || "";
  if (!$("sort").value) $("sort").value = "score";
  if (!$("k").value) $("k").value = "24";
  state.similar = p.get("similar");
}

function toUrl() {
  const p = new URLSearchParams();
  const put = (key, value) => value && p.set(key, value);
  put("q", $("query").value.trim());
  for (const [field, key] of Object.entries(FILTERS)) put(key, $(field).value.trim());
  if (p.get("sort") === "score") p.delete("sort");
  if (p.get("k") === "24") p.delete("k");
  put("similar", state.similar);
  const url = `${location.pathname}?${p}`;
  if (url !== location.pathname + location.search) history.pushState({}, "", url);
}

function pageSize() {
  return Math.max(1, Math.min(200, parseInt($("k").value, 10) || 24));
}

function request() {
  const body = { query: $("query").value.trim(), sort: $("sort").value || "score" };
  if ($("folder").value.trim()) body.in = [$("folder").value.trim()];
  if ($("after").value) body.after = $("after").value;
  if ($("before").value) body.before = $("before").value;
  const ext = $("ext").value.split(/[,\s]+/).filter(Boolean);
  if (ext.length) body.ext = ext;
  if ($("camera").value.trim()) body.camera = $("camera").value.trim();
  if ($("near").value.trim()) body.near = $("near").value.replace(/\s+/g, "");
  const min = parseFloat($("min-score").value);
  if (!Number.isNaN(min)) body.min_score = min;
  if (state.similar) body.similar_to = parseInt(state.similar, 10);
  return body;
}

async function call(path, init) {
  try {
    return await fetch(path, { credentials: "same-origin", ...init });
  } catch (error) {
    throw new Error("Could not reach the clipsearch server: is `clipsearch serve` still running?");
  }
}

async function post(body, upload) {
  const init = { method: "POST" };
  if (upload) {
    const form = new FormData();
    form.append("request", JSON.stringify(body));
    form.append("image", upload, upload.name || "pasted.png");
    init.body = form;
  } else {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let response = await call("/api/v1/search", init);
  if (response.status === 401 && (await askForKey())) response = await call("/api/v1/search", init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

async function askForKey() {
  const key = window.prompt("This clipsearch server needs its API key:");
  if (!key) return false;
  const response = await call("/api/v1/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key }),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    say(data.error === "wrong key" ? "That key is not the server's." : data.error || "Signing in failed.");
  }
  $("sign-out").hidden = !response.ok;
  return response.ok;
}

async function signOut() {
  await call("/api/v1/session", { method: "DELETE" });
  $("sign-out").hidden = true;
  state.items = [];
  $("grid").replaceChildren();
  $("summary").textContent = "";
  showRow();
  say("Signed out.");
}

function say(text, retry) {
  $("message-text").textContent = text;
  state.retry = retry || null;
  $("retry").hidden = !retry;
}

function setLoading(on) {
  state.loading = on;
  $("results").setAttribute("aria-busy", String(on));
  $("loading").hidden = !on;
  $("go").disabled = on;
  $("more").disabled = on;
}

function showRow() {
  $("more-row").hidden = !state.items.length || state.loading;
  $("more").hidden = !state.more;
}

function run() {
  toUrl();
  search();
}

async function search(shown) {
  const serial = ++state.serial;
  const req = request();
  say("");
  renderChips();
  if (!req.query && !req.similar_to && !state.upload) {
    state.items = [];
    state.more = false;
    $("grid").replaceChildren();
    $("summary").textContent = "";
    setLoading(false);
    showRow();
    return;
  }
  await load(serial, req, 0, Math.max(pageSize(), Math.min(1000, shown || 0)));
}

async function more() {
  if (state.loading || !state.more) return;
  await load(state.serial, state.request, state.offset, pageSize());
}

// One page of answers: at offset 0 they replace what is shown, once they have come (a
// failure keeps the results on screen, says what failed and offers a retry).
async function load(serial, req, offset, k) {
  setLoading(true);
  showRow();
  let data;
  try {
    data = await post({ ...req, k, offset }, state.upload);
  } catch (error) {
    if (serial !== state.serial) return;
    setLoading(false);
    showRow();
    say(error.message, offset ? more : () => search());
    return;
  }
  if (serial !== state.serial) return; // a newer search began meanwhile
  setLoading(false);
  if (offset === 0) {
    state.items = [];
    $("grid").replaceChildren();
  }
  state.request = req;
  const start = state.items.length;
  state.items.push(...data.items);
  state.offset = offset + data.items.length;
  state.more = data.more;
  data.items.forEach((item, i) => $("grid").append(card(item, start + i)));
  $("summary").textContent = `${state.items.length} results for ${data.query} (model ${data.model})`;
  const nothing = "Nothing matches this search. Try other words, or fewer filters.";
  say(state.items.length ? (data.warnings || []).join(" ") : nothing);
  showRow();
}

function card(item, index) {
  const figure = element("figure");
  figure.dataset.id = item.id;
  const open = element("button", "open");
  open.type = "button";
  open.setAttribute("aria-label", `Open ${item.path}`);
  const img = element("img");
  img.loading = "lazy";
  img.alt = item.path;
  img.src = item.thumb_url;
  img.srcset = `${item.thumb_url} 1x, ${item.thumb_url}?size=512 2x`;
  open.append(img);
  open.addEventListener("click", () => view(index));
  const caption = element("figcaption");
  const similar = element("button", "similar", "Similar");
  similar.type = "button";
  similar.setAttribute("aria-label", `Find images similar to ${item.path}`);
  similar.addEventListener("click", () => findSimilar(item));
  caption.append(
    element("span", "name", item.path.split("/").pop()),
    element("span", "date", item.date.slice(0, 10)),
    element("span", "score", item.score.toFixed(3)),
    similar,
  );
  if (item.matched) caption.append(matchedLine(item.matched));
  figure.append(open, caption);
  return figure;
}

// The query's words a result carries, marked, by field: "name: grand canyon".
function matchedLine(matched) {
  const line = element("span", "matched");
  for (const [field, words] of Object.entries(matched)) {
    line.append(`${line.childNodes.length ? "; " : ""}${field}: `);
    words.forEach((word, i) => line.append(i ? " " : "", element("mark", "", word)));
  }
  return line;
}

function view(index) {
  const item = state.items[index];
  if (!item) return;
  if ($("viewer").hidden) state.returnFocus = document.activeElement;
  state.viewing = index;
  $("large").src = `${item.thumb_url}?size=1024`;
  $("large").alt = item.path;
  $("v-title").textContent = item.path.split("/").pop();
  $("v-path").textContent = item.raw ? `${item.path} (and its RAW: ${item.raw})` : item.path;
  $("v-date").textContent = item.date.replace("T", " ");
  $("v-size").textContent = `${item.width || "?"} × ${item.height || "?"}, ${(item.size / 1e6).toFixed(2)} MB`;
  $("v-score").textContent = item.score.toFixed(4);
  $("original").href = item.image_url;
  $("previous").disabled = index === 0;
  $("next").disabled = index === state.items.length - 1;
  $("find-similar").onclick = () => findSimilar(item);
  showText(item, index);
  $("viewer").hidden = false;
  if (!$("viewer").contains(document.activeElement) || document.activeElement.disabled) $("close").focus();
}

// The text read in the image (index --ocr): its lines under the picture, their boxes on it.
async function showText(item, index) {
  const boxes = $("boxes");
  boxes.replaceChildren();
  for (const id of ["v-text", "v-text-label"]) $(id).hidden = true;
  let answer;
  try {
    const response = await fetch(`/api/v1/text/${item.id}`);
    if (!response.ok) return;
    answer = await response.json();
  } catch {
    return;  // the picture is still worth seeing without its text
  }
  if (state.viewing !== index || !answer.lines.length) return;
  $("v-text").textContent = answer.lines.map((line) => line.text).join("\n");
  for (const id of ["v-text", "v-text-label"]) $(id).hidden = false;
  const large = $("large");
  await large.decode().catch(() => {});
  if (state.viewing !== index || !large.naturalWidth) return;
  // Boxes are in the picture's own pixels; the shown copy is smaller, turned the same way.
  const scale = Math.max(item.width || 0, item.height || 0) / Math.max(large.naturalWidth, large.naturalHeight) || 1;
  boxes.setAttribute("viewBox", `0 0 ${large.naturalWidth * scale} ${large.naturalHeight * scale}`);
  for (const line of answer.lines) {
    const shape = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
    shape.setAttribute("points", line.box.map(([x, y]) => `${x},${y}`).join(" "));
    shape.dataset.text = line.text;
    boxes.append(shape);
  }
}

function close() {
  if ($("viewer").hidden) return;
  $("viewer").hidden = true;
  state.viewing = -1;
  if (state.returnFocus) state.returnFocus.focus();
}

function trapFocus(event) {
  const inside = [...$("viewer").querySelectorAll("button, a[href]")].filter((e) => !e.disabled);
  const first = inside[0];
  const last = inside[inside.length - 1];
  if (event.shiftKey && document.activeElement === first) {
    last.focus();
    event.preventDefault();
  } else if (!event.shiftKey && document.activeElement === last) {
    first.focus();
    event.preventDefault();
  }
}

function onKey(event) {
  if ($("viewer").hidden) return;
  if (event.key === "Escape") close();
  else if (event.key === "ArrowLeft") view(state.viewing - 1);
  else if (event.key === "ArrowRight") view(state.viewing + 1);
  else if (event.key === "Tab") trapFocus(event);
}

function findSimilar(item) {
  state.returnFocus = null;
  close();
  $("query").value = "";
  clearUpload();
  state.similar = String(item.id);
  run();
}

function chip(text, remove, image) {
  const node = element("span", "chip");
  if (image) {
    const thumb = element("img");
    thumb.src = image;
    thumb.alt = "";
    node.append(thumb);
  }
  node.append(element("span", "", text));
  const x = element("button", "", "×");
  x.type = "button";
  x.setAttribute("aria-label", `Remove ${text}`);
  x.addEventListener("click", remove);
  node.append(x);
  return node;
}

function renderChips() {
  const chips = [];
  if (state.upload) chips.push(chip(`Image: ${state.upload.name || "pasted"}`, () => { clearUpload(); run(); }, state.uploadUrl));
  if (state.similar) chips.push(chip(`Similar to image #${state.similar}`, () => { state.similar = null; run(); }));
  for (const [field, label] of Object.entries(LABELS)) {
    const value = $(field).value.trim();
    if (!value || (field === "sort" && value === "score")) continue;
    const shown = field === "sort" ? $("sort").selectedOptions[0].textContent : value;
    chips.push(chip(`${label}: ${shown}`, () => {
      $(field).value = field === "sort" ? "score" : "";
      run();
    }));
  }
  $("chips").replaceChildren(...chips);
}

function clearUpload() {
  if (state.uploadUrl) URL.revokeObjectURL(state.uploadUrl);
  state.upload = null;
  state.uploadUrl = null;
  $("upload").value = "";
}

function showFilters(open) {
  $("filters").hidden = !open;
  $("toggle-filters").setAttribute("aria-expanded", String(open));
}

function searchByImage(file) {
  if (!file || !file.type.startsWith("image/")) return say("That is not an image.");
  clearUpload();
  state.upload = file;
  state.uploadUrl = URL.createObjectURL(file);
  state.similar = null;
  run();
}

function rememberScroll() {
  history.replaceState({ scroll: window.scrollY, shown: state.items.length }, "");
}

async function restore() {
  fromUrl();
  const saved = history.state || {};
  await search(saved.shown);
  if (saved.scroll) window.scrollTo(0, saved.scroll);
}

// With `serve --watch`: whether new photos are being indexed, and when one last was.
async function showWatching() {
  const response = await call("/api/v1/watch").catch(() => null);
  const data = response && response.ok ? await response.json() : {};
  $("watching").hidden = !data.watching;
  if (!data.watching) return;
  const last = data.last_change ? new Date(data.last_change * 1000).toLocaleTimeString() : "none yet";
  const doing = data.indexing ? "Indexing new photos…" : "Watching for new photos.";
  $("watching").textContent = `${doing} ${data.changed} changed since the server started; last change: ${last}.`;
  setTimeout(showWatching, document.hidden ? 30000 : 5000);
}

async function showSignOut() {
  const response = await call("/api/v1/session").catch(() => null);
  const data = response && response.ok ? await response.json() : {};
  if (data.key_needed && data.signed_in) $("sign-out").hidden = false;
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  run();
});
$("query").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && state.loading) run(); // the button waits; a new search need not
});
$("upload").addEventListener("change", () => searchByImage($("upload").files[0]));
$("toggle-filters").addEventListener("click", () => showFilters($("filters").hidden));
$("scores").addEventListener("change", () => document.body.classList.toggle("no-scores", !$("scores").checked));
$("more").addEventListener("click", more);
$("retry").addEventListener("click", () => state.retry && state.retry());
$("sign-out").addEventListener("click", signOut);
$("close").addEventListener("click", close);
$("previous").addEventListener("click", () => view(state.viewing - 1));
$("next").addEventListener("click", () => view(state.viewing + 1));
$("viewer").addEventListener("click", (event) => event.target === $("viewer") && close());
$("download-json").addEventListener("click", () =>
  download("clipsearch-results.json", JSON.stringify(state.items, null, 1), "application/json"));
$("download-paths").addEventListener("click", () =>
  download("clipsearch-paths.txt", state.items.map((i) => i.path).join("\n") + "\n", "text/plain"));
document.addEventListener("keydown", onKey);
window.addEventListener("popstate", restore);
let scrollTimer = 0;
window.addEventListener("scroll", () => {
  clearTimeout(scrollTimer);
  scrollTimer = setTimeout(rememberScroll, 150);
});
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
for (const field of Object.keys(FILTERS)) $(field).addEventListener("change", () => state.request && run());
history.scrollRestoration = "manual";
showSignOut();
showWatching();
restore();
