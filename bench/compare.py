#!/usr/bin/env python3
"""Runs zchat-bench against several zchat-broker builds, alternated, and
prints each figure's values and median per build.

    bench/compare.py [--bench BIN] [--rounds N] NAME=BROKER[@ARGS] ...
                     [-- zchat-bench arguments]

Each round runs every broker once, in an order that rotates from round to
round, so that a machine getting busier or calmer over the run weighs on all
of them alike. Everything after `--` goes to zchat-bench as is (for example
`-- --only online --seconds 3`). The figures come from zchat-bench's --json
output; one that a scenario did not produce is left out. `@ARGS` after a
broker adds zchat-bench arguments (comma-separated) for that one only, such
as `old=build-old/broker/zchat-broker@--pushes=each,--sends=each` for a
broker from before batch_pushes and SEND_MESSAGE's batch form.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

def _dig(doc, path):
    for key in path:
        if isinstance(key, int):  # a list's index
            if not isinstance(doc, list) or key >= len(doc):
                return None
        elif not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc if isinstance(doc, (int, float)) else None


def _rss_mib(doc):
    kib = _dig(doc, ["connections", "zchat", "rss_kib"])
    return None if kib is None else kib / 1024.0


def _ratio(num, den):
    def get(doc):
        a, b = _dig(doc, num), _dig(doc, den)
        if a is None or not b:
            return None
        return a / b

    return get


# (label, how, digits): `how` is a path of keys into zchat-bench's JSON, or a
# function computing the figure from the whole document.
FIGURES = [
    ("online 1 pair, msg/s", ["online_1", "zchat", "messages_per_s"], 0),
    ("online 1 pair, us CPU per message",
     ["online_1", "zchat", "cpu_us_per_message"], 1),
    ("online 1 pair, zchat / Mosquitto",
     ["online_1", "throughput_ratio_mosquitto"], 2),
    ("online 1 pair, zchat / NATS", ["online_1", "throughput_ratio_nats"], 2),
    ("online 1 pair, zchat / RabbitMQ",
     ["online_1", "throughput_ratio_rabbitmq"], 2),
    ("online 50 pairs, msg/s", ["online_50", "zchat", "messages_per_s"], 0),
    ("online 50 pairs, us CPU per message",
     ["online_50", "zchat", "cpu_us_per_message"], 1),
    ("online 50 pairs, loop thread us CPU per message",
     ["online_50", "zchat", "threads", "main", "cpu_us_per_message"], 2),
    ("online 50 pairs, zchat / Mosquitto",
     ["online_50", "throughput_ratio_mosquitto"], 2),
    ("online 50 pairs, zchat / NATS",
     ["online_50", "throughput_ratio_nats"], 2),
    ("online 50 pairs, zchat / RabbitMQ",
     ["online_50", "throughput_ratio_rabbitmq"], 2),
    ("Mosquitto 50 pairs, us CPU per message",
     ["online_50", "mosquitto", "cpu_us_per_message"], 1),
    ("light load, send -> delivered p50 us",
     ["latency", "zchat", "delivered", "p50_us"], 0),
    ("light load, send -> delivered p99 us",
     ["latency", "zchat", "delivered", "p99_us"], 0),
    ("light load, WAL wrapped, send -> delivered p50 us",
     ["latency", "zchat_wal_wrapped", "delivered", "p50_us"], 0),
    ("light load, WAL wrapped, send -> delivered p99 us",
     ["latency", "zchat_wal_wrapped", "delivered", "p99_us"], 0),
    ("offline enqueue, msg/s", ["offline", "enqueue_per_s"], 0),
    ("offline enqueue, us CPU per message", ["offline", "enqueue_cpu_us"], 2),
    ("offline enqueue, zchat / Mosquitto",
     _ratio(["offline", "enqueue_per_s"],
            ["offline", "mosquitto", "enqueue_per_s"]), 2),
    ("offline enqueue, zchat / NATS",
     _ratio(["offline", "enqueue_per_s"],
            ["offline", "nats", "enqueue_per_s"]), 2),
    ("offline enqueue, zchat / RabbitMQ",
     _ratio(["offline", "enqueue_per_s"],
            ["offline", "rabbitmq", "enqueue_per_s"]), 2),
    ("offline drain, msg/s", ["offline", "drain_per_s"], 0),
    ("offline drain, us CPU per message", ["offline", "drain_cpu_us"], 2),
    ("offline drain, zchat / Mosquitto",
     _ratio(["offline", "drain_per_s"],
            ["offline", "mosquitto", "drain_per_s"]), 2),
    ("offline drain, zchat / NATS",
     _ratio(["offline", "drain_per_s"], ["offline", "nats", "drain_per_s"]), 2),
    ("offline drain, zchat / RabbitMQ",
     _ratio(["offline", "drain_per_s"],
            ["offline", "rabbitmq", "drain_per_s"]), 2),
    ("connections, RSS MiB", _rss_mib, 1),
    ("connections, RSS / baseline's",
     _ratio(["connections", "zchat", "rss_kib"],
            ["connections", "baseline", "rss_kib"]), 2),
    ("connections, re-login s", ["connections", "zchat", "relogin_s"], 2),
] + [
    # --only cycle (--pairs, --window) and --only cores (200 pairs over the
    # load threads): the same table
    (f"{scenario}, {what}", [scenario, *path], digits)
    for scenario in ("cycle", "cores")
    for what, path, digits in [
        ("msg/s", ["zchat", "messages_per_s"], 0),
        ("us CPU per message", ["zchat", "cpu_us_per_message"], 1),
        ("loop thread us CPU per message",
         ["zchat", "threads", "main", "cpu_us_per_message"], 2),
        ("zchat / Mosquitto", ["throughput_ratio_mosquitto"], 2),
        ("zchat / NATS", ["throughput_ratio_nats"], 2),
        ("zchat / RabbitMQ", ["throughput_ratio_rabbitmq"], 2),
        ("send -> delivered p99 us", ["zchat", "delivered", "p99_us"], 0),
    ]
] + [
    # --only scaling: 1, 10, 100 and 1,000 pairs, window 8
    (f"{pairs} pairs (window 8), {what}",
     ["scaling_pairs", i, "zchat", key], digits)
    for i, pairs in enumerate(["1", "10", "100", "1,000"])
    for what, key, digits in [("msg/s", "messages_per_s", 0),
                              ("us CPU per message", "cpu_us_per_message", 1)]
]


def figure(doc, how):
    return how(doc) if callable(how) else _dig(doc, how)


def run_once(bench, broker, extra, round_no):
    fd, path = tempfile.mkstemp(prefix="zchat-compare-", suffix=".json")
    os.close(fd)
    try:
        cmd = [bench, "--broker", broker, "--json", path] + extra
        done = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-5:])
            print(f"compare: round {round_no}, {broker}: zchat-bench exited "
                  f"{done.returncode}:\n{tail}", file=sys.stderr)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}
    finally:
        os.unlink(path)


def fmt(value, digits):
    return f"{value:,.{digits}f}"


def main(argv):
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    else:
        extra = []
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument(
        "--bench",
        default=os.path.join(here, "..", "build", "bench", "zchat-bench"),
        help="the zchat-bench binary (default: build/bench/zchat-bench)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each runs every broker once (default 3)")
    parser.add_argument("brokers", nargs="+", metavar="NAME=BROKER",
                        help="a name for the table and a zchat-broker binary")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    brokers = []
    for spec in args.brokers:
        name, sep, path = spec.partition("=")
        path, _, own = path.partition("@")
        if not sep or not name or not path:
            parser.error(f"'{spec}' is not NAME=BROKER[@ARGS]")
        if not os.access(path, os.X_OK):
            parser.error(f"{path}: not an executable file")
        brokers.append((name, (path, [a for a in own.split(",") if a])))
    if not os.access(args.bench, os.X_OK):
        parser.error(f"{args.bench}: not an executable file (--bench)")

    # results[name] = one JSON document per round
    results = {name: [] for name, _ in brokers}
    for r in range(args.rounds):
        shift = r % len(brokers)
        for name, (path, own) in brokers[shift:] + brokers[:shift]:
            print(f"compare: round {r + 1} of {args.rounds}: {name}",
                  file=sys.stderr, flush=True)
            results[name].append(run_once(args.bench, path, extra + own, r + 1))

    print("zchat-bench " + " ".join(extra) + f", {args.rounds} rounds, "
          "brokers alternated; each cell: the rounds' values, then their "
          "median")
    print()
    print("| figure | " + " | ".join(name for name, _ in brokers) + " |")
    print("|---|" + "---|" * len(brokers))
    rows = 0
    for label, how, digits in FIGURES:
        cells = []
        for name, _ in brokers:
            values = [v for v in (figure(doc, how) for doc in results[name])
                      if v is not None]
            if not values:
                cells.append(None)
                continue
            median = statistics.median(values)
            cells.append(", ".join(fmt(v, digits) for v in values) +
                         f" (median {fmt(median, digits)})")
        if all(c is None for c in cells):
            continue
        rows += 1
        print(f"| {label} | " + " | ".join(c or "-" for c in cells) + " |")
    if rows == 0:
        print("compare: no figures came back", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
