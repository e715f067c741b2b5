// What ShoutFlow's deployment must get right, as checks over rendered
// Kubernetes objects. Shared by the kustomize test (and usable on any other
// rendering of the same resources). Each function returns a list of
// problems; an empty list is a pass.
"use strict";

// Labels every object carries (STYLE.md, "Deployment files").
const requiredLabels = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of"];

const podTemplateKinds = new Set(["StatefulSet", "Deployment", "DaemonSet", "Job"]);

function id(o) {
  return `${o.kind}/${o.metadata.name}`;
}

function durationSeconds(text) {
  const m = /^(\d+)(us|ms|s|m|h)?$/.exec(String(text));
  if (!m) throw new Error(`not a duration: ${text}`);
  const scale = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }[m[2] || "ms"];
  return Number(m[1]) * scale;
}

function matches(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v);
}

function labels(objects) {
  const problems = [];
  for (const o of objects) {
    if (o.kind === "Namespace") continue;
    for (const l of requiredLabels) {
      if (!o.metadata.labels || !o.metadata.labels[l]) problems.push(`${id(o)}: no label ${l}`);
    }
  }
  return problems;
}

// Every pod any workload starts runs as non-root, read-only, without
// capabilities, under the runtime's seccomp profile and without an API token.
function podSecurity(objects) {
  const problems = [];
  for (const o of objects.filter((x) => podTemplateKinds.has(x.kind))) {
    const pod = o.spec.template.spec;
    const psc = pod.securityContext || {};
    if (psc.runAsNonRoot !== true) problems.push(`${id(o)}: pod securityContext.runAsNonRoot is not true`);
    if (!psc.seccompProfile || psc.seccompProfile.type !== "RuntimeDefault") {
      problems.push(`${id(o)}: pod seccompProfile is not RuntimeDefault`);
    }
    if (pod.automountServiceAccountToken !== false) problems.push(`${id(o)}: automountServiceAccountToken is not false`);
    for (const c of [...(pod.initContainers || []), ...pod.containers]) {
      const sc = c.securityContext || {};
      if (sc.readOnlyRootFilesystem !== true) problems.push(`${id(o)}/${c.name}: root filesystem is writable`);
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${id(o)}/${c.name}: allowPrivilegeEscalation is not false`);
      if (!sc.capabilities || JSON.stringify(sc.capabilities.drop) !== JSON.stringify(["ALL"])) {
        problems.push(`${id(o)}/${c.name}: capabilities are not dropped (drop: [ALL])`);
      }
      if (sc.capabilities && sc.capabilities.add && sc.capabilities.add.length > 0) {
        problems.push(`${id(o)}/${c.name}: adds capabilities`);
      }
      if (!c.resources || !c.resources.requests || !c.resources.requests.cpu || !c.resources.requests.memory) {
        problems.push(`${id(o)}/${c.name}: no cpu and memory requests`);
      }
      if (!c.resources || !c.resources.limits || !c.resources.limits.memory) {
        problems.push(`${id(o)}/${c.name}: no memory limit`);
      }
    }
  }
  return problems;
}

// Every Service, PDB, ServiceMonitor and NetworkPolicy selects something
// that exists: a typo in a selector is a Service without endpoints.
function selectors(objects) {
  const problems = [];
  const podLabels = objects.filter((x) => podTemplateKinds.has(x.kind)).map((x) => x.spec.template.metadata.labels);
  const selectsPods = (sel) => podLabels.some((l) => matches(sel, l));
  for (const o of objects) {
    if (o.kind === "Service" && !selectsPods(o.spec.selector)) problems.push(`${id(o)}: selects no pod`);
    if (o.kind === "PodDisruptionBudget" && !selectsPods(o.spec.selector.matchLabels)) problems.push(`${id(o)}: selects no pod`);
    if (o.kind === "NetworkPolicy" && !selectsPods(o.spec.podSelector.matchLabels)) problems.push(`${id(o)}: selects no pod`);
    if (podTemplateKinds.has(o.kind) && o.spec.selector && !matches(o.spec.selector.matchLabels, o.spec.template.metadata.labels)) {
      problems.push(`${id(o)}: selector does not match its own pod template`);
    }
    if (o.kind === "ServiceMonitor") {
      const services = objects.filter((s) => s.kind === "Service" && matches(o.spec.selector.matchLabels, s.metadata.labels));
      if (services.length !== 1) problems.push(`${id(o)}: selects ${services.length} Services, expected 1`);
      for (const ep of o.spec.endpoints) {
        if (!services.some((s) => s.spec.ports.some((p) => p.name === ep.port))) {
          problems.push(`${id(o)}: endpoint port ${ep.port} is not a port of the selected Service`);
        }
      }
    }
    if (o.kind === "HorizontalPodAutoscaler") {
      const t = o.spec.scaleTargetRef;
      if (!objects.some((x) => x.kind === t.kind && x.metadata.name === t.name)) problems.push(`${id(o)}: targets a missing ${t.kind}/${t.name}`);
    }
  }
  return problems;
}

function envOf(container) {
  return container.env || [];
}

// The shoutflowd StatefulSet: cluster identity, probes, shutdown, database.
function nodes(objects, { image, headlessService = "shoutflow-headless" }) {
  const problems = [];
  const sts = objects.find((o) => o.kind === "StatefulSet" && o.spec.template.spec.containers.some((c) => c.name === "shoutflowd"));
  if (!sts) return ["no StatefulSet runs shoutflowd"];
  const p = (m) => problems.push(`${id(sts)}: ${m}`);
  const pod = sts.spec.template.spec;
  const c = pod.containers.find((x) => x.name === "shoutflowd");

  if (sts.spec.podManagementPolicy !== "Parallel") p("podManagementPolicy is not Parallel");
  if (c.image !== image) p(`image ${c.image}, expected ${image}`);

  // The headless Service the pods' DNS names come from.
  if (sts.spec.serviceName !== headlessService) p(`serviceName ${sts.spec.serviceName}, expected ${headlessService}`);
  const headless = objects.find((o) => o.kind === "Service" && o.metadata.name === sts.spec.serviceName);
  if (!headless) {
    p(`no Service ${sts.spec.serviceName}`);
  } else {
    if (headless.spec.clusterIP !== "None") p(`${headless.metadata.name} is not headless`);
    if (headless.spec.publishNotReadyAddresses !== true) p(`${headless.metadata.name} does not publish not-ready addresses (joining nodes would be unreachable)`);
    if (!headless.spec.ports.some((x) => x.port === 50054)) p(`${headless.metadata.name} has no CAF port 50054`);
    if (!matches(headless.spec.selector, sts.spec.template.metadata.labels)) p(`${headless.metadata.name} does not select the nodes`);
  }

  // Environment: $(VAR) expands only variables defined earlier in the list.
  const env = envOf(c);
  const index = (n) => env.findIndex((e) => e.name === n);
  const byName = (n) => env[index(n)];
  const advertise = byName("SHOUTFLOW_ADVERTISE_HOST");
  const expected = `$(POD_NAME).${sts.spec.serviceName}.$(POD_NAMESPACE).svc.cluster.local`;
  if (!advertise || advertise.value !== expected) p(`SHOUTFLOW_ADVERTISE_HOST is ${advertise && advertise.value}, expected ${expected}`);
  for (const v of ["POD_NAME", "POD_NAMESPACE"]) {
    if (index(v) < 0 || index(v) > index("SHOUTFLOW_ADVERTISE_HOST")) p(`${v} must be defined before SHOUTFLOW_ADVERTISE_HOST`);
  }
  if (index("POD_NAME") >= 0 && byName("POD_NAME").valueFrom.fieldRef.fieldPath !== "metadata.name") p("POD_NAME is not metadata.name");
  if (index("POD_NAMESPACE") >= 0 && byName("POD_NAMESPACE").valueFrom.fieldRef.fieldPath !== "metadata.namespace") p("POD_NAMESPACE is not metadata.namespace");
  const nodeId = byName("SHOUTFLOW_NODE_ID");
  if (!nodeId || !nodeId.valueFrom || nodeId.valueFrom.fieldRef.fieldPath !== "metadata.labels['apps.kubernetes.io/pod-index']") {
    p("SHOUTFLOW_NODE_ID does not come from the pod-index label");
  }
  const db = byName("SHOUTFLOW_DB_URL");
  if (!db || !db.valueFrom || !db.valueFrom.secretKeyRef) p("SHOUTFLOW_DB_URL does not come from a Secret");

  // Settings from the ConfigMap(s) the container imports.
  const config = {};
  for (const src of c.envFrom || []) {
    if (!src.configMapRef) continue;
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === src.configMapRef.name);
    if (!cm) p(`envFrom names a missing ConfigMap ${src.configMapRef.name}`);
    else Object.assign(config, cm.data);
  }
  if (config.SHOUTFLOW_BIND !== "0.0.0.0") p(`SHOUTFLOW_BIND is ${config.SHOUTFLOW_BIND}, a pod must bind 0.0.0.0`);
  if (config.SHOUTFLOW_LOG_FORMAT !== "json") p("SHOUTFLOW_LOG_FORMAT is not json");
  const grace = durationSeconds(config.SHOUTFLOW_SHUTDOWN_GRACE || "20s");
  // Without a drain delay the node starts handing off while the endpoints
  // still send it new calls; the delay is spent inside the shutdown grace.
  const drain = durationSeconds(config.SHOUTFLOW_DRAIN_DELAY || "0s");
  if (!(drain > 0 && drain < grace)) p(`SHOUTFLOW_DRAIN_DELAY ${config.SHOUTFLOW_DRAIN_DELAY} must be above 0 and below the shutdown grace`);
  // The hand-off must finish before the kubelet's SIGKILL, with margin for
  // the exit itself and a slow database.
  if (!(pod.terminationGracePeriodSeconds >= grace + 10)) {
    p(`terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} is not at least the shutdown grace (${grace}s) + 10s`);
  }

  // Ports and probes.
  const ports = Object.fromEntries(c.ports.map((x) => [x.name, x.containerPort]));
  const want = { "grpc-command": 50051, "grpc-query": 50052, "grpc-admin": 50053, caf: 50054, metrics: 9464 };
  for (const [n, port] of Object.entries(want)) if (ports[n] !== port) p(`container port ${n} is ${ports[n]}, expected ${port}`);
  const probe = (name, service) => {
    const pr = c[name];
    if (!pr || !pr.grpc) return p(`${name} is not a native gRPC probe`);
    if (pr.grpc.port !== 50053) p(`${name} does not probe the admin port 50053`);
    if ((pr.grpc.service || "") !== service) p(`${name} probes health service '${pr.grpc.service}', expected '${service}'`);
  };
  probe("readinessProbe", "");
  probe("livenessProbe", "liveness");
  probe("startupProbe", "liveness");
  if (c.startupProbe && c.startupProbe.periodSeconds * c.startupProbe.failureThreshold < 120) p("startupProbe allows less than 120s");

  // Placement and scale.
  const anti = pod.affinity && pod.affinity.podAntiAffinity && pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
  if (!anti || !anti.some((t) => matches(t.podAffinityTerm.labelSelector.matchLabels, sts.spec.template.metadata.labels))) {
    p("no preferred anti-affinity between the nodes");
  }
  const hpa = objects.find((o) => o.kind === "HorizontalPodAutoscaler" && o.spec.scaleTargetRef.name === sts.metadata.name);
  if (hpa && sts.spec.replicas !== undefined) p("sets replicas although an HPA owns the count");
  if (hpa && hpa.spec.maxReplicas > 1024) p("HPA may exceed 1024 nodes (node ids are 0-1023)");
  const pdb = objects.find((o) => o.kind === "PodDisruptionBudget" && matches(o.spec.selector.matchLabels, sts.spec.template.metadata.labels));
  if (!pdb || pdb.spec.maxUnavailable !== 1) p("no PodDisruptionBudget with maxUnavailable 1");
  return problems;
}

// The gRPC Services clients use.
function services(objects) {
  const problems = [];
  for (const [name, port] of [["shoutflow-command", 50051], ["shoutflow-query", 50052], ["shoutflow-admin", 50053]]) {
    const s = objects.find((o) => o.kind === "Service" && o.metadata.name === name);
    if (!s) { problems.push(`no Service ${name}`); continue; }
    const sp = s.spec.ports.find((x) => x.port === port);
    if (!sp) problems.push(`Service/${name}: no port ${port}`);
    else if (sp.appProtocol !== "grpc") problems.push(`Service/${name}: port ${port} has appProtocol ${sp.appProtocol}, expected grpc`);
  }
  return problems;
}

// The migration Job runs the nodes' image with --migrate-only against the
// nodes' database Secret.
function migration(objects, { image }) {
  const job = objects.find((o) => o.kind === "Job" && o.metadata.labels["app.kubernetes.io/component"] === "migration");
  if (!job) return ["no migration Job"];
  const problems = [];
  const c = job.spec.template.spec.containers[0];
  if (c.image !== image) problems.push(`${id(job)}: image ${c.image}, expected ${image}`);
  if (!(c.args || []).includes("--migrate-only")) problems.push(`${id(job)}: does not run --migrate-only`);
  const db = envOf(c).find((e) => e.name === "SHOUTFLOW_DB_URL");
  if (!db || !db.valueFrom || !db.valueFrom.secretKeyRef || db.valueFrom.secretKeyRef.name !== "shoutflow-database") {
    problems.push(`${id(job)}: SHOUTFLOW_DB_URL does not come from Secret shoutflow-database`);
  }
  if (job.spec.template.spec.restartPolicy === "Always") problems.push(`${id(job)}: restartPolicy Always`);
  return problems;
}

// The NetworkPolicy of the nodes: CAF only between nodes, metrics only from
// monitoring, and egress for DNS and PostgreSQL.
function network(objects) {
  const np = objects.find((o) => o.kind === "NetworkPolicy");
  if (!np) return ["no NetworkPolicy"];
  const problems = [];
  const nodeLabels = np.spec.podSelector.matchLabels;
  const rulesFor = (rules, port) => (rules || []).filter((r) => (r.ports || []).some((x) => x.port === port));
  const caf = rulesFor(np.spec.ingress, 50054);
  if (caf.length === 0) problems.push("NetworkPolicy: CAF port 50054 is not admitted");
  for (const r of caf) {
    const ok = r.from && r.from.length > 0 && r.from.every((f) => !f.namespaceSelector && !f.ipBlock && f.podSelector && matches(nodeLabels, f.podSelector.matchLabels));
    if (!ok) problems.push("NetworkPolicy: CAF port 50054 admits more than the nodes");
  }
  const metrics = rulesFor(np.spec.ingress, 9464);
  if (metrics.length === 0 || !metrics.every((r) => r.from && r.from.every((f) => f.namespaceSelector))) {
    problems.push("NetworkPolicy: metrics port 9464 is not limited to a monitoring namespace");
  }
  for (const port of [50051, 50052, 50053]) if (rulesFor(np.spec.ingress, port).length === 0) problems.push(`NetworkPolicy: gRPC port ${port} is not admitted`);
  if (!(np.spec.policyTypes || []).includes("Egress")) problems.push("NetworkPolicy: egress is not restricted");
  for (const port of [53, 5432, 50054]) if (rulesFor(np.spec.egress, port).length === 0) problems.push(`NetworkPolicy: no egress to port ${port}`);
  return problems;
}

module.exports = { labels, podSecurity, selectors, nodes, services, migration, network, durationSeconds };
