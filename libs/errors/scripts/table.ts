// Prints the table of every error code for libs/errors/README.md (test/errors checks the README against the registry).
import { AllCodes } from "../src/codes";

console.log("| code | HTTP | retried | raised by | what it means, what to do |");
console.log("| --- | --- | --- | --- | --- |");
for (const c of AllCodes) console.log(`| \`${c.code}\` | ${c.status} | ${c.retryable ? "yes" : "no"} | ${c.raisedBy.replace(/^@moss\//, "")} | ${c.doc} |`);
