/**
 * Time travel, the rewriter's part: the version an operator named (a commit, tag or branch of the agent's repository,
 * `live`, `last-good`) found as a commit, and its image made sure of — reused when the engine has it (every candidate
 * and every deployment is tagged by its commit), built from the repository otherwise. Then the replayer takes over.
 * A version that names nothing, or an image that does not build, ends the request with the reason.
 */
import { imageTag, type DeploymentStore, type TimeTravelStore } from "@moss/batch";
import type { HandlerContext } from "@moss/bus";
import { Consumers, Messages, type Publish, type TimeTravelRequest } from "@moss/contracts";
import { Codes, errorCode, isTerminal, MossError } from "@moss/errors";
import { resolveCommit } from "@moss/git";
import type { Runtime } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";

export interface VersionDeps {
  /** The agent's repository; throws UnknownAgentError for an agent the config does not name. */
  agent(name: string): { repo: string };
  runtime: Pick<Runtime, "buildImage" | "imageExists">;
  deployments: Pick<DeploymentStore, "get">;
  travels: TimeTravelStore;
  publish: Publish;
  log: Logger;
}

/** A version name that names nothing this agent has (terminal: asking again finds nothing either). */
export class UnknownVersionError extends MossError {
  override name = "UnknownVersionError";
  constructor(message: string) {
    super(Codes.COMMIT_NOT_FOUND, message);
  }
}

/** The commit a version name stands for. */
export async function resolveVersion(agent: string, version: string, repo: string, deployments: Pick<DeploymentStore, "get">): Promise<string> {
  if (version === "live" || version === "last-good") {
    const dep = await deployments.get(agent);
    if (!dep) throw new UnknownVersionError(`agent ${agent} has never been deployed, so it has no ${version} version: name a commit, tag or branch of ${repo}, or \`moss deploy ${agent}\` first`);
    if (version === "live") return dep.version;
    const good = dep.lastGood[0];
    if (!good) throw new UnknownVersionError(`agent ${agent} has no last-known-good version yet (none has passed its bake): name a commit, tag or branch of ${repo}`);
    return good.version;
  }
  try {
    return await resolveCommit(repo, version);
  } catch (err) {
    if (errorCode(err) === Codes.COMMIT_NOT_FOUND.code) {
      throw new UnknownVersionError(`${JSON.stringify(version)} names no commit of agent ${agent} (${repo}): give a commit (or a prefix of one), a tag, a branch such as moss/<batch>/<attempt>, \`live\` or \`last-good\``);
    }
    throw err;
  }
}

/** The image of `commit`: the one the engine has (every candidate and deployment is tagged by its commit), else built from the repository. */
export async function readyImage(agent: string, commit: string, repo: string, deps: Pick<VersionDeps, "runtime" | "log">): Promise<{ image: string; built: boolean; buildMs: number }> {
  const image = imageTag(agent, commit);
  const t0 = Date.now();
  if (await deps.runtime.imageExists(image)) return { image, built: false, buildMs: 0 };
  deps.log.info("building a version's image for a replay", { agent, commit, image });
  await deps.runtime.buildImage({ repoDir: repo, commit, tag: image, labels: { "moss.agent": agent } });
  return { image, built: true, buildMs: Date.now() - t0 };
}

export async function onTimeTravel(msg: TimeTravelRequest, deps: VersionDeps, ctx?: Pick<HandlerContext, "deliveryCount">): Promise<void> {
  const log = deps.log.child({ travel: msg.id, agent: msg.agent, version: msg.version });
  const cur = await deps.travels.get(msg.id);
  // Past this stage already (a redelivery after the ready message went out): nothing to do again.
  if (cur && cur.state !== "requested" && cur.state !== "building") return;
  const lastDelivery = (ctx?.deliveryCount ?? 1) >= Consumers.rewriterVersions.maxDeliver;
  try {
    const { repo } = deps.agent(msg.agent);
    const commit = await resolveVersion(msg.agent, msg.version, repo, deps.deployments);
    await deps.travels.update(msg.id, () => ({ state: "building", commit, image: imageTag(msg.agent, commit) }));
    const { image, built, buildMs } = await readyImage(msg.agent, commit, repo, deps);
    await deps.travels.update(msg.id, () => ({ state: "replaying", built, buildMs }));
    await deps.publish(Messages.timeTravelReady, { ...msg, commit, image, built, buildMs });
    log.info("version ready for a replay", { commit, image, built, buildMs, cases: msg.cases.length });
  } catch (err) {
    if (!isTerminal(err) && !lastDelivery) throw err;
    const error = `version ${msg.version} of ${msg.agent} could not be made ready: ${(err as Error).message}`;
    log.warn("a replay's version could not be made ready", { err: (err as Error).message });
    await deps.travels.update(msg.id, () => ({ state: "failed", error }));
    await deps.publish(Messages.timeTravelDone, { requestId: msg.id, agent: msg.agent, version: msg.version, error, results: [], regressions: [], at: new Date().toISOString() });
  }
}
