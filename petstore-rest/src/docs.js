"use strict";
// The /docs page's script: a file of its own so that the page's Content-Security-Policy
// needs no 'unsafe-inline'.
// Everything is relative to where this page is served, so the router can be nested.
const base = location.pathname.replace(/\/docs\/?$/, "");
const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("petstore-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("petstore-token", tokenInput.value.trim()));

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function resolve(doc, value) {
  while (value && value.$ref) {
    value = value.$ref.slice(2).split("/").reduce((o, k) => o && o[k.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
  }
  return value;
}

/// A skeleton body from a schema: required properties with placeholder values.
function example(doc, schema, depth) {
  schema = resolve(doc, schema) || {};
  if (depth > 4) return null;
  if (schema.examples && schema.examples.length) return schema.examples[0];
  if (schema.anyOf) return example(doc, schema.anyOf.find(s => s.type !== "null") || {}, depth + 1);
  if (schema.oneOf) return example(doc, schema.oneOf[0], depth + 1);
  if (schema.enum) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type.find(t => t !== "null") : schema.type;
  if (type === "object" || schema.properties) {
    const out = {};
    for (const k of schema.required || []) out[k] = example(doc, schema.properties[k], depth + 1);
    return out;
  }
  if (type === "array") return [];
  if (type === "integer" || type === "number") return 1;
  if (type === "boolean") return false;
  return type === "string" ? "" : null;
}

function operation(doc, method, path, op) {
  const params = (op.parameters || []).map(p => resolve(doc, p));
  const inputs = {};
  const rows = params.map(p => {
    const input = el("input", { placeholder: p.required ? "required" : "" });
    inputs[p.in + ":" + p.name] = input;
    return el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", { class: "muted" }, p.in),
      el("td", {}, input), el("td", { class: "muted" }, p.description || ""));
  });
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", { class: "desc" }, op.description));
  if (rows.length) body.append(el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
    el("th", {}, "value"), el("th", {}, "")), ...rows));
  let textarea = null;
  if (op.requestBody) {
    const [type, media] = Object.entries(op.requestBody.content)[0];
    textarea = el("textarea", { "data-type": type });
    textarea.value = JSON.stringify(example(doc, media.schema, 0), null, 2);
    body.append(el("div", { class: "muted" }, `Body (${type})`), textarea);
  }
  const responses = el("ul", {}, ...Object.entries(op.responses).map(([status, r]) =>
    el("li", {}, el("code", {}, status), " ", (resolve(doc, r) || {}).description || "")));
  body.append(el("details", {}, el("summary", { class: "muted" }, "Responses"), responses));
  const out = el("pre", { hidden: "" });
  const send = el("button", {}, "Send");
  send.addEventListener("click", async () => {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const p of params) {
      const v = inputs[p.in + ":" + p.name].value;
      if (!v) continue;
      if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(v));
      else if (p.in === "query") query.append(p.name, v);
      else if (p.in === "header") headers[p.name] = v;
    }
    if (tokenInput.value.trim()) headers.Authorization = "Bearer " + tokenInput.value.trim();
    const init = { method: method.toUpperCase(), headers };
    if (textarea && textarea.value.trim()) {
      headers["Content-Type"] = textarea.dataset.type;
      init.body = textarea.value;
    }
    const qs = query.toString();
    out.hidden = false;
    out.textContent = "…";
    try {
      const res = await fetch(base + url + (qs ? "?" + qs : ""), init);
      const shown = ["content-type", "etag", "location", "x-event-position", "idempotent-replayed", "www-authenticate"]
        .filter(h => res.headers.get(h)).map(h => `${h}: ${res.headers.get(h)}`).join("\n");
      let text = await res.text();
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      out.textContent = `${res.status} ${res.statusText}\n${shown}\n\n${text}`;
    } catch (e) {
      out.textContent = String(e);
    }
  });
  body.append(send, out);
  return el("details", { class: "op" },
    el("summary", {}, el("span", { class: "m " + method.toUpperCase() }, method.toUpperCase()),
      el("span", { class: "path" }, path), " ", el("span", { class: "muted" }, op.summary || "")),
    body);
}

fetch(base + "/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
  document.getElementById("summary").textContent = doc.info.description || "";
  const main = document.getElementById("ops");
  main.textContent = "";
  const byTag = new Map((doc.tags || []).map(t => [t.name, []]));
  const order = ["get", "post", "put", "patch", "delete"];
  for (const [path, item] of Object.entries(doc.paths)) {
    const methods = Object.entries(item).sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
    for (const [method, op] of methods) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, method, path, op));
    }
  }
  for (const [tag, ops] of byTag) {
    const info = (doc.tags || []).find(t => t.name === tag);
    main.append(el("h2", {}, tag));
    if (info && info.description) main.append(el("p", { class: "muted" }, info.description));
    main.append(...ops);
  }
  main.append(el("h2", {}, "schemas"),
    ...Object.entries(doc.components.schemas).map(([name, s]) =>
      el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("code", {}, name)),
        el("pre", {}, JSON.stringify(s, null, 2)))));
}).catch(e => { document.getElementById("ops").textContent = "Could not load openapi.json: " + e; });
