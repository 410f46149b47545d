import { MossError } from "@moss/contracts";

/** The adapter configuration cannot work (unknown preset, empty command, ...): fix the config; retrying cannot help. */
export class AdapterConfigError extends MossError {
  override name = "AdapterConfigError";
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super("MOSS_E_ADAPTER_CONFIG", message, false, opts);
  }
}
