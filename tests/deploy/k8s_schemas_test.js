// deploy.k8s_schemas: every object that every kustomization renders is a
// valid Kubernetes object (lib/k8s_schema.js), and the validator rejects what
// it must: a wrong type, an unknown field, an unknown kind.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const project = require("./lib/project");
const schema = require("./lib/k8s_schema");

project.requireKustomizeV5();

test("every object of every kustomization validates against the Kubernetes schemas", () => {
  const all = [];
  for (const dir of project.kustomizations) {
    const objects = project.kustomize(dir);
    assert.ok(objects.length > 0, `${dir} rendered nothing`);
    // One compiler run for all of them (it is the slow part); the object
    // names say which kustomization an error belongs to.
    for (const o of objects) {
      const copy = structuredClone(o);
      copy.metadata.name = `${o.metadata.name}@${dir}`;
      all.push(copy);
    }
  }
  assert.deepEqual(schema.validate(all), []);
});

// The negative cases start from a real rendered object, so they prove the
// validator reads the objects the positive cases pass.
function renderedStatefulSet() {
  return project.find(project.kustomize("base"), "StatefulSet", "shoutflow");
}

test("a wrong type is rejected (replicas as a string)", () => {
  const sts = renderedStatefulSet();
  sts.spec.replicas = "three";
  const errors = schema.validateModels([sts]);
  assert.ok(errors.some((e) => e.startsWith("StatefulSet/shoutflow:") && /replicas/.test(e)), errors.join("\n"));
});

test("a missing required field is rejected (a container without a name)", () => {
  const sts = renderedStatefulSet();
  delete sts.spec.template.spec.containers[0].name;
  const errors = schema.validateModels([sts]);
  assert.ok(errors.some((e) => /name/.test(e)), errors.join("\n"));
});

test("an unknown field is rejected (a misspelt imagePullPolicy)", () => {
  const sts = renderedStatefulSet();
  sts.spec.template.spec.containers[0].imagePulPolicy = "Always";
  const errors = schema.validate([sts]);
  assert.ok(errors.some((e) => e.startsWith("StatefulSet/shoutflow:") && /imagePulPolicy/.test(e)), errors.join("\n"));
});

test("an unknown kind is rejected, not passed", () => {
  const errors = schema.validate([
    { apiVersion: "v1", kind: "Servise", metadata: { name: "typo" } },
    { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "crd" } },
    { metadata: { name: "no-kind" } },
  ]);
  assert.equal(errors.length, 3, errors.join("\n"));
  assert.ok(errors.every((e) => /unknown kind/.test(e)), errors.join("\n"));
});

test("a broken kustomization fails to render", () => {
  const fs = require("node:fs");
  const os = require("node:os");
  const path = require("node:path");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sf-kustomize-"));
  try {
    fs.writeFileSync(path.join(dir, "kustomization.yaml"),
      `resources:\n  - ${path.join(project.k8sDir, "base")}\n  - missing.yaml\n`);
    assert.throws(() => project.kustomize(dir), /kubectl kustomize .* failed/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
