"""The data contract of cleaned listings, and a drift check on where the listings are.

The schema pins each column's type and range so a broken export stops the pipeline before training.
The KL check compares the borough mix with the public file's: a sample from a different city, or a
filter gone wrong, shows up there even when every single row looks valid.

Listings to score (`build_scoring_schema`) keep the column types and the unique id but no ranges
and no price: every row gets a price, and how far the rows are from the training data is the
drift check's to say (steps/score/drift.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from steps.common.bounds import CleaningBounds
from steps.common.errors import ConfigurationError, DataValidationError
from steps.common.listing_columns import (
    LISTING_ARROW_TYPES,
    NEIGHBOURHOOD_GROUPS,
    ROOM_TYPES,
    TARGET,
)

logger = logging.getLogger(__name__)

# Smoothing added to every share before the KL divergence, so an empty category stays finite.
KL_EPSILON = 1e-6
ROW_COUNT_CHECK = "row_count"


@dataclass(frozen=True)
class ValidationReport:
    """What a passing validation saw: logged as metrics of the data_check step."""

    rows: int
    kl_divergence: float
    kl_threshold: float
    group_shares: dict[str, float] = field(default_factory=dict)


def build_listing_schema(
    *,
    min_rows: int,
    max_rows: int,
    bounds: CleaningBounds,
) -> pa.DataFrameSchema:
    """The contract of cleaned listings: 16 columns, their types, ranges and a row count window
    (the settings were checked by their schemas, steps/validate/schema.py and
    steps/common/bounds.py)."""

    def non_negative(nullable: bool = False) -> pa.Column:
        return pa.Column(float, pa.Check.ge(0), nullable=nullable, coerce=False)

    def row_count_ok(frame: pd.DataFrame) -> bool:
        return min_rows <= len(frame) <= max_rows

    return pa.DataFrameSchema(
        {
            "id": pa.Column("int64", unique=True, nullable=False),
            "name": pa.Column(str, nullable=True),
            "host_id": pa.Column("int64", nullable=False),
            "host_name": pa.Column(str, nullable=True),
            "neighbourhood_group": pa.Column(
                str, pa.Check.isin(list(NEIGHBOURHOOD_GROUPS)), nullable=False
            ),
            "neighbourhood": pa.Column(str, nullable=False),
            "latitude": pa.Column(
                float, pa.Check.in_range(bounds.min_latitude, bounds.max_latitude)
            ),
            "longitude": pa.Column(
                float, pa.Check.in_range(bounds.min_longitude, bounds.max_longitude)
            ),
            "room_type": pa.Column(str, pa.Check.isin(list(ROOM_TYPES)), nullable=False),
            "price": pa.Column(float, pa.Check.in_range(bounds.min_price, bounds.max_price)),
            "minimum_nights": pa.Column(float, pa.Check.ge(1)),
            "number_of_reviews": non_negative(),
            "last_review": pa.Column("datetime64[ns]", nullable=True),
            "reviews_per_month": non_negative(nullable=True),
            "calculated_host_listings_count": non_negative(),
            "availability_365": pa.Column(float, pa.Check.in_range(0, 365)),
        },
        checks=[
            pa.Check(
                row_count_ok,
                name=ROW_COUNT_CHECK,
                error=f"row count between {min_rows} and {max_rows}",
            )
        ],
        strict=True,
        name="cleaned_listings",
    )


def _normalised_reference(reference: Mapping[str, float]) -> dict[str, float]:
    if not reference:
        raise ConfigurationError("data_check.reference_distribution must name at least one group")
    values = {str(k): float(v) for k, v in reference.items()}
    if any(not math.isfinite(v) or v < 0 for v in values.values()) or sum(values.values()) <= 0:
        raise ConfigurationError(
            "data_check.reference_distribution needs finite, non-negative shares with a positive "
            f"sum, got {dict(reference)}"
        )
    total = sum(values.values())
    return {k: v / total for k, v in values.items()}


def group_shares(observed: pd.Series) -> dict[str, float]:
    """Share of each value among the non-missing ones, largest first."""
    shares = observed.dropna().astype(str).value_counts(normalize=True)
    return {str(k): float(v) for k, v in shares.items()}


def neighbourhood_kl_divergence(observed: pd.Series, reference: Mapping[str, float]) -> float:
    """KL(observed || reference) in nats, both smoothed by KL_EPSILON over the union of categories.

    Categories absent from the reference are rejected by the schema before this matters; here they
    only get the epsilon share, which makes the divergence large rather than infinite.
    """
    ref = _normalised_reference(reference)
    obs = group_shares(observed)
    if not obs:
        raise DataValidationError("neighbourhood_group has no values: cannot compare distributions")
    categories = sorted(set(ref) | set(obs))
    p = np.array([obs.get(c, 0.0) for c in categories]) + KL_EPSILON
    q = np.array([ref.get(c, 0.0) for c in categories]) + KL_EPSILON
    p /= p.sum()
    q /= q.sum()
    return float(np.sum(p * np.log(p / q)))


def _format_value(value: Any, quote: bool = True) -> str:
    """A short printable form of an offending value: strings quoted, missing values named."""
    if isinstance(value, float) and math.isnan(value):
        return "<missing>"
    if value is None or value is pd.NaT:
        return "<missing>"
    text = repr(value) if quote and isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_schema_failures(
    failure_cases: pd.DataFrame, rows: int, max_examples: int
) -> list[str]:
    """One line per broken rule: where, which check, how many rows, and a few examples."""
    lines: list[str] = []
    cases = failure_cases.copy()
    cases["column"] = cases["column"].astype(object).where(cases["column"].notna(), None)
    for (context, column, check), group in cases.groupby(
        ["schema_context", "column", "check"], dropna=False, sort=False
    ):
        # Frame-level failures carry the schema's name (or nothing) in the column field.
        where = (
            "dataframe" if context == "DataFrameSchema" or column is None else f"column '{column}'"
        )
        if check == ROW_COUNT_CHECK or str(check).startswith("row count "):
            lines.append(f"{where}: check '{check}' failed: the data has {rows} row(s)")
            continue
        if context == "DataFrameSchema" and check in ("column_in_dataframe", "column_in_schema"):
            names = ", ".join(_format_value(v) for v in group["failure_case"])
            what = "missing column(s)" if check == "column_in_dataframe" else "unexpected column(s)"
            lines.append(f"{where}: check '{check}' failed: {what}: {names}")
            continue
        indexed = group[group["index"].notna()]
        if indexed.empty:
            found = ", ".join(
                _format_value(v, quote=False) for v in group["failure_case"].head(max_examples)
            )
            lines.append(f"{where}: check '{check}' failed: found {found}")
            continue
        count = int(indexed["index"].nunique())
        examples = ", ".join(
            f"{_format_value(value)} (row {index})"
            for value, index in zip(
                indexed["failure_case"].head(max_examples),
                indexed["index"].head(max_examples),
                strict=True,
            )
        )
        lines.append(f"{where}: check '{check}' failed for {count} row(s); e.g. {examples}")
    return lines


def validate_listings(
    df: pd.DataFrame,
    schema: pa.DataFrameSchema,
    reference: Mapping[str, float],
    kl_threshold: float,
    max_examples: int = 5,
) -> ValidationReport:
    """Run every rule (lazily, so all failures are reported at once) and the borough drift check.

    Raises DataValidationError listing each violated rule with counts and example rows.
    """
    if not math.isfinite(kl_threshold) or kl_threshold < 0:
        raise ConfigurationError(f"data_check.kl_threshold must be >= 0, got {kl_threshold}")
    if max_examples < 1:
        raise ConfigurationError(f"max_examples must be >= 1, got {max_examples}")
    _normalised_reference(reference)

    problems: list[str] = []
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems.extend(_describe_schema_failures(exc.failure_cases, len(df), max_examples))

    shares: dict[str, float] = {}
    kl = math.nan
    if "neighbourhood_group" in df.columns:
        shares = group_shares(df["neighbourhood_group"])
        if shares:
            kl = neighbourhood_kl_divergence(df["neighbourhood_group"], reference)
            if kl > kl_threshold:
                observed = ", ".join(f"{k} {v:.3f}" for k, v in shares.items())
                problems.append(
                    f"column 'neighbourhood_group': check 'kl_divergence' failed: "
                    f"KL(observed || reference) = {kl:.4f} > threshold {kl_threshold} "
                    f"(observed shares: {observed})"
                )
        else:
            problems.append(
                "column 'neighbourhood_group': check 'kl_divergence' failed: no values to compare"
            )

    if problems:
        message = f"data validation failed: {len(problems)} rule(s) broken\n" + "\n".join(
            f"- {line}" for line in problems
        )
        raise DataValidationError(message)

    report = ValidationReport(
        rows=len(df), kl_divergence=kl, kl_threshold=kl_threshold, group_shares=shares
    )
    logger.info(
        "validation passed: %d rows, KL %.4f (threshold %s), shares %s",
        report.rows,
        report.kl_divergence,
        kl_threshold,
        shares,
    )
    return report


def _scoring_column(name: str) -> pa.Column:
    """A column of listings to score: its listing type, missing values allowed (the model
    imputes them), the id present and unique (the predictions are keyed by it)."""
    if name == "id":
        return pa.Column("int64", unique=True, nullable=False)
    arrow_type = LISTING_ARROW_TYPES.get(name)
    if name == "last_review" or arrow_type is None:
        return pa.Column(nullable=True)  # 'YYYY-MM-DD' text or datetimes; the model parses both
    if str(arrow_type) == "string":
        return pa.Column(str, nullable=True)
    if str(arrow_type) == "int64":
        return pa.Column("int64", nullable=True)
    return pa.Column(float, nullable=True, coerce=True)  # whole-number counts are numbers too


def build_scoring_schema(columns: Sequence[str]) -> pa.DataFrameSchema:
    """The contract of listings to score with a model that reads `columns`: those columns and
    `id`, at least one row; `price` may be absent (when present it is a number), other columns
    are ignored."""
    names = ["id", *(name for name in columns if name not in ("id", TARGET))]
    definitions = {name: _scoring_column(name) for name in names}
    definitions[TARGET] = pa.Column(float, nullable=True, coerce=True, required=False)
    return pa.DataFrameSchema(
        definitions,
        checks=[
            pa.Check(
                lambda frame: len(frame) >= 1, name=ROW_COUNT_CHECK, error="row count at least 1"
            )
        ],
        strict=False,
        name="listings_to_score",
    )


def validate_scoring_input(
    df: pd.DataFrame, schema: pa.DataFrameSchema, max_examples: int = 5
) -> pd.DataFrame:
    """The listings checked against `schema` (numbers coerced to float); DataValidationError
    naming the missing columns, or every broken rule with counts and example rows."""
    missing = [
        name for name, column in schema.columns.items() if column.required and name not in df
    ]
    if missing:
        raise DataValidationError(
            f"the listings to score lack column(s) {', '.join(missing)}, which the model reads: "
            f"add them to the source (only {TARGET} may be left out)"
        )
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems = _describe_schema_failures(exc.failure_cases, len(df), max_examples)
        raise DataValidationError(
            f"the listings to score broke {len(problems)} rule(s)\n"
            + "\n".join(f"- {line}" for line in problems)
        ) from None
