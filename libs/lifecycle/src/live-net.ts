/**
 * What an agent served behind the gateway reaches of the host. Its versions run on Moss's live network, where the
 * host's loopback is not theirs: the Moss services an agent talks to on loopback (the bus, the curator's ingest, a
 * model stand-in its env names) are relayed by `moss up` from the live network's host address (`moss-host` inside the
 * container) to the same port on loopback, and the agent's env says `moss-host` where it said 127.0.0.1. Only the
 * ports its env names are relayed.
 */
import { createServer, connect, type Server } from "node:net";
import { knownAgent, type LoadedConfig } from "@moss/config";

/** The name a live container resolves to the host's address on the live network. */
export const MOSS_HOST = "moss-host";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** The value with a loopback URL's host replaced by `moss-host`, and the port it names; anything else unchanged. */
function viaHost(value: string): { value: string; port?: number } {
  // A NATS URL may list several servers.
  const parts = value.split(",");
  let port: number | undefined;
  const out = parts.map((p) => {
    let u: URL;
    try {
      u = new URL(p.trim());
    } catch {
      return p;
    }
    if (!LOOPBACK.has(u.hostname) || !u.port) return p;
    port = Number(u.port);
    u.hostname = MOSS_HOST;
    const s = u.toString();
    // URL adds a trailing slash to a bare origin; keep the value as it was written.
    return p.trim().endsWith("/") || u.pathname !== "/" ? s : s.replace(/\/$/, "");
  });
  return port === undefined ? { value } : { value: out.join(","), port };
}

/** The env of a version behind the gateway: loopback URLs pointed at `moss-host`; and the loopback ports they name. */
export function onLiveNetwork(env: Record<string, string>): { env: Record<string, string>; ports: number[] } {
  const ports = new Set<number>();
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    const r = viaHost(v);
    out[k] = r.value;
    if (r.port !== undefined) ports.add(r.port);
  }
  return { env: out, ports: [...ports].sort((a, b) => a - b) };
}

/** The loopback ports the agents served behind the gateway reach (to relay from the live network): the bus's, their env's. */
export function relayedPorts(config: Readonly<LoadedConfig>): number[] {
  const ports = new Set<number>();
  for (const [name, a] of Object.entries(config.agents)) {
    if (a.serve !== "gateway") continue;
    const env = { ...knownAgent(config, name).entry.env, MOSS_NATS_URL: config.nats.url };
    for (const p of onLiveNetwork(env).ports) ports.add(p);
  }
  return [...ports].sort((a, b) => a - b);
}

/** TCP relays from `hostIp:port` to `127.0.0.1:port`, one per port; close() stops them and their connections. */
export async function startHostRelay(hostIp: string, ports: readonly number[]): Promise<{ close(): Promise<void> }> {
  const servers: Server[] = [];
  const sockets = new Set<import("node:net").Socket>();
  try {
    for (const port of ports) {
      const s = createServer((inbound) => {
        const out = connect({ host: "127.0.0.1", port });
        sockets.add(inbound).add(out);
        const end = () => {
          inbound.destroy();
          out.destroy();
          sockets.delete(inbound);
          sockets.delete(out);
        };
        inbound.on("error", end).on("close", end);
        out.on("error", end).on("close", end);
        inbound.pipe(out).pipe(inbound);
      });
      await new Promise<void>((resolve, reject) => {
        s.once("error", (err: Error & { code?: string }) =>
          reject(err.code === "EADDRINUSE" ? new Error(`cannot relay port ${port} to the live network: ${hostIp}:${port} is taken (another moss up on this host relays it already?)`) : err),
        );
        s.listen(port, hostIp, () => resolve());
      });
      servers.push(s);
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  return {
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
