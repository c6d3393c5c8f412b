"""Three stateless replicas behind nginx, as deploy/ ships them (deploy/run-local.sh renders the shipped nginx file),
on a real PostgreSQL, a real S3 server (SeaweedFS) and a real MLflow registry, all on 127.0.0.1.

Sign-in throttling, receipts, district scope and the audit log hold whichever replica answers; a new champion
reaches every replica by itself; and a replica killed with SIGKILL in the middle of farmers' uploads loses no
acknowledged submission and stores none twice, the farmer page's retry with its idempotency key being the
mechanism (nginx resends an upload with a key to another replica; the client resends what got no answer)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from pestid.sample import SAMPLE_CLASSES
from pestid.serving.accounts import add_user
from pestid.serving.db import LoginAttempt, Photo, Submission, open_database
from pestid.serving.photos_s3 import S3PhotoStore
from pestid.serving.ratelimit import LOAD_TEST_ENV
from pestid.serving.submissions import referenced_paths
from tests.conftest import Bucket, jpeg_bytes, new_database, photo
from tests.onnx_models import linear_model
from tests.stack import LAUNCHER, Stack, local_stack, missing_tools, throwaway_mlflow

pytestmark = [pytest.mark.server, pytest.mark.slow]
PASSWORD = "ruộng lúa xanh mướt 2026"
REFRESH_S = 2.0  # PESTID_MODEL_REFRESH_S on every replica
DISTRICTS = ["Phú Tân", "Chợ Mới", "An Phú", None]


@dataclass
class Registry:
    url: str
    folder: Path

    def register(self, model: Path, *, champion: bool) -> str:
        """Log and register ``model`` as `pestid train` does (a new version), and make it @champion."""
        import mlflow
        import onnx
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(self.url)
        mlflow.set_experiment("replicas")
        with mlflow.start_run():
            info = mlflow.onnx.log_model(onnx.load(str(model)), name="model", save_as_external_data=False)
        version = str(mlflow.register_model(info.model_uri, "pestid").version)
        if champion:
            MlflowClient(self.url).set_registered_model_alias("pestid", "champion", version)
        return version


@dataclass
class Cluster:
    stack: Stack
    registry: Registry
    database_url: str
    bucket: Bucket
    models: Path
    sessions: object = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = open_database(self.database_url, migrate_schema=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_url, seaweedfs):
    folder = tmp_path_factory.mktemp("replicas")
    bucket = Bucket(seaweedfs, f"replicas-{uuid.uuid4().hex[:8]}")
    database_url = new_database(postgres_url)
    env = {**bucket.env, **LOAD_TEST_ENV, "PESTID_DATABASE_URL": database_url, "PESTID_LOG_JSON": "false",
           "PESTID_MODEL_REFRESH_S": str(REFRESH_S)}  # fmt: skip
    try:
        with throwaway_mlflow(folder / "mlflow") as mlflow_url:
            registry = Registry(mlflow_url, folder / "mlflow")
            registry.register(linear_model(folder / "v1.onnx"), champion=True)
            env["PESTID_MLFLOW_TRACKING_URI"] = mlflow_url
            with local_stack("models:/pestid@champion", folder / "run", env=env, upload_rate="1000r/s") as stack:
                yield Cluster(stack, registry, database_url, bucket, folder)
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _sign_in(url: str, name: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _upload(url: str, data: bytes, *, key: str, district: str | None, client: httpx.Client | None = None):
    send = client.post if client else partial(httpx.post, timeout=30)
    return send(f"{url}/v1/identify", files=[("photos", ("p.jpg", data, "image/jpeg"))],
                data={"district": district} if district else {}, headers={"Idempotency-Key": key})  # fmt: skip


def _logged(stack: Stack, request: str, field: str = "upstream") -> list[list[str]]:
    """For each logged request starting with ``request``, a field of nginx's log as a list: ``upstream``, the
    replicas it was sent to in order, or ``upstream_status``, what each answered."""
    found = []
    for line in stack.access_log():
        if f'"{request}' in line:
            found.append(line.split(f' {field}="', 1)[1].split('"', 1)[0].split(", "))
    return found


def test_sign_in_throttling_receipts_districts_and_audit_hold_across_replicas(cluster):
    stack, (one, two, three) = cluster.stack, [r.url for r in cluster.stack.replicas]
    with cluster.sessions() as session, session.begin():
        for name, role, district in [("tam", "officer", "Phú Tân"), ("lan", "officer", "Phú Tân"),
                                     ("minh", "admin", None)]:  # fmt: skip
            add_user(session, name, PASSWORD, role, district)

    # Sign-in throttling: five wrong guesses through nginx, each claiming another address, land on every replica
    # and are counted together, against nginx's real view of the client (the forged addresses are dropped).
    guesses = [httpx.post(f"{stack.url}/v1/auth/login", json={"username": "tam", "password": f"wrong guess {k}"},
                          headers={"X-Forwarded-For": f"203.0.113.{k}"}) for k in range(5)]  # fmt: skip
    assert [g.status_code for g in guesses] == [401] * 5
    right = httpx.post(f"{stack.url}/v1/auth/login", json={"username": "tam", "password": PASSWORD},
                       headers={"X-Forwarded-For": "198.51.100.9"})  # fmt: skip
    assert right.status_code == 429 and right.json()["code"] == "too_many_attempts"
    assert len({u[0] for u in _logged(stack, "POST /v1/auth/login")}) == 3  # spread over the three
    with cluster.sessions() as session:
        assert set(session.scalars(select(LoginAttempt.address).where(LoginAttempt.username == "tam"))) == {"127.0.0.1"}

    # A receipt given by one replica works on every other; a wrong one is 404 everywhere.
    mine, theirs = jpeg_bytes(photo("brown_planthopper", 1, 96)), jpeg_bytes(photo("rice_bug", 2, 96))
    answer = _upload(one, mine, key="x-1", district="Phú Tân").json()
    other = _upload(stack.url, theirs, key="x-2", district="Chợ Mới").json()
    sub = answer["submission_id"]
    for url in (two, three, stack.url):
        assert httpx.get(f"{url}/v1/submissions/{sub}", headers={"Receipt": answer["receipt"]}).status_code == 200
        assert httpx.get(f"{url}/v1/submissions/{sub}", headers={"Receipt": other["receipt"]}).status_code == 404

    # District scope, with a token from one replica used on the others.
    lan = _sign_in(one, "lan")
    queue = {item["id"] for item in httpx.get(f"{two}/v1/review/queue", headers=lan).json()}
    assert sub in queue and other["submission_id"] not in queue
    own = httpx.get(f"{three}/v1/submissions/{sub}/photos/0", headers=lan)
    assert own.status_code == 200 and own.content == mine
    assert httpx.get(f"{three}/v1/submissions/{other['submission_id']}/photos/0", headers=lan).status_code == 404
    refused = httpx.post(f"{two}/v1/review/{other['submission_id']}", json={"action": "reject", "reason": "blurry"},
                         headers=lan)  # fmt: skip
    assert refused.status_code == 404

    # The audit log: a verdict on one replica, its undo on another, both read on a third.
    verdict = httpx.post(f"{one}/v1/review/{sub}", json={"action": "relabel", "label": "rice_bug"}, headers=lan)
    assert verdict.status_code == 200 and verdict.json()["status"] == "approved"
    undone = httpx.post(f"{two}/v1/review/undo/{verdict.json()['audit_id']}", headers=lan)
    assert undone.status_code == 200 and undone.json()["status"] == "pending_review"
    audit = httpx.get(f"{three}/v1/audit", params={"submission_id": sub}, headers=_sign_in(three, "minh")).json()
    assert [(e["action"], e["after"].get("undid")) for e in audit] == [("undo", verdict.json()["audit_id"]),
                                                                       ("relabel", None)]  # fmt: skip


def test_nginx_refuses_a_body_past_the_servers_limits_and_passes_an_upload_without_a_key(cluster):
    """A body larger than 5 photos of 15 MB is refused by nginx from its Content-Length, before any replica reads a
    byte; an upload without an Idempotency-Key takes the route that is never resent, and still lands."""
    import socket

    host, port = cluster.stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: pestid\r\nIdempotency-Key: huge\r\n"
                           b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 90000000\r\n\r\n")  # fmt: skip
        assert connection.recv(200).startswith(b"HTTP/1.1 413")
    keyless = httpx.post(f"{cluster.stack.url}/v1/identify",
                         files=[("photos", ("p.jpg", jpeg_bytes(photo("rice_bug", 3, 96)), "image/jpeg"))])  # fmt: skip
    assert keyless.status_code == 201, keyless.text
    deadline = time.monotonic() + 10  # nginx logs the refusal once it has closed that connection
    while not (refusals := [line for line in cluster.stack.access_log() if '"POST /v1/identify' in line
                            and '" 413 ' in line]) and time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.2)
    assert len(refusals) == 1 and 'upstream="-"' in refusals[0]  # it never reached a replica


def test_a_new_champion_reaches_every_replica_by_itself(cluster):
    """`pestid promote` moves @champion in the registry; every replica re-resolves it every PESTID_MODEL_REFRESH_S
    and loads the new version beside the old one, without a restart."""
    replicas = cluster.stack.replicas
    assert {httpx.get(f"{r.url}/v1/model").json()["version"] for r in replicas} == {"pestid/1"}
    better = linear_model(
        cluster.models / "v2.onnx", weight=np.random.default_rng(2).normal(0, 4, (3, len(SAMPLE_CLASSES)))
    )
    version = cluster.registry.register(better, champion=False)
    from mlflow import MlflowClient

    moved = time.monotonic()
    MlflowClient(cluster.registry.url).set_registered_model_alias("pestid", "champion", version)
    reached: dict[int, float] = {}
    while len(reached) < len(replicas) and time.monotonic() - moved < 60:
        for r in replicas:
            if r.index not in reached and httpx.get(f"{r.url}/v1/model").json()["version"] == f"pestid/{version}":
                reached[r.index] = time.monotonic() - moved
        time.sleep(0.1)
    print(f"@champion moved to pestid/{version}: reached the replicas after {sorted(round(s, 1) for s in reached.values())} s"
          f" (PESTID_MODEL_REFRESH_S={REFRESH_S})")  # fmt: skip
    assert len(reached) == len(replicas)
    # at most one interval to notice the move, and the download and load of a small model on a busy machine
    assert max(reached.values()) < REFRESH_S + 10
    answer = _upload(cluster.stack.url, jpeg_bytes(photo("rice_bug", 5, 96)), key="after-promote", district=None)
    assert answer.json()["model"]["version"] == f"pestid/{version}"


@dataclass
class Farmers:
    """Farmers' phones sending through nginx as the farmer page does: each observation keeps its key across
    retries; a 2xx is acknowledged; a 4xx other than 408 and 429 is refused for good; anything else (a 5xx, a
    408, a 429, a cut connection, a timeout) is sent again with the same key, after a growing wait (the page's
    5 s…60 s, scaled down here)."""

    url: str
    acknowledged: dict[str, str] = field(default_factory=dict)  # key → submission id
    sent: dict[str, bytes] = field(default_factory=dict)  # key → photo
    districts: dict[str, str | None] = field(default_factory=dict)  # key → the district sent with it
    answers: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def phone(self, number: int, observations: int) -> None:
        rng = random.Random(number)
        with httpx.Client(timeout=30) as client:
            for k in range(observations):
                key, data = f"kill-{number}-{k}", jpeg_bytes(photo("brown_planthopper", 10_000 + 100 * number + k, 96))
                district = rng.choice(DISTRICTS)
                with self.lock:
                    self.sent[key], self.districts[key] = data, district
                self.send(client, key, data, district)

    def send(self, client: httpx.Client, key: str, data: bytes, district: str | None) -> None:
        wait = 0.2
        for _ in range(30):
            try:
                answer = _upload(self.url, data, key=key, district=district, client=client)
                outcome = str(answer.status_code)
            except httpx.HTTPError as exc:
                answer, outcome = None, type(exc).__name__
            with self.lock:
                self.answers[outcome] += 1
                if answer is not None and answer.status_code in (200, 201):
                    self.acknowledged[key] = answer.json()["submission_id"]
                    return
                if answer is not None and 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                    self.refused.append(f"{key}: {answer.text}")
                    return
            time.sleep(wait)
            wait = min(2 * wait, 2.0)
        raise AssertionError(f"{key} was never acknowledged")


def test_killing_a_replica_mid_load_loses_no_acknowledged_upload_and_stores_none_twice(cluster):
    stack, phones, each = cluster.stack, 6, 25
    farmers = Farmers(stack.url)
    with ThreadPoolExecutor(phones) as pool:
        running = [pool.submit(farmers.phone, n, each) for n in range(phones)]
        while len(farmers.acknowledged) < 40 and not all(done.done() for done in running):
            time.sleep(0.05)
        stack.kill(1)
        killed_at = len(farmers.acknowledged)
        for done in running:
            done.result()

    # A phone not sure its upload arrived sends it again with the same key: whichever replica answers replays it.
    for key in sorted(farmers.sent)[:10]:
        replay = _upload(stack.url, farmers.sent[key], key=key, district=farmers.districts[key])
        assert (replay.status_code, replay.json()["submission_id"]) == (200, farmers.acknowledged[key])
        assert replay.headers["idempotent-replayed"] == "true"

    keys = set(farmers.sent)
    with cluster.sessions() as session:
        stored = dict(session.execute(select(Submission.idempotency_key, Submission.id)
                                      .where(Submission.idempotency_key.in_(keys))).all())  # fmt: skip
        photos = session.execute(select(Photo.submission_id, Photo.path, Photo.sha256)
                                 .where(Photo.submission_id.in_(stored.values()))).all()  # fmt: skip
        repeated = session.execute(select(Photo.sha256).where(Photo.submission_id.in_(stored.values()))
                                   .group_by(Photo.sha256).having(func.count() > 1)).all()  # fmt: skip
    store = S3PhotoStore(cluster.bucket.url, client=cluster.bucket.server.client())
    orphans = store.reconcile(partial(referenced_paths, cluster.sessions), min_age_s=0)
    with cluster.sessions() as session:
        referenced = set(session.scalars(select(Photo.path)))
    left_over = [key for key in store.stored() if key not in referenced]
    resent = [s for s in _logged(stack, "POST /v1/identify", "upstream_status") if len(s) > 1]
    failed = Counter(re.sub(r"^.*?\*\d+ ", "", line).split(" while ")[0].split(", client")[0]
                     for line in stack.error_log() if "/v1/identify" in line and "upstream" in line)  # fmt: skip
    print(f"{len(keys)} uploads, replica 1 killed after {killed_at} were acknowledged: {len(farmers.acknowledged)} "
          f"acknowledged, {len(stored)} stored, {len(repeated)} photos stored twice; answers {dict(farmers.answers)}; "
          f"{len(resent)} sent on by nginx to another replica (upstream statuses {resent}; nginx's reasons {dict(failed)}); {orphans} orphan objects removed by reconcile, "
          f"{len(left_over)} left")  # fmt: skip

    assert farmers.refused == []
    assert resent  # nginx met the dead replica and sent those uploads on
    assert set(farmers.acknowledged) == keys  # every upload was acknowledged in the end …
    assert stored == farmers.acknowledged  # … and stored once, under the submission its phone was told
    assert repeated == [] and len(photos) == len(keys)
    path_of = {sub: path for sub, path, _ in photos}
    assert all(store.original(path_of[sub]) == farmers.sent[key] for key, sub in stored.items())  # bytes as sent
    assert left_over == []


def test_the_launcher_refuses_more_than_one_replica_without_postgresql(tmp_path):
    """Replicas share the database: on SQLite (or no URL) each would have its own. deploy/run-local.sh refuses
    before it starts anything, and names the URL's scheme, never its password."""
    if reason := missing_tools():
        pytest.skip(reason)

    def launch(database_url: str | None, photo_store: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PESTID_DATABASE_URL", "PESTID_PHOTO_STORE")}
        env |= {k: v for k, v in (("PESTID_DATABASE_URL", database_url), ("PESTID_PHOTO_STORE", photo_store)) if v}
        return subprocess.run(["bash", str(LAUNCHER), "--model", "model.onnx", "--replicas", "2", "--run",
                               str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    for url in (f"sqlite:///{tmp_path / 'pestid.db'}", "sqlite://", "mysql+pymysql://pestid:s3cret@db/pestid", None):
        refused = launch(url, "s3://photos/national")
        assert refused.returncode == 2 and "PostgreSQL" in refused.stderr, refused.stderr
        assert "s3cret" not in refused.stderr
    on_postgresql = launch("postgresql+psycopg://pestid:s3cret@db.internal/pestid", None)  # the next check: the bucket
    assert on_postgresql.returncode == 2 and "PostgreSQL" not in on_postgresql.stderr
    assert "PESTID_PHOTO_STORE=s3://" in on_postgresql.stderr and "s3cret" not in on_postgresql.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
