"""cnnclf serve: a real server on 127.0.0.1 and a real HTTP client: metadata, the same predictions
as `cnnclf predict`, every kind of bad request answered 4xx while it keeps serving, concurrent
requests batched, and a graceful exit on SIGTERM."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from helpers import cnnclf, png_bytes, png_header_only

pytestmark = pytest.mark.slow


def start_server(run, *args) -> tuple[str, subprocess.Popen, str]:
    """`cnnclf serve RUN --port 0`; its URL read from the line that says where it serves, and what it
    said up to there."""
    process = subprocess.Popen([sys.executable, "-m", "cnnclf", "serve", str(run), "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"serving \S+ on (http://127\.0\.0\.1:(\d+)) ", line)
        if found:
            assert found.group(2) != "0", line  # the port it was given, not 0
            return found.group(1), process, "".join(lines)
    process.kill()
    raise AssertionError("".join(lines))


@pytest.fixture(scope="module")
def server(tiny_run):
    url, process, _ = start_server(tiny_run[0])
    yield url, process, tiny_run[0]
    if process.poll() is None:
        process.kill()


@pytest.fixture(scope="module")
def digits():
    from cnnclf.data.idx import read_idx
    from helpers import SAMPLE

    return read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz", "images")[:4]


def test_answers_say_whether_they_are_unknown(server, digits):
    url, _, run = server
    threshold = json.loads((run / "calibration.json").read_text())["threshold"]
    answer = httpx.post(f"{url}/predict", content=png_bytes(digits[0])).json()["predictions"][0]
    assert answer["unknown"] == (answer["probability"] < threshold)
    strict = httpx.post(f"{url}/predict", content=png_bytes(digits[0]), params={"min_confidence": 1})
    assert strict.json()["predictions"][0]["unknown"] is True
    assert httpx.post(f"{url}/predict", content=b"x", params={"min_confidence": 2}).status_code == 400
    assert httpx.get(f"{url}/metadata").json()["calibration"]["threshold"] == threshold


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
    curl = httpx.post(f"{url}/predict", content=(tmp_path / "0.png").read_bytes(),  # curl --data-binary @0.png
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert curl.status_code == 200 and curl.json()["predictions"][0]["class"] == local[0]["class"]


@pytest.mark.parametrize("request_args, status, message", [
    ({"content": b"not an image"}, 400, "the body is not a readable image"),
    ({"content": b""}, 400, "the request has no image"),
    ({"files": [("file", ("big.png", png_header_only(12000, 12000), "image/png"))]}, 413, "big.png: 12000x12000 is 144.0"),
    ({"content": b"x" * (21 * 2**20)}, 413, "more than 20,971,520"),
    ({"data": {"note": "no file"}}, 400, "the body is not a readable image"),  # a form's body is taken as an image
    ({"content": (b"x" * 2**20 for _ in range(21))}, 413, "more than 20,971,520"),  # chunked: no declared length
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


def test_a_chunked_multipart_body_is_refused_past_the_limit(server):
    url, process, _ = server

    def body():
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(36):
            yield b"x" * 2**20

    answer = httpx.post(f"{url}/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=B"})
    assert answer.status_code == 413 and "more than 20,971,520" in answer.json()["error"]
    assert process.poll() is None


def test_only_loopback_names_are_answered(server):
    url, _, _ = server
    port = url.rsplit(":", 1)[1]
    for path in ("/metadata", "/predict"):
        answer = httpx.request("GET" if path == "/metadata" else "POST", f"{url}{path}",
                               headers={"host": "attacker.example"}, content=b"x")
        assert answer.status_code == 400 and answer.text == "Invalid host header"
    for name in (f"localhost:{port}", "LOCALHOST", f"LocalHost:{port}", f"[::1]:{port}"):  # names have no case
        assert httpx.get(f"{url}/health", headers={"host": name}).status_code == 200, name


def raw_exchange(url: str, parts, timeout=30) -> tuple[bytes, float]:
    """Send `parts` (bytes, or seconds to wait) on one connection; everything the server answered until
    it closed the connection, and how long that took."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.settimeout(timeout)
        started = time.time()
        for part in parts:
            if isinstance(part, bytes):
                try:
                    client.sendall(part)
                except OSError:  # closed by the server meanwhile
                    break
            else:
                time.sleep(part)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer, time.time() - started


