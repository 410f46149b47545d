import { writeFileSync } from "node:fs";
import { operatorGet, type Command } from "../shared";

export const cassette: Command = {
  name: "cassette",
  help: "  cassette FAILURE [--out FILE]   a failure's recorded outbound calls (moss.cassette.v1 JSON), as its replays are served them",
  options: { out: { type: "string" } },
  async run({ args, values, config }) {
    const [failure] = args;
    if (!failure) throw new Error("usage: moss cassette FAILURE [--out FILE]  (failure ids are in `moss show BATCH`)");
    const c = await operatorGet(config(), `/v1/failures/${encodeURIComponent(failure)}/cassette`);
    const text = `${JSON.stringify(c, null, 2)}\n`;
    const out = values["out"] as string | undefined;
    if (out) {
      writeFileSync(out, text);
      console.error(`cassette of failure ${failure}: ${(c as { calls?: unknown[] }).calls?.length ?? 0} call(s), written to ${out}`);
    } else process.stdout.write(text);
    return 0;
  },
};
