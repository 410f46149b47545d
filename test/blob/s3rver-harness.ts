import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import S3rver from "s3rver";

/** s3rver's single built-in account. */
export const S3RVER_KEY = "S3RVER";

export interface RunningS3rver {
  port: number;
  /** s3rver's storage root: `<directory>/<bucket>/<key>._S3rver_object` holds an object's bytes. */
  directory: string;
  stop(): Promise<void>;
}

/** An in-process S3 server on 127.0.0.1 and a free port, storing into a fresh temp directory. */
export async function startS3rver(): Promise<RunningS3rver> {
  const directory = await mkdtemp(path.join(tmpdir(), "moss-s3rver-"));
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory });
  const { port } = await server.run();
  return {
    port,
    directory,
    async stop() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