def test_an_ambiguous_body_length_is_refused_and_the_connection_closed(server):
    url, _, _ = server
    answer, _ = raw_exchange(url, [b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                   b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 400 ") and b"both Content-Length and Transfer-Encoding" in answer
    assert answer.count(b"HTTP/1.1 ") == 1  # what followed on the connection is not answered


def test_a_request_head_sent_slowly_is_cut_off(server):
    from cnnclf.inference.server import HEAD_SECONDS

    url, process, _ = server
    drip = [b"GET /health HTTP/1.1\r\n"] + [part for i in range(HEAD_SECONDS + 4) for part in (1, b"X-%d: 1\r\n" % i)]
    answer, seconds = raw_exchange(url, [*drip, b"Host: 127.0.0.1\r\n\r\n"])
    assert answer == b"" and HEAD_SECONDS - 1 < seconds < HEAD_SECONDS + 4
    idle, seconds = raw_exchange(url, [])  # a connection that never sends
    assert idle == b"" and seconds < HEAD_SECONDS + 3 and process.poll() is None


def test_idle_connections_past_the_descriptor_limit_lock_no_one_out(tiny_run):
    import resource

    process = subprocess.Popen([sys.executable, "-m", "cnnclf", "serve", str(tiny_run[0]), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
    lines = []
    for line in process.stderr:
        lines.append(line)
        if found := re.search(r"on (http://127\.0\.0\.1:(\d+)) ", line):
            url, port = found.group(1), int(found.group(2))
            break
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]  # more than it may open
    try:
        time.sleep(1)
        answers = [httpx.get(f"{url}/health", timeout=10).status_code for _ in range(5)]
    finally:
        for connection in idle:
            connection.close()
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    assert answers == [200] * 5
    assert "out of system resource" not in rest and len(rest) < 5000, rest[:2000]


def test_control_characters_in_a_file_name_are_escaped(server, digits):
    """A raw CR or LF does not pass the multipart parser; an escape sequence and NEL (a line break to
    Python's splitlines) do."""
    url, _, _ = server
    body = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x1b[31mX\x85.png"\r\n\r\n'
            + png_bytes(digits[0]) + b"\r\n--B--\r\n")
    answer = httpx.post(f"{url}/predict", content=body, headers={"content-type": "multipart/form-data; boundary=B"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["file"] == "a\\x1b[31mX\\x85.png"
    broken = httpx.post(f"{url}/predict", content=body.replace(png_bytes(digits[0]), b"junk"),
                        headers={"content-type": "multipart/form-data; boundary=B"})
    assert broken.json()["error"].startswith("a\\x1b[31mX\\x85.png is not a readable image")


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


def test_a_client_hanging_up_mid_upload_is_not_a_traceback(server):
    url, process, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        time.sleep(0.3)
    time.sleep(0.3)
    assert httpx.get(f"{url}/health").status_code == 200 and process.poll() is None


def test_sigterm_finishes_and_exits_zero(server):
    url, process, _ = server
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped: the requests in flight were answered" in stderr and "Traceback" not in stderr
    assert re.search(r"^POST /predict 200 \d+ ms$", stderr, re.M) and "GET /health 200 " in stderr  # the access log
    assert "ClientDisconnect" not in stderr


def test_sigterm_with_a_stalled_upload_stops_within_its_bound(tiny_run):
    from cnnclf.inference.server import SHUTDOWN_SECONDS

    url, process, _ = start_server(tiny_run[0], "--quiet")
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        time.sleep(0.5)
        started = time.time()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert time.time() - started < SHUTDOWN_SECONDS + 3 and process.returncode == 0, stderr
    assert f"stopped: 1 request in flight after {SHUTDOWN_SECONDS} s cut off" in stderr
    assert "POST /predict" not in stderr  # --quiet


def test_a_port_in_use_and_a_run_still_training(tiny_run, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cnnclf("serve", tiny_run[0], "--port", port)
    assert result.exit_code == 2 and result.stderr == (
        f"Error: port {port} on 127.0.0.1 is in use; choose another --port, or --port 0 for a free one\n")
    import shutil

    running = shutil.copytree(tiny_run[0], tmp_path / tiny_run[0].name)
    status = json.loads((running / "run.json").read_text())
    (running / "run.json").write_text(json.dumps({**status, "status": "running", "epochs_done": 1}))
    url, process, said = start_server(running)
    assert httpx.get(f"{url}/metadata").json()["status"] == "running"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert f"warning: {running.name} is running (1 epoch done): the model served is its best so far, not its " \
           f"final one" in said
