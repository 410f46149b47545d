"""Reports an agent's failures to Moss over the curator's HTTP ingest, as `moss.failure.v1` JSON.

Standard library only, so any Python agent can copy this one file. The contract it speaks is the JSON
Schema `libs/contracts/schemas/failure.v1.json`; nothing here knows Moss is written in TypeScript.

- `capture(...)` builds the event on the request thread (so the traceback and state are of that moment)
  and returns its id at once; a background thread delivers it. Nothing it does can raise into the caller.
- Delivery: `POST <MOSS_INGEST_URL>/v1/failures`. 202 = stored durably. Connection errors, 5xx, 408 and
  429 are retried with exponential backoff and the *same id* (the curator deduplicates by id); 413 with
  a snapshot is retried once without it; any other 4xx is a bug in the event and is dropped, loudly.
- Replay mode: when `MOSS_REPLAY_FAILURE_FILE` is set (Moss sets it inside offline replay containers),
  the event is appended to that file as one JSON line and the network is never touched. That is how a
  replay learns the candidate still fails.
- Turns: `with reporter.turn():` around one request snapshots the state directory first (the failure carries
  that before-turn state, which its replay restores, and the state it left as `afterSnapshot`), records the
  turn's start and a seed (`reporter.now()`, `reporter.random()` give them back in a replay), and records the
  outbound HTTP calls made through `http.client` — which `urllib.request` and `requests` use — into the failure's
  cassette. A recorded answer is read whole before the caller gets it (a streamed one arrives at once). In a
  trial (`MOSS_REPLAY_PROXY` set) every such call goes to Moss's replay proxy instead, HTTPS included, and is
  answered from the cassette. `httpx` (sync and async) is covered too when it is installed.
- Successes: `capture_success(..., response=...)` inside a turn records a turn that went well (`moss.success.v1`,
  `POST <MOSS_INGEST_URL>/v1/successes`), with its before-turn snapshot, its cassette and its answer, for Moss's
  regression replay: sampled at `sample_rate` (default env `MOSS_SAMPLE_RATE`, else 0), at most
  `successes_per_route` (10) a minute per route, sent once (a sample lost is only a sample), never in a trial.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import contextvars
import datetime as _dt
import http.client
import io
import json
import os
import queue
import random
import re
import sys
import tarfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

# Limits of the failure.v1 schema; longer values are cut so one big field never loses the whole event.
LIMITS = {
    "body": 1_000_000,
    "response_body": 100_000,
    "error_type": 200,
    "error_message": 10_000,
    "stack": 50_000,
    "log_line": 4_000,
    "log_lines": 200,
    "route": 200,
    "method": 16,
}
# Largest tar carried inline (its base64 fits the schema's 1.4 MB); bigger state dirs are not attached.
MAX_INLINE_SNAPSHOT_BYTES = 1024 * 1024
DEFAULT_REDACTED_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
AGENT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
GIT_SHA_RE = re.compile(r"^[a-f0-9]{7,64}$")
REPLAY_FAILURE_FILE_ENV = "MOSS_REPLAY_FAILURE_FILE"
SAMPLE_RATE_ENV = "MOSS_SAMPLE_RATE"
REPLAY_PROXY_ENV = "MOSS_REPLAY_PROXY"
REPLAY_TIME_ENV = "MOSS_REPLAY_TIME"
REPLAY_SEED_ENV = "MOSS_REPLAY_SEED"
# Per turn: calls recorded, bytes kept per body; a cassette bigger than this is not carried inline.
MAX_CALLS = 500
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_INLINE_CASSETTE_BYTES = 256 * 1024


class _Turn:
    def __init__(self, started_at: _dt.datetime, seed: int) -> None:
        self.started_at = started_at
        self.seed = seed
        self.t0 = time.monotonic()
        self.rng = random.Random(seed)
        self.calls: list[dict] = []
        self.truncated = False
        self.before: bytes | None = None


_current_turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar("moss_turn", default=None)


def _recorded_body(data: bytes) -> dict:
    truncated = len(data) > MAX_BODY_BYTES
    data = data[:MAX_BODY_BYTES]
    try:
        return {"text": data.decode("utf-8"), "base64": False, "truncated": truncated}
    except UnicodeDecodeError:
        return {"text": base64.b64encode(data).decode("ascii"), "base64": True, "truncated": truncated}


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


_patch = {"installed": False, "proxy": None, "redact": DEFAULT_REDACTED_HEADERS}


def _install_http_recorder(proxy: str | None, redact) -> None:
    """Wraps http.client once per process: records a turn's calls live, or sends every call to the replay proxy."""
    _patch["proxy"] = proxy
    _patch["redact"] = tuple(redact)
    if _patch["installed"]:
        return
    _patch["installed"] = True
    original_request = http.client.HTTPConnection.request
    original_getresponse = http.client.HTTPConnection.getresponse
    original_https_connect = http.client.HTTPSConnection.connect

    def request(self, method, url, body=None, headers=None, **kw):
        headers = dict(headers or {})
        scheme = "https" if isinstance(self, http.client.HTTPSConnection) else "http"
        default = 443 if scheme == "https" else 80
        host = getattr(self, "_moss_origin", None) or (self.host if self.port in (None, default) else f"{self.host}:{self.port}")
        full = url if url.startswith(("http://", "https://")) else f"{scheme}://{host}{url}"
        proxy = _patch["proxy"]
        if proxy:
            u = urllib.parse.urlsplit(proxy)
            if getattr(self, "_moss_origin", None) is None:
                self._moss_origin = host
                if self.sock is not None:
                    self.close()
                self.host, self.port = u.hostname, u.port or 80
                self._moss_plain = True
            headers["x-moss-replay-url"] = full
            path = urllib.parse.urlsplit(full)
            return original_request(self, method, (path.path or "/") + (f"?{path.query}" if path.query else ""), body, headers, **kw)
        turn = _current_turn.get()
        self._moss_call = None
        if turn is not None:
            if len(turn.calls) >= MAX_CALLS:
                turn.truncated = True
            else:
                redact = _patch["redact"]
                call = {"method": method.upper(), "url": full, "headers": {str(k).lower(): ("[redacted]" if str(k).lower() in redact else str(v)) for k, v in headers.items()}}
                if body is not None:
                    data = body.encode("utf-8") if isinstance(body, str) else bytes(body) if isinstance(body, (bytes, bytearray)) else None
                    if data is not None:
                        call["body"] = _recorded_body(data)
                turn.calls.append(call)
                self._moss_call = call
        try:
            return original_request(self, method, url, body, headers, **kw)
        except Exception as e:
            if getattr(self, "_moss_call", None) is not None:
                self._moss_call["error"] = _cut(repr(e), 2_000)
            raise

    def getresponse(self):
        res = original_getresponse(self)
        call = getattr(self, "_moss_call", None)
        if call is None:
            return res
        self._moss_call = None
        data = res.read()
        call["response"] = {"status": res.status, "headers": {k.lower(): v for k, v in res.getheaders()}, "body": _recorded_body(data)}
        # The caller reads what was recorded, as if from the socket.
        res.fp = io.BytesIO(data)
        res.length = len(data)
        res.chunked = False
        return res

    def https_connect(self):
        if getattr(self, "_moss_plain", False):
            return http.client.HTTPConnection.connect(self)
        return original_https_connect(self)

    http.client.HTTPConnection.request = request
    http.client.HTTPConnection.getresponse = getresponse
    http.client.HTTPSConnection.connect = https_connect
    _install_httpx_recorder()


