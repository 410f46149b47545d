import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** What the agent remembers between requests, in `<stateDir>/state.json`. */
export interface AgentState {
  /** Exchange rates, keyed `FROM/TO` (upper case): 1 FROM = rate TO. */
  rates: Record<string, number>;
  /** Chat turns answered so far. */
  turns: number;
}

const empty = (): AgentState => ({ rates: {}, turns: 0 });

export interface StateStore {
  readonly file: string;
  read(): Promise<AgentState>;
  /** Read-modify-write, serialized in this process; the file is replaced atomically (write + rename). */
  update<T>(change: (s: AgentState) => T): Promise<T>;
}

export function createStateStore(dir: string): StateStore {
  const file = join(dir, "state.json");
  let queue: Promise<unknown> = Promise.resolve();

  async function read(): Promise<AgentState> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return empty();
      throw err;
    }
    const parsed = JSON.parse(text) as Partial<AgentState>;
    return { rates: { ...(parsed.rates ?? {}) }, turns: typeof parsed.turns === "number" ? parsed.turns : 0 };
  }

  async function write(s: AgentState): Promise<void> {
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(s, null, 2)}\n`);
    await rename(tmp, file);
  }

  return {
    file,
    read: () => queue.then(read),
    update<T>(change: (s: AgentState) => T): Promise<T> {
      const run = queue.then(async () => {
        const s = await read();
        const result = change(s);
        await write(s);
        return result;
      });
      queue = run.catch(() => undefined);
      return run;
    },
  };
}
