/** An HTTP GET health probe: healthy = 2xx within the timeout. */
export function httpProbe(url: string, timeoutMs: number): () => Promise<boolean> {
  return async () => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  };
}
