// Offline validation of Kubernetes objects against the API's schemas, in two
// layers, because neither catches everything alone:
//   1. the JSON-schema validators of the npm `kubernetes-models` packages
//      (types, required fields, enums, formats) — they accept unknown fields,
//      as the OpenAPI documents they are generated from do;
//   2. TypeScript's excess-property check against the same packages'
//      interfaces, which rejects every field the API does not know (a typo
//      such as `imagePulPolicy`, a field at the wrong depth), as
//      `kubectl apply --validate=strict` would against a live API server.
// An object whose apiVersion/kind no package models is an error, never a pass.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

// API groups served by packages other than kubernetes-models itself.
const crdPackages = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

function describe(o) {
  const name = o && o.metadata && o.metadata.name ? o.metadata.name : "(unnamed)";
  return `${o && o.kind}/${name}`;
}

// The module of the model for an object, e.g. kubernetes-models/apps/v1/StatefulSet,
// or null when the object's apiVersion/kind is not a modelled API type.
function modelModule(o) {
  if (!o || typeof o.apiVersion !== "string" || typeof o.kind !== "string") return null;
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(o.apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(o.kind)) return null;
  const group = o.apiVersion.includes("/") ? o.apiVersion.split("/")[0] : "";
  const pkg = crdPackages[group] || "kubernetes-models";
  const mod = `${pkg}/${o.apiVersion}/${o.kind}`;
  try {
    require.resolve(mod);
  } catch {
    return null;
  }
  return mod;
}

// Layer 1. Returns a list of error strings.
function validateModels(objects) {
  const errors = [];
  for (const o of objects) {
    const mod = modelModule(o);
    if (mod === null) {
      errors.push(`${describe(o)}: unknown kind ${o && o.kind} in apiVersion ${o && o.apiVersion}: no schema to validate it against`);
      continue;
    }
    const Model = require(mod)[o.kind];
    if (typeof Model !== "function" || Model.kind !== o.kind || Model.apiVersion !== o.apiVersion) {
      errors.push(`${describe(o)}: ${mod} does not model ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      errors.push(`${describe(o)}: ${e.message}`);
    }
  }
  return errors;
}

// Layer 2. Writes one TypeScript file declaring every object with its API
// interface and runs the compiler on it. Returns a list of error strings.
function validateFields(objects) {
  const modelled = objects.filter((o) => modelModule(o) !== null);
  if (modelled.length === 0) return [];
  // Inside node_modules so that the compiler resolves the model packages.
  const dir = fs.mkdtempSync(path.join(__dirname, "..", "node_modules", ".sf-typecheck-"));
  try {
    const lines = [];
    modelled.forEach((o, i) => {
      lines.push(`// ${describe(o)}`);
      lines.push(`import type { I${o.kind} as T${i} } from ${JSON.stringify(modelModule(o))};`);
      lines.push(`export const o${i}: T${i} = ${JSON.stringify(o, null, 1)};`);
    });
    const file = path.join(dir, "objects.ts");
    fs.writeFileSync(file, lines.join("\n") + "\n");
    const tsc = require.resolve("typescript/bin/tsc");
    const r = spawnSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck",
      "--module", "node16", "--moduleResolution", "node16", "--target", "es2020",
      "--pretty", "false", file], { encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.error) throw r.error;
    if (r.status === 0) return [];
    // Name the object each diagnostic belongs to: the nearest `// Kind/name`
    // comment above the reported line.
    const source = fs.readFileSync(file, "utf8").split("\n");
    const out = (r.stdout + r.stderr).trim().split("\n").filter((l) => l.length > 0);
    return out.map((line) => {
      const m = /objects\.ts\((\d+),\d+\): (.*)$/.exec(line);
      if (!m) return line;
      let at = Number(m[1]) - 1;
      while (at > 0 && !source[at].startsWith("// ")) at--;
      return `${source[at].slice(3)}: ${m[2]}`;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function validate(objects) {
  return [...validateModels(objects), ...validateFields(objects)];
}

module.exports = { validate, validateModels, validateFields, modelModule };
