import type { MessageDef, Publish } from "@moss/contracts";
import type { z } from "zod";

/**
 * A Publish port that keeps what was published instead of sending it, parsed as the bus parses it (what a handler
 * publishes must be a valid message), by message kind. `fail(def, err)` makes the next publishes of a kind throw.
 */
export function recordingPublish() {
  const sent = new Map<string, unknown[]>();
  const failing = new Map<string, Error>();
  const list = (name: string) => sent.get(name) ?? (sent.set(name, []), sent.get(name)!);
  const publish: Publish = async (def, msg) => {
    const err = failing.get(def.name);
    if (err) throw err;
    list(def.name).push(def.schema.parse(msg));
  };
  return {
    publish,
    /** Everything published of a kind, in order (a live array). */
    of: <S extends z.ZodType>(def: MessageDef<S>): Array<z.output<S>> => list(def.name) as Array<z.output<S>>,
    /** Publishes of this kind throw `err` until `heal(def)`. */
    fail: (def: MessageDef, err: Error) => void failing.set(def.name, err),
    heal: (def: MessageDef) => void failing.delete(def.name),
  };
}
