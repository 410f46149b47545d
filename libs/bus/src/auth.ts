/**
 * Least privilege on the bus: every Moss process and every agent connects as its own nkey identity, and nats-server
 * lets each one publish and subscribe only what its grant (libs/contracts/src/grants.ts) covers. This module turns
 * grants into nats-server permissions, writes and reads the credentials (nkey seeds, one file per identity) and
 * renders the server config `moss up` starts nats-server with.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ADMIN, AllMessages, AllStreams, agentGrant, agentIdentity, Buckets, deadLetterSubject, Grants, inboxPrefix, ServiceIdentities, type Grant, type ServiceIdentity } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";
import { nkeys } from "@nats-io/transport-node";

export interface SubjectPermissions {
  allow: string[];
  deny?: string[];
}
export interface NatsPermissions {
  publish: SubjectPermissions;
  subscribe: SubjectPermissions;
  /** May answer the requests it receives (and only those: one reply each, to the asker's inbox). */
  allowResponses?: boolean;
}

/** A process's identity on the bus and the nkey seed it proves it with. */
export interface BusCredential {
  identity: string;
  seed: Uint8Array;
  /** The seed's public key: how nats-server names this identity. */
  publicKey: string;
}

const kvStream = (bucket: string) => `KV_${bucket}`;
/** What reading a KV bucket takes: its stream's info, direct gets, and the ordered consumers of `keys()`/`watch()`. */
function bucketRead(bucket: string): string[] {
  const s = kvStream(bucket);
  return [
    `$JS.API.STREAM.INFO.${s}`,
    `$JS.API.DIRECT.GET.${s}`,
    `$JS.API.DIRECT.GET.${s}.>`,
    `$JS.API.STREAM.MSG.GET.${s}`,
    `$JS.API.CONSUMER.CREATE.${s}`,
    `$JS.API.CONSUMER.CREATE.${s}.>`,
    `$JS.API.CONSUMER.INFO.${s}.>`,
    `$JS.API.CONSUMER.DELETE.${s}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${s}.>`,
    `$JS.FC.${s}.>`,
  ];
}

/** NATS permissions of a grant: its messages, its durable consumers (and their dead letters), its buckets, its inbox. */
export function grantPermissions(identity: string, g: Grant): NatsPermissions {
  const pub = new Set<string>();
  for (const d of g.publishes) for (const s of g.publishSubjects ?? [d.subject]) pub.add(s);
  if (g.consumers.length || Object.keys(g.buckets).length) {
    pub.add("$JS.API.INFO");
    for (const s of AllStreams) pub.add(`$JS.API.STREAM.INFO.${s}`);
  }
  for (const c of g.consumers) {
    const at = `${c.stream}.${c.durable}`;
    for (const api of ["INFO", "CREATE", "MSG.NEXT"]) pub.add(`$JS.API.CONSUMER.${api}.${at}`);
    pub.add(`$JS.API.CONSUMER.CREATE.${at}.>`);
    pub.add(`$JS.API.CONSUMER.DURABLE.CREATE.${at}`);
    pub.add(`$JS.ACK.${at}.>`);
    pub.add(deadLetterSubject(c.stream, c.durable));
  }
  for (const [bucket, access] of Object.entries(g.buckets)) {
    for (const s of bucketRead(bucket)) pub.add(s);
    if (access === "write") pub.add(`$KV.${bucket}.>`);
  }
  for (const q of g.asks ?? []) pub.add(q.subject);
  for (const st of g.readsStreams ?? []) pub.add(`$JS.API.STREAM.MSG.GET.${st}`);
  const sub = [`${inboxPrefix(identity)}.>`, ...(g.serves ?? []).map((q) => q.subject), ...(g.watches ?? []).map((m) => m.subject)];
  return { publish: { allow: [...pub] }, subscribe: { allow: sub }, ...(g.serves?.length ? { allowResponses: true } : {}) };
}

/** Buckets admin writes: `moss up`'s service reports and a first deployment (`moss deploy`: its record and its route). */
const ADMIN_WRITES: ReadonlySet<string> = new Set([Buckets.services, Buckets.deployments, Buckets.routes]);

/**
 * admin provisions and watches; it publishes no Moss message (so it can neither forge a verdict nor consent, nor
 * report a failure as an agent) and writes only its own buckets. It is still the bus's administrator — like whoever
 * can edit nats.conf, it is the root of trust, and its credential stays on the Moss host.
 */
