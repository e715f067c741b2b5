// What can be checked of the Helm chart without a `helm` binary (none can be
// installed on the project's machines): values against values.schema.json,
// and the templates' references against values.yaml and _helpers.tpl.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const YAML = require("yaml");
const Ajv = require("ajv");
const { chartDir, readText, readYaml } = require("./project");

// Helm's merge of a values file over the chart's values: maps merge key by
// key, anything else replaces, and null deletes the key.
function mergeValues(base, override) {
  const out = structuredClone(base);
  for (const [k, v] of Object.entries(override || {})) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = mergeValues(out[k], v);
    else out[k] = structuredClone(v);
  }
  return out;
}

function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function defaultValues() {
  return readYaml(path.join(chartDir, "values.yaml"));
}

function ciValueFiles() {
  const dir = path.join(chartDir, "ci");
  return fs.readdirSync(dir).filter((f) => f.endsWith("-values.yaml")).sort().map((f) => path.join(dir, f));
}

// Returns a function values -> list of error strings.
function schemaValidator() {
  const schema = JSON.parse(readText(path.join(chartDir, "values.schema.json")));
  if (schema.$schema !== "http://json-schema.org/draft-07/schema#") {
    throw new Error(`values.schema.json must declare draft-07, declares ${schema.$schema}`);
  }
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, allowUnionTypes: true });
  const validate = ajv.compile(schema);
  return (values) => (validate(values) ? [] : validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`));
}

// Paths (a.b.c) of values.yaml entries without a comment of their own. A key
// is documented by a comment on the line(s) above it; the first key of a map
// may carry it on the map (where the yaml parser attaches it).
function undocumentedValues(text) {
  const doc = YAML.parseDocument(text);
  const missing = [];
  const walk = (node, prefix) => {
    if (!YAML.isMap(node)) return;
    node.items.forEach((pair, i) => {
      const key = String(pair.key.value);
      const where = prefix ? `${prefix}.${key}` : key;
      const comment = pair.key.commentBefore || (i === 0 && node.commentBefore) || (i === 0 && prefix === "" && doc.commentBefore);
      if (!comment || !comment.trim()) missing.push(where);
      walk(pair.value, where);
    });
  };
  walk(doc.contents, "");
  return missing;
}

function templateFiles() {
  const dir = path.join(chartDir, "templates");
  return fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
}

// `.Values.a.b.c` (also `$.Values...`) references in a template text.
function valueReferences(text) {
  const refs = new Set();
  for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) refs.add(m[1].slice(1));
  return [...refs].sort();
}

function hasPath(values, dotted) {
  let cur = values;
  for (const k of dotted.split(".")) {
    if (!isMap(cur) || !Object.prototype.hasOwnProperty.call(cur, k)) return false;
    cur = cur[k];
  }
  return true;
}

function definedTemplates(text) {
  return [...text.matchAll(/\{\{-?\s*define\s+"([^"]+)"/g)].map((m) => m[1]);
}

function includedTemplates(text) {
  return [...text.matchAll(/\{\{-?[^}]*?\b(?:include|template)\s+"([^"]+)"/g)].map((m) => m[1]);
}

// Go template actions that open a block, against `end`s. Comments are
// dropped first (they may mention the words).
function blockBalance(text) {
  const actions = [...text.replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, "").matchAll(/\{\{-?\s*([a-z]+)/g)].map((m) => m[1]);
  let depth = 0;
  for (const a of actions) {
    if (["if", "range", "with", "define", "block"].includes(a)) depth++;
    else if (a === "end") depth--;
    if (depth < 0) return depth;
  }
  return depth;
}

// Top-level `kind:` lines of a YAML template: one resource per template.
function kinds(text) {
  return [...text.matchAll(/^kind:\s*(\S+)\s*$/gm)].map((m) => m[1]);
}

module.exports = {
  mergeValues, defaultValues, ciValueFiles, schemaValidator, undocumentedValues,
  templateFiles, valueReferences, hasPath, definedTemplates, includedTemplates, blockBalance, kinds,
};
