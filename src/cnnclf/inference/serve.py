"""cnnclf serve: a run's model over HTTP, a JSON API on FastAPI and uvicorn (pip install 'cnnclf[serve]').

    GET  /health      {"status": "ok"}
    GET  /metadata    the run (and its status), its class names, input shape, resize policy and test metrics
    POST /predict     image files (multipart, any field names) or one image as the raw body, whatever
                      its Content-Type says (curl --data-binary sends a form type); ?top_k=3,
                      ?min_confidence=0.5 (instead of the run's threshold); answers
                      {"predictions": [{file, class, probability, unknown, top_k}, ...]}

The model is loaded once, in safe mode, and images go through the same Predictor as `cnnclf
predict` (the run's decoding, resize policy and test-time views), so the numbers are the same.
Requests that arrive together are classified together: a batcher collects images for up to
`wait_ms` or `max_batch` images and calls the model once for all of them, on a thread of its own,
so the event loop keeps accepting requests. A bad request is a 4xx answer {"error": "..."}; the
server keeps serving.

Limits: a body of at most MAX_BYTES however it is sent (its length declared, chunked, or
multipart), counted as it arrives and refused (413) before more is read; MAX_FILES images a
request; decode_image's pixel limit per image. The HTTP server around the application (hosts
answered, shutdown, the access log) is in server.py.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnclf.data.decoding import DECODE_ERRORS, ImageTooLarge, reason
from cnnclf.errors import printable
from cnnclf.rundir.directory import RunDir

log = logging.getLogger("cnnclf")

MAX_BYTES = 20 * 2**20  # a request's body
MAX_FILES = 64  # images in one request


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """Images from concurrent requests, classified in batches on one model thread."""

    def __init__(self, predictor, max_batch: int, wait_ms: float):
        self.predictor, self.max_batch, self.wait = predictor, max_batch, wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="cnnclf-model")

    async def classify(self, images: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            count, deadline = len(waiting[0][0]), loop.time() + self.wait
            while count < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    waiting.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
                count += len(waiting[-1][0])
            images = np.concatenate([item for item, _ in waiting])
            try:
                probabilities = await loop.run_in_executor(self.model_thread, self.predictor.probabilities, images)
            except Exception as e:  # noqa: BLE001 - every request waiting on this batch hears of it
                for _, future in waiting:
                    future.set_exception(e)
                continue
            start = 0
            for item, future in waiting:
                future.set_result(probabilities[start : start + len(item)])
                start += len(item)


def create_app(run: RunDir, max_batch: int = 32, wait_ms: float = 5.0):
    """The FastAPI application serving `run`'s model."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from cnnclf.inference.loading import Predictor

    predictor = Predictor(run)
    metrics = run.read_metrics() or {}
    batcher = Batcher(predictor, max_batch, wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="cnnclf", description=f"The model of {run.path.name}", lifespan=lifespan)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc: BadRequest):
        return error(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0]
        return error(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata():
        augment = predictor.config.data.augment
        return {
            "run": run.path.name,
            "status": run.status()["status"],
            "class_names": predictor.class_names,
            "input_shape": list(predictor.shape),
            "pixel_range": [0, 255],
            "resize": predictor.config.data.resize,
            "test_time_views": {"flip": augment.test_flip, "shift": augment.test_shift},
            "calibration": {k: predictor.calibration[k] for k in ("temperature", "score", "threshold")},
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        }

    @app.post("/predict")
    async def predict(request: Request, top_k: int = 3, min_confidence: float | None = None):
        if not 1 <= top_k <= len(predictor.class_names):
            raise BadRequest(400, f"top_k must be 1 to {len(predictor.class_names)}, got {top_k}")
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise BadRequest(400, f"min_confidence must be 0 to 1, got {min_confidence}")
        uploads = await _uploads(request)
        images = await asyncio.gather(*(asyncio.to_thread(_decode, predictor, name, data) for name, data in uploads))
        probabilities = await batcher.classify(np.stack(images))
        answers = [
            {"file": None if name is None else printable(name), **predictor.answer(p, top_k, min_confidence)}
            for (name, _), p in zip(uploads, probabilities)
        ]
        return {"predictions": answers}

    return app


async def _uploads(request) -> list[tuple[str | None, bytes]]:
    """(file name, bytes) of each image in the request: multipart files, or else the raw body,
    whatever its Content-Type (curl --data-binary labels it a form)."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BYTES:
        raise BadRequest(413, f"the request is {int(declared):,} bytes, more than {MAX_BYTES:,}; send smaller images")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        parser = MultiPartParser(request.headers, _body(request), max_files=MAX_FILES, max_part_size=MAX_BYTES)
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise BadRequest(400, f"the multipart body cannot be read ({str(e)[:200]})") from None
        try:
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            if not files:
                raise BadRequest(400, "no image file in the form; send one or more files (curl -F file=@photo.jpg)")
            return [(f.filename, await f.read()) for f in files]
        finally:
            await form.close()
    body = b"".join([chunk async for chunk in _body(request)])
    if not body:
        raise BadRequest(400, "the request has no image; send one as the body or as multipart files")
    return [(None, body)]


async def _body(request):
    """The request's body as it arrives, refused once it passes MAX_BYTES (whatever the declared
    length, or with none: chunked), before the rest is read."""
    from starlette.requests import ClientDisconnect

    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_BYTES:
                raise BadRequest(413, f"the request is more than {MAX_BYTES:,} bytes; send smaller images")
            yield chunk
    except ClientDisconnect:
        raise BadRequest(400, "the client closed the connection before sending the whole body") from None


def _decode(predictor, name: str | None, data: bytes) -> np.ndarray:
    what = printable(name) if name else "the body"
    if not data:
        raise BadRequest(400, f"{what} is empty")
    try:
        return predictor.decode(data)
    except ImageTooLarge as e:
        raise BadRequest(413, f"{what}: {e}") from None
    except DECODE_ERRORS as e:
        raise BadRequest(400, f"{what} is not a readable image ({reason(e)})") from None
