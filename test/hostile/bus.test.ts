// Attacks on the bus, against a stack `moss up` started with its generated nats-server config and credentials: an
// anonymous client, an agent (its own credential is all a live container has), every service beyond its grant, and
// admin all try to forge verdicts, records and consent. Each attempt is refused and named in nats-server's log;
// consent goes through the operator API, which records who its token says, never a name from a message.
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBus, kvGet, loadCredential, type Bus } from "@moss/bus";
import { startStack, type Stack } from "@moss/cli";
import { parseConfig, type LoadedConfig } from "@moss/config";
import { ADMIN, agentIdentity, AllMessages, BatchRecord, Buckets, Grants, Messages, Queries, ServiceIdentities, Streams, type MessageDef } from "@moss/contracts";
import { addOperator } from "@moss/operator-api";
import { busCredential, liveEnv } from "@moss/lifecycle";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMoss } from "../helpers/moss";
import { connectAs, freePort, storedMessages, waitFor } from "../helpers/nats";

const AT = "2026-01-01T00:00:00.000Z";
const V1 = "1".repeat(40);
/** A concrete subject of a message kind (patterns get a plausible last token). */
const concrete = (d: MessageDef) => d.subject.replace("*", "shop").replace(">", "MOSS_PIPELINE.promoter");

