import { ToolAnswerError, ToolInputError } from "../errors";
import type { Tool } from "./types";

type Token = { kind: "num"; value: number } | { kind: "op"; value: "+" | "-" | "*" | "/" | "(" | ")" };

/** Polite lead-ins people put before arithmetic; they are not part of the expression. */
const LEAD_IN = /^\s*(?:what\s+is|what's|how\s+much\s+is|calculate|compute|convert|eval(?:uate)?)\s+/;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const re = /\s*(?:(\d+(?:\.\d+)?|\.\d+)|([-+*/()])|(\S+?)(?=[\s\d+*/()-]|$))/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < text.length && (m = re.exec(text)) !== null) {
    if (m[1] !== undefined) tokens.push({ kind: "num", value: Number(m[1]) });
    else if (m[2] !== undefined) tokens.push({ kind: "op", value: m[2] as "+" });
    else if (m[3] !== undefined) throw new ToolInputError(`calculator: unsupported token '${m[3]}'`);
    else break; // trailing whitespace
  }
  return tokens;
}

/** expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := num | '-' factor | '(' expr ')' */
function evaluate(tokens: Token[]): number {
  let i = 0;
  const peek = () => tokens[i];
  const expr = (): number => {
    let v = term();
    for (let t = peek(); t?.kind === "op" && (t.value === "+" || t.value === "-"); t = peek()) {
      i++;
      v = t.value === "+" ? v + term() : v - term();
    }
    return v;
  };
  const term = (): number => {
    let v = factor();
    for (let t = peek(); t?.kind === "op" && (t.value === "*" || t.value === "/"); t = peek()) {
      i++;
      const r = factor();
      if (t.value === "/" && r === 0) throw new ToolAnswerError(422, "calculator: division by zero");
      v = t.value === "*" ? v * r : v / r;
    }
    return v;
  };
  const factor = (): number => {
    const t = tokens[i++];
    if (t === undefined) throw new ToolInputError("calculator: expression ends too early");
    if (t.kind === "num") return t.value;
    if (t.value === "-") return -factor();
    if (t.value === "(") {
      const v = expr();
      if (peek()?.value !== ")") throw new ToolInputError("calculator: missing ')'");
      i++;
      return v;
    }
    throw new ToolInputError(`calculator: unexpected '${t.value}'`);
  };
  const v = expr();
  if (i < tokens.length) throw new ToolInputError(`calculator: unexpected '${String(tokens[i]?.value)}'`);
  return v;
}

const format = (n: number): string => (Number.isInteger(n) ? String(n) : String(Number(n.toFixed(10))));

/** Evaluates + - * / and parentheses on numbers. Anything else is not arithmetic and is refused. */
export const calculator: Tool = {
  name: "calculator",
  async run(message) {
    const text = message.toLowerCase().replace(LEAD_IN, "").replace(/[?=\s]+$/, "");
    const tokens = tokenize(text);
    if (tokens.length === 0) throw new ToolInputError("calculator: empty expression");
    return `${tokens.map((t) => (t.kind === "num" ? format(t.value) : t.value)).join(" ")} = ${format(evaluate(tokens))}`;
  },
};
