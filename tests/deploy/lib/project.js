// Paths and small shared helpers of the deploy.* tests: where the project's
// files are, how to read YAML, and how to run kubectl kustomize.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

// The npm packages are installed by scripts/test (sf_install_deploy_test_tools
// in scripts/lib.sh); say so instead of failing on a missing module.
if (!fs.existsSync(path.join(__dirname, "..", "node_modules", "yaml"))) {
  console.error("tests/deploy/node_modules is missing: run scripts/test, or `npm ci` in tests/deploy");
  process.exit(1);
}
const YAML = require("yaml");

const root = path.resolve(__dirname, "..", "..", "..");
const k8sDir = path.join(root, "deploy", "k8s");
const chartDir = path.join(root, "helm", "shoutflow");

// The kustomizations the project ships; each must render on its own.
const kustomizations = ["base", "overlays/dev", "overlays/production"];

// ctest's SKIP_RETURN_CODE for these tests (tests/CMakeLists.txt).
const SKIP = 77;

function readText(file) {
  return fs.readFileSync(file, "utf8");
}

// Every document of a multi-document YAML text, as plain objects. A YAML
// syntax error throws with the document's position.
function parseAll(text, source) {
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  const objects = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      throw new Error(`${source}: ${doc.errors.map((e) => e.message).join("; ")}`);
    }
    const value = doc.toJS();
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

function readYaml(file) {
  const docs = parseAll(readText(file), file);
  if (docs.length !== 1) throw new Error(`${file}: expected one YAML document, got ${docs.length}`);
  return docs[0];
}

// The version in CMakeLists.txt's project(): the image tag everything uses.
function projectVersion() {
  const m = /project\(\s*shoutflow\s+VERSION\s+([0-9.]+)/.exec(readText(path.join(root, "CMakeLists.txt")));
  if (!m) throw new Error("no project(shoutflow VERSION x.y.z) in CMakeLists.txt");
  return m[1];
}

// kustomize v5 (kubectl >= 1.27) understands the `labels` and inline
// `patches` fields the kustomizations use. Debian's kubernetes-client (1.20,
// kustomize v2), the fallback of scripts/lib.sh on machines without kubectl,
// does not. Returns why kubectl cannot render them, or null when it can.
function kustomizeV5Missing() {
  const r = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new Error(`kubectl is not usable: ${r.error ? r.error.message : r.stderr}`);
  }
  const m = /Kustomize Version:\s*v(\d+)/.exec(r.stdout);
  if (m && Number(m[1]) >= 5) return null;
  return `${r.stdout.trim().replace(/\n/g, ", ")}: the kustomizations need kustomize v5 (kubectl >= 1.27)`;
}

// For tests that need nothing but kustomize: report the test skipped (not
// failed, since the tool is at fault, not the manifests) when it is too old.
function requireKustomizeV5() {
  const why = kustomizeV5Missing();
  if (why === null) return;
  console.log(`SKIP: ${why}`);
  process.exit(SKIP);
}

// Renders one kustomization directory (relative to deploy/k8s or absolute)
// with `kubectl kustomize` and returns its objects.
function kustomize(dir) {
  const abs = path.isAbsolute(dir) ? dir : path.join(k8sDir, dir);
  const r = spawnSync("kubectl", ["kustomize", abs], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`kubectl kustomize ${abs} failed:\n${r.stderr}`);
  return parseAll(r.stdout, `kubectl kustomize ${abs}`);
}

function find(objects, kind, name) {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (name !== undefined && found.length !== 1) {
    throw new Error(`expected one ${kind}/${name}, found ${found.length}`);
  }
  return name === undefined ? found : found[0];
}

module.exports = {
  root, k8sDir, chartDir, kustomizations, SKIP,
  readText, parseAll, readYaml, projectVersion, kustomizeV5Missing, requireKustomizeV5, kustomize, find,
};
