#!/usr/bin/env python3
"""WebSocket interop peer for wsio's tests, built on the `websockets` package.

Install: python3 -m pip install -r tests/python/requirements.txt
(a virtualenv is best, e.g. python3 -m venv ~/.cache/wsio-tools/py-venv).
permessage-deflate is off unless --compression deflate; keepalive pings are off
unless --ping-interval is given, so the wire traffic is only what you ask for.

SERVER MODE
    ws_peer.py server [--host 127.0.0.1] [--port 0] [--max-size 16777216]
                      [--echo-fragment-size N] [--compression none|deflate]
                      [--ping-interval SECONDS]

  Echo server: a text message is echoed as text, a binary one as binary. With
  --echo-fragment-size N > 0 the echo is sent fragmented, N bytes per frame
  (text is split on UTF-8 byte boundaries, not code points). The text message
  "close:CODE:REASON" (or "close:CODE") is not echoed: the server closes the
  connection with that code and reason instead. --max-size caps an incoming
  message (bytes; 0 = no limit). When listening it prints "READY <port>" on
  stdout (flushed; with --port 0 it is the port the OS chose). It serves any
  number of connections until SIGINT/SIGTERM; connection events go to stderr.

CLIENT MODE
    ws_peer.py client --url ws://127.0.0.1:PORT/path --script FILE|-
                      [--timeout 10] [--max-size 16777216] [--compression none|deflate]

  Connects, runs the steps of a JSON-lines script (FILE, or stdin for "-"), and
  prints one line per step:
      ok   <n> <op> <detail>
      FAIL <n> <op> <detail>: <why>
      skip <n> <op> <detail>          (steps after the first failure)
  then "RESULT pass=P fail=F skip=S". Exit status 0 only when every step passed;
  1 when a step failed or the connection could not be opened; 2 on a bad script
  or bad arguments. If the connection is still open after the last step, the
  client closes it with 1000 (not a step).

SCRIPT FORMAT: one JSON object per line; blank lines and lines starting with
"#" are ignored. Every step has "op"; optional on any step: "name" (shown in
the result line) and "timeout" (seconds, overrides --timeout).

  Payloads (for send, send_fragmented, expect, ping) use exactly one of:
      "text": "héllo"                 the UTF-8 encoding of the string
      "hex": "48656c6c6f"             raw bytes (may be invalid UTF-8 even for
                                      a text frame: useful to provoke 1007)
      "repeat": "ab", "count": N      "ab" * N, UTF-8 encoded (large payloads)
      "repeat_hex": "a5", "count": N  bytes.fromhex("a5") * N
  "type" is "text" (default) or "binary": the frame opcode, not the encoding.

  {"op": "send", "type": "text", "text": "hello"}
      Send one unfragmented message.
  {"op": "send_fragmented", "type": "binary", "repeat_hex": "00ff", "count": 1000,
   "fragment_size": 100}
  {"op": "send_fragmented", "type": "text", "fragments": ["he", "llo"]}
      Send one fragmented message through websockets' async-iterator send():
      each fragment is a frame with FIN=0, then websockets ends the message
      with an empty continuation frame with FIN=1. Either "fragment_size" with
      a payload (split on byte boundaries), or "fragments": a list of strings
      (UTF-8 text for type text, hex for type binary). Optional "delay":
      seconds to sleep between fragments.
  {"op": "expect_echo"}
      Receive the next message; it must equal the last message sent (same
      type, same bytes; for send_fragmented, the whole message).
  {"op": "expect", "type": "text", "text": "hi"}
      Receive the next message; it must equal the given payload and type.
  {"op": "ping", "hex": "0102"}
      Send a ping (payload optional) and wait for the matching pong.
  {"op": "close", "code": 1000, "reason": "bye"}
      Start the closing handshake and wait for it to finish. "code": null
      sends a close frame without a status code. Defaults: 1000, "".
  {"op": "expect_close", "code": 1000, "reason": "bye"}
      Wait until the connection is closed (by the peer, or by an earlier
      "close" step) and check the close code the PEER sent (1005 if its close
      frame had no code, 1006 if there was no close frame). "reason" is
      optional; "code" may be a list of acceptable codes. A data message that
      arrives first is a failure unless "ignore_messages": true.
  {"op": "sleep", "seconds": 0.2}
  {"op": "expect_extension", "contains": "permessage-deflate"}
      Check the server's Sec-WebSocket-Extensions answer: it must contain
      each string of "contains" (a string or a list); "contains": [] with
      "absent": true checks there is no answer at all.

Example, against `ws_peer.py server`:
  {"op": "send", "text": "hello"}
  {"op": "expect_echo"}
  {"op": "send", "type": "binary", "repeat_hex": "a5", "count": 1048576}
  {"op": "expect_echo", "timeout": 30}
  {"op": "send_fragmented", "type": "text", "text": "héllo wörld", "fragment_size": 3}
  {"op": "expect_echo"}
  {"op": "send", "text": "close:4001:done"}
  {"op": "expect_close", "code": 4001, "reason": "done"}
"""

