// deploy.helm_templates: what can be proven of the chart's templates without
// helm: every `.Values.x.y` they read exists in values.yaml, every included
// template is defined, blocks are closed, one resource per template, the
// chart ships the same kinds of objects as deploy/k8s, and its image is the
// one the Dockerfile builds at the project's version. The last tests feed
// the checks broken templates.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const project = require("./lib/project");
const helm = require("./lib/helm");

const values = helm.defaultValues();
const files = helm.templateFiles();
const text = Object.fromEntries(files.map((f) => [path.basename(f), project.readText(f)]));
const helpers = text["_helpers.tpl"];

function missingValues(source) {
  return helm.valueReferences(source).filter((r) => !helm.hasPath(values, r));
}

test("every .Values reference of every template exists in values.yaml", () => {
  const missing = [];
  for (const [name, source] of Object.entries(text)) {
    for (const r of missingValues(source)) missing.push(`${name}: .Values.${r}`);
  }
  assert.deepEqual(missing, []);
  // And the check saw the templates at all.
  assert.ok(helm.valueReferences(text["statefulset.yaml"]).includes("ports.admin"));
});

test("every included template is defined in _helpers.tpl", () => {
  const defined = new Set(helm.definedTemplates(helpers));
  for (const n of ["shoutflow.name", "shoutflow.fullname", "shoutflow.chart", "shoutflow.labels",
    "shoutflow.selectorLabels", "shoutflow.serviceAccountName"]) {
    assert.ok(defined.has(n), `_helpers.tpl does not define ${n}`);
  }
  const undefinedRefs = [];
  for (const [name, source] of Object.entries(text)) {
    for (const inc of helm.includedTemplates(source)) if (!defined.has(inc)) undefinedRefs.push(`${name}: ${inc}`);
  }
  assert.deepEqual(undefinedRefs, []);
});

test("fullname is truncated to 63 characters", () => {
  const body = /define "shoutflow.fullname"[\s\S]*?\{\{- end \}\}\n\{\{- end \}\}/.exec(helpers);
  assert.ok(body, "no shoutflow.fullname");
  // Each of its three branches (override, release name, release-chart).
  assert.equal((body[0].match(/trunc 63/g) || []).length, 3);
});

test("every template closes its blocks", () => {
  const unbalanced = Object.entries(text).filter(([, s]) => helm.blockBalance(s) !== 0).map(([n]) => n);
  assert.deepEqual(unbalanced, []);
});

test("one resource per template, labelled with the chart's labels", () => {
  for (const [name, source] of Object.entries(text)) {
    if (!name.endsWith(".yaml")) continue;
    assert.equal(helm.kinds(source).length, 1, `${name} defines ${helm.kinds(source).length} resources`);
    assert.match(source, /include "shoutflow\.labels" \. \| nindent 4/, `${name} does not use shoutflow.labels`);
  }
  assert.ok("NOTES.txt" in text);
});

test("the chart ships the kinds deploy/k8s renders", (t) => {
  const why = project.kustomizeV5Missing();
  if (why !== null) return t.skip(why);
  const chartKinds = new Set(Object.values(text).flatMap(helm.kinds));
  const kustomizeKinds = new Set([...project.kustomize("base"), ...project.kustomize("overlays/dev")]
    .map((o) => o.kind).filter((k) => k !== "Namespace"));
  assert.deepEqual([...chartKinds].sort(), [...kustomizeKinds].sort());
});

test("the chart's nodes get the settings, environment and probes of deploy/k8s", (t) => {
  const why = project.kustomizeV5Missing();
  if (why !== null) return t.skip(why);
  const base = project.kustomize("base");
  const sts = project.find(base, "StatefulSet", "shoutflow");
  const container = sts.spec.template.spec.containers[0];
  const config = base.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("shoutflow-config"));
  // Settings: the keys of the chart's ConfigMap template.
  const chartKeys = [...text["configmap.yaml"].matchAll(/^ {2}(SHOUTFLOW_[A-Z_]+):/gm)].map((m) => m[1]).sort();
  assert.deepEqual(chartKeys, Object.keys(config.data).sort());
  // Environment, in order ($(VAR) expansion depends on it).
  const stsText = text["statefulset.yaml"];
  const envBlock = stsText.slice(stsText.indexOf("          env:"), stsText.indexOf("          ports:"));
  const chartEnv = [...envBlock.matchAll(/^ {12}- name: ([A-Z_]+)$/gm)].map((m) => m[1]);
  assert.deepEqual(chartEnv, container.env.map((e) => e.name));
  // Probes: the same health services, in the same order.
  const chartProbes = [...stsText.matchAll(/^ {10}(\w+Probe):\n {12}grpc:\n[^\n]*\n {14}service: (\S+)$/gm)]
    .map((m) => [m[1], m[2].replace(/^"(.*)"$/, "$1")]);
  const baseProbes = ["startupProbe", "livenessProbe", "readinessProbe"].map((n) => [n, container[n].grpc.service]);
  assert.deepEqual(chartProbes, baseProbes);
});

test("Chart.yaml, values.yaml and deploy/k8s name the same image and version", () => {
  const chart = project.readYaml(path.join(project.chartDir, "Chart.yaml"));
  const version = project.projectVersion();
  assert.equal(chart.apiVersion, "v2");
  assert.equal(chart.name, "shoutflow");
  assert.equal(chart.appVersion, version, "Chart.yaml appVersion must be the CMake project version");
  const kustomization = project.readYaml(path.join(project.k8sDir, "base", "kustomization.yaml"));
  const img = kustomization.images.find((i) => i.name === "shoutflowd");
  assert.equal(img.newTag, version);
  assert.equal(values.image.repository, img.newName);
  assert.equal(values.image.tag, "", "values.yaml image.tag must default to appVersion");
});

test("the NOTES name commands that reach every API", () => {
  const notes = text["NOTES.txt"];
  for (const port of ["ports.command", "ports.query", "ports.admin", "ports.metrics"]) {
    assert.match(notes, new RegExp(`port-forward [^\\n]*\\{\\{ \\.Values\\.${port.replace(".", "\\.")} \\}\\}`));
  }
  assert.match(notes, /shoutflowctl --address/);
});

// Negative cases: the checks must catch these.
test("a reference to a value that does not exist is reported", () => {
  assert.deepEqual(missingValues("image: {{ .Values.image.tga }}\nport: {{ $.Values.ports.admin }}"), ["image.tga"]);
});

test("an unclosed block is reported", () => {
  assert.notEqual(helm.blockBalance("{{- if .Values.x }}\nkind: A\n{{- with .Values.y }}\n{{- end }}\n"), 0);
  assert.equal(helm.blockBalance("{{/* if this */}}{{- if .Values.x }}{{ end }}"), 0);
});

test("an undefined include is reported", () => {
  assert.deepEqual(helm.includedTemplates('{{ include "shoutflow.lables" . }}'), ["shoutflow.lables"]);
});
