"""nginx as deploy/ ships it (deploy/run-local.sh renders deploy/nginx/pestid.conf.template), in front of one replica
on SQLite: what it refuses before a replica reads a byte, how many slow bodies one address may hold, how it treats
many farmers behind one carrier's address and a flood of sign-ins, and that every refusal of its own reads like a
replica's (problem+json, Vietnamese first). Each test sends from its own loopback address (127.0.0.N), so each
has its own per-address counts."""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pestid.serving.inputs import MAX_BODY_BYTES
from pestid.serving.problems import problem_body
from tests.conftest import REPO, jpeg_bytes, photo
from tests.onnx_models import linear_model
from tests.stack import Stack, local_stack, missing_tools

pytestmark = [pytest.mark.server, pytest.mark.slow]
ENV_EXAMPLE = REPO / "deploy" / "pestid.env.example"


def shipped_upload_limits() -> dict[str, str]:
    """The replicas' own upload limits as deploy/pestid.env.example sets them behind nginx."""
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and line[0] != "#")
    return {name: value for name, value in pairs if name.startswith("PESTID_UPLOAD")}


@contextmanager
def one_replica(folder: Path) -> Iterator[Stack]:
    if reason := missing_tools():
        pytest.skip(reason)
    model = linear_model(folder / "model.onnx")
    try:
        with local_stack(str(model), folder / "run", env={**shipped_upload_limits(), "PESTID_LOG_JSON": "false"},
                         replicas=1) as stack:  # fmt: skip
            yield stack
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with one_replica(tmp_path_factory.mktemp("nginx")) as running:
        yield running


def client(address: str) -> httpx.Client:
    """A client whose requests come from ``address`` (any 127.0.0.N reaches 127.0.0.1)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def nginx_problem(answer: httpx.Response | None, status: int, code: str, lang: str = "vi") -> dict:
    """``answer`` is nginx's own refusal in the replicas' problem shape, in ``lang``."""
    assert answer is not None, "no answer"
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert set(problem_body(status, code, "", "")) <= set(body)
    assert (body["status"], body["code"], body["type"].rsplit("/", 1)[1]) == (status, code, code)
    assert body["detail"] == body[f"detail_{lang}"] and body["detail_vi"] != body["detail_en"]
    return body


def refused_by_nginx(stack: Stack, status: int) -> list[str]:
    """Access-log lines of answers with ``status`` that reached no replica."""
    return [line for line in stack.access_log() if f'" {status} ' in line and 'upstream="-"' in line]


def multipart(data: bytes, boundary: str = "pestid-test") -> tuple[bytes, str]:
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def start_upload(stack: Stack, address: str, length: int, sent: bytes = b"x" * 1024) -> socket.socket:
    """A connection from ``address`` that has sent an upload's head declaring ``length`` bytes, and ``sent`` of them."""
    host, port = stack.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10, source_address=(address, 0))
    connection.sendall(f"POST /v1/identify HTTP/1.1\r\nHost: pestid\r\nIdempotency-Key: {uuid.uuid4()}\r\n"
                       f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n".encode()
                       + sent)  # fmt: skip
    return connection


def read_answer(connection: socket.socket, timeout: float) -> httpx.Response | None:
    """The answer on ``connection`` (None if none comes within ``timeout``)."""
    connection.settimeout(timeout)
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536) or b"\r\n\r\n"
        head, body = received.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("Content-Length", 0)):
            body += connection.recv(65536)
    except TimeoutError:
        return None
    return httpx.Response(int(lines[0].split()[1]), headers=headers, content=body)


