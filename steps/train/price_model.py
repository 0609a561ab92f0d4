"""What a trained price pipeline reads: the raw listing columns of its input signature.

How the pipeline is stored and loaded (no pickle) is steps/common/model_format.py.
"""

from __future__ import annotations

from sklearn.pipeline import Pipeline


def input_columns(pipeline: Pipeline) -> list[str]:
    """The raw columns the preprocessing reads: the model's input signature."""
    features = pipeline.named_steps["features"]
    columns: list[str] = []
    for _, _, selected in features.transformers:
        for column in [selected] if isinstance(selected, str) else list(selected):
            if column not in columns:
                columns.append(column)
    return columns
