/**
 * Stream sequences already applied (by the curator's state, the audit log...), as sorted disjoint inclusive ranges:
 * in-order delivery keeps it to one range. Everything at or below a consumer's ack floor was applied and acked and is
 * never redelivered, so it can be pruned away.
 */
export type SeqRanges = Array<[number, number]>;

export function hasSeq(r: SeqRanges, seq: number): boolean {
  let lo = 0;
  let hi = r.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = r[mid]!;
    if (seq < a) hi = mid - 1;
    else if (seq > b) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Adds seq in place (merging neighbours). */
export function addSeq(r: SeqRanges, seq: number): void {
  // Fast path: in-order delivery extends the last range.
  const last = r[r.length - 1];
  if (last && seq === last[1] + 1) {
    last[1] = seq;
    return;
  }
  if (last && seq > last[1]) {
    r.push([seq, seq]);
    return;
  }
  let i = 0;
  while (i < r.length && r[i]![1] < seq - 1) i++;
  if (i === r.length) {
    r.push([seq, seq]);
    return;
  }
  const cur = r[i]!;
  if (seq >= cur[0] && seq <= cur[1]) return;
  if (seq === cur[0] - 1) cur[0] = seq;
  else if (seq === cur[1] + 1) cur[1] = seq;
  else {
    r.splice(i, 0, [seq, seq]);
    return;
  }
  const next = r[i + 1];
  if (next && next[0] <= cur[1] + 1) {
    cur[1] = Math.max(cur[1], next[1]);
    r.splice(i + 1, 1);
  }
}

/** Drops everything at or below `floor` (in place). Returns whether anything was dropped. */
export function pruneBelow(r: SeqRanges, floor: number): boolean {
  let drop = 0;
  while (drop < r.length && r[drop]![1] <= floor) drop++;
  if (drop) r.splice(0, drop);
  if (r[0] && r[0][0] <= floor) {
    r[0][0] = floor + 1;
    return true;
  }
  return drop > 0;
}
