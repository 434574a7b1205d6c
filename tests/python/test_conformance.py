#!/usr/bin/python3
"""The conformance transcripts (tests/conformance/*.json, format in
tests/conformance/README.md) run through the Python example client's
transport: each connection is a ZchatClient (the zchat package, python/), whose DEALER
socket carries the frames the cases spell out, byte for byte.

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python/test_conformance.py \\
        --broker build/broker/zchat-broker --python-only

One test per case file, each with a broker of its own (tests/conftest.py;
a case's "broker_args" become the broker's extra flags). Every wait has a
deadline. This file is also a reference runner for other client authors:
replace ZchatClient with your own transport.
"""

import json
import secrets
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq

sys.dont_write_bytecode = True   # keep python/ free of __pycache__
ROOT = Path(__file__).resolve().parents[2]
# The package from the source tree (python/), installed or not.
sys.path.insert(0, str(ROOT / "python"))
import zchat.client as zc  # noqa: E402

CASES = sorted((ROOT / "tests" / "conformance").glob("*.json"))
EXPECT_TIMEOUT = 10.0          # seconds one expectation may wait
FINAL_PING_REQ = 999999999

TYPE_NUMBERS = {name: value for name, value in vars(zc).items()
                if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
                and name != "PROTOCOL_VERSION"}
CODE_NUMBERS = {name: n for n, name in enumerate(zc.ERROR_NAMES)}


class CaseFailure(Exception):
    pass


