// s3rver 3.7 ships no types: the part of its API the tests use.
declare module "s3rver" {
  import type { AddressInfo } from "node:net";

  interface S3rverOptions {
    /** Default "localhost". */
    address?: string;
    /** Default 4568; 0 picks a free port (read it from what `run()` resolves to). */
    port?: number;
    /** Default false: logs every request. */
    silent?: boolean;
    /** Where buckets and objects are stored. Default `<os.tmpdir()>/s3rver`. */
    directory?: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    serviceEndpoint?: string;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }

  class S3rver {
    constructor(options?: S3rverOptions);
    /** Starts listening; resolves to the bound address. */
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
    reset(): void;
  }

  export default S3rver;
}