describe("hostile actors on the bus of a stack moss up started (real nats-server, generated auth)", () => {
  let dir: string;
  let config: Readonly<LoadedConfig>;
  let configFile: string;
  let stack: Stack;
  let admin: Bus;
  const natsLog: string[] = [];

  /** Tries a JetStream publish as `identity`; resolves "stored" or the refusal. */
  const tryPublish = async (identity: string, subject: string, data = "{}"): Promise<string> => {
    const { nc } = await connectAs(config, identity);
    try {
      await jetstream(nc).publish(subject, data, { timeout: 3_000 });
      return "stored";
    } catch (err) {
      return (err as Error).message;
    } finally {
      await nc.close();
    }
  };
  const refusedIn = (identity: string, subject: string) => natsLog.some((l) => l.includes(`(${identity})`) && l.includes("Violation") && l.includes(subject));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "moss-hostile-bus-"));
    mkdirSync(join(dir, "shop"));
    const input = {
      dataDir: join(dir, "data"),
      nats: { url: `nats://127.0.0.1:${await freePort()}` },
      auditor: { port: await freePort() },
      operatorApi: { port: await freePort() },
      curator: { http: { enabled: false } },
      agents: { shop: { repo: join(dir, "shop") } },
    };
    configFile = join(dir, "moss.json");
    writeFileSync(configFile, JSON.stringify(input));
    config = parseConfig(input, { base: dir, source: configFile });
    stack = await startStack({ config, configFile, services: ["operator-api", "auditor"], operator: "tester", onLog: (s, l) => s === "nats" && natsLog.push(l) });
    admin = await createBus({ url: config.nats.url, name: "hostile-admin", credential: busCredential(config, ADMIN) });
  }, 60_000);
  afterAll(async () => {
    await admin?.close();
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an anonymous client cannot even connect, and the refusal is in nats-server's log", async () => {
    await expect(createBus({ url: config.nats.url, name: "anonymous", connectTimeoutMs: 3_000 })).rejects.toThrow(/refused an anonymous connection: Authorization Violation/);
    await waitFor(() => natsLog.some((l) => l.includes("authentication error")), 5_000, "the refusal in the log");
  });

  it("an agent's credential (all its live container gets) reports its own failures (and sampled successes) and nothing else", async () => {
    const me = agentIdentity("shop");
    expect(await tryPublish(me, "moss.failure.shop")).toBe("stored");
    expect(await tryPublish(me, "moss.success.shop")).toBe("stored");
    for (const subject of ["moss.failure.other", "moss.success.other", `$KV.${Buckets.regressions}.shop`, Messages.replayCompleted.subject, Messages.approval.subject, Messages.candidateReady.subject, `$KV.${Buckets.batches}.b1`, `$KV.${Buckets.deployments}.shop`]) {
      expect(await tryPublish(me, subject), subject).toMatch(/Permissions Violation for Publish/);
      await waitFor(() => refusedIn(me, subject), 5_000, `nats-server's log naming ${me} for ${subject}`);
    }
    // It can read nothing either: not the pipeline, not other identities' replies.
    for (const subject of ["moss.>", "_INBOX.>", "$KV.>"]) {
      const { nc, denied } = await connectAs(config, me);
      nc.subscribe(subject);
      await nc.flush();
      await waitFor(() => denied.some((d) => d.includes("Subscription") && d.includes(subject)), 3_000, `the refusal of ${subject}`);
      await nc.close();
    }
  });

  it("the live container's env carries the agent's credential only: no service's, no admin's", () => {
    const env = liveEnv(config, "shop", V1);
    const seedOf = (id: string) => new TextDecoder().decode(loadCredential(config.paths.natsCredentials, id).seed);
    expect(env["MOSS_NATS_SEED"]).toBe(seedOf(agentIdentity("shop")));
    const others = [...ServiceIdentities, ADMIN].map(seedOf);
    for (const v of Object.values(env)) expect(others).not.toContain(v);
  });

  it("every service may publish only the messages of its grant: a forged verdict, record or consent from any other is refused", async () => {
    for (const id of ServiceIdentities) {
      const mine = new Set(Grants[id].publishes);
      for (const d of AllMessages.filter((m) => !mine.has(m) && m !== Messages.deadLetter)) {
        expect(await tryPublish(id, concrete(d)), `${id} publishing ${d.name}`).toMatch(/Permissions Violation for Publish/);
      }
    }
    // Only the operator API may consent.
    expect(ServiceIdentities.filter((id) => Grants[id].publishes.includes(Messages.approval))).toEqual(["operator-api"]);
    // Buckets outside a grant are closed too: the replayer cannot move a deployment, the auditor cannot touch a batch.
    expect(await tryPublish("replayer", `$KV.${Buckets.deployments}.shop`)).toMatch(/Permissions Violation/);
    expect(await tryPublish("auditor", `$KV.${Buckets.batches}.b1`)).toMatch(/Permissions Violation/);
    expect(await tryPublish("curator", `$KV.${Buckets.fingerprints}.shop.x`)).toMatch(/Permissions Violation/);
  }, 60_000);

  it("admin provisions and reads, but can neither consent, forge a verdict or a batch record, nor report as an agent", async () => {
    for (const subject of [Messages.approval.subject, Messages.replayCompleted.subject, "moss.failure.shop", `$KV.${Buckets.batches}.b1`]) {
      expect(await tryPublish(ADMIN, subject), subject).toMatch(/Permissions Violation for Publish/);
    }
    expect((await admin.jsm.streams.info(Streams.PIPELINE)).config.name).toBe(Streams.PIPELINE);
  });

  it("consent goes through the operator API, which records the operator its token names; `moss approve` needs a token, not a name", async () => {
    // A batch awaiting approval, as the promoter would have written it.
    const promoter = await createBus({ url: config.nats.url, name: "as-promoter", credential: busCredential(config, "promoter") });
    try {
      const rec = BatchRecord.parse({ batchId: "bwait", agent: "shop", fingerprint: "fp", baseVersion: V1, state: "awaiting-approval", failures: [], count: 1, openedAt: AT, deadline: AT, updatedAt: AT });
      await (await promoter.kv(Buckets.batches)).put("bwait", JSON.stringify(rec));
    } finally {
      await promoter.close();
    }
    const alice = addOperator(config.paths.operators, "alice");
    const forged = await runMoss(["approve", "bwait", "--by", "alice", "--config", configFile], { env: { MOSS_OPERATOR_TOKEN: "guessed" } });
    expect(forged.code).toBe(1);
    expect(forged.stderr).toContain("no --by any more");
    const stranger = await runMoss(["approve", "bwait", "--config", configFile], { env: { MOSS_OPERATOR_TOKEN: "guessed-token" } });
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain("needs an operator's token");
    const ok = await runMoss(["approve", "bwait", "--reason", "read the diff", "--config", configFile], { env: { MOSS_OPERATOR_TOKEN: alice } });
    expect(ok.stderr).toBe("");
    // No promoter runs here: the approval is sent, and the answer says it has not been acted on yet (exit 2).
    expect(ok.code).toBe(2);
    expect(ok.stdout).toContain("approval of bwait sent as alice, not acted on yet: the promoter has not acted on the approve within 15 s");
    expect(await storedMessages(admin, Messages.approval, 10)).toEqual([{ batchId: "bwait", decision: "approve", by: "alice", reason: "read the diff" }]);
    // The record is untouched by the operator API: the promoter (not running here) is the one who acts on consent.
    expect((await kvGet(await admin.kv(Buckets.batches), "bwait", BatchRecord))?.value.state).toBe("awaiting-approval");
  }, 60_000);

  it("the auditor's read model is served only over the bus, only to the operator API, and the CLI reads it through the operator API's token check", async () => {
    // Its listener answers whether it is alive, nothing else.
    expect((await fetch(`http://127.0.0.1:${config.auditor.port}/health`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${config.auditor.port}/v1/audit/verify`)).status).toBe(404);
    // The operator API asks it over the bus (its grant's request, the auditor's reply) on behalf of a token holder.
    const rita = addOperator(config.paths.operators, "rita", "read");
    const verify = await runMoss(["audit", "verify", "--config", configFile], { env: { MOSS_OPERATOR_TOKEN: rita } });
    expect([verify.code, verify.stderr]).toEqual([0, ""]);
    expect(verify.stdout).toMatch(/^audit log intact: \d+ record\(s\)/);
    const missing = await runMoss(["show", "b-none", "--config", configFile], { env: { MOSS_OPERATOR_TOKEN: rita } });
    expect(missing.stderr).toContain("no audit records for batch b-none");
    expect((await runMoss(["audit", "verify", "--config", configFile], { env: { MOSS_OPERATOR_TOKEN: "nobody's" } })).stderr).toContain("needs an operator's token");
    // No other identity may ask it.
    for (const id of ServiceIdentities.filter((i) => i !== "operator-api" && i !== "auditor")) {
      const { nc } = await connectAs(config, id);
      try {
        const err = await nc.request(Queries.audit.subject, JSON.stringify({ method: "GET", url: "/v1/audit/verify" }), { timeout: 2_000 }).then(() => "answered", (e: Error) => e.message);
        expect(err, id).not.toBe("answered");
      } finally {
        await nc.close();
      }
    }
    await waitFor(() => refusedIn("gateway", Queries.audit.subject), 5_000, "the refusal in nats-server's log");
  }, 60_000);

  it("moss up made the user who ran it the first operator; the token, the seeds and the server config are readable by that user only", async () => {
    const r = await runMoss(["operator", "list", "--config", configFile]);
    expect(r.stdout.split("\n")).toContain("tester\toperate");
    expect(statSync(config.paths.operatorToken).mode & 0o777).toBe(0o600);
    expect(statSync(config.paths.natsCredentials).mode & 0o777).toBe(0o700);
    expect(statSync(config.paths.natsConfig).mode & 0o777).toBe(0o600);
  });
});
