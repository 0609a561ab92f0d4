"""A deployment's *Custom run* form in the Prefect UI (headless Chromium): its typed fields come
from the configuration's schemas, a value out of bounds is refused before any run exists, and a
run submitted through the form trains the model and hyperparameter typed into it. The run's
graph has the pipeline's edges and its page shows the evaluation plot."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun

from flows.run_form import MODEL_SCHEMAS
from orchestration.step_table import STEP_NAMES
from steps.contract import FLOW_RUN_TAG, PARENT_RUN_TAG, STEP_TAG
from tests.services.conftest import (
    PrefectServer,
    Served,
    output_dir,
    read_deployment_runs,
    read_run_artifacts,
    read_served_deployments,
    wait_for,
    wait_for_final_states,
)
from tests.services.test_prefect_ui import DevTools, chromium, chromium_path

DEPLOYMENT = "nightly-retrain"  # trains conf/'s default model, torch_lasso
MODEL = "random_forest"
N_ESTIMATORS = 7
# Kept apart from the other deployments' runs: their own experiment and registered model.
EXPERIMENT = "custom-run-form"
REGISTERED = "custom_run_form"
EXTRA_OVERRIDES = ["data.demo_rows=2000", "task.retries=0"]

# The form's properties by their label, nested ones within their section (Prefect UI v1's
# schema form: `.schema-form-property`, a label, an anyOf's branch buttons, native selects).
FORM_JS = r"""
window.runForm = (() => {
  const SELECT = 'select:not(.p-native-select__control--placeholder)';
  const label = (el) => {
    const span = el.querySelector(':scope > .p-label__header .schema-form-property__label');
    return span ? span.innerText.trim() : '';
  };
  const within = (el, wanted) => el && [...el.querySelectorAll('.schema-form-property')]
    .find((child) => label(child) === wanted);
  const body = (path) => {
    const el = path.reduce(within, document);
    return el && el.querySelector(':scope > .p-label__body');
  };
  const fire = (el) => ['input', 'change']
    .forEach((kind) => el.dispatchEvent(new Event(kind, {bubbles: true})));
  const control = (path, selector) => {
    const b = body(path);
    return b && b.querySelector(selector);
  };
  const setValue = (el, value) => {
    Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el), 'value').set.call(el, value);
    fire(el);
    return true;
  };
  const button = (b, text, scope) => b && [...b.querySelectorAll(scope)]
    .find((x) => x.innerText.trim() === text);
  return {
    exists: (path) => !!body(path),
    branches: (path) => {
      const b = body(path);
      return b && [...b.querySelectorAll(':scope > .p-button-group button')]
        .map((x) => x.innerText.trim());
    },
    choose: (path, branch) => {
      const found = button(body(path), branch, ':scope > .p-button-group button');
      return !!found && (found.click(), true);
    },
    options: (path) => {
      const s = control(path, SELECT);
      return s && [...s.options].map((o) => o.value);
    },
    multiple: (path) => !!(control(path, SELECT) || {}).multiple,
    select: (path, value) => {
      const s = control(path, SELECT);
      return !!s && (s.value = value, fire(s), true);
    },
    type: (path, value) => {
      const el = control(path, 'input, textarea');
      return !!el && setValue(el, value);
    },
    addItem: (path) => {
      const found = button(body(path), 'Add item', 'button');
      return !!found && (found.click(), true);
    },
    setLastItem: (path, value) => {
      const b = body(path);
      const items = b ? [...b.querySelectorAll('textarea, input[type=text]')] : [];
      return items.length > 0 && setValue(items[items.length - 1], value);
    },
    validateOnSubmit: () => {
      const box = [...document.querySelectorAll('.p-checkbox')]
        .find((el) => el.innerText.trim() === 'Validate parameters');
      const input = box && box.querySelector('input[type=checkbox]');
      if (!input) return false;
      if (!input.checked) input.click();
      return input.checked;
    },
  };
})();
true
"""


def _js(page: DevTools, expression: str) -> Any:
    reply = page.call("Runtime.evaluate", expression=expression, returnByValue=True)
    if "exceptionDetails" in reply:
        raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
    return reply.get("result", {}).get("value")


def _form(page: DevTools, method: str, *args: Any) -> Any:
    return _js(page, f"window.runForm.{method}({', '.join(json.dumps(a) for a in args)})")


def _optional(name: str) -> str:
    return f"{name} (Optional)"


def _task_runs(client: SyncPrefectClient, flow_run_id: UUID) -> list[dict[str, Any]]:
    response = client.request(
        "POST",
        "/task_runs/filter",
        json={
            "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 200,
            "offset": 0,
        },
    )
    runs: list[dict[str, Any]] = response.json()
    return runs


def _refusal_shown(page: DevTools, seconds: float = 8) -> str:
    """The page's text once the form says what it refused (or after `seconds`: a toast may
    come and go), for a person to read; what counts is that no run was created."""
    deadline = time.monotonic() + seconds
    text = page.text()
    while time.monotonic() < deadline:
        text = page.text()
        if any(word in text.lower() for word in ("minimum", "greater than", "invalid", "error")):
            break
        time.sleep(0.5)
    return text


@dataclass
class FormRun:
    flow_run: FlowRun
    form_text: str
    refused_text: str


@pytest.fixture(scope="module")
def form_run(
    prefect_server: PrefectServer,
    served: Served,
    tmp_path_factory: pytest.TempPathFactory,
) -> FormRun:
    """Fill in the Custom run form of DEPLOYMENT, first out of bounds, then right; submit."""
    chromium_path()
    client = prefect_server.client()
    wait_for(
        lambda: DEPLOYMENT in {d.name for d in read_served_deployments(client)},
        120,
        "deployments.serve to register the deployments",
    )
    [deployment] = [d for d in read_served_deployments(client) if d.name == DEPLOYMENT]
    before = {run.id for run in read_deployment_runs(client, deployment.id)}
    tmp = tmp_path_factory.mktemp("custom-run-form")
    out = output_dir(tmp)
    url = f"{prefect_server.ui_url}/deployments/deployment/{deployment.id}/run"
    section = [_optional("hyperparameters"), "Random Forest (Optional)"]
    n_estimators = [*section, _optional("n_estimators")]

    with chromium(tmp / "profile") as page:
        page.open(url, _optional("model"), _optional("hyperparameters"), _optional("overrides"))
        assert _js(page, FORM_JS) is True
        form_text = page.text()
        assert _form(page, "branches", [_optional("model")]) == ["str", "None"]
        assert _form(page, "choose", [_optional("model")], "str")
        wait_for(lambda: _form(page, "options", [_optional("model")]), 30, "the model choice")
        assert _form(page, "options", [_optional("model")]) == list(MODEL_SCHEMAS)
        assert _form(page, "select", [_optional("model")], MODEL)

        assert _form(page, "choose", [_optional("steps")], "list")
        wait_for(lambda: _form(page, "options", [_optional("steps")]), 30, "the steps choice")
        assert _form(page, "multiple", [_optional("steps")])
        assert _form(page, "options", [_optional("steps")]) == list(STEP_NAMES)
        assert _form(page, "choose", [_optional("steps")], "None")

        assert _form(page, "choose", [_optional("data_source")], "str")
        assert _form(page, "choose", [_optional("data_source")], "None")

        for name, value in (("experiment_name", EXPERIMENT), ("registered_model", REGISTERED)):
            assert _form(page, "choose", [_optional(name)], "str")
            wait_for(lambda: _form(page, "exists", [_optional(name)]), 30, name)  # noqa: B023
            assert _form(page, "type", [_optional(name)], value), name

        assert _form(page, "choose", [_optional("hyperparameters")], "ModelHyperparameters")
        wait_for(lambda: _form(page, "exists", n_estimators), 30, "random_forest's section")
        for item in EXTRA_OVERRIDES:
            assert _form(page, "addItem", [_optional("overrides")])
            time.sleep(0.5)
            assert _form(page, "setLastItem", [_optional("overrides")], item)

        # Out of bounds (n_estimators >= 1 in the schema): no run is created.
        assert _form(page, "validateOnSubmit")
        assert _form(page, "type", n_estimators, "0")
        assert page.click_text("Submit")
        refused_text = _refusal_shown(page)
        page.screenshot(out / "custom-run-refused.png")
        (out / "custom-run-refused.txt").write_text(refused_text)
        assert {run.id for run in read_deployment_runs(client, deployment.id)} == before
        assert str(_js(page, "location.pathname")).endswith("/run"), "the form was left"

        assert _form(page, "type", n_estimators, str(N_ESTIMATORS))
        page.screenshot(out / "custom-run-form.png")
        assert page.click_text("Submit")
        new = wait_for(
            lambda: [r for r in read_deployment_runs(client, deployment.id) if r.id not in before],
            60,
            "the form's run to be created",
        )
    [flow_run] = new
    finished = wait_for_final_states(client, [flow_run.id], 900, served.process)[flow_run.id]
    return FormRun(finished, form_text, refused_text)


def test_the_form_shows_the_typed_fields(form_run: FormRun) -> None:
    for name in ("model", "hyperparameters", "data_source", "steps", "experiment_name"):
        assert _optional(name) in form_run.form_text
    assert "registered_model (Optional)" in form_run.form_text
    assert "overrides (Optional)" in form_run.form_text
    # The descriptions come with the fields (the flow's docstring, the schemas' own).
    assert "${oc.env:NAME}" in form_run.form_text
    assert "in pipeline order" in form_run.form_text


def test_a_run_from_the_form_trains_the_model_and_value_typed_in(
    form_run: FormRun, served: Served
) -> None:
    flow_run = form_run.flow_run
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    parameters = flow_run.parameters
    assert parameters["model"] == MODEL
    sections = {
        name: {k: v for k, v in (values or {}).items() if v is not None}
        for name, values in (parameters.get("hyperparameters") or {}).items()
    }
    # Only what was typed in: an untouched field (a boolean toggle included) sends nothing.
    assert {k: v for k, v in sections.items() if v} == {MODEL: {"n_estimators": N_ESTIMATORS}}
    assert parameters["overrides"][-len(EXTRA_OVERRIDES) :] == EXTRA_OVERRIDES
    assert flow_run.name.startswith(f"train-{MODEL}-"), flow_run.name

    client = mlflow.MlflowClient(tracking_uri=served.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    [parent] = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run.id}' AND tags.`{STEP_TAG}` = 'pipeline'",
    )
    [train] = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}' "
        f"AND tags.`{STEP_TAG}` = 'train'",
    )
    assert train.data.params["model.name"] == MODEL
    assert train.data.params["model.n_estimators"] == str(N_ESTIMATORS)
    assert int(train.data.params["model.min_samples_split"]) >= 2  # conf/'s, untouched


def test_a_value_out_of_bounds_is_refused_before_the_run_exists(form_run: FormRun) -> None:
    """The fixture checked that submitting n_estimators=0 created no run and kept the form; the
    bound it broke is the schema's (n_estimators >= 1), which the form's schema carries."""
    # The server's answer, shown by the form: "Error creating flow run: Validation failed for
    # field 'hyperparameters.random_forest.n_estimators'. Failure reason: 0 is less than the
    # minimum of 1".
    assert f"hyperparameters.{MODEL}.n_estimators" in form_run.refused_text
    assert "minimum of 1" in form_run.refused_text
    assert form_run.flow_run.parameters["hyperparameters"][MODEL]["n_estimators"] == N_ESTIMATORS


def test_the_run_graph_has_the_pipelines_edges(
    form_run: FormRun, prefect_server: PrefectServer
) -> None:
    runs = _task_runs(prefect_server.client(), form_run.flow_run.id)
    by_id = {run["id"]: run for run in runs}
    waits: dict[str, set[str]] = {}
    for run in runs:
        upstream = run["task_inputs"].get("wait_for", [])
        waits[run["name"].split("-", 1)[0]] = {
            by_id[item["id"]]["name"].split("-", 1)[0] for item in upstream if item["id"] in by_id
        }
    assert waits["basic_cleaning"] == {"get_data"}, waits
    assert waits["data_split"] == {"basic_cleaning"}, waits
    assert waits["train"] == {"data_split"}, waits
    assert waits["evaluate"] == {"train", "data_split"}, waits


def test_the_run_page_shows_the_evaluation_plot(
    form_run: FormRun, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    artifacts = read_run_artifacts(prefect_server.client(), form_run.flow_run.id)
    assert {"pipeline-summary", "pipeline-steps", "evaluation-plot"} <= set(artifacts)
    summary = str(artifacts["pipeline-summary"].data)
    assert "mlflow ui --backend-store-uri sqlite:///" in summary  # a local store: how to look
    plot = artifacts["evaluation-plot"]
    with chromium(tmp_path / "profile") as page:
        page.open(f"{prefect_server.ui_url}/artifacts/artifact/{plot.id}", "predicted vs actual")
        loaded = wait_for(
            lambda: _js(
                page,
                "[...document.images].filter(i => i.src.startsWith('data:image/png') "
                "&& i.complete && i.naturalWidth > 100).length",
            ),
            60,
            "the evaluation plot to load on the artifact's page",
        )
        page.screenshot(output_dir(tmp_path) / "prefect-ui-evaluation-plot.png")
    assert loaded == 1
