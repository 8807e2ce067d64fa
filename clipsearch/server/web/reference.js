"use strict";
// The API reference at /docs, read from /openapi.json: every operation with its
// parameters, its request body's fields and its answers. Text only, never HTML.

const el = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

function resolve(schema, spec) {
  if (schema && schema.$ref) return spec.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeOf(schema, spec) {
  const s = resolve(schema, spec);
  if (s.anyOf) return s.anyOf.map((x) => typeOf(x, spec)).join(" | ");
  if (s.type === "array") return `${typeOf(s.items, spec)}[]`;
  return s.type || (schema && schema.$ref ? schema.$ref.split("/").pop() : "any");
}

function fields(title, rows) {
  const section = el("section");
  section.append(el("h3", title));
  const list = el("dl");
  for (const [name, type, about] of rows) {
    list.append(el("dt", `${name}: ${type}`), el("dd", about || ""));
  }
  section.append(list);
  return section;
}

function operation(method, path, op, spec) {
  const article = el("article", undefined, "operation");
  article.append(el("h2", `${method.toUpperCase()} ${path}`));
  if (op.description || op.summary) article.append(el("p", op.description || op.summary));
  const params = (op.parameters || []).map((p) => [`${p.name} (${p.in})`, typeOf(p.schema, spec), p.description]);
  if (params.length) article.append(fields("Parameters", params));
  for (const [kind, body] of Object.entries((op.requestBody || {}).content || {})) {
    const schema = resolve(body.schema, spec);
    const rows = Object.entries(schema.properties || {}).map(([name, s]) => [name, typeOf(s, spec), resolve(s, spec).description]);
    article.append(fields(`Body (${kind})`, rows));
  }
  const answers = Object.entries(op.responses || {}).map(([code, r]) => [code, "", r.description]);
  article.append(fields("Answers", answers));
  return article;
}

async function show() {
  const target = document.getElementById("operations");
  const spec = await (await fetch("/openapi.json")).json();
  if (spec.components && spec.components.securitySchemes) {
    target.append(el("p", "This server needs its key: send it in the X-API-Key header."));
  }
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) target.append(operation(method, path, op, spec));
  }
  target.setAttribute("aria-busy", "false");
}

show();
