"""The model server: an ASGI app (for uvicorn) speaking TensorFlow Serving's REST API.

Routes: ``GET /v1/models/<name>[/versions/<v> | /labels/<label>]`` (status), ``.../metadata``
(signature), ``POST /v1/models/<name>[/versions/<v> | /labels/<label>]:predict`` (and
``:classify`` for classifier exports, ``:regress`` for regressor exports);
``GET /monitoring/prometheus/metrics`` and ``/metrics``. Every error is
``{"error": message}`` with a 4xx/5xx status.

Small requests are parsed on the event loop and merged into batches; requests with large
bodies or more examples than one batch are parsed and predicted in a worker thread, so
they never stall health checks or the batches of small requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from estimator.export import Predictor, PredictorInputError
from estimator.serving import _rest
from estimator.serving._batch_predict import batch_predictor
from estimator.serving._batcher import Batcher, Unbatched
from estimator.serving._metrics import Metrics
from estimator.serving._rest import ServingError
from estimator.serving._versions import ServedVersion, VersionManager

log = logging.getLogger("estimator.serving")

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<meta>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)
LARGE_BODY_BYTES = 64 * 1024  # bodies above this are parsed off the event loop


@dataclass(frozen=True)
class ServerConfig:
    """Model server settings (the command-line flags of ``python -m estimator.serving``).

    ``version_labels`` maps labels (``/labels/<label>``) to version numbers, as TF Serving's
    ``version_labels`` in its model config; the ``max_load_retries`` / ``load_retry_backoff_secs``
    pair bounds the retries of a version that fails to load.
    """

    model_name: str
    model_base_path: str
    max_batch_size: int = 64
    batch_timeout_micros: int = 0
    enable_batching: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    poll_secs: float = 2.0
    predict_in_thread: bool = False
    retire_grace_secs: float = 30.0
    max_load_retries: int = 5
    load_retry_backoff_secs: float = 1.0
    version_labels: Mapping[str, int] = field(default_factory=dict)


class _Server:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = Metrics(config.model_name)
        self.executor = ThreadPoolExecutor(max_workers=1 if config.enable_batching else 4,
                                           thread_name_prefix="predict")
        self.large = ThreadPoolExecutor(max_workers=2, thread_name_prefix="large-request")
        self.versions = VersionManager(config.model_base_path, self._make_batcher, config.max_batch_size,
                                       config.max_load_retries, config.load_retry_backoff_secs)

    def _make_batcher(self, predictor: Predictor) -> Batcher | Unbatched:
        run = batch_predictor(predictor, self.metrics.observe_batch)
        executor = self.executor if self.config.predict_in_thread else None
        if not self.config.enable_batching:
            return Unbatched(run, executor)
        return Batcher(run, executor, self.config.max_batch_size, self.config.batch_timeout_micros / 1e6)

    async def refresh(self) -> None:
        old = await asyncio.to_thread(self.versions.refresh)
        current = self.versions.current
        self.metrics.version = current.version if current else 0
        if old is not None:  # in-flight requests finish on it; then its worker exits
            asyncio.get_running_loop().call_later(self.config.retire_grace_secs, old.batcher.close)

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_secs)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - keep polling whatever happens
                log.exception("Polling %s failed.", self.config.model_base_path)

    def served(self, name: str, version: str | None, label: str | None) -> ServedVersion:
        if name != self.config.model_name:
            raise ServingError(404, f"Model {name!r} not found; this server serves {self.config.model_name!r}.")
        if label is not None:
            if label not in self.config.version_labels:
                raise ServingError(404, f"Unrecognized version label {label!r} of model {name!r}; known labels: "
                                        f"{sorted(self.config.version_labels)}.")
            version = str(self.config.version_labels[label])
        current = self.versions.current
        if current is None:
            raise ServingError(503, f"Model {name!r} is not available: {self.versions.unavailable_reason}.")
        if version is not None and version != str(current.version):
            raise ServingError(404, f"Version {version} of model {name!r} is not loaded; loaded: {current.version}.")
        return current

    async def read_body(self, chunks: AsyncIterator[bytes], declared: str | None) -> bytes:
        limit = self.config.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ServingError(413, f"Request body of {declared} bytes is over the limit of {limit} bytes.")
        parts, size = [], 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise ServingError(413, f"Request body is over the limit of {limit} bytes.")
            parts.append(chunk)
        return b"".join(parts)

    def _large_request(self, served: ServedVersion, verb: str, body: bytes | None, parsed: _rest.Request | None) -> bytes:
        """A request answered alone in a worker thread: parse, convert, predict, format, encode."""
        columns, size, fmt = parsed or _rest.parse_request(verb, body, served.predictor.inputs)
        outputs = served.predictor.run(served.predictor.prepare(columns))
        self.metrics.observe_batch(size)
        return _rest.encode_response(outputs, fmt)

    async def _predict(self, served: ServedVersion, verb: str, body: bytes) -> bytes:
        _rest.check_verb(verb, served.predictor)
        loop = asyncio.get_running_loop()
        if len(body) > LARGE_BODY_BYTES:
            return await loop.run_in_executor(self.large, self._large_request, served, verb, body, None)
        parsed = _rest.parse_request(verb, body, served.predictor.inputs)
        columns, size, fmt = parsed
        if size > self.config.max_batch_size:  # cannot share a device call anyway
            return await loop.run_in_executor(self.large, self._large_request, served, verb, None, parsed)
        outputs = await served.batcher.submit((columns, size), size)
        return _rest.encode_response(outputs, fmt)

    async def answer(self, method: str, path: str, body: Callable[[], Awaitable[bytes]]) -> tuple[int, bytes]:
        """Serves one /v1/models/... request; returns (HTTP status, JSON body)."""
        start = time.perf_counter()
        api, status = "other", 500
        try:
            m = _PATH.match(path)
            if m is None:
                raise ServingError(404, f"No such endpoint {path!r}.")
            verb = m["verb"]
            if verb is not None:
                if verb not in _rest.VERBS:
                    raise ServingError(404, f"Method {verb!r} is not supported; use :predict, :classify or :regress.")
                api = verb
                if method != "POST":
                    raise ServingError(405, f":{verb} takes POST.")
                served = self.served(m["name"], m["version"], m["label"])
                content = await self._predict(served, verb, await body())
            elif method not in ("GET", "HEAD"):
                raise ServingError(405, f"{path} takes GET; predictions are POSTed to {path.rstrip('/')}:predict.")
            elif m["meta"]:
                api = "metadata"
                served = self.served(m["name"], m["version"], m["label"])
                p = served.predictor
                content = orjson.dumps(_rest.metadata(self.config.model_name, served.version,
                                                      {"inputs": p.inputs, "outputs": p.outputs}))
            else:
                api = "status"
                served = self.served(m["name"], m["version"], m["label"])
                failed = {} if m["version"] or m["label"] else {
                    v: e for v, e in self.versions.failed_versions().items() if v > served.version}
                content = orjson.dumps(_rest.version_status([served.version], failed))
            status = 200
        except ServingError as e:
            status, content = e.status, orjson.dumps({"error": e.message})
        except PredictorInputError as e:
            status, content = 400, orjson.dumps({"error": str(e)})
        except Exception:  # noqa: BLE001 - answer 500, stay up; details go to the log, not the client
            log.exception("Request to %s failed.", path)
            content = orjson.dumps({"error": "Internal server error; the server log has the details."})
        self.metrics.observe_request(api, status, time.perf_counter() - start)
        return status, content

    async def models(self, request: Request) -> Response:
        status, content = await self.answer(
            request.method, request.url.path,
            lambda: self.read_body(request.stream(), request.headers.get("content-length")))
        return Response(content, status_code=status, media_type="application/json")

    async def predict_asgi(self, scope: dict, receive: Callable, send: Callable) -> None:
        """The POST hot path as a bare ASGI handler (Starlette's per-request layers skipped)."""
        declared = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ServingError(400, "Client disconnected before sending the whole body.")
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        status, content = await self.answer("POST", scope["path"], lambda: self.read_body(chunks(), declared))
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    async def metrics_page(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def not_found(self, request: Request) -> Response:
        self.metrics.observe_request("other", 404, 0.0)
        return JSONResponse({"error": f"No such endpoint {request.url.path!r}."}, status_code=404)


def build_app(config: ServerConfig) -> Callable:
    """Returns the ASGI app serving ``config.model_name`` from ``config.model_base_path``.

    Starlette routes everything but ``POST /v1/models/...:<verb>``, which goes straight to a
    bare ASGI handler: Starlette's request/response layers cost about as much CPU per
    request as the rest of the work on a small model (see scripts/benchmark_serving.py).
    """
    server = _Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await server.refresh()
        gc.freeze()  # the model and libraries stay out of every later collection: no long GC pauses
        poller = asyncio.create_task(server.poll_forever())
        try:
            yield
        finally:
            poller.cancel()
            server.executor.shutdown(wait=False, cancel_futures=True)
            server.large.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/v1/models/{path:path}", server.models, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/monitoring/prometheus/metrics", server.metrics_page),
        Route("/metrics", server.metrics_page),
        Route("/{path:path}", server.not_found, methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
    ]
    starlette = Starlette(routes=routes, lifespan=lifespan)

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/models/"):
            await server.predict_asgi(scope, receive, send)
        else:
            await starlette(scope, receive, send)

    return app