def show(value):
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:60]!r}... ({len(value.encode())} bytes)"
    if isinstance(value, bytes):
        return "bin:" + value.hex()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class Runner:
    def __init__(self, endpoint, case):
        self.endpoint, self.case = endpoint, case
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.vars = {"uniq": secrets.choice(letters) + "".join(
            secrets.choice(letters + "0123456789") for _ in range(7))}
        self.conns = {}

    def close(self):
        for c in self.conns.values():
            c.close()

    # -- connections ---------------------------------------------------------

    def sock(self, name):
        if name not in self.conns:
            client = zc.ZchatClient(timeout=EXPECT_TIMEOUT)
            client.connect(self.endpoint)
            self.conns[name] = client
        return self.conns[name]._sock

    def receive(self, name):
        sock = self.sock(name)
        deadline = time.monotonic() + EXPECT_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseFailure(f"nothing arrived on '{name}' within {EXPECT_TIMEOUT:g} s")
            if sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                frame = sock.recv()
                break
        if sock.getsockopt(zmq.RCVMORE):
            raise CaseFailure("the broker sent a multi-part message")
        try:
            return msgpack.unpackb(frame, raw=False)
        except ValueError as e:
            raise CaseFailure(f"the broker sent a frame that is not MessagePack: {e}")

    # -- values --------------------------------------------------------------

    def var(self, name):
        if name not in self.vars:
            raise CaseFailure(f"bad case file: '{name}' is not captured yet")
        return self.vars[name]

    def interpolate(self, s):
        out, pos = [], 0
        while (at := s.find("${", pos)) >= 0 and (end := s.find("}", at)) >= 0:
            out.append(s[pos:at])
            value = self.var(s[at + 2:end])
            out.append(value if isinstance(value, str) else str(value))
            pos = end + 1
        return "".join(out) + s[pos:]

    def build(self, v, key=None):
        if isinstance(v, dict):
            if "$bin" in v:
                return bytes.fromhex(v["$bin"])
            if "$repeat" in v:
                return self.interpolate(v["$repeat"]) * v["times"]
            return {k: self.build(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [self.build(x) for x in v]
        if isinstance(v, str):
            if key in ("type", "code"):
                table = TYPE_NUMBERS if key == "type" else CODE_NUMBERS
                if v not in table:
                    raise CaseFailure(f"bad case file: no {key} named '{v}'")
                return table[v]
            if len(v) > 3 and v.startswith("${") and v.endswith("}") and "${" not in v[2:]:
                return self.var(v[2:-1])
            return self.interpolate(v)
        return v

    def match(self, want, got, path="frame"):
        """None if got matches want, else the reason."""
        if isinstance(want, dict) and "$bin" not in want and "$repeat" not in want:
            if not isinstance(got, dict):
                return f"{path}: expected a map, got {show(got)}"
            for key, w in want.items():
                sub = key if path == "frame" else f"{path}.{key}"
                if w == "?absent":
                    if key in got:
                        return f"{sub}: present"
                    continue
                if key not in got:
                    return f"{path}: '{key}' missing"
                if key in ("type", "code") and isinstance(w, str) and not w.startswith("?"):
                    w = self.build(w, key)
                if (why := self.match(w, got[key], sub)) is not None:
                    return why
            return None
        if isinstance(want, list):
            if not isinstance(got, list) or len(got) != len(want):
                return f"{path}: expected {show(want)}, got {show(got)}"
            for i, (w, g) in enumerate(zip(want, got)):
                if (why := self.match(w, g, f"{path}[{i}]")) is not None:
                    return why
            return None
        if isinstance(want, str) and want.startswith("?") and not want.startswith("??"):
            kind, _, name = want[1:].partition("=")
            ok = {
                "any": lambda g: True,
                "uint": is_uint,
                "uint+": lambda g: is_uint(g) and g > 0,
                "str": lambda g: isinstance(g, str),
                "str+": lambda g: isinstance(g, str) and g != "",
                "bin": lambda g: isinstance(g, bytes),
                "bool": lambda g: isinstance(g, bool),
                "array": lambda g: isinstance(g, list),
            }.get(kind, lambda g: False)(got)
            if not ok:
                return f"{path}: expected {want}, got {show(got)}"
            if name:
                if name not in self.vars:
                    self.vars[name] = got
                elif not self.same(self.vars[name], got):
                    return f"{path}: expected {name} = {show(self.vars[name])}, got {show(got)}"
            return None
        w = want[1:] if isinstance(want, str) and want.startswith("??") else self.build(want)
        if not self.same(w, got):
            return f"{path}: expected {show(w)}, got {show(got)}"
        return None

    @staticmethod
    def same(a, b):
        # True == 1 in Python; the wire tells them apart.
        return type(a) is type(b) and a == b or (
            isinstance(a, int) and isinstance(b, int)
            and not isinstance(a, bool) and not isinstance(b, bool) and a == b)

    # -- steps ---------------------------------------------------------------

    def step(self, step):
        if "disconnect" in step:
            client = self.conns.pop(step["disconnect"], None)
            if client is not None:
                client.close()
            return
        on = step["on"]
        if "send" in step:
            frame = self.build(step["send"])
            frame.setdefault("v", 1)
            self.sock(on).send(msgpack.packb(frame, use_bin_type=True))
        elif "send_hex" in step:
            parts = step["send_hex"]
            parts = parts if isinstance(parts, list) else [parts]
            self.sock(on).send_multipart([bytes.fromhex(p.replace(" ", "")) for p in parts])
        elif "expect" in step:
            got = self.receive(on)
            if (why := self.match(step["expect"], got)) is not None:
                raise CaseFailure(f"got {show(got)}: {why}")
        elif "expect_any_order" in step:
            wants = step["expect_any_order"]
            got = [self.receive(on) for _ in wants]
            saved = dict(self.vars)
            from itertools import permutations
            for order in permutations(range(len(wants))):
                self.vars = dict(saved)
                if all(self.match(wants[o], g) is None for o, g in zip(order, got)):
                    return
            self.vars = saved
            raise CaseFailure(f"got {show(got)}, which does not match the expectations in any order")
        else:
            raise CaseFailure("bad case file: unknown step")

    def run(self):
        for i, step in enumerate(self.case["steps"], 1):
            try:
                self.step(step)
            except CaseFailure as e:
                raise CaseFailure(f"step {i} {show(step)[:300]}: {e}") from None
        for name in list(self.conns):
            self.sock(name).send(msgpack.packb({"v": 1, "type": zc.PING, "req": FINAL_PING_REQ}))
            got = self.receive(name)
            if (why := self.match({"type": "PONG", "req": FINAL_PING_REQ}, got)) is not None:
                raise CaseFailure(f"after the last step, connection '{name}' got {show(got)} "
                                  f"instead of the PONG to a final PING ({why})")


def _params():
    for path in CASES:
        args = json.loads(path.read_text(encoding="utf-8")).get("broker_args", [])
        yield pytest.param(path, id=path.stem, marks=pytest.mark.broker_args(*args))


@pytest.mark.parametrize("case_path", list(_params()))
def test_conformance(broker, case_path):
    case = json.loads(case_path.read_text(encoding="utf-8"))
    runner = Runner(broker.endpoint, case)
    try:
        runner.run()
    except CaseFailure as e:
        pytest.fail(f"{case_path.name}: {e}", pytrace=False)
    finally:
        runner.close()


def test_cases_are_found():
    assert len(CASES) >= 10, f"conformance cases missing under {CASES}"


def test_every_type_is_covered():
    """Every message type of protocol.md section 3 is sent or expected somewhere."""
    seen = set()

    def walk(v):
        if isinstance(v, dict):
            if isinstance(v.get("type"), (str, int)):
                seen.add(TYPE_NUMBERS.get(v["type"], v["type"]))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    for path in CASES:
        walk(json.loads(path.read_text(encoding="utf-8"))["steps"])
    missing = sorted(set(range(1, max(TYPE_NUMBERS.values()) + 1)) - seen)
    assert not missing, f"message types in no case: {missing}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, *sys.argv[1:]]))
