"""Scoring without a tracking store: the listings' contract, the settings, the output file, the
report and the drift event a scoring run sends."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow
import pytest
from pydantic import ValidationError

from flows.score import checked, drift_event, exit_code, scoring_experiment
from orchestration.config import ConfigError, load_config
from orchestration.events import DRIFT_DETECTED, HAS_PRICE_LABEL
from orchestration.step_runner import step_parameters
from orchestration.step_table import SCORING_INPUT_STEP, SCORING_STEP
from reporting.prefect_artifacts import scoring_markdown
from reporting.scoring_summary import ScoringSummary, build_scoring_summary
from steps.common.errors import ConfigurationError, DataValidationError
from steps.ingest.demo_data import generate_listings
from steps.score.schema import ScoreParams, ScoringSettings
from steps.score.score import check_output, write_atomically
from steps.validate.listing_checks import build_scoring_schema, validate_scoring_input
from tasks.step_failure import StepFailed
from tasks.step_result import StepResult

MODEL_COLUMNS = [
    "room_type",
    "neighbourhood_group",
    "neighbourhood",
    "number_of_reviews",
    "reviews_per_month",
    "latitude",
    "longitude",
    "minimum_nights",
    "calculated_host_listings_count",
    "availability_365",
    "last_review",
    "name",
]
SCHEMA = build_scoring_schema(MODEL_COLUMNS)


# --- the listings' contract --------------------------------------------------------------------


def test_raw_listings_pass_with_or_without_price() -> None:
    listings = generate_listings(200, 4)
    assert len(validate_scoring_input(listings, SCHEMA)) == 200
    assert len(validate_scoring_input(listings.drop(columns=["price"]), SCHEMA)) == 200


def test_values_outside_the_training_bounds_still_pass() -> None:
    """Every listing gets a price: an odd value is the drift check's to report."""
    listings = generate_listings(50, 4)
    listings.loc[0, "latitude"] = 10.0
    listings.loc[1, "room_type"] = "Hotel room"
    listings.loc[2, "price"] = 0
    listings.loc[3, "reviews_per_month"] = None
    assert len(validate_scoring_input(listings, SCHEMA)) == 50


def test_a_missing_column_is_named() -> None:
    listings = generate_listings(20, 4).drop(columns=["room_type", "latitude"])
    with pytest.raises(
        DataValidationError, match=r"lack column\(s\) room_type, latitude,"
    ) as error:
        validate_scoring_input(listings, SCHEMA)
    assert error.value.exit_code == 3


def test_missing_and_repeated_ids_are_refused() -> None:
    listings = generate_listings(20, 4)
    listings["id"] = 7
    with pytest.raises(DataValidationError, match="column 'id'"):
        validate_scoring_input(listings, SCHEMA)


def test_text_where_a_number_belongs_is_refused() -> None:
    listings = generate_listings(20, 4)
    listings["latitude"] = listings["latitude"].astype(object)
    listings.loc[3, "latitude"] = "north"
    with pytest.raises(DataValidationError, match=r"column 'latitude'.*'north' \(row 3\)"):
        validate_scoring_input(listings, SCHEMA)


def test_no_rows_is_refused() -> None:
    with pytest.raises(DataValidationError, match="row count at least 1"):
        validate_scoring_input(generate_listings(20, 4).iloc[:0], SCHEMA)


# --- settings ----------------------------------------------------------------------------------


def test_scoring_defaults_score_with_the_champion(tmp_path: Path) -> None:
    parameters = step_parameters(SCORING_STEP, load_config([]), tmp_path)
    assert parameters == {
        "registered_model": "housing_price",
        "alias": "champion",
        "output": "",
        "drift_threshold": 0.25,
    }


def test_a_relative_output_is_taken_from_the_start_directory(tmp_path: Path) -> None:
    cfg = load_config(["scoring.output=out/p.parquet", "scoring.alias=challenger"])
    parameters = step_parameters(SCORING_STEP, cfg, tmp_path)
    assert parameters["output"] == str(tmp_path.resolve() / "out" / "p.parquet")
    assert parameters["alias"] == "challenger"


@pytest.mark.parametrize(
    "override",
    ["scoring.drift_threshold=0", "scoring.drift_threshold=11", "scoring.output=s3://b/k"],
)
def test_bad_scoring_settings_are_refused(override: str) -> None:
    with pytest.raises(ConfigError, match="scoring"):
        load_config([override])


def test_the_entry_point_takes_only_an_absolute_output() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        ScoreParams(input_artifact="runs:/x/raw.parquet", output="relative.parquet")


def test_scoring_runs_go_to_their_own_experiment() -> None:
    assert scoring_experiment(load_config([])) == "nyc_airbnb_price-scoring"
    cfg = load_config(["scoring.experiment_name=scored"])
    assert scoring_experiment(cfg) == "scored"


def test_the_flow_refuses_a_missing_output_directory_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        checked(["scoring.output=missing/p.parquet"])
    (tmp_path / "there").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        checked(["scoring.output=there"])
    assert checked(["scoring.output=p.parquet"]).scoring.output == "p.parquet"


