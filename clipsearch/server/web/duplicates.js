"use strict";
// The duplicates page: groups from /api/v1/duplicates, a row each, the keeper first and
// marked; the settings live in the URL. Every name is set as text, never as HTML.

const FIELDS = { kind: "kind", threshold: "threshold", folder: "in", camera: "camera", near: "near" };
const state = { groups: [], offset: 0, more: false, serial: 0 };
const PAGE = 50;

function fromUrl() {
  const p = new URLSearchParams(location.search);
  for (const [field, key] of Object.entries(FIELDS)) $(field).value = p.get(key) || "";
  if (!$("kind").value) $("kind").value = "near";
}

function query(offset) {
  const p = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
  for (const [field, key] of Object.entries(FIELDS)) {
    const value = $(field).value.trim();
    if (value) p.set(key, value);
  }
  return p;
}

function say(text) {
  $("message-text").textContent = text;
}

function setLoading(on) {
  $("results").setAttribute("aria-busy", String(on));
  $("loading").hidden = !on;
  $("more").disabled = on;
}

async function load(offset) {
  const serial = offset ? state.serial : ++state.serial;
  setLoading(true);
  say("");
  let data;
  try {
    const response = await fetch(`/api/v1/duplicates?${query(offset)}`, { credentials: "same-origin" });
    data = await response.json().catch(() => ({}));
    if (response.status === 401) throw new Error("This server needs its API key: sign in on the search page first.");
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  } catch (error) {
    if (serial === state.serial) {
      setLoading(false);
      say(error instanceof TypeError ? "Could not reach the clipsearch server: is `clipsearch serve` still running?" : error.message);
    }
    return;
  }
  if (serial !== state.serial) return;
  setLoading(false);
  if (!offset) {
    state.groups = [];
    $("groups").replaceChildren();
  }
  state.groups.push(...data.groups);
  state.offset = offset + data.groups.length;
  state.more = data.more;
  data.groups.forEach((group) => $("groups").append(row(group)));
  const at = data.threshold === null ? "" : ` at ${data.threshold.toFixed(3)}`;
  $("summary").textContent = `${data.total} groups of ${data.kind} duplicates${at} (model ${data.model})`;
  if (!data.total) say("No duplicates of this kind here.");
  $("more-row").hidden = !state.groups.length;
  $("more").hidden = !state.more;
}

function row(group) {
  const section = element("section", "group");
  for (const item of group.items) {
    const figure = element("figure", item.keep ? "keep" : "");
    const link = element("a");
    link.href = item.image_url;
    link.target = "_blank";
    link.rel = "noopener";
    const img = element("img");
    img.loading = "lazy";
    img.alt = item.path;
    img.src = item.thumb_url;
    link.append(img);
    const caption = element("figcaption");
    const pixels = item.width && item.height ? `${item.width} × ${item.height}` : "?";
    caption.append(
      element("span", "badge", item.keep ? "Keep" : item.score.toFixed(3)),
      element("span", "name", item.path),
      element("span", "date", `${pixels}, ${(item.bytes / 1e6).toFixed(2)} MB, ${item.taken.slice(0, 10)}`),
    );
    figure.append(link, caption);
    section.append(figure);
  }
  return section;
}

function others() {
  return state.groups.flatMap((g) => g.items.filter((i) => !i.keep).map((i) => i.path));
}

async function copyList() {
  const text = others().join("\n") + "\n";
  try {
    await navigator.clipboard.writeText(text);
    say(`Copied ${others().length} paths (every member but the keeper).`);
  } catch (error) {
    download("clipsearch-duplicates.txt", text, "text/plain");
  }
}

function run() {
  const p = new URLSearchParams();
  for (const [field, key] of Object.entries(FIELDS)) {
    const value = $(field).value.trim();
    if (value && !(field === "kind" && value === "near")) p.set(key, value);
  }
  history.pushState({}, "", `${location.pathname}?${p}`);
  load(0);
}

$("find").addEventListener("submit", (event) => {
  event.preventDefault();
  run();
});
$("more").addEventListener("click", () => state.more && load(state.offset));
$("copy").addEventListener("click", copyList);
$("download").addEventListener("click", () =>
  download("clipsearch-duplicates.json", JSON.stringify(state.groups, null, 1), "application/json"));
window.addEventListener("popstate", () => {
  fromUrl();
  load(0);
});
fromUrl();
load(0);