import argparse
import asyncio
import json
import signal
import sys

try:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover
    sys.stderr.write(
        "ws_peer.py needs the websockets package (>= 13): "
        "python3 -m pip install -r tests/python/requirements.txt\n"
    )
    sys.exit(2)

DEFAULT_MAX_SIZE = 16 * 1024 * 1024


def eprint(*args):
    print(*args, file=sys.stderr, flush=True)


def max_size_arg(value):
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n or None


def compression_arg(value):
    if value not in ("none", "deflate"):
        raise argparse.ArgumentTypeError("none or deflate")
    return None if value == "none" else "deflate"


# ---------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------


def split_bytes(data, size):
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


async def send_message(ws, is_text, data, fragment_size=0, delay=0.0):
    """Send bytes as one text/binary message, optionally fragmented."""
    if not fragment_size:
        await ws.send(data, text=is_text)
        return
    chunks = split_bytes(data, fragment_size)

    async def fragments():
        for i, chunk in enumerate(chunks):
            if i and delay:
                await asyncio.sleep(delay)
            yield chunk

    await ws.send(fragments(), text=is_text)


async def run_server(args):
    async def handler(ws):
        peer = "%s:%s" % tuple(ws.remote_address[:2])
        eprint("open %s %s" % (peer, ws.request.path))
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    parts = msg.split(":", 2)
                    code = int(parts[1])
                    reason = parts[2] if len(parts) > 2 else ""
                    eprint("closing %s with %d %r" % (peer, code, reason))
                    await ws.close(code, reason)
                    break
                if isinstance(msg, str):
                    await send_message(ws, True, msg.encode(), args.echo_fragment_size)
                else:
                    await send_message(ws, False, msg, args.echo_fragment_size)
        except ConnectionClosed:
            pass
        eprint(
            "closed %s peer_code=%s peer_reason=%r" % (peer, ws.close_code, ws.close_reason)
        )

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None)
        )
    async with serve(
        handler,
        args.host,
        args.port,
        max_size=args.max_size,
        compression=args.compression,
        ping_interval=args.ping_interval,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print("READY %d" % port, flush=True)
        await stop
    return 0


# ---------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------


class ScriptError(Exception):
    pass


class StepFailed(Exception):
    pass


def payload_of(step, required=True):
    """Return the bytes a step's payload fields describe."""
    keys = [k for k in ("text", "hex", "repeat", "repeat_hex") if k in step]
    if len(keys) > 1:
        raise ScriptError("use only one of text/hex/repeat/repeat_hex, got %s" % keys)
    if not keys:
        if required:
            raise ScriptError("missing payload (text, hex, repeat or repeat_hex)")
        return b""
    key = keys[0]
    value = step[key]
    if not isinstance(value, str):
        raise ScriptError("%s must be a string" % key)
    try:
        if key == "text":
            return value.encode()
        if key == "hex":
            return bytes.fromhex(value)
        count = step.get("count")
        if not isinstance(count, int) or count < 0:
            raise ScriptError("%s needs a non-negative integer count" % key)
        unit = value.encode() if key == "repeat" else bytes.fromhex(value)
        return unit * count
    except ValueError as e:
        raise ScriptError("bad hex in %s: %s" % (key, e))


def type_of(step):
    t = step.get("type", "text")
    if t not in ("text", "binary"):
        raise ScriptError('type must be "text" or "binary"')
    return t


def describe(kind, data):
    if kind == "text":
        try:
            s = data.decode()
            shown = repr(s if len(s) <= 24 else s[:24] + "...")
        except UnicodeDecodeError:
            shown = "<invalid utf-8>"
        return "text len=%d %s" % (len(data), shown)
    shown = data[:12].hex() + ("..." if len(data) > 12 else "")
    return ("binary len=%d %s" % (len(data), shown)).rstrip()


def compare(want_kind, want, got_msg):
    got_kind = "text" if isinstance(got_msg, str) else "binary"
    got = got_msg.encode() if isinstance(got_msg, str) else bytes(got_msg)
    if got_kind != want_kind or got != want:
        where = ""
        if got_kind == want_kind:
            n = next(
                (i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                min(len(got), len(want)),
            )
            where = ", first difference at byte %d" % n
        raise StepFailed(
            "got %s, want %s%s"
            % (describe(got_kind, got), describe(want_kind, want), where)
        )


def parse_script(text):
    steps = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            step = json.loads(line)
        except ValueError as e:
            raise ScriptError("line %d: invalid JSON: %s" % (lineno, e))
        if not isinstance(step, dict) or not isinstance(step.get("op"), str):
            raise ScriptError('line %d: expected an object with "op"' % lineno)
        try:
            prepare(step)
        except ScriptError as e:
            raise ScriptError("line %d (%s): %s" % (lineno, step["op"], e))
        steps.append(step)
    return steps


def prepare(step):
    """Validate a step and precompute its payload; sets step['_detail']."""
    op = step["op"]
    if op in ("send", "expect"):
        step["_type"] = type_of(step)
        step["_data"] = payload_of(step)
        step["_detail"] = describe(step["_type"], step["_data"])
    elif op == "send_fragmented":
        kind = step["_type"] = type_of(step)
        if "fragments" in step:
            frags = step["fragments"]
            if not isinstance(frags, list) or not frags or not all(
                isinstance(f, str) for f in frags
            ):
                raise ScriptError("fragments must be a non-empty list of strings")
            try:
                chunks = [f.encode() if kind == "text" else bytes.fromhex(f) for f in frags]
            except ValueError as e:
                raise ScriptError("bad hex fragment: %s" % e)
        else:
            size = step.get("fragment_size")
            if not isinstance(size, int) or size <= 0:
                raise ScriptError("needs fragments or a positive fragment_size")
            chunks = split_bytes(payload_of(step), size)
        step["_chunks"] = chunks
        step["_data"] = b"".join(chunks)
        step["_detail"] = "%s in %d fragments" % (
            describe(kind, step["_data"]),
            len(chunks),
        )
    elif op == "expect_echo":
        step["_detail"] = ""
    elif op == "ping":
        step["_data"] = payload_of(step, required=False)
        if len(step["_data"]) > 125:
            raise ScriptError("ping payload is limited to 125 bytes")
        step["_detail"] = "len=%d" % len(step["_data"])
    elif op == "close":
        code = step.get("code", 1000)
        if code is not None and not isinstance(code, int):
            raise ScriptError("code must be an integer or null")
        step["_detail"] = "code=%s reason=%r" % (code, step.get("reason", ""))
    elif op == "expect_close":
        code = step.get("code")
        codes = code if isinstance(code, list) else [code] if code is not None else None
        if codes is not None and not all(isinstance(c, int) for c in codes):
            raise ScriptError("code must be an integer or a list of integers")
        step["_codes"] = codes
        step["_detail"] = "code=%s%s" % (
            "/".join(map(str, codes)) if codes else "any",
            " reason=%r" % step["reason"] if "reason" in step else "",
        )
    elif op == "sleep":
        if not isinstance(step.get("seconds"), (int, float)):
            raise ScriptError("sleep needs seconds")
        step["_detail"] = "%ss" % step["seconds"]
    elif op == "expect_extension":
        want = step.get("contains", [])
        want = [want] if isinstance(want, str) else want
        if not isinstance(want, list) or not all(isinstance(w, str) for w in want):
            raise ScriptError("contains must be a string or a list of strings")
        step["_contains"] = want
        step["_detail"] = "absent" if step.get("absent") else " ".join(want)
    else:
        raise ScriptError("unknown op %r" % op)
    if "timeout" in step and not isinstance(step["timeout"], (int, float)):
        raise ScriptError("timeout must be a number")
    if "name" in step:
        step["_detail"] = ("[%s] " % step["name"]) + step["_detail"]


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.last_sent = None  # (kind, bytes)

    async def run(self, step):
        op = step["op"]
        ws = self.ws
        if op == "send":
            await send_message(ws, step["_type"] == "text", step["_data"])
            self.last_sent = (step["_type"], step["_data"])
            return ""
        if op == "send_fragmented":
            is_text = step["_type"] == "text"
            chunks = step["_chunks"]
            delay = float(step.get("delay", 0))

            async def fragments():
                for i, chunk in enumerate(chunks):
                    if i and delay:
                        await asyncio.sleep(delay)
                    yield chunk

            await ws.send(fragments(), text=is_text)
            self.last_sent = (step["_type"], step["_data"])
            return ""
        if op == "expect_echo":
            if self.last_sent is None:
                raise StepFailed("nothing was sent before expect_echo")
            msg = await self.recv()
            compare(self.last_sent[0], self.last_sent[1], msg)
            return describe(*self.last_sent)
        if op == "expect":
            msg = await self.recv()
            compare(step["_type"], step["_data"], msg)
            return ""
        if op == "ping":
            pong = await ws.ping(step["_data"])
            latency = await pong
            return "pong after %.1f ms" % (latency * 1000)
        if op == "close":
            await ws.close(step.get("code", 1000), step.get("reason", ""))
            return "peer sent code=%s reason=%r" % (ws.close_code, ws.close_reason)
        if op == "expect_close":
            while True:
                try:
                    msg = await ws.recv()
                except ConnectionClosed:
                    break
                if not step.get("ignore_messages"):
                    kind = "text" if isinstance(msg, str) else "binary"
                    data = msg.encode() if isinstance(msg, str) else msg
                    raise StepFailed("got a message instead of close: %s" % describe(kind, data))
            await ws.wait_closed()
            code, reason = ws.close_code, ws.close_reason
            if step["_codes"] is not None and code not in step["_codes"]:
                raise StepFailed("peer close code %s (reason %r)" % (code, reason))
            if "reason" in step and reason != step["reason"]:
                raise StepFailed("peer close reason %r (code %s)" % (reason, code))
            return "peer sent code=%s reason=%r" % (code, reason)
        if op == "sleep":
            await asyncio.sleep(step["seconds"])
            return ""
        if op == "expect_extension":
            got = ws.response.headers.get("Sec-WebSocket-Extensions")
            if step.get("absent"):
                if got is not None:
                    raise StepFailed("the server answered %r" % got)
                return ""
            if got is None:
                raise StepFailed("the server accepted no extension")
            missing = [w for w in step["_contains"] if w not in got]
            if missing:
                raise StepFailed("%r lacks %s" % (got, missing))
            return repr(got)
        raise AssertionError(op)

    async def recv(self):
        try:
            return await self.ws.recv()
        except ConnectionClosed as e:
            raise StepFailed(
                "connection closed while waiting for a message (peer code=%s reason=%r)"
                % (self.ws.close_code, self.ws.close_reason)
            ) from e


async def run_client(args):
    try:
        text = sys.stdin.read() if args.script == "-" else open(args.script).read()
        steps = parse_script(text)
    except (OSError, ScriptError) as e:
        eprint("ws_peer: bad script: %s" % e)
        return 2

    def line(status, n, step, extra=""):
        detail = " ".join(x for x in (step["op"], step["_detail"]) if x)
        if extra:
            detail += extra if extra.startswith(":") else " " + extra
        print("%-4s %d %s" % (status, n, detail), flush=True)

    passed = failed = skipped = 0
    try:
        ws = await asyncio.wait_for(
            connect(
                args.url,
                max_size=args.max_size,
                compression=args.compression,
                ping_interval=None,
                open_timeout=None,
            ),
            args.timeout,
        )
    except Exception as e:  # noqa: BLE001 - any failure to connect is a failure
        print("FAIL 0 connect %s: %s: %s" % (args.url, type(e).__name__, e), flush=True)
        for n, step in enumerate(steps, 1):
            line("skip", n, step)
        print("RESULT pass=0 fail=1 skip=%d" % len(steps), flush=True)
        return 1

    client = Client(ws)
    for n, step in enumerate(steps, 1):
        if failed:
            line("skip", n, step)
            skipped += 1
            continue
        try:
            extra = await asyncio.wait_for(
                client.run(step), step.get("timeout", args.timeout)
            )
            line("ok", n, step, extra)
            passed += 1
        except StepFailed as e:
            line("FAIL", n, step, ": %s" % e)
            failed += 1
        except asyncio.TimeoutError:
            line("FAIL", n, step, ": timed out after %ss" % step.get("timeout", args.timeout))
            failed += 1
        except ConnectionClosed as e:
            line("FAIL", n, step, ": connection closed (%s)" % e)
            failed += 1
        except Exception as e:  # noqa: BLE001
            line("FAIL", n, step, ": %s: %s" % (type(e).__name__, e))
            failed += 1
    try:
        await asyncio.wait_for(ws.close(), args.timeout)
    except Exception:  # noqa: BLE001
        pass
    print("RESULT pass=%d fail=%d skip=%d" % (passed, failed, skipped), flush=True)
    return 0 if failed == 0 and skipped == 0 else 1


def main(argv=None):
    p = argparse.ArgumentParser(description="WebSocket interop peer (websockets)")
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server", help="echo server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--max-size", type=max_size_arg, default=DEFAULT_MAX_SIZE)
    s.add_argument("--echo-fragment-size", type=int, default=0)
    s.add_argument("--compression", type=compression_arg, default=None)
    s.add_argument("--ping-interval", type=float, default=None)
    c = sub.add_parser("client", help="run a JSON-lines script")
    c.add_argument("--url", required=True)
    c.add_argument("--script", required=True, help="file, or - for stdin")
    c.add_argument("--timeout", type=float, default=10.0, help="per step, seconds")
    c.add_argument("--max-size", type=max_size_arg, default=DEFAULT_MAX_SIZE)
    c.add_argument("--compression", type=compression_arg, default=None)
    args = p.parse_args(argv)
    if args.mode == "server":
        return asyncio.run(run_server(args))
    return asyncio.run(run_client(args))


if __name__ == "__main__":
    sys.exit(main())
