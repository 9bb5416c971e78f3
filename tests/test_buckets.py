"""Folders in a bucket, against a real S3 API: moto's server on loopback, reached by s3fs through
``AWS_ENDPOINT_URL`` with dummy credentials in the environment only (docs/scale-out.md).

A bucket-to-bucket run keeps the same records and writes the same files as a local run of the
same photos; a second run makes no generation call; a Dask run of two worker processes writes
every accepted variation once; the preflight writes and removes a probe object; a deployment's
run may not name a bucket the operator did not allow; a URL with a credential is refused."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import make_photo_folder
from test_runners import _attempts, _images, _variations
from varflow.flows.addresses import refuse_unpinned_addresses
from varflow.flows.parameters import RunParameters
from varflow.flows.variation_flow import run_local
from varflow.storage import Store

from varflow.images.locations import ObjectFolder, address, key_problem
from varflow.processing.scan import UNREADABLE, scan_images
from varflow.runtime.preflight import PreflightError, check_folders

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

N_IMAGES = 4
BUCKET = "photos"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION":
           "us-east-1", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free loopback port; the environment points every S3 client (this
    process's and the Dask workers' it starts) at it."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    try:
        yield fs
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        server.stop()


def _run(tmp: Path, src: str, out: str, name: str, **kw) -> tuple[dict, Store]:
    home = tmp / f"home-{name}"
    # style changes: every image finishes (an object edit may find no object: redone by the next run)
    params = RunParameters(input_dir=src, output_dir=out, home=str(home), count=2, seed=3, level="medium",
                           adaptive=False, variation_type="style_change", **kw)
    summary, store = run_local(params), Store(home)
    return summary, store, {"variations": _variations(store), "attempts": _attempts(store), "images": _images(store)}


@pytest.fixture(scope="module")
def runs(prefect_server, s3, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("buckets")
    photos = tmp / "photos"
    make_photo_folder(photos, N_IMAGES, size=240)
    for p in sorted(photos.rglob("*.png")):
        s3.put_file(str(p), f"{BUCKET}/in/{p.relative_to(photos).as_posix()}")
    local = _run(tmp, str(photos), str(tmp / "out-local"), "local", keep_rejected=True)
    with _requests() as first_requests:
        bucket = _run(tmp, f"s3://{BUCKET}/in", f"s3://{BUCKET}/out", "bucket", keep_rejected=True)
    with _requests() as requests:  # what the second run asks of the S3 API
        again = _run(tmp, f"s3://{BUCKET}/in", f"s3://{BUCKET}/out", "bucket")
    dask = _run(tmp, f"s3://{BUCKET}/in", f"s3://{BUCKET}/out-dask", "dask", runner="dask", dask_workers=2)
    return {"local": local, "bucket": bucket, "again": again, "dask": dask, "out": tmp / "out-local",
            "again_requests": requests, "first_requests": first_requests}


@contextmanager
def _requests():
    """The requests moto's server answers meanwhile (its werkzeug access log: "GET /bucket/key ...")."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler, logger = Keep(logging.INFO), logging.getLogger("werkzeug")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def _objects(s3, prefix: str) -> dict[str, str]:
    s3.invalidate_cache()
    return {k.split(f"{prefix}/", 1)[1]: hashlib.sha256(s3.cat_file(k)).hexdigest()
            for k in sorted(s3.find(f"{BUCKET}/{prefix}"))}


