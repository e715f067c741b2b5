// deploy.helm_values: values.yaml and every ci/*-values.yaml scenario (merged
// over values.yaml, as helm does) validate against values.schema.json; an
// invalid values file is rejected; every value is documented.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const project = require("./lib/project");
const helm = require("./lib/helm");

const validate = helm.schemaValidator();
const defaults = helm.defaultValues();

test("values.yaml validates against values.schema.json", () => {
  assert.deepEqual(validate(defaults), []);
});

test("the ci scenarios exist: default, minimal, production", () => {
  const names = helm.ciValueFiles().map((f) => path.basename(f));
  for (const n of ["default-values.yaml", "minimal-values.yaml", "production-values.yaml"]) {
    assert.ok(names.includes(n), `helm/shoutflow/ci/${n} is missing`);
  }
});

for (const file of helm.ciValueFiles()) {
  test(`ci/${path.basename(file)} validates and names exactly one database`, () => {
    const values = helm.mergeValues(defaults, project.readYaml(file));
    assert.deepEqual(validate(values), []);
    // The templates `required` a database; with no helm to render them,
    // check here that the scenario gives one.
    const sources = [values.postgresql.enabled, values.database.existingSecret !== "", values.database.url !== ""].filter(Boolean);
    assert.ok(sources.length >= 1, "no database source (postgresql.enabled, database.existingSecret or database.url)");
  });
}

test("an invalid values file is rejected, naming each mistake", () => {
  const bad = helm.mergeValues(defaults, project.readYaml(path.join(__dirname, "fixtures", "invalid-values.yaml")));
  const errors = validate(bad);
  const expect = [
    /^\/replicaCount must be integer/,
    /^\/ additionalProperties|must NOT have additional properties \(replicas\)/,
    /^\/image\/pullPolicy must be equal to one of the allowed values/,
    /^\/config\/shutdownGrace must match pattern/,
    /^\/autoscaling\/maxReplicas must be <= 1024/,
    /^\/ports\/caf must be <= 65535/,
    /^\/database\/url must NOT have more than 0 characters/,
  ];
  for (const re of expect) assert.ok(errors.some((e) => re.test(e)), `no error matching ${re} in:\n${errors.join("\n")}`);
});

test("every value in values.yaml has a comment", () => {
  assert.deepEqual(helm.undocumentedValues(project.readText(path.join(project.chartDir, "values.yaml"))), []);
});

test("an undocumented value is reported", () => {
  const text = "## Documented.\na: 1\nb:\n  ## Documented.\n  c: 2\n  d: 3\n";
  assert.deepEqual(helm.undocumentedValues(text), ["b", "b.d"]);
});
