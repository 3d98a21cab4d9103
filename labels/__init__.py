"""givetake labels: the schema (``schema.yaml``) and the labelled seed corpus (``seed/``)."""

from givetake.labels.schema import SCHEMA_PATH, SEED_DIR, LabelSpec, Schema, SchemaError, load_schema

__all__ = ["SCHEMA_PATH", "SEED_DIR", "LabelSpec", "Schema", "SchemaError", "load_schema"]