def test_the_step_checks_the_output_too(tmp_path: Path) -> None:
    assert check_output("") is None
    assert check_output(str(tmp_path / "p.parquet")) == tmp_path / "p.parquet"
    with pytest.raises(ConfigurationError, match="does not exist"):
        check_output(str(tmp_path / "missing" / "p.parquet"))
    with pytest.raises(ConfigurationError, match="is a directory"):
        check_output(str(tmp_path))


# --- the output file ---------------------------------------------------------------------------


def test_the_output_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_atomically(pd.DataFrame({"id": [1, 2], "predicted_price": [3.0, 4.0]}), path)
    write_atomically(pd.DataFrame({"id": [5], "predicted_price": [6.0]}), path)
    assert pd.read_parquet(path)["id"].tolist() == [5]
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    unwritable = pd.DataFrame({"id": [object()]})  # Parquet cannot hold it
    with pytest.raises(pyarrow.ArrowException):
        write_atomically(unwritable, path)
    assert list(tmp_path.iterdir()) == []


# --- the report and the event ------------------------------------------------------------------


def _results(drifted: str = "neighbourhood_group") -> dict[str, StepResult]:
    return {
        SCORING_INPUT_STEP: StepResult(
            SCORING_INPUT_STEP, "getdata01", metrics={"rows_out": 3.0, "input_bytes": 1234.0}
        ),
        SCORING_STEP: StepResult(
            SCORING_STEP,
            "score001",
            metrics={
                "rows_scored": 3.0,
                "drift.neighbourhood_group": 4.2,
                "drift.latitude": 0.01,
                "drift_max": 4.2,
            },
            notes={
                "model_version": "7",
                "drifted": drifted,
                "has_price": "false",
                "input_sha256": "sha256:" + "ab" * 32,
                "drift": "drifted: neighbourhood_group; max psi 4.200 on neighbourhood_group",
                "output": "/data/out.parquet",
            },
        ),
    }


def _summary(
    overrides: list[str] | None = None, drifted: str = "neighbourhood_group"
) -> ScoringSummary:
    cfg = load_config(overrides or [])
    return build_scoring_summary(
        cfg, _results(drifted), "parent01", "sqlite:////tmp/m.db", "nyc_airbnb_price-scoring"
    )


def test_the_summary_reads_the_steps_results() -> None:
    summary = _summary()
    assert summary.model_version == "7" and summary.rows_scored == 3
    assert summary.scores == {"neighbourhood_group": 4.2, "latitude": 0.01}
    assert summary.drifted == ["neighbourhood_group"] and summary.drift_max == 4.2
    assert summary.has_price is False and summary.input_bytes == 1234
    assert summary.drift_rows()[0] == {
        "feature": "neighbourhood_group",
        "measure": "psi",
        "score": 4.2,
        "threshold": 0.25,
        "drifted": True,
    }
    text = summary.render()
    for expected in ("rows scored: 3", "version 7", "/data/out.parquet", "neighbourhood_group"):
        assert expected in text
    assert _summary(drifted="").drifted == []


def test_the_markdown_names_version_output_and_drifted_features() -> None:
    markdown = scoring_markdown(_summary(), "1")
    assert "version 7" in markdown and "/data/out.parquet" in markdown
    assert "| neighbourhood_group | psi | 4.2000 | 0.25 | **yes** |" in markdown


def test_the_drift_event_names_the_listings_by_source_and_content(
    tmp_path: Path,
) -> None:
    cfg = load_config(["data.source=new.csv"])
    event = drift_event(cfg, tmp_path, _summary())
    assert event.name == DRIFT_DETECTED
    payload = event.payload()
    assert payload["source"] == str(tmp_path.resolve() / "new.csv")
    assert payload["fingerprint"] == "sha256:" + "ab" * 32
    assert payload["size"] == 1234 and payload["origin"] == "drift"
    assert payload["model_version"] == "7" and payload["threshold"] == 0.25
    assert payload["drifted"] == ["neighbourhood_group"]
    assert payload["scores"] == {"neighbourhood_group": 4.2, "latitude": 0.01}
    assert event.resource()[HAS_PRICE_LABEL] == "false"


def test_an_environment_reference_stays_as_written_in_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTINGS_URL", "https://user:secret@example.com/listings.csv")
    cfg = load_config(["data.source=${oc.env:LISTINGS_URL}"])
    payload = drift_event(cfg, tmp_path, _summary()).payload()
    assert payload["source"] == "${oc.env:LISTINGS_URL}"
    assert "secret" not in str(payload)


def test_a_refusing_step_keeps_its_exit_code() -> None:
    assert exit_code(StepFailed("score", "r", 5, False, "no version")) == 5
    assert exit_code(StepFailed("score", "r", 3, False, "bad listings")) == 3
    assert exit_code(StepFailed("score", "r", None, True, "killed")) == 1
    assert exit_code(RuntimeError("x")) == 1


def test_scoring_settings_defaults_are_documented() -> None:
    for name, field in ScoringSettings.model_fields.items():
        assert field.description, name
