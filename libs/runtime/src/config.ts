import { InvalidSpecError } from "./errors";
import type { RuntimeConfig } from "./types";

/** Every default of RuntimeConfig, in one place. */
export const RUNTIME_DEFAULTS = {
  socketPath: "/var/run/docker.sock",
  trialMemoryBytes: 256 * 1024 * 1024,
  trialPidsLimit: 128,
  trialCpus: 1,
  trialStartAllowanceMs: 3000,
  trialLogLimitBytes: 1024 * 1024,
  trialPoolSize: 0,
  snapshotMaxBytes: 256 * 1024 * 1024,
  snapshotMaxEntries: 20_000,
  liveStopTimeoutSeconds: 5,
  namePrefix: "moss",
  builder: "buildkit",
  buildTimeoutMs: 600_000,
} as const satisfies Required<RuntimeConfig>;

export type ResolvedRuntimeConfig = Readonly<Required<RuntimeConfig>>;

const NAME_PART = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function resolveConfig(cfg: RuntimeConfig = {}): ResolvedRuntimeConfig {
  const r: Required<RuntimeConfig> = {
    socketPath: cfg.socketPath ?? RUNTIME_DEFAULTS.socketPath,
    trialMemoryBytes: cfg.trialMemoryBytes ?? RUNTIME_DEFAULTS.trialMemoryBytes,
    trialPidsLimit: cfg.trialPidsLimit ?? RUNTIME_DEFAULTS.trialPidsLimit,
    trialCpus: cfg.trialCpus ?? RUNTIME_DEFAULTS.trialCpus,
    trialStartAllowanceMs: cfg.trialStartAllowanceMs ?? RUNTIME_DEFAULTS.trialStartAllowanceMs,
    trialLogLimitBytes: cfg.trialLogLimitBytes ?? RUNTIME_DEFAULTS.trialLogLimitBytes,
    trialPoolSize: cfg.trialPoolSize ?? RUNTIME_DEFAULTS.trialPoolSize,
    snapshotMaxBytes: cfg.snapshotMaxBytes ?? RUNTIME_DEFAULTS.snapshotMaxBytes,
    snapshotMaxEntries: cfg.snapshotMaxEntries ?? RUNTIME_DEFAULTS.snapshotMaxEntries,
    liveStopTimeoutSeconds: cfg.liveStopTimeoutSeconds ?? RUNTIME_DEFAULTS.liveStopTimeoutSeconds,
    namePrefix: cfg.namePrefix ?? RUNTIME_DEFAULTS.namePrefix,
    builder: cfg.builder ?? RUNTIME_DEFAULTS.builder,
    buildTimeoutMs: cfg.buildTimeoutMs ?? RUNTIME_DEFAULTS.buildTimeoutMs,
  };
  // Docker refuses memory limits below 6 MiB; two node processes need far more anyway.
  positive("trialMemoryBytes", r.trialMemoryBytes, 6 * 1024 * 1024);
  positive("trialPidsLimit", r.trialPidsLimit, 1);
  positive("trialCpus", r.trialCpus, 0.01);
  positive("trialStartAllowanceMs", r.trialStartAllowanceMs, 0);
  positive("trialLogLimitBytes", r.trialLogLimitBytes, 1024);
  if (!Number.isInteger(r.trialPoolSize) || r.trialPoolSize < 0 || r.trialPoolSize > 64) {
    throw new InvalidSpecError("RuntimeConfig.trialPoolSize", `${String(r.trialPoolSize)} must be an integer in 0..64`);
  }
  positive("snapshotMaxBytes", r.snapshotMaxBytes, 1);
  positive("snapshotMaxEntries", r.snapshotMaxEntries, 1);
  positive("liveStopTimeoutSeconds", r.liveStopTimeoutSeconds, 0);
  positive("buildTimeoutMs", r.buildTimeoutMs, 1);
  if (!NAME_PART.test(r.namePrefix)) {
    throw new InvalidSpecError("RuntimeConfig.namePrefix", `"${r.namePrefix}" must match ${NAME_PART}`);
  }
  if (r.builder !== "buildkit" && r.builder !== "legacy") {
    throw new InvalidSpecError("RuntimeConfig.builder", `"${String(r.builder)}" must be "buildkit" or "legacy"`);
  }
  return Object.freeze(r);
}

/** Validates a name part (agent name) used inside container names. */
export function checkNamePart(field: string, value: string): void {
  if (!NAME_PART.test(value) || value.length > 100) {
    throw new InvalidSpecError(field, `"${value}" must be 1-100 letters, digits, "_", "." or "-", starting with a letter or digit`);
  }
}

function positive(field: string, value: number, min: number): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new InvalidSpecError(`RuntimeConfig.${field}`, `${String(value)} must be a number >= ${min}`);
  }
}
