"""The router's overhead in a running pd_cluster: the same requests straight to a decode
server (a plain vLLM server: no router, no KV transfer) and through the router, from
the same place (inside the decode container), in alternating rounds.

    python scripts/bench_router.py --project pd [--rounds 5] [--requests 10]

Three pairs, each reported apart:
- chat, PD: /v1/chat/completions through the router (prefill, then decode over NIXL)
  against the same request to the decode server directly;
- passthrough: GET /v1/models, which the router forwards to a worker whole, against the
  decode server's own;
Median, p99 and max of per-request latency over every round, the requests answered
with a 5xx (kept, not raised: a lost request is a result), and the median of the
per-round differences (router - direct), so a drift of the shared machine cancels out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# Runs inside the decode container: times each request to BASE, prints the latencies.
CLIENT = r"""
import json, os, sys, time, urllib.error, urllib.request
base, path, n, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
headers = {"Content-Type": "application/json"}
if os.environ.get("VLLM_API_KEY"):
    headers["Authorization"] = "Bearer " + os.environ["VLLM_API_KEY"]
out = []
for _ in range(n):
    req = urllib.request.Request(base + path, data=body.encode() if body else None,
                                 headers=headers)
    start = time.perf_counter()
    try:
        status = urllib.request.urlopen(req, timeout=300).status
    except urllib.error.HTTPError as err:
        status = err.code
    out.append([time.perf_counter() - start, status])
print(json.dumps(out))
"""


def timed(container: str, base: str, path: str, n: int, body: str
          ) -> list[tuple[float, int]]:
    """(seconds, HTTP status) of each of `n` sequential requests."""
    done = subprocess.run(["docker", "exec", container, "python3", "-c", CLIENT, base, path,
                           str(n), body], capture_output=True, text=True, check=True,
                          timeout=1800)
    return [(float(t), int(s)) for t, s in json.loads(done.stdout)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="glmkit/glm-tiny")
    args = parser.parse_args(argv)
    container = f"{args.project}-decode-1"
    prompt = " ".join(f"item{i} alpha beta gamma" for i in range(100))  # ~4 KV blocks
    chat = json.dumps({"model": args.model, "max_tokens": args.max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": prompt}],
                       "chat_template_kwargs": {"enable_thinking": False}})
    pairs = {"chat, PD": ("/v1/chat/completions", chat), "passthrough": ("/v1/models", "")}
    targets = {"router": "http://router:8000", "direct": "http://127.0.0.1:8000"}
    samples: dict[tuple[str, str], list[tuple[float, int]]] = {}
    diffs: dict[str, list[float]] = {name: [] for name in pairs}
    for _ in range(args.rounds):
        for name, (path, body) in pairs.items():
            medians = {}
            for target, base in targets.items():  # alternate within each round
                got = timed(container, base, path, args.requests, body)
                samples.setdefault((name, target), []).extend(got)
                medians[target] = statistics.median(t for t, _ in got)
            diffs[name].append(medians["router"] - medians["direct"])
    print(f"{args.rounds} rounds × {args.requests} sequential requests, from inside "
          f"{container}; latency in ms (median / p99 / max), 5xx answers")
    for name in pairs:
        row = []
        for target in targets:
            xs = sorted(t for t, _ in samples[(name, target)])
            errors = sum(status >= 500 for _, status in samples[(name, target)])
            row.append(f"{target} {statistics.median(xs) * 1000:.1f} / "
                       f"{xs[int(0.99 * (len(xs) - 1))] * 1000:.1f} / {xs[-1] * 1000:.1f}, "
                       f"{errors} 5xx")
        spread = [d * 1000 for d in diffs[name]]
        print(f"{name:12} {' | '.join(row)} | router - direct: median of rounds "
              f"{statistics.median(spread):+.1f} ms (min {min(spread):+.1f}, max "
              f"{max(spread):+.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
