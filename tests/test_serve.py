"""cnnclf serve: a real server on 127.0.0.1 and a real HTTP client: metadata, the same predictions
as `cnnclf predict`, every kind of bad request answered 4xx while it keeps serving, concurrent
requests batched, and a graceful exit on SIGTERM."""

import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from conftest import cnnclf, png_bytes
from test_hostile import png_header_only

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "cnnclf", "serve", str(tiny_run[0]), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health").json() == {"status": "ok"}:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        process.kill()
        raise AssertionError(process.communicate())
    yield url, process, tiny_run[0]
    if process.poll() is None:
        process.kill()


@pytest.fixture(scope="module")
def digits():
    from cnnclf.data.idx import read_idx
    from conftest import SAMPLE

    return read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:4]


def test_metadata(server):
    url, _, run = server
    meta = httpx.get(f"{url}/metadata").json()
    assert meta["run"] == run.name and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["input_shape"] == [28, 28, 1] and meta["pixel_range"] == [0, 255]
    assert 0.8 < meta["metrics"]["test_accuracy"] <= 1


def test_predictions_are_those_of_cnnclf_predict(server, digits, tmp_path):
    url, _, run = server
    for i, image in enumerate(digits):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(image))
    files = [("file", (f"{i}.png", (tmp_path / f"{i}.png").read_bytes(), "image/png")) for i in range(len(digits))]
    answer = httpx.post(f"{url}/predict", files=files, params={"top_k": 2})
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    local = json.loads(cnnclf("predict", run, *(tmp_path / f"{i}.png" for i in range(4)), "--top-k", 2, "--json").stdout)
    assert [p["file"] for p in served] == [f"{i}.png" for i in range(4)]
    for got, want in zip(served, local, strict=True):
        assert got["class"] == want["class"] and len(got["top_k"]) == 2
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
    raw = httpx.post(f"{url}/predict", content=(tmp_path / "0.png").read_bytes())
    assert raw.json()["predictions"][0]["probability"] == pytest.approx(local[0]["probability"], abs=1e-5)


@pytest.mark.parametrize("request_args, status, message", [
    ({"content": b"not an image"}, 400, "the body is not a readable image"),
    ({"content": b""}, 400, "the request has no image"),
    ({"files": [("file", ("big.png", png_header_only(12000, 12000), "image/png"))]}, 413, "big.png: 12000x12000 is 144.0"),
    ({"content": b"x" * (21 * 2**20)}, 413, "more than 20,971,520"),
    ({"data": {"note": "no file"}}, 400, "a form without files"),
    ({"content": b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--B--\r\n',
      "headers": {"content-type": "multipart/form-data; boundary=B"}}, 400, "no image file in the form"),
    ({"files": [("file", ("e.png", b"", "image/png"))]}, 400, "e.png is empty"),
    ({"content": png_bytes(np.zeros((28, 28), np.uint8)), "params": {"top_k": 0}}, 400, "top_k must be 1 to 10"),
    ({"content": b"x", "params": {"top_k": "many"}}, 422, "query.top_k:"),
])
def test_bad_requests_are_4xx_with_an_error_and_the_server_keeps_serving(server, request_args, status, message):
    url, process, _ = server
    answer = httpx.post(f"{url}/predict", **request_args)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert httpx.get(f"{url}/health").status_code == 200 and process.poll() is None


def test_unknown_paths_and_methods_answer_json(server):
    url, _, _ = server
    assert httpx.get(f"{url}/nope").json() == {"error": "Not Found"}
    assert httpx.get(f"{url}/predict").status_code == 405


def test_concurrent_requests_are_all_answered(server, digits):
    url, _, _ = server
    body = png_bytes(digits[0])

    def ask(_):
        return httpx.post(f"{url}/predict", content=body, timeout=60).json()["predictions"][0]["class"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(40)))
    assert len(set(answers)) == 1 and len(answers) == 40


def test_sigterm_finishes_and_exits_zero(server):
    url, process, _ = server
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped: the requests in flight were answered" in stderr and "Traceback" not in stderr
