/** One health probe's answer: healthy or not, and in words what it saw (for a rollback's reason). */
export interface ProbeResult {
  healthy: boolean;
  detail: string;
}

/**
 * A GET of the agent's health endpoint: healthy on a 2xx within `timeoutMs`. A 404 says plainly that nothing is served
 * at that path — usually `agents.<name>.healthPath` not matching the agent — instead of passing for a sick agent.
 */
export function httpProbe(url: string, timeoutMs: number, agent = "<name>"): () => Promise<ProbeResult> {
  return async () => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      if (res.ok) return { healthy: true, detail: `GET ${url} answered ${res.status}` };
      if (res.status === 404)
        return { healthy: false, detail: `GET ${url} answered 404: the agent serves nothing there; if its health endpoint is elsewhere, set agents.${agent}.healthPath to it` };
      return { healthy: false, detail: `GET ${url} answered ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return { healthy: false, detail: `GET ${url} failed: ${e.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : (e.cause?.code ?? e.message)}` };
    }
  };
}
