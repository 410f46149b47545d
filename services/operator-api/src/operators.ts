/**
 * Who may act through the operator API: named operators, each with a bearer token of which only the sha256 is kept,
 * and a role — `operate` (approve, reject, roll back, reset, replay, pin) or `read` (look only). The operator API
 * records the name a token authenticates — never a name from a request body — as who approved, rejected or reset.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Codes, MossError } from "@moss/errors";
import { z } from "zod";

const OperatorName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, "1-64 letters, digits, . _ @ -, starting with a letter or digit");
/** What a token may do: `read` looks; `operate` also acts. */
export const OperatorRole = z.enum(["read", "operate"]);
export type OperatorRole = z.infer<typeof OperatorRole>;
const OperatorsFile = z.object({
  operators: z.array(
    z.object({
      name: OperatorName,
      tokenSha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits"),
      /** Default `operate`: what every operator could do before roles. */
      role: OperatorRole.default("operate"),
    }),
  ),
});
type OperatorsFile = z.infer<typeof OperatorsFile>;

const sha256 = (s: string) => createHash("sha256").update(s).digest();

export class OperatorsFileError extends MossError {
  override name = "OperatorsFileError";
  constructor(file: string, why: string, cause?: unknown) {
    super(Codes.OPERATORS_FILE, `operators file ${file} ${why}; \`moss operator add NAME\` writes a good one`, { cause });
  }
}

/** Reads the operators file; a missing file is no operators (nobody may act), a bad one an error naming the problem. */
export function readOperators(file: string): OperatorsFile {
  if (!existsSync(file)) return { operators: [] };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new OperatorsFileError(file, `cannot be read as JSON (${(err as Error).message})`, err);
  }
  const parsed = OperatorsFile.safeParse(raw);
  if (!parsed.success) throw new OperatorsFileError(file, `is not { operators: [{ name, tokenSha256, role? }] }: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return parsed.data;
}

/** The operator a bearer token belongs to, compared in constant time (against every entry); undefined for anyone else. */
export function authenticate(ops: OperatorsFile, token: string | undefined): { name: string; role: OperatorRole } | undefined {
  if (!token) return undefined;
  const got = sha256(token);
  let who: { name: string; role: OperatorRole } | undefined;
  for (const o of ops.operators) if (timingSafeEqual(got, Buffer.from(o.tokenSha256, "hex")) && who === undefined) who = { name: o.name, role: o.role };
  return who;
}

/**
 * Adds an operator (or gives an existing one a new token, which revokes the old) and returns the token: it is shown
 * once and never stored. The file is written whole (mode 600), then renamed over the old one.
 */
export function addOperator(file: string, name: string, role: OperatorRole = "operate"): string {
  const n = OperatorName.safeParse(name);
  if (!n.success) throw new OperatorsFileError(file, `cannot take operator name ${JSON.stringify(name)} (${n.error.issues[0]?.message})`);
  const ops = readOperators(file);
  const token = randomBytes(32).toString("base64url");
  const next: OperatorsFile = { operators: [...ops.operators.filter((o) => o.name !== name), { name, tokenSha256: sha256(token).toString("hex"), role }] };
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(next, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, file);
  return token;
}

/**
 * What `moss up` does on a first start: when nobody may act yet, makes the user who ran it an operator and leaves the
 * token (mode 600) where the CLI finds it. Later starts change nothing.
 */
export function ensureOperator(file: string, tokenFile: string, name: string): { created: boolean } {
  if (readOperators(file).operators.length > 0) return { created: false };
  const token = addOperator(file, name);
  mkdirSync(dirname(tokenFile), { recursive: true, mode: 0o700 });
  writeFileSync(tokenFile, token + "\n", { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  return { created: true };
}
