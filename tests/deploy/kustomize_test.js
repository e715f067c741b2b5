// deploy.kustomize: `kubectl kustomize` renders the base and every overlay,
// and what they render is a ShoutFlow cluster that can work: identities,
// probes, shutdown, security, selectors, network policy (lib/policy.js), plus
// what each overlay promises. The last tests break a rendered object on
// purpose and expect the checks to say so.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const project = require("./lib/project");
const policy = require("./lib/policy");

project.requireKustomizeV5();

const image = `shoutflow/shoutflowd:${project.projectVersion()}`;
const rendered = Object.fromEntries(project.kustomizations.map((d) => [d, project.kustomize(d)]));

function allPolicies(objects) {
  return [
    ...policy.labels(objects),
    ...policy.podSecurity(objects),
    ...policy.selectors(objects),
    ...policy.nodes(objects, { image }),
    ...policy.services(objects),
    ...policy.migration(objects, { image }),
    ...policy.network(objects),
  ];
}

for (const dir of project.kustomizations) {
  test(`${dir}: renders a working ShoutFlow cluster`, () => {
    const kinds = new Set(rendered[dir].map((o) => o.kind));
    for (const k of ["StatefulSet", "Service", "ConfigMap", "Job", "PodDisruptionBudget",
      "HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "ServiceAccount"]) {
      assert.ok(kinds.has(k), `${dir} renders no ${k}`);
    }
    assert.deepEqual(allPolicies(rendered[dir]), []);
  });
}

test("base: the HPA is autoscaling/v2 on CPU, the Secret is a placeholder", () => {
  const hpa = project.find(rendered.base, "HorizontalPodAutoscaler", "shoutflow");
  assert.equal(hpa.apiVersion, "autoscaling/v2");
  assert.equal(hpa.spec.metrics[0].resource.name, "cpu");
  const secret = project.find(rendered.base, "Secret", "shoutflow-database");
  assert.match(secret.stringData["database-url"], /CHANGE-ME/);
});

test("dev: its own PostgreSQL, which the nodes' database URL names, and 1-3 nodes", () => {
  const objs = rendered["overlays/dev"];
  const pg = project.find(objs, "StatefulSet", "postgres");
  const svc = project.find(objs, "Service", "postgres");
  assert.equal(svc.spec.ports[0].port, 5432);
  assert.match(pg.spec.template.spec.containers[0].image, /^postgres:15/);
  const creds = project.find(objs, "Secret", "postgres-credentials").stringData;
  const url = new URL(project.find(objs, "Secret", "shoutflow-database").stringData["database-url"]);
  assert.equal(url.hostname, svc.metadata.name);
  assert.equal(url.port, "5432");
  assert.equal(decodeURIComponent(url.username), creds.POSTGRES_USER);
  assert.equal(decodeURIComponent(url.password), creds.POSTGRES_PASSWORD);
  assert.equal(url.pathname, `/${creds.POSTGRES_DB}`);
  const hpa = project.find(objs, "HorizontalPodAutoscaler", "shoutflow");
  assert.deepEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas], [1, 3]);
  const ns = project.find(objs, "Namespace");
  assert.equal(ns.length, 1);
  assert.ok(objs.filter((o) => o.kind !== "Namespace").every((o) => o.metadata.namespace === ns[0].metadata.name));
});

test("production: no database Secret rendered (external), more nodes and resources than the base", () => {
  const objs = rendered["overlays/production"];
  assert.deepEqual(project.find(objs, "Secret"), [], "production must not overwrite the external database Secret");
  const base = project.find(rendered.base, "HorizontalPodAutoscaler", "shoutflow");
  const prod = project.find(objs, "HorizontalPodAutoscaler", "shoutflow");
  assert.ok(prod.spec.minReplicas > base.spec.minReplicas && prod.spec.maxReplicas > base.spec.maxReplicas);
  const mem = (o) => o.spec.template.spec.containers[0].resources.requests.memory;
  const cpu = (o) => o.spec.template.spec.containers[0].resources.requests.cpu;
  const baseSts = project.find(rendered.base, "StatefulSet", "shoutflow");
  const prodSts = project.find(objs, "StatefulSet", "shoutflow");
  assert.notEqual(cpu(prodSts), cpu(baseSts));
  assert.notEqual(mem(prodSts), mem(baseSts));
  assert.ok(prodSts.spec.template.spec.topologySpreadConstraints.length > 0);
  assert.ok(!objs.some((o) => o.kind === "StatefulSet" && o.metadata.name === "postgres"));
});

// Negative cases: each mutation of a good rendering must be reported.
const mutations = {
  "a probe on the wrong health service": (o) => { project.find(o, "StatefulSet", "shoutflow").spec.template.spec.containers[0].readinessProbe.grpc.service = "liveness"; },
  "a grace period shorter than the shutdown grace": (o) => { project.find(o, "StatefulSet", "shoutflow").spec.template.spec.terminationGracePeriodSeconds = 15; },
  "ADVERTISE_HOST before POD_NAME": (o) => { project.find(o, "StatefulSet", "shoutflow").spec.template.spec.containers[0].env.reverse(); },
  "a writable root filesystem": (o) => { project.find(o, "Job", "shoutflow-migrate").spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem = false; },
  "a Service selecting nothing": (o) => { project.find(o, "Service", "shoutflow-query").spec.selector["app.kubernetes.io/component"] = "nodes"; },
  "CAF open to every pod": (o) => { project.find(o, "NetworkPolicy", "shoutflow").spec.ingress[0].from = [{ podSelector: {} }]; },
  "another image in the Job": (o) => { project.find(o, "Job", "shoutflow-migrate").spec.template.spec.containers[0].image = "shoutflow/shoutflowd:latest"; },
  "no drain delay": (o) => { delete project.find(o, "ConfigMap").find((c) => c.metadata.name.startsWith("shoutflow-config")).data.SHOUTFLOW_DRAIN_DELAY; },
  "a missing label": (o) => { delete project.find(o, "PodDisruptionBudget", "shoutflow").metadata.labels["app.kubernetes.io/instance"]; },
};
for (const [what, mutate] of Object.entries(mutations)) {
  test(`the checks reject ${what}`, () => {
    const objects = structuredClone(rendered.base);
    mutate(objects);
    assert.notDeepEqual(allPolicies(objects), []);
  });
}
