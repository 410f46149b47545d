import type { Command } from "../shared";
import { audit } from "./audit";
import { batches } from "./batches";
import { bisectCmd } from "./bisect";
import { candidates } from "./candidates";
import { cassette } from "./cassette";
import { credentials } from "./credentials";
import { approve, reject } from "./consent";
import { demo } from "./demo";
import { deploy } from "./deploy";
import { flag } from "./flag";
import { keys } from "./keys";
import { operator } from "./operator";
import { provision } from "./provision";
import { regressions } from "./regressions";
import { replayCmd } from "./replay";
import { diffCmd, markReviewed, reconcileCmd } from "./review";
import { reset } from "./reset";
import { rollback } from "./rollback";
import { show } from "./show";
import { status } from "./status";
import { trace } from "./trace";
import { up } from "./up";

/** Every `moss` command, in the order the help lists them. */
export const COMMANDS: readonly Command[] = [up, demo, deploy, batches, show, cassette, approve, reject, rollback, replayCmd, bisectCmd, diffCmd, markReviewed, reconcileCmd, audit, trace, flag, reset, regressions, status, candidates, operator, keys, credentials, provision];
