/**
 * Docker multiplexes a non-TTY container's stdout and stderr into frames: an 8-byte header
 * (stream type, 3 zero bytes, big-endian payload length) followed by the payload. `logs()` with
 * `follow: false` returns the raw frames as one Buffer.
 */
export interface DemuxedLogs {
  /** stdout and stderr interleaved in the order the engine recorded them. */
  combined: Buffer;
  stdout: Buffer;
  stderr: Buffer;
}

export function demuxDockerStream(buf: Buffer): DemuxedLogs {
  const combined: Buffer[] = [];
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const type = buf[off];
    if (type === undefined || type > 2 || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) break;
    const size = buf.readUInt32BE(off + 4);
    const payload = buf.subarray(off + 8, Math.min(off + 8 + size, buf.length));
    off += 8 + size;
    combined.push(payload);
    if (type === 2) stderr.push(payload);
    else stdout.push(payload);
  }
  if (off < buf.length) {
    // Not multiplexed at all (TTY container): keep it raw. Otherwise keep an unparsable rest as stdout.
    if (combined.length === 0) return { combined: buf, stdout: buf, stderr: Buffer.alloc(0) };
    const rest = buf.subarray(off);
    combined.push(rest);
    stdout.push(rest);
  }
  return { combined: Buffer.concat(combined), stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
}
