/**
 * Variables that change how a runtime loads or runs code (preloads, search paths, interpreter options): a failure
 * event that sets one could run anything inside a trial. They are never taken from an event, whatever the config says.
 */
const LOADER = /^(NODE_OPTIONS|NODE_PATH|NODE_EXTRA_CA_CERTS|NODE_REPL_EXTERNAL_MODULE|LD_.*|DYLD_.*|PYTHON.*|PERL5.*|PERLLIB|RUBYOPT|RUBYLIB|GEM_.*|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|CLASSPATH|BASH_ENV|ENV|SHELLOPTS|PS4|IFS|PATH|HOME|GCONV_PATH|MALLOC_.*|GLIBC_TUNABLES|TMPDIR)$/i;

export function isLoaderVariable(name: string): boolean {
  return LOADER.test(name);
}

/** Variables that carry a Moss credential (an agent's NATS seed): never recorded, never replayed. */
export function isCredentialVariable(name: string): boolean {
  return name.toUpperCase() === "MOSS_NATS_SEED";
}
