"""DVC's remote on S3, for real: versions pushed to moto's S3 server through ``dvc-s3`` (pinned in
requirements-dvc.lock) at a non-AWS endpoint, and pulled back from it with no local cache.

- A tracked file lands in the bucket under the remote's prefix, keyed by its md5, with its bytes; with the cache and
  the file gone, ``restore`` brings the same bytes back from S3.
- The endpoint is the remote's ``endpointurl`` in ``.dvc/config.local``, written only when it differs.
- The production profile's DVC resource takes the endpoint from ``MLPLATFORM_S3_ENDPOINT``.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import boto3
import duckdb
import pytest

from mlplatform.data.lake import LakeError
from mlplatform.data.versioning import DVCRepo, export_table, file_md5
from mlplatform.orchestration.resources import DVC_REMOTE_ENV, S3_ENDPOINT_ENV, resource
from mlplatform.orchestration.resources.dvc import default_executable
from production.servers import BUCKET  # the bucket the `s3` fixture creates


def s3_repo(root: Path, endpoint: str, prefix: str | None = None) -> DVCRepo:
    return DVCRepo(
        root=root,
        executable=default_executable(),
        remote_url=f"s3://{BUCKET}/{prefix or unique_prefix()}",
        versions_dir=root / "data" / "versions",
        s3_endpoint=endpoint,
    )


def unique_prefix() -> str:
    return f"dvc-{uuid.uuid4().hex[:10]}"


def bucket(endpoint: str):
    return boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name=os.environ["AWS_REGION"])


def remote_keys(endpoint: str, prefix: str) -> set[str]:
    listed = bucket(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    return {item["Key"] for item in listed.get("Contents", [])}


def md5_key(prefix: str, md5: str) -> str:
    """Where DVC 3 keeps a version in a remote: ``<prefix>/files/md5/<2 chars>/<rest>``."""
    return f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}"


def local_config(repo: DVCRepo) -> str:
    return (repo.root / ".dvc" / "config.local").read_text()


def test_a_version_goes_to_s3_and_comes_back_from_it_without_the_cache(s3, project):
    prefix = unique_prefix()
    repo = s3_repo(project, s3, prefix)
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i AS id, i % 7 AS bucket, '2013-01' AS period FROM range(5000) r(i)")
    path = export_table(con, "t", "2013-01", repo.version_path("flights/clean_flights", "2013-01"))
    content = path.read_bytes()

    started = time.monotonic()
    version = repo.track(path)
    pushed_in = time.monotonic() - started
    assert version.md5 == file_md5(path) and version.remote == f"s3://{BUCKET}/{prefix}"
    assert f"endpointurl = http://{s3}" in local_config(repo)
    # The object is in moto's bucket, under the remote's prefix, keyed by the md5, with the file's bytes.
    assert remote_keys(s3, prefix) == {md5_key(prefix, version.md5)}
    stored = bucket(s3).get_object(Bucket=BUCKET, Key=md5_key(prefix, version.md5))["Body"].read()
    assert stored == content

    shutil.rmtree(project / ".dvc" / "cache")
    path.unlink()
    restored = repo.restore(version.md5, path.name)
    assert restored.read_bytes() == content
    assert pushed_in < 60, f"dvc add + push to moto took {pushed_in:.1f} s"


def test_a_folder_version_goes_to_s3_and_comes_back_whole(s3, project):
    prefix = unique_prefix()
    repo = s3_repo(project, s3, prefix)
    folder = repo.versions_dir / "flights" / "model"
    folder.mkdir(parents=True)
    (folder / "weights.pt").write_bytes(b"weights one")
    (folder / "manifest.json").write_text("{}")
    version = repo.track(folder)
    assert version.md5.endswith(".dir")
    # The listing and each file's bytes, all under the prefix.
    expected = {md5_key(prefix, version.md5)} | {
        md5_key(prefix, file_md5(folder / name)) for name in ("weights.pt", "manifest.json")
    }
    assert remote_keys(s3, prefix) == expected

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(folder)
    restored = repo.restore(version.md5, "model")
    assert (restored / "weights.pt").read_bytes() == b"weights one"
    assert (restored / "manifest.json").read_text() == "{}"


def test_the_endpoint_is_written_once_and_follows_the_setting(project):
    # No server needed: this is DVC's configuration only.
    repo = s3_repo(project, "127.0.0.1:9000", "p")
    repo.ensure_initialised()
    config = project / ".dvc" / "config.local"
    assert "url = s3://lake/p" in config.read_text() and "endpointurl = http://127.0.0.1:9000" in config.read_text()
    written = config.stat().st_mtime_ns
    time.sleep(0.01)
    repo.ensure_initialised()  # nothing differs: nothing written
    assert config.stat().st_mtime_ns == written

    s3_repo(project, "https://minio.example.com:9000", "p").ensure_initialised()
    assert "endpointurl = https://minio.example.com:9000" in config.read_text()
    # A new remote URL replaces DVC's whole remote section; the endpoint is set again.
    s3_repo(project, "https://minio.example.com:9000", "q").ensure_initialised()
    assert "url = s3://lake/q" in config.read_text()
    assert "endpointurl = https://minio.example.com:9000" in config.read_text()
    # No endpoint (AWS S3 itself): DVC's own default, the endpoint unset.
    s3_repo(project, "", "q").ensure_initialised()
    assert "endpointurl" not in config.read_text() and "url = s3://lake/q" in config.read_text()

    with pytest.raises(LakeError, match="host:port"):
        s3_repo(project, "ftp://minio/x", "q").ensure_initialised()


def test_the_production_profile_versions_to_s3_at_the_environments_endpoint(s3, project, monkeypatch):
    prefix = unique_prefix()
    monkeypatch.setenv("MLPLATFORM_DVC_REPO", str(project))
    monkeypatch.setenv("MLPLATFORM_DVC_VERSIONS_DIR", str(project / "data" / "versions"))
    monkeypatch.setenv(DVC_REMOTE_ENV, f"s3://{BUCKET}/{prefix}")
    monkeypatch.setenv(S3_ENDPOINT_ENV, s3)
    repo = resource("dvc", "production").repo()
    assert repo.s3_endpoint == s3 and repo.remote_url == f"s3://{BUCKET}/{prefix}"

    path = repo.version_path("flights/training_set", None)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"from the production profile")
    version = repo.track(path)
    assert remote_keys(s3, prefix) == {md5_key(prefix, version.md5)}


def test_the_production_profile_names_a_missing_endpoint_variable(project, monkeypatch):
    monkeypatch.setenv("MLPLATFORM_DVC_REPO", str(project))
    monkeypatch.setenv("MLPLATFORM_DVC_VERSIONS_DIR", str(project / "data" / "versions"))
    monkeypatch.setenv(DVC_REMOTE_ENV, f"s3://{BUCKET}/x")
    monkeypatch.delenv(S3_ENDPOINT_ENV, raising=False)
    with pytest.raises(ValueError, match=S3_ENDPOINT_ENV):
        resource("dvc", "production")