def _install_httpx_recorder() -> None:
    """The same for httpx (sync and async transports), when it is installed: it does not use http.client."""
    try:
        import httpx
    except ImportError:
        return

    def redirect(request):
        proxy = urllib.parse.urlsplit(_patch["proxy"])
        original = str(request.url)
        request.headers["x-moss-replay-url"] = original
        request.url = request.url.copy_with(scheme=proxy.scheme or "http", host=proxy.hostname, port=proxy.port)
        request.headers["host"] = f"{proxy.hostname}:{proxy.port}" if proxy.port else proxy.hostname
        return request

    def begin(request):
        turn = _current_turn.get()
        if turn is None:
            return None
        if len(turn.calls) >= MAX_CALLS:
            turn.truncated = True
            return None
        redact = _patch["redact"]
        call = {"method": request.method.upper(), "url": str(request.url), "headers": {k.lower(): ("[redacted]" if k.lower() in redact else v) for k, v in request.headers.items()}}
        body = request.content if hasattr(request, "_content") else b""
        if body:
            call["body"] = _recorded_body(body)
        turn.calls.append(call)
        return call

    def finish(call, request, response, raw: bytes):
        # Recorded decoded (a replay serves it without content-encoding); handed on raw, as the transport gave it.
        decoded = httpx.Response(response.status_code, headers=response.headers, content=raw).content
        call["response"] = {"status": response.status_code, "headers": {k.lower(): v for k, v in response.headers.items()}, "body": _recorded_body(decoded)}
        return httpx.Response(response.status_code, headers=response.headers, content=raw, request=request, extensions=response.extensions)

    original_sync = httpx.HTTPTransport.handle_request
    original_async = httpx.AsyncHTTPTransport.handle_async_request

    def handle_request(self, request):
        if _patch["proxy"]:
            return original_sync(self, redirect(request))
        call = begin(request)
        if call is None:
            return original_sync(self, request)
        try:
            response = original_sync(self, request)
        except Exception as e:
            call["error"] = _cut(repr(e), 2_000)
            raise
        raw = b"".join(response.iter_raw())
        response.close()
        return finish(call, request, response, raw)

    async def handle_async_request(self, request):
        if _patch["proxy"]:
            return await original_async(self, redirect(request))
        call = begin(request)
        if call is None:
            return await original_async(self, request)
        try:
            response = await original_async(self, request)
        except Exception as e:
            call["error"] = _cut(repr(e), 2_000)
            raise
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        return finish(call, request, response, raw)

    httpx.HTTPTransport.handle_request = handle_request
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request


