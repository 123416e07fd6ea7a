"""Serving benchmark: single-row :predict at 1/16/64 connections against four servers.

    python scripts/benchmark_serving.py [--model_base_path DIR] [--seconds 4] [--workers 1,2,4]

Servers (each its own process, uvicorn + starlette): our server with dynamic batching,
our server without batching, a naive server (the loaded export called inline, once per
request) and the HTTP ceiling (parses the JSON body, answers a constant). ``--workers``
adds our batching server with ``--workers N`` (N processes on one port) for each N > 1,
and reports QPS against worker count. The load generator is ``wrk`` (a Lua POST body)
when installed, else an async httpx client in its own process. Without
--model_base_path a 7->64->32->1 MLP export is generated. Prints QPS and p50/p99 latency
per cell; numbers are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MODEL_NAME = "bench"
WRK_THREADS = 1
FEATURES = ["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
            "passenger_count", "hourofday", "dayofweek"]


OURS = {  # our server's variants and their flags
    "batching": [],
    "batching+thread": ["--predict_in_thread", "true"],
    "no batching": ["--enable_batching", "false"],
}


def make_mlp_export(base: str) -> str:
    """Writes a 7->64->32->1 MLP export (7 named float features) under ``base``; returns its path."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from estimator.export import ExportableFunction, export_saved_model

    def predict(params, state, features):
        x = jnp.stack([features[n] for n in FEATURES], axis=-1)
        for i in range(2):
            x = jax.nn.relu(x @ params[f"w{i}"] + params[f"b{i}"])
        return {"predictions": x @ params["w2"] + params["b2"]}

    rng = np.random.default_rng(0)
    sizes = [7, 64, 32, 1]
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        params[f"w{i}"] = (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
        params[f"b{i}"] = np.zeros(b, np.float32)
    return export_saved_model(ExportableFunction(predict, params), base, dict.fromkeys(FEATURES, "float32"))


def _example(signature: dict) -> dict:
    """One example for the signature's inputs: 0.5 for floats, 1 for integers, "a" for strings."""
    import numpy as np

    def value(dtype: str):
        if dtype == "string":
            return "a"
        kind = np.dtype(dtype).kind
        return True if kind == "b" else 1 if kind in "iu" else 0.5

    return {k: np.full(s["shape"], value(s["dtype"]), object).tolist() if s["shape"] else value(s["dtype"])
            for k, s in signature["inputs"].items()}


def _naive_or_ceiling_app(kind: str, model_dir: str):
    """The baseline servers: 'naive' (predict inline per request), 'ceiling' (Starlette, constant
    answer after parsing the body) or 'bare ceiling' (the same without Starlette on the hot path)."""
    import jax
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from estimator._predictor_inputs import convert_columns
    from estimator.export import load
    from estimator.serving import _rest

    jax.config.update("jax_cpu_enable_async_dispatch", False)  # as our server does
    predictor = load(model_dir) if kind == "naive" else None
    if predictor is not None:
        predictor.warmup(1)
    constant = {"predictions": [[0.0]]}

    async def predict(request):
        body = await request.body()
        if predictor is None:
            json.loads(body)
            return JSONResponse(constant)
        columns, _, row_format = _rest.parse_predict(body, predictor.inputs)
        outputs = predictor.predict_columns(convert_columns(predictor.inputs, columns))
        return JSONResponse(_rest.format_predictions(outputs, row_format))

    async def status(request):
        return JSONResponse({"model_version_status": [{"state": "AVAILABLE"}]})

    app = Starlette(routes=[Route("/v1/models/{name}:predict", predict, methods=["POST"]),
                            Route("/v1/models/{name}", status)])
    if kind != "bare ceiling":
        return app
    answer = json.dumps(constant).encode()

    async def bare(scope, receive, send):  # the floor: no framework at all on the hot path
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        json.loads(body)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return bare


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(kind: str, base: str, version_dir: str, port: int) -> subprocess.Popen:
    if kind in OURS:
        cmd = [sys.executable, "-m", "estimator.serving", "--model_name", MODEL_NAME, "--model_base_path", base,
               "--port", str(port), "--host", "127.0.0.1", "--log_level", "warning", *OURS[kind]]
    else:
        cmd = [sys.executable, __file__, "--_serve", kind, "--_model_dir", version_dir, "--_port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start within 120 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its child processes (workers), from /proc."""
    total = 0.0
    for entry in (e for e in os.listdir("/proc") if e.isdigit()):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _batch_stats(predict_url: str, kind: str) -> tuple[float, float]:
    """(examples, device calls) so far, from our server's /metrics; zeros for the baselines."""
    if kind not in OURS or "--workers" in OURS[kind]:  # each worker has its own counters
        return 0.0, 0.0
    import httpx

    text = httpx.get(predict_url.split("/v1/")[0] + "/metrics", timeout=10).text
    values = {line.split("{")[0]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("jax_estimator_serving_batch_size_")}
    return values.get("jax_estimator_serving_batch_size_sum", 0.0), values.get("jax_estimator_serving_batch_size_count", 0.0)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m[2]]


def _run_wrk(url: str, body: str, conns: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run(["wrk", f"-t{min(WRK_THREADS, conns)}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", f.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
            "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]), "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]),
            "errors": errors}


def _run_httpx(url: str, body: str, conns: int, seconds: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_load", url, "--_conns", str(conns), "--_seconds", str(seconds)],
                         input=body, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _httpx_load(url: str, conns: int, seconds: float) -> None:
    """Load generator process: ``conns`` async clients posting stdin's body for ``seconds``."""
    import asyncio

    import httpx

    body = sys.stdin.read().encode()
    lat, errors = [], 0

    async def client(http: httpx.AsyncClient, stop: float) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            r = await http.post(url, content=body, headers={"Content-Type": "application/json"})
            lat.append(time.perf_counter() - t)
            errors += r.status_code != 200

    async def main() -> None:
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            stop = time.perf_counter() + seconds
            await asyncio.gather(*(client(http, stop) for _ in range(conns)))

    start = time.perf_counter()
    asyncio.run(main())
    lat.sort()
    print(json.dumps({"qps": len(lat) / (time.perf_counter() - start), "p50": lat[len(lat) // 2] * 1e3,
                      "p99": lat[int(len(lat) * 0.99)] * 1e3, "errors": errors}))


def main() -> None:
    """Runs every server x connection-count cell and prints the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_base_path", help="export base dir (default: a generated MLP export)")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    p.add_argument("--connections", default="1,16,64")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions per cell (median reported)")
    p.add_argument("--servers", default="batching,no batching,naive,ceiling,bare ceiling",
                   help=f"comma-separated, from: {', '.join([*OURS, 'naive', 'ceiling', 'bare ceiling'])}")
    p.add_argument("--loadgen", choices=["auto", "wrk", "httpx"], default="auto")
    p.add_argument("--workers", default="1",
                   help="comma-separated worker counts; each N > 1 adds 'batching wN' (--workers N)")
    p.add_argument("--wrk_threads", type=int, default=1, help="wrk -t (raise it when measuring several workers)")
    p.add_argument("--_serve"), p.add_argument("--_model_dir"), p.add_argument("--_port", type=int)
    p.add_argument("--_load"), p.add_argument("--_conns", type=int), p.add_argument("--_seconds", type=float)
    args = p.parse_args()
    if args._serve:
        import uvicorn

        uvicorn.run(_naive_or_ceiling_app(args._serve, args._model_dir), host="127.0.0.1", port=args._port,
                    log_level="warning", access_log=False)
        return
    if args._load:
        _httpx_load(args._load, args._conns, args._seconds)
        return

    from estimator._export_dir import complete_versions

    base = args.model_base_path or make_mlp_export(tempfile.mkdtemp(prefix="bench_export_"))
    if not args.model_base_path:
        base = os.path.dirname(base)
    version_dir = os.path.join(base, str(complete_versions(base)[-1]))
    with open(os.path.join(version_dir, "saved_model.json")) as f:
        body = json.dumps({"instances": [_example(json.load(f))]})
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    run = _run_wrk if use_wrk else _run_httpx
    conns = [int(c) for c in args.connections.split(",")]
    print(f"load generator: {'wrk' if use_wrk else 'httpx'}; {args.seconds:g} s per cell; body {body}")
    kinds = args.servers.split(",")
    workers = sorted({int(n) for n in args.workers.split(",")})
    for n in workers:
        if n > 1:
            OURS[f"batching w{n}"] = ["--workers", str(n)]
            kinds.append(f"batching w{n}")
    global WRK_THREADS
    WRK_THREADS = args.wrk_threads
    unknown = [k for k in kinds if k not in (*OURS, "naive", "ceiling", "bare ceiling")]
    if unknown:
        p.error(f"unknown --servers {unknown}")
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        for kind in kinds:  # all servers up at once; cells interleaved so machine noise hits all alike
            port = _free_port()
            procs[kind] = (_start(kind, base, version_dir, port),
                           f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict")
            import httpx

            check = httpx.post(procs[kind][1], content=body, timeout=30)
            if check.status_code != 200:
                raise RuntimeError(f"{kind} server answered {check.status_code} to the benchmark request: {check.text}")
            run(procs[kind][1], body, 4, 1.0)  # warm up
        for c in conns:
            for _ in range(args.rounds):
                for kind in kinds:
                    cpu, batches = _cpu_seconds(procs[kind][0].pid), _batch_stats(procs[kind][1], kind)
                    r = run(procs[kind][1], body, c, args.seconds)
                    r["cpu_us"] = (_cpu_seconds(procs[kind][0].pid) - cpu) / max(1.0, r["qps"] * args.seconds) * 1e6
                    after = _batch_stats(procs[kind][1], kind)
                    r["batch"] = (after[0] - batches[0]) / max(1, after[1] - batches[1])
                    results.setdefault((kind, c), []).append(r)
                    print(f"  {kind:12s} c={c:3d}: {r['qps']:8.0f} QPS  p50 {r['p50']:6.2f} ms  "
                          f"p99 {r['p99']:6.2f} ms  server CPU {r['cpu_us']:5.0f} us/request  "
                          f"mean batch {r['batch']:4.1f}  errors {r['errors']}",
                          flush=True)
    finally:
        for proc, _ in procs.values():
            _stop(proc)
    _report(results, kinds, conns, workers)


def _report(results: dict[tuple[str, int], list[dict]], kinds: list[str], conns: list[int],
            workers: list[int]) -> None:
    """Median over rounds per cell, then the targets of issue 5."""
    med = {key: {m: statistics.median(r[m] for r in rs) for m in ("qps", "p50", "p99", "cpu_us", "batch")} | {
        "errors": sum(r["errors"] for r in rs)} for key, rs in results.items()}
    print("\n| server | connections | QPS | p50 ms | p99 ms | server CPU us/req | mean batch | errors |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in conns:
        for kind in kinds:
            r = med[(kind, c)]
            batch = f"{r['batch']:.1f}" if kind in OURS and "--workers" not in OURS[kind] else "-"
            print(f"| {kind} | {c} | {r['qps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.0f} | "
                  f"{batch} | {r['errors']} |")
    if {"batching", "ceiling"} <= set(kinds) and max(conns) in conns:
        b, top = med[("batching", max(conns))], med[("ceiling", max(conns))]
        print(f"\nc={max(conns)}: batching/ceiling = {b['qps'] / top['qps']:.2f} (target >= 0.8), "
              f"p99 {b['p99']:.1f} ms (target <= 50)")
    if len(workers) > 1 and "batching" in kinds:
        top = max(conns)
        base = med[("batching", top)]["qps"]
        cells = [f"{n} worker{'s' if n > 1 else ''}: {med[(_kind(n), top)]['qps']:.0f} QPS "
                 f"({med[(_kind(n), top)]['qps'] / base:.2f}x)" for n in workers]
        print(f"QPS vs workers at c={top} (cores: {os.cpu_count()}): " + ", ".join(cells))
    if {"batching", "naive"} <= set(kinds) and 1 in conns:
        delta = med[("batching", 1)]["p50"] - med[("naive", 1)]["p50"]
        print(f"c=1: batching p50 - naive p50 = {delta:+.2f} ms (target <= +0.5)")

def _kind(workers: int) -> str:
    return "batching" if workers == 1 else f"batching w{workers}"


if __name__ == "__main__":
    main()
