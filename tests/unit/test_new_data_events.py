"""The new-data events and the watcher's inventory: what an event says, that the same object is
always the same event, that nothing secret can enter one, and what a pass lists."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestration.config import ConfigError, load_config
from orchestration.events import (
    DATA_ARRIVED,
    DRIFT_DETECTED,
    HAS_PRICE_LABEL,
    RESOURCE_PREFIX,
    TRIGGER_PARAMETERS,
    ListingsObject,
    UnpublishableSource,
    arrival,
    drift,
)
from orchestration.source_inventory import etag_fingerprint, list_folder

SUBJECT = ListingsObject("oss://listings/nyc/2026-12/listings.csv", "etag:0A1B", 123)


def test_the_same_object_is_one_event_id_whoever_announces_it() -> None:
    by_upload = arrival(SUBJECT, "upload")
    by_watcher = arrival(ListingsObject(SUBJECT.source, SUBJECT.fingerprint), "watcher")
    assert by_upload.id == by_watcher.id
    assert by_upload.resource()["prefect.resource.id"] == RESOURCE_PREFIX + SUBJECT.key


def test_new_content_or_another_event_is_another_id() -> None:
    changed = ListingsObject(SUBJECT.source, "etag:FFFF", 123)
    assert arrival(changed, "upload").id != arrival(SUBJECT, "upload").id
    assert changed.key != SUBJECT.key
    assert drift(SUBJECT, {}).id != arrival(SUBJECT, "upload").id


def test_the_payload_holds_what_the_retrain_trigger_templates() -> None:
    event = drift(
        ListingsObject("/data/scoring.csv", "sha256:ab", 9, has_price=False),
        {"model_version": "3"},
    )
    payload = event.payload()
    for parameter, template in TRIGGER_PARAMETERS.items():
        assert template == "{{ event.payload." + parameter + " }}"
        assert parameter in payload
    assert payload["origin"] == "drift" and payload["model_version"] == "3"
    assert event.name == DRIFT_DETECTED
    assert event.resource()[HAS_PRICE_LABEL] == "false"
    assert arrival(SUBJECT, "upload").name == DATA_ARRIVED


@pytest.mark.parametrize(
    "source",
    [
        "https://user:hunter2@example.com/listings.csv",
        "https://example.com/listings.csv?X-Amz-Signature=abc&X-Amz-Credential=k",
        "https://bucket.oss.example.com/l.csv?OSSAccessKeyId=k&Signature=s",
    ],
)
def test_a_source_carrying_credentials_never_enters_an_event(source: str) -> None:
    with pytest.raises(UnpublishableSource, match=r"\$\{oc\.env:NAME\}") as refused:
        ListingsObject(source, "sha256:00")
    assert "hunter2" not in str(refused.value) and "Signature=s" not in str(refused.value)


def test_an_environment_reference_is_published_as_written() -> None:
    subject = ListingsObject("${oc.env:LISTINGS_URL}", "sha256:00")
    assert arrival(subject, "upload").payload()["source"] == "${oc.env:LISTINGS_URL}"


def test_an_etag_is_one_fingerprint_from_a_put_or_a_listing() -> None:
    assert etag_fingerprint('"5eb63bbbe01eeed093cb22bb8f5acdc3"') == etag_fingerprint(
        "5EB63BBBE01EEED093CB22BB8F5ACDC3"
    )


def test_a_folder_pass_lists_settled_listings_files_only(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("id\n1\n")
    (tmp_path / "old.csv.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "notes.txt").write_text("not listings")
    (tmp_path / "sub").mkdir()
    (tmp_path / "fresh.csv").write_text("id\n2\n")
    past = time.time() - 120
    for name in ("old.csv", "old.csv.gz", "notes.txt"):
        os.utime(tmp_path / name, (past, past))
    found = list(list_folder(tmp_path, ("*.csv", "*.csv.gz"), settle_s=30))
    assert [Path(item.source).name for item in found] == ["old.csv", "old.csv.gz"]
    assert all(Path(item.source).is_absolute() for item in found)
    [first, _] = found
    # Rewritten file: another fingerprint, so another object.
    (tmp_path / "old.csv").write_text("id\n1\n3\n")
    os.utime(tmp_path / "old.csv", (past + 1, past + 1))
    [again, _] = list(list_folder(tmp_path, ("*.csv", "*.csv.gz"), settle_s=30))
    assert again.source == first.source and again.fingerprint != first.fingerprint


def test_a_missing_watched_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"watch\.sources"):
        list(list_folder(tmp_path / "nowhere", ("*.csv",), settle_s=0))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("watch.sources=[data/incoming]", "absolute"),
        ("watch.sources=[https://example.com/listings/]", "cannot be watched"),
        ("watch.sources=['oss://user:pw@bucket/x/']", "credentials"),
        ("watch.max_events_per_pass=0", "watch.max_events_per_pass"),
    ],
)
def test_bad_watch_settings_are_refused_before_any_work(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_config([override])
    assert "pw@" not in str(refused.value)


def test_watch_settings_take_oss_prefixes_and_absolute_folders(tmp_path: Path) -> None:
    cfg = load_config([f"watch.sources=[oss://listings/nyc/,{tmp_path}]"])
    assert cfg.watch.sources == ("oss://listings/nyc/", str(tmp_path))