def _files(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.png"))}


def test_a_bucket_to_bucket_run_keeps_the_records_and_files_of_a_local_run(runs, s3):
    (local, _, local_records), (summary, store, records) = runs["local"], runs["bucket"]
    assert summary["status"] == "completed" and summary["images_ok"] == N_IMAGES
    assert summary["variations_accepted"] == local["variations_accepted"] >= N_IMAGES
    assert records == local_records  # variations (ids, hashes, every score), attempts, images
    # the same accepted files (and rejected ones under _rejected/), as objects
    assert _objects(s3, "out") == _files(runs["out"])
    paths = {r["output_path"] for r in store.query("SELECT output_path FROM variations WHERE accepted")}
    assert paths and all(p.startswith(f"s3://{BUCKET}/out/") for p in paths)
    sources = {r["path"] for r in store.query("SELECT path FROM images")}
    assert sources == {f"s3://{BUCKET}/in/photo-{i:03d}.png" for i in range(N_IMAGES)}
    assert any("_rejected/" in k for k in _objects(s3, "out")) == any("_rejected" in k for k in _files(runs["out"]))


def test_the_gallery_shows_the_bucket_outputs_thumbnails(runs):
    summary, _, _ = runs["bucket"]
    page = Path(summary["gallery_path"]).read_text()
    assert "accepted file no longer at" not in page
    assert page.count('title="the accepted file"') == summary["variations_accepted"]
    assert page.count('alt="original ') == N_IMAGES  # each source's thumbnail, fetched from the bucket


def test_a_review_of_a_bucket_output_is_refused_and_moves_nothing(runs, s3):
    """Keeping or rejecting an object is not built: the decision is refused in one line, nothing recorded."""
    from varflow.flows.review import apply_review

    from varflow.errors import InputError

    _, store, _ = runs["bucket"]
    row = store.query("SELECT variation_id, output_path FROM variations WHERE accepted AND "
                      "starts_with(output_path, 's3://') LIMIT 1")[0]
    with pytest.raises(InputError, match="written to a bucket"):
        apply_review(store, row["variation_id"], "reject", reviewer="ana")
    assert s3.exists(row["output_path"].removeprefix("s3://"))
    assert store.query("SELECT count(*) AS n FROM reviews")[0]["n"] == 0


def test_a_second_run_over_an_unchanged_bucket_makes_no_call_and_reads_no_object(runs):
    summary, store, _ = runs["again"]
    assert summary["status"] == "completed" and summary["calls"] == 0 and summary["images_ok"] == 0
    assert summary["images_skipped"] == N_IMAGES
    run_id = summary["run_id"]
    assert store.query("SELECT count(*) AS n FROM attempts WHERE run_id = ?", [run_id])[0]["n"] == 0
    # Each object's hash is on record by (URL, ETag, size): the listing alone identified them.
    requests = runs["again_requests"]
    assert [r for r in runs["first_requests"] if f"GET /{BUCKET}/in/" in r]  # the first run read them
    assert any(f"GET /{BUCKET}?list-type=2&prefix=in/" in r for r in requests)  # it listed the folder
    assert not [r for r in requests if f"GET /{BUCKET}/in/" in r]  # and read no object of it
    assert len(list((store.home / "cache" / "objects").rglob("*"))) >= N_IMAGES


def test_a_dask_run_of_two_workers_writes_every_accepted_variation_once(runs, s3):
    (summary, store, records), (_, _, local_records) = runs["dask"], runs["local"]
    assert summary["status"] == "completed" and summary["images_ok"] == N_IMAGES
    written = _objects(s3, "out-dask")
    accepted = [r["output_path"] for r in store.query("SELECT output_path FROM variations WHERE accepted")]
    assert len(accepted) == len(set(accepted)) == len(written) == summary["variations_accepted"]
    assert {f"s3://{BUCKET}/out-dask/{k}" for k in written} == set(accepted)
    local_accepted = {k: v for k, v in _files(runs["out"]).items() if "/" not in k}
    assert written == local_accepted  # the same pictures as the local run
    assert records == local_records


def test_the_preflight_writes_and_removes_a_probe_object(s3, tmp_path):
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="probed")
    client.put_bucket_versioning(Bucket="probed", VersioningConfiguration={"Status": "Enabled"})
    check_folders(address(f"s3://{BUCKET}/in"), address("s3://probed/out"), tmp_path / "home")
    versions = client.list_object_versions(Bucket="probed")
    written = [v["Key"] for v in versions.get("Versions", [])]
    removed = [m["Key"] for m in versions.get("DeleteMarkers", [])]
    assert len(written) == 1 and written == removed and written[0].startswith("out/.varflow-probe-")
    assert client.list_objects_v2(Bucket="probed").get("KeyCount") == 0  # nothing left behind
    with pytest.raises(PreflightError, match=r"output folder s3://no-such-bucket/out cannot be written"):
        check_folders(address(f"s3://{BUCKET}/in"), address("s3://no-such-bucket/out"), tmp_path / "home")
    with pytest.raises(PreflightError, match="is the input folder"):
        check_folders(address(f"s3://{BUCKET}/in"), address(f"s3://{BUCKET}/in/"), tmp_path / "home")


