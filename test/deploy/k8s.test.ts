// The Kubernetes manifests under deploy/k8s, checked offline: every object against the Kubernetes API schemas
// (kubernetes-models, generated from the API's OpenAPI document), a Deployment per service with its replicas and its
// probes on the ops listener's /readyz and /healthz, every ConfigMap key and Secret a pod names defined (or made by
// the documented `kubectl create secret`), and the config each pod would load valid for Moss itself.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "@moss/config";
import { ServiceIdentities } from "@moss/contracts";
import { Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

const DIR = join(import.meta.dirname, "..", "..", "deploy", "k8s");
const KINDS: Record<string, new (o: never) => { validate(): void }> = { Deployment, ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } as never;
type Obj = { kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };
type Container = { name: string; args: string[]; env: Array<{ name: string; value?: string; valueFrom?: { configMapKeyRef?: { name: string; key: string }; secretKeyRef?: { name: string; key: string } } }>; ports: Array<{ name: string; containerPort: number }>; readinessProbe: { httpGet: { path: string; port: string } }; livenessProbe: { httpGet: { path: string; port: string } }; volumeMounts: Array<{ name: string; mountPath: string }> };
type Pod = { containers: Container[]; volumes: Array<{ name: string; secret?: { secretName: string }; configMap?: { name: string }; persistentVolumeClaim?: { claimName: string } }> };

const objects: Obj[] = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml"))
  .flatMap((f) => parseAllDocuments(readFileSync(join(DIR, f), "utf8")).map((d) => ({ ...(d.toJS() as Obj), file: f })));
const deployments = objects.filter((o) => o.kind === "Deployment") as Array<Obj & { spec: { replicas: number; template: { spec: Pod } } }>;
const byName = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const secretsMadeByKubectl = ["moss-credentials", "moss-signing"];

describe("deploy/k8s (validated offline against the Kubernetes API schemas)", () => {
  it("every object is a kind it knows and valid against its API schema, in the moss namespace", () => {
    expect(objects.length).toBeGreaterThan(10);
    for (const o of objects) {
      const K = KINDS[o.kind];
      expect(K, `${o.kind} ${o.metadata.name}`).toBeDefined();
      const { file: _file, ...obj } = o as Obj & { file: string };
      expect(() => new K!(obj as never).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
      if (o.kind !== "Namespace") expect(o.metadata.namespace).toBe("moss");
    }
    // The schemas are really applied: a port that is not a number is refused.
    const bad = structuredClone(deployments[0]!) as unknown as { spec: { template: { spec: Pod } } };
    (bad.spec.template.spec.containers[0]!.ports[0] as unknown as { containerPort: string }).containerPort = "ops";
    expect(() => new Deployment(bad as never).validate()).toThrow(/containerPort must be integer/);
  });

  it("a Deployment per service, each with replicas, running its own main, probed on the ops listener", () => {
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(ServiceIdentities.map((s) => `moss-${s}`).sort());
    for (const d of deployments) {
      const service = d.metadata.name.slice("moss-".length);
      const c = d.spec.template.spec.containers[0]!;
      expect(c.args).toEqual([`services/${service}/src/main.ts`]);
      expect(d.spec.replicas).toBeGreaterThanOrEqual(1);
      expect(c.ports.find((p) => p.name === "ops")?.containerPort).toBe(9464);
      expect(c.env.find((e) => e.name === "MOSS_OPS__PORT")?.value).toBe("9464");
      expect(c.env.find((e) => e.name === "MOSS_OPS__HOST")?.value).toBe("0.0.0.0");
      expect([c.readinessProbe.httpGet, c.livenessProbe.httpGet]).toEqual([{ path: "/readyz", port: "ops" }, { path: "/healthz", port: "ops" }]);
    }
    // The one-writer services stay one; the rest scale.
    const replicas = Object.fromEntries(deployments.map((d) => [d.metadata.name, d.spec.replicas]));
    expect(replicas).toMatchObject({ "moss-auditor": 1, "moss-rewriter": 1, "moss-curator": 2, "moss-replayer": 2, "moss-promoter": 2, "moss-gateway": 2 });
  });

  it("every ConfigMap key, Secret and claim a pod names exists (the bus credentials and the signing key are made by kubectl, as secrets.yaml says)", () => {
    const documented = readFileSync(join(DIR, "secrets.yaml"), "utf8");
    for (const name of secretsMadeByKubectl) expect(documented).toContain(`kubectl -n moss create secret generic ${name}`);
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      for (const e of pod.containers[0]!.env) {
        const cm = e.valueFrom?.configMapKeyRef;
        if (cm) expect(((byName("ConfigMap", cm.name) as { data?: Record<string, string> })?.data ?? {})[cm.key], `${d.metadata.name} ${e.name}`).toBeDefined();
        const sk = e.valueFrom?.secretKeyRef;
        if (sk) expect(((byName("Secret", sk.name) as { stringData?: Record<string, string> })?.stringData ?? {})[sk.key], `${d.metadata.name} ${e.name}`).toBeDefined();
      }
      for (const v of pod.volumes) {
        if (v.secret) expect(Boolean(byName("Secret", v.secret.secretName)) || secretsMadeByKubectl.includes(v.secret.secretName), `${d.metadata.name} secret ${v.secret.secretName}`).toBe(true);
        if (v.configMap) expect(byName("ConfigMap", v.configMap.name)).toBeDefined();
        if (v.persistentVolumeClaim) expect(byName("PersistentVolumeClaim", v.persistentVolumeClaim.claimName)).toBeDefined();
      }
      for (const m of pod.containers[0]!.volumeMounts) expect(pod.volumes.map((v) => v.name)).toContain(m.name);
    }
    for (const s of objects.filter((o) => o.kind === "Service") as Array<Obj & { spec: { selector: Record<string, string>; ports: Array<{ targetPort: string }> } }>) {
      const target = deployments.find((d) => d.metadata.name === `moss-${s.spec.selector["app.kubernetes.io/name"]}`);
      expect(target, s.metadata.name).toBeDefined();
      for (const p of s.spec.ports) expect(target!.spec.template.spec.containers[0]!.ports.map((x) => x.name)).toContain(p.targetPort);
    }
  });

  it("the config each pod loads — the ConfigMap's config.json with the pod's env — is a valid Moss config, pointed at NATS, S3 and the collector", () => {
    const cm = byName("ConfigMap", "moss-config") as unknown as { data: Record<string, string> };
    const secret = byName("Secret", "moss-blob") as unknown as { stringData: Record<string, string> };
    const dir = mkdtempSync(join(tmpdir(), "moss-k8s-"));
    try {
      writeFileSync(join(dir, "config.json"), cm.data["config.json"]!);
      for (const d of deployments) {
        const env: Record<string, string> = {};
        for (const e of d.spec.template.spec.containers[0]!.env) {
          const v = e.value ?? (e.valueFrom?.configMapKeyRef ? cm.data[e.valueFrom.configMapKeyRef.key] : secret.stringData[e.valueFrom!.secretKeyRef!.key]);
          env[e.name] = e.name === "MOSS_CONFIG" ? join(dir, "config.json") : v!;
        }
        const cfg = loadConfig(env);
        expect(cfg.nats.url, d.metadata.name).toBe("nats://nats.moss.svc:4222");
        expect(cfg.blob).toMatchObject({ kind: "s3", endPoint: "minio.moss.svc", bucket: "moss", accessKey: secret.stringData["accessKey"], secretKey: secret.stringData["secretKey"] });
        expect(cfg.ops).toMatchObject({ host: "0.0.0.0", port: 9464 });
        expect(cfg.telemetry.otlpEndpoint).toBe("http://jaeger.moss.svc:4318/v1/traces");
        expect(cfg.paths.natsCredentials).toBe("/etc/moss/credentials");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
