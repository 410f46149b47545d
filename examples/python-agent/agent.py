"""A small note-taking agent in Python, with a real bug, that reports its failures to Moss over HTTP.

POST /v1/chat {"session": "...", "message": "..."}:
  "remember buy milk #shopping"  -> remember tool, args {"text": "buy milk", "tags": ["shopping"]}
  "recall milk"                  -> recall tool,   args {"query": "milk"}
  anything else                  -> echo tool
GET /health -> {"ok": true, "agent", "version"}

State: $STATE_DIR/notes.json ({"notes": [{"text", "tags"}], "turns": n}), replaced atomically.

Standard library only. Run: PORT=8081 MOSS_INGEST_URL=http://127.0.0.1:7421 python3 agent.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moss_report import MossReporter, ReporterConfigError  # noqa: E402

MAX_BODY = 64 * 1024


class BadRequest(Exception):
    """The caller's fault: answered 400, not reported."""


# --- state ---------------------------------------------------------------------------------------------


class Notes:
    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        self.file = os.path.join(state_dir, "notes.json")
        self.lock = threading.Lock()
        os.makedirs(state_dir, exist_ok=True)

    def read(self) -> dict:
        try:
            with open(self.file, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {"notes": [], "turns": 0}

    def update(self, change) -> dict:
        with self.lock:
            state = self.read()
            change(state)
            tmp = f"{self.file}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(tmp, self.file)
            return state


# --- tools ---------------------------------------------------------------------------------------------

# What the planner may call. `tags` is optional: a note without hashtags has none.
TOOL_SPECS = {
    "remember": {"required": ["text"], "optional": ["tags"]},
    "recall": {"required": ["query"], "optional": []},
    "echo": {"required": ["text"], "optional": []},
}


def plan(message: str) -> tuple[str, dict]:
    """Turns a message into a tool call, the way an LLM's function call would: optional fields only when present."""
    m = re.match(r"^\s*remember\s+(.+)$", message, re.I | re.S)
    if m:
        words = m.group(1).split()
        tags = [w[1:] for w in words if w.startswith("#") and len(w) > 1]
        text = " ".join(w for w in words if not w.startswith("#"))
        args: dict = {"text": text}
        if tags:
            args["tags"] = tags
        return "remember", args
    m = re.match(r"^\s*recall\s+(.+)$", message, re.I | re.S)
    if m:
        return "recall", {"query": m.group(1).strip()}
    return "echo", {"text": message}


def tool_remember(args: dict, notes: Notes) -> str:
    text = args["text"]
    tags = [t.lower() for t in args["tags"]]
    state = notes.update(lambda s: s["notes"].append({"text": text, "tags": tags}))
    suffix = f" ({', '.join(tags)})" if tags else ""
    return f"noted #{len(state['notes'])}: {text}{suffix}"


def tool_recall(args: dict, notes: Notes) -> str:
    q = args["query"].lower()
    found = [n for n in notes.read()["notes"] if q in n["text"].lower() or q in n.get("tags", [])]
    if not found:
        return f"nothing about {args['query']!r}"
    return "; ".join(n["text"] for n in found)


def tool_echo(args: dict, _notes: Notes) -> str:
    return f"you said: {args['text']}"


TOOLS = {"remember": tool_remember, "recall": tool_recall, "echo": tool_echo}


# --- HTTP ----------------------------------------------------------------------------------------------


def make_handler(agent: str, version: str, notes: Notes, reporter: MossReporter):
    def log(line: str) -> None:
        reporter.log(line)
        print(line, flush=True)

    class Handler(BaseHTTPRequestHandler):
        server_version = "moss-python-agent/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *a) -> None:  # the default writes every request to stderr
            pass

        def send_json(self, status: int, body: dict) -> str:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return data.decode("utf-8")

        def do_GET(self) -> None:
            if self.path == "/health":
                self.send_json(200, {"ok": True, "agent": agent, "version": version})
            else:
                self.send_json(404, {"error": f"no route GET {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/v1/chat":
                self.send_json(404, {"error": f"no route POST {self.path}"})
                return
            # One turn: the state before it, its clock and seed, and its outbound calls go with a failure.
            with reporter.turn():
                self.chat()

        def chat(self) -> None:
            raw = ""
            tool = None
            try:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    raise BadRequest(f"body larger than {MAX_BODY} bytes")
                raw = self.rfile.read(length).decode("utf-8", errors="replace")
                try:
                    req = json.loads(raw or "{}")
                except json.JSONDecodeError as e:
                    raise BadRequest(f"body is not JSON: {e}") from None
                if not isinstance(req, dict) or not isinstance(req.get("message"), str) or not req["message"].strip():
                    raise BadRequest('expected {"session": "...", "message": "..."}')
                tool, args = plan(req["message"])
                log(f"chat session={req.get('session', '-')} tool={tool} args={json.dumps(args)[:200]}")
                answer = TOOLS[tool](args, notes)
                notes.update(lambda s: s.__setitem__("turns", s.get("turns", 0) + 1))
                out = {"tool": tool, "answer": answer}
                self.send_json(200, out)
                # A good turn, for regression replay (sampled at MOSS_SAMPLE_RATE; nothing in a trial).
                reporter.capture_success(method=self.command, path=self.path, headers=dict(self.headers.items()), body=raw,
                                         route=tool, response={"status": 200, "body": json.dumps(out)})
            except BadRequest as e:
                self.send_json(400, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 - anything else is the agent's bug: answer 500, hand it to Moss
                log(f"tool {tool or '-'} failed: {type(e).__name__}: {e}")
                body = {"error": "internal error", "detail": f"{type(e).__name__}: {e}"}
                failure_id = reporter.capture(
                    method=self.command,
                    path=self.path,
                    headers=dict(self.headers.items()),
                    body=raw,
                    error=e,
                    route=tool,
                    response={"status": 500, "body": json.dumps(body)},
                )
                self.send_json(500, {**body, "failureId": failure_id})

    return Handler


def main() -> int:
    agent = os.environ.get("AGENT_NAME", "py-notes")
    version = os.environ.get("MOSS_AGENT_VERSION", "0000000")
    port = int(os.environ.get("PORT", "8080"))
    state_dir = os.environ.get("STATE_DIR", "/data")
    try:
        reporter = MossReporter(
            agent=agent,
            version=version,
            ingest_url=os.environ.get("MOSS_INGEST_URL"),
            token=os.environ.get("MOSS_INGEST_TOKEN"),
            state_dir=state_dir,
            env_allow=[k for k in os.environ.get("MOSS_ENV_ALLOW", "TZ,AGENT_MODE").split(",") if k],
            timeout_ms=int(os.environ.get("AGENT_TIMEOUT_MS", "10000")),
        )
    except ReporterConfigError as e:
        print(f"python-agent: {e}", file=sys.stderr, flush=True)
        return 2
    notes = Notes(state_dir)
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(agent, version, notes, reporter))
    server.daemon_threads = True

    def stop(_sig, _frame) -> None:
        # shutdown() blocks until serve_forever returns, so it must run off the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"msg": "listening", "agent": agent, "version": version, "port": port}), flush=True)
    server.serve_forever()
    server.server_close()
    reporter.close()
    print(json.dumps({"msg": "stopped"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
