// deploy.image: what can be checked of the container image without building
// it (no image registry is reachable from the project's machines):
//   * every shared library that the built shoutflowd and shoutflowctl load
//     (per ldd) comes from a Debian package the runtime stage installs, or
//     from one of their dependencies, or from the base image's essential set;
//   * the build stage uses the scripts' own install and build steps;
//   * the runtime stage runs as the fixed non-root uid the manifests name,
//     exposes the node's ports and is labelled with the project version.
// Usage: node image_test.js SHOUTFLOWD SHOUTFLOWCTL (ctest passes the built ones).
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const project = require("./lib/project");
const dockerfile = require("./lib/dockerfile");

const binaries = process.argv.slice(2);
if (binaries.length === 0) {
  console.error("usage: node image_test.js SHOUTFLOWD [SHOUTFLOWCTL...]");
  process.exit(2);
}

const ins = dockerfile.read();
const stages = dockerfile.stages(ins);
const runtimePackages = (dockerfile.argDefault(ins, "RUNTIME_PACKAGES") || "").split(" ").filter(Boolean);
const pkgs = dockerfile.installedPackages();

test("two bookworm stages: build and runtime", () => {
  assert.deepEqual(Object.keys(stages), ["build", "runtime"]);
  const base = dockerfile.argDefault(ins, "DEBIAN_IMAGE");
  assert.match(base, /^debian:bookworm(-slim)?$/);
  for (const s of Object.values(stages)) assert.equal(s.from, "${DEBIAN_IMAGE}");
});

test("the build stage runs the scripts' install and build steps", () => {
  const runs = stages.build.instructions.filter((i) => i.op === "RUN").map((i) => i.args).join("\n");
  assert.match(runs, /source scripts\/lib\.sh;\s*sf_install_packages/);
  assert.match(runs, /source scripts\/lib\.sh;\s*sf_build/);
});

test("the runtime stage installs only its list, and the binaries", () => {
  assert.ok(runtimePackages.length > 0, "no RUNTIME_PACKAGES");
  const runs = stages.runtime.instructions.filter((i) => i.op === "RUN").map((i) => i.args).join("\n");
  assert.match(runs, /apt-get install -y --no-install-recommends \$\{RUNTIME_PACKAGES\}/);
  assert.ok(!runtimePackages.some((p) => /-dev$/.test(p)), "a -dev package in the runtime stage");
  const copies = stages.runtime.instructions.filter((i) => i.op === "COPY").map((i) => i.args).join("\n");
  assert.match(copies, /--from=build .*shoutflowd .*shoutflowctl \/usr\/local\/bin\//);
});

test("every runtime package exists on this Debian (installed here)", () => {
  const unknown = runtimePackages.filter((p) => !pkgs.has(p));
  assert.deepEqual(unknown, []);
});

test("every library the binaries load is provided by the runtime stage", () => {
  assert.deepEqual(dockerfile.uncoveredLibraries(binaries, runtimePackages, pkgs), []);
});

test("a runtime list without libpqxx is caught", () => {
  const fewer = runtimePackages.filter((p) => p !== "libpqxx-6.4");
  const problems = dockerfile.uncoveredLibraries([binaries[0]], fewer, pkgs);
  assert.ok(problems.some((p) => /libpqxx/.test(p)), problems.join("\n"));
});

test("non-root uid 10001, the node's ports, the project version", () => {
  const rt = stages.runtime.instructions;
  const user = rt.filter((i) => i.op === "USER").pop();
  assert.equal(user && user.args, "10001:10001");
  const exposed = rt.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/)).map(Number).sort((a, b) => a - b);
  assert.deepEqual(exposed, [9464, 50051, 50052, 50053, 50054]);
  assert.equal(dockerfile.argDefault(ins, "VERSION"), project.projectVersion());
  const entry = rt.find((i) => i.op === "ENTRYPOINT");
  assert.equal(entry.args, '["/usr/local/bin/shoutflowd"]');
  // The uid the manifests' securityContext runs as.
  const sts = project.readText(`${project.k8sDir}/base/statefulset.yaml`);
  assert.match(sts, /runAsUser: 10001/);
  assert.match(project.readText(`${project.chartDir}/values.yaml`), /runAsUser: 10001/);
});
