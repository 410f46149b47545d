import { addOperator, OperatorRole, readOperators } from "@moss/operator-api";
import type { Command } from "../shared";

/** `moss operator`: who may approve, reject and reset through the operator API. */
export const operator: Command = {
  name: "operator",
  help: [
    "  operator add NAME        make NAME an operator (or give them a new token, revoking the old); prints the token once",
    "      --role read|operate    read: may only look (the API answers 403 to anything else); default operate",
    "  operator list            the operators the operator API accepts, with their roles",
  ].join("\n"),
  options: { role: { type: "string" } },
  async run({ args, values, config }) {
    const [verb, name] = args;
    const cfg = config();
    if (verb === "add" && name) {
      const role = OperatorRole.safeParse(values["role"] ?? "operate");
      if (!role.success) throw new Error(`--role ${String(values["role"])}: an operator's role is read or operate`);
      const token = addOperator(cfg.paths.operators, name, role.data);
      console.error(`${name} is an operator with the ${role.data} role (${cfg.paths.operators}); their token, shown once — give it to them, the CLI reads it from MOSS_OPERATOR_TOKEN:`);
      console.log(token);
      return 0;
    }
    if (verb === "list" && !name) {
      const ops = readOperators(cfg.paths.operators).operators;
      if (!ops.length) console.log(`no operators in ${cfg.paths.operators}: \`moss up\` makes whoever runs it the first, or \`moss operator add NAME\``);
      for (const o of ops) console.log(`${o.name}\t${o.role}`);
      return 0;
    }
    throw new Error("usage: moss operator add NAME | moss operator list");
  },
};