def test_a_deployments_run_may_name_only_the_buckets_the_operator_allows():
    pins = {"input_dir": {f"s3://{BUCKET}/in"}, "output_dir": set()}
    ok = RunParameters(input_dir=f"s3://{BUCKET}/other", output_dir=f"s3://{BUCKET}/out")
    refuse_unpinned_addresses(ok, pins, set())  # the deployment names the bucket: any prefix of it
    theirs = RunParameters(input_dir="s3://someone-elses/photos", output_dir=f"s3://{BUCKET}/out")
    with pytest.raises(ValueError, match=r"input_dir: .*s3://someone-elses is neither, so the run is refused"):
        refuse_unpinned_addresses(theirs, pins, set())
    into = RunParameters(input_dir=f"s3://{BUCKET}/in", output_dir="s3://someone-elses/out")
    with pytest.raises(ValueError, match=r"output_dir: .*VARFLOW_ALLOWED_ADDRESSES"):
        refuse_unpinned_addresses(into, pins, set())
    refuse_unpinned_addresses(theirs, pins, {"s3://someone-elses"})  # the worker's operator allows it
    refuse_unpinned_addresses(theirs, None, set())  # `varflow run`: its caller's to choose


@pytest.mark.parametrize("url", ["s3://AKIAEXAMPLE:sEcReT123@photos/in", "s3://photos/in?X-Amz-Signature=sEcReT123",
                                 "s3://sEcReT123@photos/in"])
def test_a_bucket_url_with_a_credential_is_refused_without_repeating_it(url):
    with pytest.raises(ValueError) as refused:
        RunParameters(input_dir=url)
    assert "AWS_ACCESS_KEY_ID" in str(refused.value) and "sEcReT123" not in str(refused.value)
    with pytest.raises(ValueError) as refused:
        RunParameters(input_dir="in", output_dir=url)
    assert "sEcReT123" not in str(refused.value)


def test_unsupported_schemes_and_hostile_prefixes_are_refused():
    with pytest.raises(ValueError, match="gs:// folders are not supported"):
        RunParameters(input_dir="gs://photos/in")
    with pytest.raises(ValueError, match=r"'\.\.' segment"):
        RunParameters(input_dir="s3://photos/in/../secret")
    with pytest.raises(ValueError, match="dedup_library is not available with an output bucket"):
        RunParameters(input_dir="in", output_dir="s3://photos/out", dedup_library=True)
    assert address("file:///tmp/x/") == Path("/tmp/x").resolve() and address("s3://b/p/") == "s3://b/p"


def test_hostile_keys_are_listed_and_recorded_never_read(s3, tmp_path):
    # moto's server (werkzeug) cannot store a key with a newline; a carriage return is the same trap
    odd = ["odd/été à 'x' $(y).png", "odd/a\rb.png", "odd/sub/../../escape.png", "odd//double.png"]
    assert key_problem("a\nb.png") and key_problem("a\rb.png") and not key_problem("été à 'x' $(y).png")
    for key in odd:
        s3.pipe_file(f"{BUCKET}/{key}", b"not read")
    folder = ObjectFolder(f"s3://{BUCKET}/odd", ids_dir=tmp_path / "ids")
    paths = folder.list_images((".png",))
    assert len(paths) == len(odd)
    found = {f.path: f for f in scan_images(paths, f"s3://{BUCKET}/odd", fingerprint={}, finished={},
                                            folder=folder)}
    bad = [p for p in paths if key_problem(p.split("/odd/", 1)[1])]
    assert len(bad) == 3
    for p in bad:
        message = found[p].message
        assert found[p].status == UNREADABLE and "\r" not in message and "rename the object" in message
    (fine,) = set(paths) - set(bad)
    assert found[fine].status != UNREADABLE and found[fine].image_id == hashlib.sha256(b"not read").hexdigest()


def test_the_command_line_takes_bucket_urls_and_refuses_one_with_a_credential(runs, capsys):
    from varflow.flows.cli import main

    assert main(["run", f"s3://{BUCKET}/in", "--out", f"s3://{BUCKET}/out", "--dry-run", "--count", "2",
                 "--seed", "3", "--level", "medium", "--no-adapt", "--type", "style_change",
                 "--home", str(runs["bucket"][1].home)]) == 0
    out = capsys.readouterr().out
    assert f"{N_IMAGES} found, 0 to do ({N_IMAGES} already done" in out  # listed and known by ETag
    with pytest.raises(SystemExit) as stopped:
        main(["run", f"s3://AKIAEXAMPLE:sEcReT123@{BUCKET}/in", "--dry-run"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "AWS_ACCESS_KEY_ID" in err and "sEcReT123" not in err
