// Reading the Dockerfile, and the Debian packages a binary needs at run time.
"use strict";

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { root, readText } = require("./project");

// Instructions of a Dockerfile: continuation lines joined, comments dropped.
function instructions(text) {
  const joined = text.replace(/\\\n/g, " ");
  return joined.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const m = /^([A-Za-z]+)\s+(.*)$/.exec(l);
      return { op: m[1].toUpperCase(), args: m[2] };
    });
}

function read() {
  return instructions(readText(path.join(root, "Dockerfile")));
}

// Instructions grouped by stage name (FROM ... AS name).
function stages(ins) {
  const out = {};
  let current = null;
  for (const i of ins) {
    if (i.op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      current = m[2] || `stage${Object.keys(out).length}`;
      out[current] = { from: m[1], instructions: [] };
    } else if (current) {
      out[current].instructions.push(i);
    }
  }
  return out;
}

// Default value of an ARG (quotes removed, whitespace collapsed).
function argDefault(ins, name) {
  const i = ins.find((x) => x.op === "ARG" && x.args.startsWith(`${name}=`));
  if (!i) return undefined;
  return i.args.slice(name.length + 1).replace(/^"|"$/g, "").replace(/\s+/g, " ").trim();
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return r;
}

// Shared libraries `ldd` resolves for a binary: [{soname, path}], and the
// names it could not find.
function sharedLibraries(binary) {
  const r = run("ldd", [binary]);
  if (r.status !== 0) throw new Error(`ldd ${binary}: ${r.stderr}`);
  const libs = [];
  const missing = [];
  for (const line of r.stdout.split("\n")) {
    let m;
    if ((m = /^\s*(\S+) => not found/.exec(line))) missing.push(m[1]);
    else if ((m = /^\s*(\S+) => (\/\S+)/.exec(line))) libs.push({ soname: m[1], path: m[2] });
  }
  return { libs, missing };
}

// file -> installed Debian package, from dpkg's file lists (one read of
// /var/lib/dpkg/info instead of a `dpkg -S` per library, which takes a second
// each on a loaded machine).
let owners = null;
function fileOwners() {
  if (owners) return owners;
  owners = new Map();
  const info = "/var/lib/dpkg/info";
  for (const f of fs.readdirSync(info)) {
    if (!f.endsWith(".list")) continue;
    const pkg = f.slice(0, -".list".length).split(":")[0];
    for (const line of fs.readFileSync(path.join(info, f), "utf8").split("\n")) {
      if (line) owners.set(line, pkg);
    }
  }
  return owners;
}

// The installed Debian package that ships a file. With merged /usr the same
// file has two names; dpkg knows one of them.
function packageOf(file) {
  const real = fs.realpathSync(file);
  const names = new Set([file, real]);
  for (const n of [...names]) {
    if (n.startsWith("/usr/")) names.add(n.slice(4));
    else names.add(`/usr${n}`);
  }
  const map = fileOwners();
  for (const n of names) if (map.has(n)) return map.get(n);
  return null;
}

// Everything installed: name -> {essential, depends: [[alternatives]]}.
function installedPackages() {
  const r = run("dpkg-query", ["-W", "-f", "${Package}\t${db:Status-Status}\t${Essential}\t${Pre-Depends}, ${Depends}\n"]);
  const pkgs = new Map();
  for (const line of r.stdout.split("\n")) {
    if (!line) continue;
    const [name, status, essential, deps] = line.split("\t");
    if (status !== "installed") continue;
    const depends = deps.split(",").map((d) => d.trim()).filter(Boolean)
      .map((d) => d.split("|").map((a) => a.trim().split(/[\s(:]/)[0]));
    pkgs.set(name, { essential: essential === "yes", depends });
  }
  return pkgs;
}

// Packages present once `roots` are installed on a base image: the roots,
// the base's essential packages, and every package they depend on (the
// first installed alternative of each dependency).
function closure(roots, pkgs) {
  const seen = new Set();
  const todo = [...roots, ...[...pkgs].filter(([, p]) => p.essential).map(([n]) => n)];
  while (todo.length > 0) {
    const n = todo.pop();
    if (seen.has(n) || !pkgs.has(n)) continue;
    seen.add(n);
    for (const alts of pkgs.get(n).depends) {
      const pick = alts.find((a) => pkgs.has(a));
      if (pick) todo.push(pick);
    }
  }
  return seen;
}

// Libraries of `binaries` whose package the runtime packages do not bring.
function uncoveredLibraries(binaries, runtimePackages, pkgs) {
  const have = closure(runtimePackages, pkgs);
  const problems = [];
  for (const b of binaries) {
    const { libs, missing } = sharedLibraries(b);
    for (const m of missing) problems.push(`${path.basename(b)}: ${m} not found by ldd`);
    for (const l of libs) {
      // A sanitizer build (SHOUTFLOW_SANITIZE) links the sanitizer runtimes;
      // the image is never built that way.
      if (/^lib(a|ub|t|l)san\.so/.test(l.soname)) continue;
      const pkg = packageOf(l.path);
      if (!pkg) problems.push(`${path.basename(b)}: ${l.path} belongs to no Debian package`);
      else if (!have.has(pkg)) problems.push(`${path.basename(b)}: ${l.soname} (package ${pkg}) is not installed by the runtime stage`);
    }
  }
  return problems;
}

module.exports = { read, stages, argDefault, sharedLibraries, packageOf, installedPackages, closure, uncoveredLibraries };
