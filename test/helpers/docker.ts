import { execFileSync } from "node:child_process";

/**
 * The host's address on the Docker engine's default bridge: where a container's traffic leaves, and how a container
 * reaches a server the test runs on the host. The engine does not always write the gateway into the network's IPAM
 * config (20.10 leaves it out when it chose it itself), and Node does not list a bridge that has no container on it
 * yet (no carrier); the engine's own rule then says it: the first address of the bridge's subnet.
 */
export function bridgeGateway(): string {
  const out = execFileSync("docker", ["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}}{{end}}"], { encoding: "utf8" }).trim();
  const [gw, subnet] = out.split("|");
  if (gw && /^\d+\.\d+\.\d+\.\d+$/.test(gw)) return gw;
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(subnet ?? "");
  if (!m) throw new Error(`cannot tell the Docker bridge's address from its IPAM config "${out}"`);
  const bits = Number(m[5]);
  const base = (m.slice(1, 5).reduce((a, o) => a * 256 + Number(o), 0) & (bits === 0 ? 0 : ~0 << (32 - bits))) >>> 0;
  const first = base + 1;
  return [24, 16, 8, 0].map((s) => (first >>> s) & 255).join(".");
}