def test_nginx_refuses_a_body_over_the_replicas_64_kb_outside_identify_as_problem_json(stack):
    """Every path but POST /v1/identify takes at most MAX_BODY_BYTES in a replica (serving/inputs.py); nginx
    refuses a larger body first, from its Content-Length or as a chunked body arrives, and never stores it."""
    with client("127.0.0.2") as http:
        declared = http.post(f"{stack.url}/v1/auth/login", content=b" " * 1_000_000,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        chunked = http.post(f"{stack.url}/v1/review/1?lang=en", content=iter([b" " * 100_000] * 10))
        one_more = http.post(f"{stack.url}/v1/auth/login", content=b" " * (MAX_BODY_BYTES + 1),
                             headers={"Content-Type": "application/json", "Accept-Language": "fr, en;q=0.5"})  # fmt: skip
        at_limit = http.post(f"{stack.url}/v1/auth/login", content=b" " * MAX_BODY_BYTES,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert "64 KB" in nginx_problem(declared, 413, "body_too_large")["detail_vi"]
    nginx_problem(chunked, 413, "body_too_large", lang="en")
    nginx_problem(one_more, 413, "body_too_large", lang="en")
    assert at_limit.status_code == 422  # the replica read it: not JSON
    assert len(refused_by_nginx(stack, 413)) == 3


def test_a_photo_upload_of_over_a_megabyte_at_400_kbit_s_lands(stack):
    """A farmer's phone on a slow link: 1.3 MB at 400 kbit/s (about 26 s) is read by nginx to the end, buffered
    in a file, and answered by the replica. nginx puts no deadline on a whole body, only on 60 s of silence."""
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    body, content_type = multipart(buffer.getvalue())
    assert len(body) > 1_200_000
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30, source_address=("127.0.0.3", 0)) as connection:
        connection.sendall(f"POST /v1/identify HTTP/1.1\r\nHost: pestid\r\nIdempotency-Key: {uuid.uuid4()}\r\n"
                           f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode())  # fmt: skip
        began = time.monotonic()
        for start in range(0, len(body), 5_000):  # 5 KB every 0.1 s: 400 kbit/s
            connection.sendall(body[start : start + 5_000])
            time.sleep(max(0.0, began + (start + 5_000) / 50_000 - time.monotonic()))
        answer = read_answer(connection, timeout=30)
    assert answer is not None and answer.status_code == 201, answer and answer.text
    assert time.monotonic() - began > 20


def test_one_address_holds_at_most_4_large_and_32_uploads_at_once(stack):
    """Bodies nginx holds while they arrive, per address: 4 of 1 MB or more (so at most 4 × 76 MB of temporary
    files), 32 in all; past either, an immediate 429 problem+json. Small uploads still pass while 4 large are held."""
    address = "127.0.0.4"
    with ExitStack() as held:
        for _ in range(4):
            held.enter_context(start_upload(stack, address, 5_000_000))
        time.sleep(0.5)  # nginx has read every head
        with start_upload(stack, address, 5_000_000) as fifth:
            body = nginx_problem(read_answer(fifth, timeout=5), 429, "too_many_requests")
        assert body["retry_after_s"] > 0
        with client(address) as http:
            small = http.post(f"{stack.url}/v1/identify", files=[("photos", ("p.jpg", jpeg_bytes(photo()), "image/jpeg"))],
                              headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        assert small.status_code == 201, small.text
        for _ in range(28):
            held.enter_context(start_upload(stack, address, 500_000))
        time.sleep(0.5)
        with start_upload(stack, address, 500_000) as thirty_third:
            nginx_problem(read_answer(thirty_third, timeout=5), 429, "too_many_requests")
        with client(address) as http:  # the farmer page itself still loads
            assert http.get(f"{stack.url}/v1/model").status_code == 200


def test_many_farmers_behind_one_carrier_address_at_6_uploads_a_second_are_not_refused(stack):
    """CGNAT: one public address, many phones (each its own Device-Key). 60 uploads at 6 a second, each answered by
    the replica; the former 1r/s with a burst of 30 refused from the 37th."""
    with client("127.0.0.5") as http:
        began, statuses = time.monotonic(), []
        for k in range(60):
            time.sleep(max(0.0, began + k / 6 - time.monotonic()))
            answer = http.post(f"{stack.url}/v1/identify", files=[("photos", ("p.jpg", jpeg_bytes(photo(seed=k)), "image/jpeg"))],
                               headers={"Idempotency-Key": str(uuid.uuid4()), "Device-Key": f"phone-{k}"})  # fmt: skip
            statuses.append(answer.status_code)
    assert statuses == [201] * 60


def test_nginx_refuses_a_flood_of_uploads_from_one_address_as_problem_json(stack):
    """Past the per-address rate and its burst, nginx answers 429 in the replicas' shape, with Retry-After, and
    the farmer page, which reads detail_vi, keeps the photos to send again."""

    def send(http: httpx.Client) -> list[httpx.Response]:
        answers = []
        for _ in range(60):
            answers.append(http.post(f"{stack.url}/v1/identify?lang=vi", content=b"x",
                                     headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "text/plain"}))  # fmt: skip
            if answers[-1].status_code == 429:
                break
        return answers

    # 6 at a time: under a replica's own cap of uploads in flight per address (8), so every 429 is nginx's
    with client("127.0.0.6") as http, ThreadPoolExecutor(6) as pool:
        answers = [a for batch in pool.map(send, [http] * 6) for a in batch]
    refused = [a for a in answers if a.status_code == 429]
    assert refused and len(answers) - len(refused) >= 50  # the burst passed: a cell back on line
    assert {a.status_code for a in answers} == {415, 429}  # the replica's answer to a body that is no form
    body = nginx_problem(refused[0], 429, "too_many_requests")
    assert refused[0].headers["retry-after"] == str(body["retry_after_s"])


def test_nginx_limits_sign_ins_per_address_loosely_enough_for_an_office(stack):
    """An office of 30 officers behind one address signs in at once; a flood from one address is refused by
    nginx. (Bodies the replica refuses as invalid, 422, before it counts an attempt: every 429 here is nginx's.)"""
    with client("127.0.0.7") as http:
        answers = [http.post(f"{stack.url}/v1/auth/login", json={}) for _ in range(100)]
    statuses = [a.status_code for a in answers]
    assert statuses[:30] == [422] * 30 and 429 in statuses
    nginx_problem(answers[statuses.index(429)], 429, "too_many_requests")


def test_nginx_answers_for_a_dead_replica_as_problem_json(tmp_path):
    """No replica answers: nginx's 502, in English where asked, in the replicas' shape."""
    with one_replica(tmp_path) as alone:
        alone.kill(0)
        with client("127.0.0.8") as http:
            answer = http.get(f"{alone.url}/v1/model", headers={"Accept-Language": "en-GB,en;q=0.9"})
        body = nginx_problem(answer, 502, "service_unreachable", lang="en")
        assert answer.headers["retry-after"] == str(body["retry_after_s"])