export function adminPermissions(): NatsPermissions {
  const subjects = [...new Set(AllMessages.map((m) => m.subject.split(".").slice(0, 2).join(".") + ".>"))];
  const kvDeny = Object.values(Buckets).filter((b) => !ADMIN_WRITES.has(b)).map((b) => `$KV.${b}.>`);
  return { publish: { allow: [">"], deny: [...subjects, ...kvDeny] }, subscribe: { allow: [">"] } };
}

/** Every identity the embedded stack has: the services, admin, and one per configured agent. */
export function identities(agents: readonly string[]): string[] {
  return [...ServiceIdentities, ADMIN, ...agents.map(agentIdentity)];
}

/** The permissions of any identity by name. */
export function permissionsOf(identity: string): NatsPermissions {
  if (identity === ADMIN) return adminPermissions();
  if ((ServiceIdentities as readonly string[]).includes(identity)) return grantPermissions(identity, Grants[identity as ServiceIdentity]);
  if (identity.startsWith("agent.")) return grantPermissions(identity, agentGrant(identity.slice("agent.".length)));
  throw new MossError(Codes.NATS_CREDENTIAL, `no grant for NATS identity '${identity}': it is neither a service (${ServiceIdentities.join(", ")}), ${ADMIN}, nor agent.<name>`);
}

/** The identity a process named `name` connects as: a replica (`curator#2`) shares its service's. */
export function identityOf(name: string): string {
  return name.split("#")[0]!;
}

export function credentialFile(dir: string, identity: string): string {
  return join(dir, `${identity}.nk`);
}

/**
 * Writes a fresh nkey seed for every identity that has none in `dir` (mode 0600, the directory 0700) and returns
 * each identity's public key. Existing seeds are kept: a restart changes no credential.
 */
export function ensureCredentials(dir: string, ids: readonly string[]): Map<string, string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const publicKeys = new Map<string, string>();
  for (const id of ids) {
    const file = credentialFile(dir, id);
    if (!existsSync(file)) {
      const kp = nkeys.createUser();
      writeFileSync(file, new TextDecoder().decode(kp.getSeed()) + "\n", { mode: 0o600, flag: "wx" });
    }
    publicKeys.set(id, loadCredential(dir, id).publicKey);
  }
  return publicKeys;
}

/** Reads an identity's seed, refusing a missing, unreadable, group/world-readable or malformed file. */
export function loadCredential(dir: string, identity: string): BusCredential {
  const file = credentialFile(dir, identity);
  const fail = (why: string): never => {
    throw new MossError(Codes.NATS_CREDENTIAL, `NATS credential of '${identity}' at ${file} ${why}. \`moss up\` writes the embedded stack's credentials; for your own nats-server run \`moss credentials\` and load the users it prints.`);
  };
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    return fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if ((mode & 0o077) !== 0) fail("is readable by group or others (chmod 600 it)");
  const seed = new TextEncoder().encode(text);
  let publicKey: string;
  try {
    publicKey = nkeys.fromSeed(seed).getPublicKey();
  } catch (err) {
    return fail(`is not an nkey seed (${(err as Error).message})`);
  }
  if (!publicKey.startsWith("U")) fail("is not a user nkey seed (it must start with SU)");
  return { identity, seed, publicKey };
}

export interface ServerConfigOptions {
  host: string;
  port: number;
  storeDir: string;
  /** identity → nkey public key. */
  users: ReadonlyMap<string, string>;
}

/** The nats-server config of the embedded stack: JetStream, loopback only, one nkey user per identity. */
export function natsServerConfig(o: ServerConfigOptions): string {
  const q = (s: string) => JSON.stringify(s);
  const list = (xs: readonly string[]) => `[${xs.map(q).join(", ")}]`;
  const perm = (p: SubjectPermissions) => `{ allow: ${list(p.allow)}${p.deny?.length ? `, deny: ${list(p.deny)}` : ""} }`;
  const users = [...o.users].map(([id, nkey]) => {
    const p = permissionsOf(id);
    return `    # ${id}\n    { nkey: ${q(nkey)}, permissions: { publish: ${perm(p.publish)}, subscribe: ${perm(p.subscribe)}${p.allowResponses ? ", allow_responses: true" : ""} } }`;
  });
  return [
    "# Written by `moss up` from libs/contracts/src/grants.ts at every start: edit the grants, not this file.",
    `listen: ${q(`${o.host}:${o.port}`)}`,
    `jetstream { store_dir: ${q(o.storeDir)} }`,
    "authorization {",
    "  users: [",
    users.join(",\n"),
    "  ]",
    "}",
    "",
  ].join("\n");
}