class ReporterConfigError(ValueError):
    """The reporter cannot work with these settings (raised at start-up, never from `capture`)."""


def _cut(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: limit - 12] + "…[truncated]"


def _now_iso() -> str:
    # `z.string().datetime()` wants UTC with a `Z`, not `+00:00`.
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def snapshot_directory(directory: str, max_bytes: int = MAX_INLINE_SNAPSHOT_BYTES) -> bytes:
    """Tar `directory` in memory, paths relative to it (`notes.json`, `sub/x`); raises ValueError over `max_bytes`."""

    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        # Integer mtimes and no owner names: no PAX records for ordinary files, identical tars for identical state.
        ti.mtime = int(ti.mtime)
        ti.uname = ti.gname = ""
        ti.uid = ti.gid = 0
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, name), arcname=name, recursive=True, filter=clean)
            if buf.tell() > max_bytes:
                raise ValueError(f"state directory {directory} needs more than the {max_bytes} bytes of tar allowed inline")
    data = buf.getvalue()
    if len(data) > max_bytes:
        raise ValueError(f"state directory {directory} produced {len(data)} bytes of tar, more than the {max_bytes} allowed inline")
    return data


class MossReporter:
    """Builds failure.v1 events and delivers them to the curator's HTTP ingest in the background."""

    def __init__(
        self,
        agent: str,
        version: str,
        ingest_url: str | None,
        token: str | None = None,
        state_dir: str | None = None,
        env_allow: list[str] | None = None,
        timeout_ms: int | None = None,
        log_lines: int = 50,
        max_attempts: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        request_timeout_s: float = 5.0,
        env: dict[str, str] | None = None,
        warn=None,
        record_calls: bool = True,
        sample_rate: float | None = None,
        successes_per_route: int = 10,
    ) -> None:
        if not AGENT_NAME_RE.match(agent or ""):
            raise ReporterConfigError(f"agent name {agent!r}: lowercase letters, digits, '-' or '_' (max 63), starting with a letter or digit")
        if not GIT_SHA_RE.match(version or ""):
            raise ReporterConfigError(f"version {version!r} is not a git commit sha; set MOSS_AGENT_VERSION to the commit the agent was built from")
        if timeout_ms is not None and not (0 < timeout_ms <= 600_000):
            raise ReporterConfigError(f"timeout_ms must be in 1..600000, got {timeout_ms}")
        self.agent = agent
        self.version = version
        self.env = dict(os.environ if env is None else env)
        self.replay_file = self.env.get(REPLAY_FAILURE_FILE_ENV) or None
        if not ingest_url and not self.replay_file:
            raise ReporterConfigError("no MOSS_INGEST_URL: set it to the curator's HTTP ingest, e.g. http://127.0.0.1:7421")
        self.ingest_url = (ingest_url or "").rstrip("/")
        if sample_rate is None:
            raw = self.env.get(SAMPLE_RATE_ENV, "")
            try:
                sample_rate = float(raw) if raw else 0.0
            except ValueError:
                raise ReporterConfigError(f"{SAMPLE_RATE_ENV}={raw!r}: a number from 0 to 1 (the share of good turns recorded)") from None
        if not (0.0 <= sample_rate <= 1.0):
            raise ReporterConfigError(f"sample_rate must be from 0 to 1, got {sample_rate}")
        if successes_per_route < 0:
            raise ReporterConfigError(f"successes_per_route must be 0 or more, got {successes_per_route}")
        self.sample_rate = sample_rate
        self.successes_per_route = successes_per_route
        self._recorded: "collections.OrderedDict[str, list[float]]" = collections.OrderedDict()
        self._sample_lock = threading.Lock()
        self.token = token or None
        self.state_dir = os.path.abspath(state_dir) if state_dir else None
        self.env_allow = list(env_allow or [])
        self.timeout_ms = timeout_ms
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.request_timeout_s = request_timeout_s
        self.warn = warn or (lambda m: print(f"[moss] {m}", file=sys.stderr, flush=True))
        self._lines: collections.deque[str] = collections.deque(maxlen=max(0, min(LIMITS["log_lines"], log_lines)) or 1)
        self._log_enabled = log_lines > 0
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=1_000)
        self._closing = threading.Event()
        self._sender = None
        self._replay_lock = threading.Lock()
        if record_calls:
            _install_http_recorder(self.env.get(REPLAY_PROXY_ENV) or None, DEFAULT_REDACTED_HEADERS)
        if not self.replay_file:
            self._sender = threading.Thread(target=self._send_loop, name="moss-reporter", daemon=True)
            self._sender.start()

    # -- the agent's side ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def turn(self):
        """One turn (one request): its before-turn state, its clock and seed, its outbound calls. See the module doc."""
        started = None
        rt = self.env.get(REPLAY_TIME_ENV)
        if rt:
            try:
                started = _dt.datetime.fromisoformat(rt.replace("Z", "+00:00"))
            except ValueError:
                started = None
        rs = self.env.get(REPLAY_SEED_ENV, "")
        seed = int(rs) if rs.isdigit() and int(rs) < 2**32 else random.SystemRandom().randrange(0, 2**32 - 1)
        t = _Turn(started or _dt.datetime.now(_dt.timezone.utc), seed)
        if self.state_dir and os.path.isdir(self.state_dir):
            try:
                t.before = snapshot_directory(self.state_dir)
            except Exception as e:  # noqa: BLE001
                self.warn(f"no before-turn snapshot: {e}")
        token = _current_turn.set(t)
        try:
            yield t
        finally:
            _current_turn.reset(token)

    def now(self) -> _dt.datetime:
        """The turn's clock (in a replay: the failing turn's); outside a turn, the real one (UTC)."""
        t = _current_turn.get()
        if t is None:
            return _dt.datetime.now(_dt.timezone.utc)
        return t.started_at + _dt.timedelta(seconds=time.monotonic() - t.t0)

    def random(self) -> float:
        """A draw from the turn's seeded generator (the same draws in a replay); outside a turn, random.random()."""
        t = _current_turn.get()
        return t.rng.random() if t is not None else random.random()

    def log(self, line: str) -> None:
        """Remember a log line; the last `log_lines` go with each failure."""
        if self._log_enabled:
            self._lines.append(_cut(line, LIMITS["log_line"]))

    def capture(self, *, error: BaseException, method: str | None = None, path: str | None = None, headers: dict | None = None,
                body: str | bytes | None = None, invocation: dict | None = None,
                route: str | None = None, response: dict | None = None, tags: dict | None = None,
                fingerprint: str | None = None) -> str | None:
        """Record a failure; returns its id (None only if the event could not even be built). Never raises.

        An HTTP agent passes the request (`method`, `path`, `headers`, `body`); a command agent passes
        `invocation={"args": [...], "stdin": "..."}` instead (its `response`: status = exit code, body = stdout)."""
        try:
            event = self.build_event(method=method, path=path, headers=headers, body=body, error=error, route=route,
                                     response=response, tags=tags, fingerprint=fingerprint, invocation=invocation)
        except Exception as e:  # noqa: BLE001 - reporting must never break the request path
            self.warn(f"could not build a failure event: {e!r}")
            return None
        try:
            if self.replay_file:
                with self._replay_lock, open(self.replay_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(event, ensure_ascii=False) + "\n")
            else:
                self._queue.put_nowait(event)
        except queue.Full:
            self.warn(f"failure {event['id']} dropped: {self._queue.maxsize} events already wait for the curator")
        except Exception as e:  # noqa: BLE001
            self.warn(f"failure {event['id']} could not be recorded: {e!r}")
        return event["id"]

    def build_event(self, *, error: BaseException, method: str | None = None, path: str | None = None, headers: dict | None = None,
                    body=None, route=None, response=None, tags=None, fingerprint=None, invocation=None) -> dict:
        """The failure.v1 event for `error`, raised while serving this request."""
        fid = uuid.uuid4().hex
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        event: dict = {
            "schema": "moss.failure.v1",
            "error": {
                "type": _cut(type(error).__name__, LIMITS["error_type"]),
                "message": _cut(str(error), LIMITS["error_message"]),
                "stack": _cut(stack, LIMITS["stack"]),
            },
            "tags": {str(k): str(v) for k, v in (tags or {}).items()},
        }
        self._turn_parts(event, fid, method=method, path=path, headers=headers, body=body, route=route, response=response, invocation=invocation)
        if fingerprint is not None:
            event["fingerprint"] = _cut(fingerprint, 200)
        turn = _current_turn.get()
        if turn is not None and turn.before is not None:
            event["snapshot"] = {"path": self.state_dir, "inlineBase64": base64.b64encode(turn.before).decode("ascii")}
            after = self._snapshot(fid)
            if after is not None and len(turn.before) + len(after["inlineBase64"]) * 3 // 4 <= MAX_INLINE_SNAPSHOT_BYTES // 2:
                event["afterSnapshot"] = after
        else:
            snap = self._snapshot(fid)
            if snap is not None:
                event["snapshot"] = snap
        if turn is not None:
            self._turn_record(event, fid, turn)
        return event

    def capture_success(self, *, method: str | None = None, path: str | None = None, headers: dict | None = None,
                        body: str | bytes | None = None, invocation: dict | None = None, route: str | None = None,
                        response: dict) -> str | None:
        """Record a turn that went well, for regression replay: sampled (`sample_rate`, at most `successes_per_route` a
        minute per route) and, inside `turn()`, sent with its before-turn snapshot, its cassette and its `response`.
        Returns its id once handed to the sender, or None when it was not sampled or could not be recorded faithfully
        (a warning says why). Never raises; never retried (a sample lost is only a sample); nothing in a trial."""
        if self.replay_file or self._closing.is_set() or not self._sampled(route):
            return None
        sid = uuid.uuid4().hex
        try:
            event = self.build_success(sid, method=method, path=path, headers=headers, body=body, invocation=invocation, route=route, response=response)
        except Exception as e:  # noqa: BLE001 - reporting must never break the request path
            self.warn(f"success {sid} not recorded: {e!r}")
            return None
        if event is None:
            return None
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.warn(f"success {sid} dropped: {self._queue.maxsize} events already wait for the curator")
            return None
        return sid

    def build_success(self, sid: str, *, response: dict, method=None, path=None, headers=None, body=None, invocation=None, route=None) -> dict | None:
        """The success.v1 event of this turn; None (with a warning) when its replay could not be faithful."""
        turn = _current_turn.get()
        if turn is None and self.state_dir:
            self.warn(f"success {sid} not recorded: capture_success was called outside reporter.turn(), so the state it started from is unknown")
            return None
        if turn is not None and turn.truncated:
            self.warn(f"success {sid} not recorded: its turn made more outbound calls (or bigger bodies) than a cassette keeps")
            return None
        if turn is not None and self.state_dir and turn.before is None:
            self.warn(f"success {sid} not recorded: the state of {self.state_dir} before the turn could not be kept")
            return None
        event: dict = {"schema": "moss.success.v1"}
        self._turn_parts(event, sid, method=method, path=path, headers=headers, body=body, route=route, response=response, invocation=invocation)
        if turn is not None:
            if turn.before is not None:
                event["snapshot"] = {"path": self.state_dir, "inlineBase64": base64.b64encode(turn.before).decode("ascii")}
            if not self._turn_record(event, sid, turn) and turn.calls:
                self.warn(f"success {sid} not recorded: its cassette could not be kept")
                return None
        return event

    def _sampled(self, route: str | None) -> bool:
        if self.sample_rate <= 0 or random.random() >= self.sample_rate:
            return False
        now = time.monotonic()
        key = route or ""
        with self._sample_lock:
            recent = [t for t in self._recorded.pop(key, []) if now - t < 60.0]
            if len(recent) >= self.successes_per_route:
                self._recorded[key] = recent
                return False
            recent.append(now)
            self._recorded[key] = recent
            # Routes seen long ago go first: the table stays small however many routes an agent has.
            while len(self._recorded) > 1_000:
                self._recorded.popitem(last=False)
        return True

    def _turn_parts(self, event: dict, eid: str, *, method, path, headers, body, route, response, invocation) -> None:
        """What a failure and a success share: who, when, what was asked and answered, the logs and env."""
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8", errors="replace")
        event.update({
            "id": eid,
            "agent": self.agent,
            "version": self.version,
            "occurredAt": _now_iso(),
            "logs": list(self._lines)[-LIMITS["log_lines"]:] if self._log_enabled else [],
            "env": {k: self.env[k] for k in self.env_allow if k in self.env},
        })
        if invocation is not None:
            event["invocation"] = {"args": [str(a) for a in invocation.get("args", [])]}
            if invocation.get("stdin") is not None:
                stdin = invocation["stdin"]
                event["invocation"]["stdin"] = _cut(stdin.decode("utf-8", errors="replace") if isinstance(stdin, (bytes, bytearray)) else str(stdin), LIMITS["body"])
        else:
            p = path or "/"
            event["request"] = {
                "method": _cut((method or "POST").upper(), LIMITS["method"]),
                "path": p if p.startswith("/") else "/" + p,
                "headers": {k.lower(): ("[redacted]" if k.lower() in DEFAULT_REDACTED_HEADERS else str(v)) for k, v in (headers or {}).items()},
            }
            if body is not None:
                event["request"]["body"] = _cut(body, LIMITS["body"])
        if route is not None:
            event["route"] = _cut(route, LIMITS["route"])
        if response is not None:
            r = {"status": int(response["status"])}
            if response.get("body") is not None:
                r["body"] = _cut(response["body"], LIMITS["response_body"])
            event["response"] = r
        if self.timeout_ms is not None:
            event["timeoutMs"] = self.timeout_ms

    def _turn_record(self, event: dict, eid: str, turn: "_Turn") -> bool:
        """The turn's clock, seed and cassette on the event; False when its calls were too big to carry inline."""
        event["turn"] = {"startedAt": _iso(turn.started_at.astimezone(_dt.timezone.utc)), "seed": turn.seed}
        if not turn.calls:
            return True
        cassette = {"schema": "moss.cassette.v1", "failureId": eid, "calls": list(turn.calls), "truncated": turn.truncated}
        if len(json.dumps(cassette)) <= MAX_INLINE_CASSETTE_BYTES:
            event["cassette"] = {"inline": cassette}
            return True
        self.warn(f"{event['schema'].split('.')[1]} {eid}: no cassette attached: its {len(turn.calls)} calls are over the {MAX_INLINE_CASSETTE_BYTES} bytes carried inline")
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Give queued events up to `timeout_s` to be delivered (call on shutdown)."""
        if self._sender is None:
            return
        self._closing.set()
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._sender.join(timeout_s)
        left = self._queue.qsize()
        if self._sender.is_alive() or left:
            self.warn(f"shutting down with undelivered failures (about {left + 1}); they are lost")

    # -- internals -------------------------------------------------------------------------------------

    def _snapshot(self, fid: str) -> dict | None:
        if not self.state_dir:
            return None
        if not os.path.isdir(self.state_dir):
            self.warn(f"failure {fid}: state directory {self.state_dir} does not exist; no snapshot attached")
            return None
        try:
            tar = snapshot_directory(self.state_dir)
        except Exception as e:  # noqa: BLE001
            self.warn(f"failure {fid}: no state snapshot attached ({e})")
            return None
        return {"path": self.state_dir, "inlineBase64": base64.b64encode(tar).decode("ascii")}

    def _send_loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self._deliver(event)
            except Exception as e:  # noqa: BLE001 - the sender thread must survive anything
                self.warn(f"failure {event.get('id')} not delivered: {e!r}")

    def _deliver(self, event: dict) -> None:
        if event.get("schema") == "moss.success.v1":
            status, detail = self._post(event, "/v1/successes")
            if status != 202:
                self.warn(f"success {event['id']} not recorded: the curator answered {status or 'nothing'} ({detail})")
            return
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            status, detail = self._post(event)
            if status == 202:
                return
            if status == 413 and "snapshot" in event:
                self.warn(f"failure {event['id']}: the curator refused the event's size; sending it without the state snapshot")
                event = {k: v for k, v in event.items() if k != "snapshot"}
                continue
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                # The event or the token is wrong: resending the same bytes cannot help.
                self.warn(f"failure {event['id']} rejected by the curator ({status}): {detail}")
                return
            if attempt == self.max_attempts:
                break
            # While shutting down, retry faster: close() waits a bounded time.
            wait = min(self.max_backoff_s, delay) * (0.5 + random.random() / 2)
            if self._closing.is_set():
                wait = min(wait, 0.2)
            self.warn(f"failure {event['id']}: curator unavailable ({detail}); retry {attempt}/{self.max_attempts - 1} in {wait:.1f}s")
            time.sleep(wait)
            delay *= 2
        self.warn(f"failure {event['id']} not delivered after {self.max_attempts} attempts; giving up")

    def _post(self, event: dict, path: str = "/v1/failures") -> tuple[int | None, str]:
        data = json.dumps(event, ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(f"{self.ingest_url}{path}", data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout_s) as res:
                return res.status, res.read(2_000).decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            body = e.read(4_000).decode("utf-8", errors="replace")
            return e.code, body
        except (urllib.error.URLError, OSError) as e:
            return None, str(getattr(e, "reason", e))
