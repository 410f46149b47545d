/**
 * Docker multiplexes a non-TTY container's stdout and stderr into frames: an 8-byte header
 * (stream type, 3 zero bytes, big-endian payload length) followed by the payload. `logs()` with
 * `follow: false` returns the raw frames as one Buffer.
 */

/** The frames of a multiplexed stream, each with its stream; a non-multiplexed (TTY) rest counts as stdout. */
export function demuxFrames(buf: Buffer): { stream: "stdout" | "stderr"; payload: Buffer }[] {
  const out: { stream: "stdout" | "stderr"; payload: Buffer }[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const type = buf[off];
    if (type === undefined || type > 2 || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) break;
    const size = buf.readUInt32BE(off + 4);
    out.push({ stream: type === 2 ? "stderr" : "stdout", payload: buf.subarray(off + 8, Math.min(off + 8 + size, buf.length)) });
    off += 8 + size;
  }
  if (off < buf.length) out.push({ stream: "stdout", payload: buf.subarray(off) });
  return out;
}
