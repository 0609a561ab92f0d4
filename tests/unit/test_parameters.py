"""normalize gives every parameter value one string form, whatever type it arrived as."""

from __future__ import annotations

import json
from typing import Any

import pytest

from steps.common.url_secrets import for_the_record, redact_url
from steps.contract import normalize, normalize_value


@pytest.mark.parametrize("value", [1, "1", 1.0])
def test_one_in_any_type_is_the_same_string(value: Any) -> None:
    assert normalize_value(value) == "1"


@pytest.mark.parametrize(("value", "expected"), [(True, "true"), (False, "false")])
def test_booleans_are_lowercase(value: bool, expected: str) -> None:
    assert normalize_value(value) == expected


def test_fraction_keeps_its_digits() -> None:
    assert normalize_value(0.25) == "0.25"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-3, "-3"), (-2.0, "-2"), (1e-06, "1e-06"), (0.1 + 0.2, repr(0.1 + 0.2)), ("x y", "x y")],
)
def test_scalars(value: Any, expected: str) -> None:
    assert normalize_value(value) == expected


def test_none_is_empty() -> None:
    assert normalize_value(None) == ""


def test_dict_is_key_order_insensitive_json() -> None:
    first = normalize_value({"b": 1, "a": 0.5, "c": "x"})
    second = normalize_value({"c": "x", "a": 0.5, "b": 1})
    assert first == second == '{"a":0.5,"b":1,"c":"x"}'
    assert json.loads(first) == {"a": 0.5, "b": 1, "c": "x"}


def test_nested_dicts_are_sorted_at_every_level() -> None:
    assert normalize_value({"z": {"b": 1, "a": 2}, "a": []}) == '{"a":[],"z":{"a":2,"b":1}}'


def test_nested_lists_keep_their_order() -> None:
    assert normalize_value([[3, 1], [2], []]) == "[[3,1],[2],[]]"
    assert normalize_value({"k": [{"y": 1, "x": [True, None]}]}) == (
        '{"k":[{"x":[true,null],"y":1}]}'
    )


def test_tuples_are_lists() -> None:
    assert normalize_value((1, "a")) == normalize_value([1, "a"]) == '[1,"a"]'


def test_non_string_keys_become_strings() -> None:
    assert normalize_value({1: "a"}) == '{"1":"a"}'


def test_normalize_maps_every_value_and_sorts_keys() -> None:
    result = normalize({"seed": 42.0, "flag": True, "name": "x", "empty": None})
    assert result == {"empty": "", "flag": "true", "name": "x", "seed": "42"}
    assert list(result) == sorted(result)


def test_normalize_makes_equal_parameter_sets_equal() -> None:
    first = normalize({"a": 1, "b": {"y": 2, "x": 1}})
    assert first == normalize({"b": {"x": 1, "y": 2}, "a": "1"})


def test_normalize_of_reference_distribution_is_valid_json() -> None:
    shares = {"Manhattan": 0.443, "Staten Island": 0.008}
    assert json.loads(normalize({"reference_distribution": shares})["reference_distribution"]) == (
        shares
    )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (
            "https://host.example/l.csv?X-Amz-Signature=abc&token=s3cr3t",
            "https://host.example/l.csv",
        ),
        ("https://user:p4ss@host.example:8443/l.csv", "https://host.example:8443/l.csv"),
        ("https://host.example/l.csv", "https://host.example/l.csv"),
        ("/data/listings.csv", "/data/listings.csv"),
        ("demo", "demo"),
        ("runs:/abc/clean.parquet", "runs:/abc/clean.parquet"),
    ],
)
def test_urls_lose_credentials_before_they_are_recorded(value: str, stored: str) -> None:
    assert redact_url(value) == stored
    assert for_the_record({"source": value}) == {"source": stored}


def test_nested_values_keep_their_types() -> None:
    # scikit-learn reads max_features=1.0 as "all features" and 1 as "one feature".
    assert json.loads(normalize_value({"max_features": 1.0}))["max_features"] == 1.0
    assert isinstance(json.loads(normalize_value({"max_features": 1.0}))["max_features"], float)
