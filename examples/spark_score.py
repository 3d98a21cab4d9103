"""Score an archive on Spark with ``mapInPandas``: the model is loaded once per executor.

    spark-submit --conf spark.executor.cores=4 --conf spark.task.cpus=4 \\
        examples/spark_score.py MODEL_DIR 's3://bucket/posts/*.parquet' s3://bucket/scored/

``MODEL_DIR`` is a ``models/<run>`` directory (exported: ``model.int8.onnx`` beside the weights) on a
path every executor can read (a shared file system, or shipped with ``--archives``). With
``spark.task.cpus`` equal to ``spark.executor.cores`` each executor runs one Python worker at a time,
which Spark reuses across tasks (``spark.python.worker.reuse``, on by default); ``classifier()`` caches
the loaded model in that worker, so it is loaded once per executor and its engine uses the executor's
cores. See docs/archives.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import lru_cache

import pandas as pd

import givetake
from givetake.core.classifier import Classifier

MODEL_DIR = "models/latest"  # replaced by the first command-line argument in main()


@lru_cache(maxsize=1)
def classifier(model_dir: str) -> Classifier:
    """The model, loaded on first use in this Python worker and kept for its later tasks (engine
    auto: onnx-int8 when exported and checked, as ``givetake score`` runs)."""
    return givetake.load(model_dir)


def score_partitions(frames: Iterator[pd.DataFrame], model_dir: str = MODEL_DIR) -> Iterator[pd.DataFrame]:
    """The ``mapInPandas`` function: each Arrow batch of a partition in, the same rows scored out.

    Every row is kept; one without usable text has empty ``labels``, null scores and the reason in ``error``.
    """
    clf = classifier(model_dir)
    for frame in frames:
        yield clf.predict_frame(frame, text_column="text")


def main() -> None:
    # Imported here: pyspark is only on the cluster, and the functions above are usable (and tested) without it.
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    model_dir, source, target = sys.argv[1:4]
    spark = SparkSession.builder.appName("givetake-score").getOrCreate()
    posts = spark.read.parquet(source)
    labels = classifier(model_dir).labels  # on the driver, for the schema only
    # predict_frame's output: the input columns (one named labels, score_* or error comes back as
    # input_<name>: rename it first), then labels, one score per label and error.
    schema = StructType(
        [
            *posts.schema.fields,
            StructField("labels", ArrayType(StringType())),
            *[StructField(f"score_{name}", DoubleType()) for name in labels],
            StructField("error", StringType()),
        ]
    )
    scored = posts.mapInPandas(lambda frames: score_partitions(frames, model_dir), schema=schema)
    scored.write.mode("overwrite").parquet(target)


if __name__ == "__main__":
    main()
