/**
 * BuildKit (`/build` with version "2") streams its progress as JSON lines
 * `{"id":"moby.buildkit.trace","aux":"<base64 protobuf moby.buildkit.v1.StatusResponse>"}`.
 * This decodes the few fields a log needs with a minimal protobuf wire reader (no schema compiler)
 * and renders them like `docker build --progress=plain`:
 *
 *   #4 [2/3] RUN ["/usr/bin/esbuild", ...]
 *   #4   app.mjs  41b
 *   #4 DONE 0.1s
 *
 * Field numbers are from moby/buildkit api/services/control/control.proto.
 */

interface Timestamp {
  seconds: number;
  nanos: number;
}
interface Vertex {
  digest: string;
  name: string;
  cached: boolean;
  started?: Timestamp;
  completed?: Timestamp;
  error: string;
}
interface VertexLog {
  vertex: string;
  msg: Buffer;
}
interface VertexWarning {
  vertex: string;
  short: Buffer;
}
interface StatusResponse {
  vertexes: Vertex[];
  logs: VertexLog[];
  warnings: VertexWarning[];
}

type WireValue = number | Buffer;

/** Iterates the (field number, value) pairs of one protobuf message. Varints above 2^53 lose precision (unused here). */
function* readFields(buf: Buffer): Generator<[number, WireValue]> {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = buf[pos++];
      if (b === undefined) throw new Error("truncated varint");
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield [field, varint()];
    else if (wire === 1) {
      pos += 8;
      yield [field, 0];
    } else if (wire === 2) {
      const len = varint();
      const value = buf.subarray(pos, pos + len);
      pos += len;
      yield [field, value];
    } else if (wire === 5) {
      pos += 4;
      yield [field, 0];
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

const str = (v: WireValue): string => (Buffer.isBuffer(v) ? v.toString("utf8") : "");
const bytes = (v: WireValue): Buffer => (Buffer.isBuffer(v) ? v : Buffer.alloc(0));

function decodeTimestamp(buf: Buffer): Timestamp {
  const t: Timestamp = { seconds: 0, nanos: 0 };
  for (const [f, v] of readFields(buf)) {
    if (f === 1 && typeof v === "number") t.seconds = v;
    else if (f === 2 && typeof v === "number") t.nanos = v;
  }
  return t;
}

function decodeVertex(buf: Buffer): Vertex {
  const v: Vertex = { digest: "", name: "", cached: false, error: "" };
  for (const [f, val] of readFields(buf)) {
    if (f === 1) v.digest = str(val);
    else if (f === 3) v.name = str(val);
    else if (f === 4) v.cached = val === 1;
    else if (f === 5 && Buffer.isBuffer(val)) v.started = decodeTimestamp(val);
    else if (f === 6 && Buffer.isBuffer(val)) v.completed = decodeTimestamp(val);
    else if (f === 7) v.error = str(val);
  }
  return v;
}

export function decodeStatusResponse(buf: Buffer): StatusResponse {
  const r: StatusResponse = { vertexes: [], logs: [], warnings: [] };
  for (const [f, val] of readFields(buf)) {
    if (!Buffer.isBuffer(val)) continue;
    if (f === 1) r.vertexes.push(decodeVertex(val));
    else if (f === 3) {
      const l: VertexLog = { vertex: "", msg: Buffer.alloc(0) };
      for (const [lf, lv] of readFields(val)) {
        if (lf === 1) l.vertex = str(lv);
        else if (lf === 4) l.msg = bytes(lv);
      }
      r.logs.push(l);
    } else if (f === 4) {
      const w: VertexWarning = { vertex: "", short: Buffer.alloc(0) };
      for (const [wf, wv] of readFields(val)) {
        if (wf === 1) w.vertex = str(wv);
        else if (wf === 3) w.short = bytes(wv);
      }
      r.warnings.push(w);
    }
  }
  return r;
}

const seconds = (t: Timestamp): number => t.seconds + t.nanos / 1e9;

/** Accumulates a build's output (BuildKit traces, or the legacy builder's text) into a plain-text log. */
export class BuildLog {
  private readonly lines: string[] = [];
  private readonly index = new Map<string, number>();
  private readonly announced = new Set<string>();
  private readonly finished = new Set<string>();
  private readonly partial = new Map<string, string>();
  private rawPartial = "";

  /** Feeds the base64 `aux` of one `moby.buildkit.trace` line. Undecodable input is noted, not thrown. */
  add(auxBase64: string): void {
    let status: StatusResponse;
    try {
      status = decodeStatusResponse(Buffer.from(auxBase64, "base64"));
    } catch (err) {
      this.lines.push(`(undecodable BuildKit trace: ${(err as Error).message})`);
      return;
    }
    for (const v of status.vertexes) this.vertex(v);
    for (const l of status.logs) this.log(l.vertex, l.msg.toString("utf8"));
    for (const w of status.warnings) this.lines.push(`${this.tag(w.vertex)} WARNING: ${w.short.toString("utf8")}`);
  }

  /** Appends a line that did not come from a trace (errors, the final image id). */
  note(line: string): void {
    this.flushRaw();
    this.lines.push(line);
  }

  /** Appends raw text that may split lines anywhere (the legacy builder's `stream` chunks). */
  raw(text: string): void {
    const parts = (this.rawPartial + text).split(/\r?\n/);
    this.rawPartial = parts.pop() ?? "";
    this.lines.push(...parts);
  }

  text(): string {
    for (const digest of [...this.partial.keys()]) this.flush(digest);
    this.flushRaw();
    return this.lines.length ? `${this.lines.join("\n")}\n` : "";
  }

  private tag(digest: string): string {
    let n = this.index.get(digest);
    if (n === undefined) {
      n = this.index.size + 1;
      this.index.set(digest, n);
    }
    return `#${n}`;
  }

  private vertex(v: Vertex): void {
    if (!v.digest) return;
    if (!this.announced.has(v.digest) && v.name && (v.started || v.completed || v.cached)) {
      this.announced.add(v.digest);
      this.lines.push(`${this.tag(v.digest)} ${v.name}`);
    }
    if (this.finished.has(v.digest)) return;
    if (v.error) {
      this.flush(v.digest);
      this.finished.add(v.digest);
      this.lines.push(`${this.tag(v.digest)} ERROR: ${v.error}`);
    } else if (v.completed) {
      this.flush(v.digest);
      this.finished.add(v.digest);
      if (v.cached) this.lines.push(`${this.tag(v.digest)} CACHED`);
      else {
        const took = v.started ? Math.max(0, seconds(v.completed) - seconds(v.started)) : 0;
        this.lines.push(`${this.tag(v.digest)} DONE ${took.toFixed(1)}s`);
      }
    }
  }

  private log(digest: string, msg: string): void {
    const text = (this.partial.get(digest) ?? "") + msg;
    const parts = text.split(/\r?\n/);
    this.partial.set(digest, parts.pop() ?? "");
    for (const p of parts) this.lines.push(`${this.tag(digest)} ${p}`);
  }

  private flushRaw(): void {
    if (this.rawPartial) this.lines.push(this.rawPartial);
    this.rawPartial = "";
  }

  private flush(digest: string): void {
    const rest = this.partial.get(digest);
    this.partial.delete(digest);
    if (rest) this.lines.push(`${this.tag(digest)} ${rest}`);
  }
}
