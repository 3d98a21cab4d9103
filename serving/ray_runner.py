"""``givetake score --engine ray``: the same scoring as a Ray Data pipeline, on one machine or a cluster.

The pipeline, per input file and batch of rows:

1. read: tasks stream each input file's rows through givetake's own readers
   (:func:`givetake.core.records.iter_records`), so CSV quoting, ids such as ``00123`` and every
   text arrive exactly as in single-process scoring (Ray's ``read_csv`` re-types cells and splits
   rows at line breaks inside quoted fields unless told otherwise). Each row travels as
   ``(source_file, source_row, record, problem)`` with the record pickled, so any value survives.
   A file has up to ``MAX_STRIPES`` read tasks (stripes of its chunks) when there are fewer files
   than actors, and the rows travel in small blocks, so even one file keeps every actor busy.
2. score: ``map_batches`` with :class:`ScoreBatches`, a callable class: each actor loads the model
   once (the same :class:`~givetake.core.predictor.Predictor`, onnx-int8 when exported) and scores
   batches of ``chunk_size`` rows.
3. write: the actor writes each batch as one Parquet partition, ``OUTDIR/part-<key>.parquet``, and
   the rows without usable text to ``OUTDIR/errors/part-<key>.parquet`` (source_file, source_row,
   reason), each through a temporary file and an atomic rename. ``<key>`` is a hash of the batch's
   (file, row) pairs, so a batch Ray retries after an actor died rewrites the same file: no duplicate.

Resume is keyed on (source_file, source_row): ``--resume`` reads those two columns of every
committed partition and the read tasks skip those rows, so after a crash or a kill only the rows not
yet written are scored, none twice. (Ray's own ``ray.data.checkpoint`` is alpha and keys on one id
column through its datasinks; archives have no guaranteed id column, and file+row always exists.)
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from givetake.core.bundle import open_model
from givetake.core.classifier import OutputColumns, text_problem
from givetake.core.predictor import Predictor
from givetake.core.records import input_format, iter_records
from givetake.core.resources import available_cores
from givetake.serving.archive import ScoreError, parquet_rows
from givetake.serving.score import ScoreSummary
from givetake.serving.writers import ScoredRow, scored_table

INSTALL_HINT = "--engine ray needs Ray Data, which is not installed; install it with: pip install 'givetake[ray]'"
JOB_FILE = "_givetake_job.json"  # what the run read and with which model: a resume must match it
ERRORS_DIR = "errors"
FAULT_ENV = "GIVETAKE_RAY_FAULT"  # tests: "kill-after:N" kills one scoring actor after its N-th batch
SOURCE_COLUMNS = ("source_file", "source_row")
BLOCK_BYTES = 256 * 1024
MAX_STRIPES = 8


@dataclass
class _Job:
    inputs: list[dict[str, Any]]
    model: str
    text_column: str | None
    engine: str | None


def _import_ray() -> Any:
    try:
        # Lazy: Ray is an optional extra and takes seconds to import; only this runner needs it.
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ScoreError(INSTALL_HINT) from None
    return ray


def _key(file: str) -> str:
    """A short name for an input file in partition names."""
    return hashlib.sha1(file.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _cause(exc: BaseException) -> str:
    """The line of a Ray task error that names the original exception (``ValueError: ...``)."""
    lines = [x.strip() for x in str(exc).splitlines()]
    named = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit)\b[^:]*: ")
    causes = [x for x in lines if named.match(x) and "RayTaskError" not in x]
    return causes[-1] if causes else (lines[0] if lines and lines[0] else type(exc).__name__)


def read_rows(batch: pa.Table, text_column: str | None, chunk_size: int, done: Any) -> Iterator[pa.Table]:
    """One stripe of an input file as tables of ``chunk_size`` rows, skipping ``done`` rows.

    The batch is one item: ``path``, ``stripe`` and ``stripes``. Stripe k of n holds the file's
    chunks k, k + n, k + 2n...: each stripe task reads the whole file but keeps only its chunks, so
    one large file feeds n actors at once (reading costs a few percent of scoring; see
    docs/archives.md).
    """
    ray = _import_ray()
    done_rows: dict[str, set[int]] = ray.get(done[0]) if done else {}
    items = zip(*(batch.column(c).to_pylist() for c in ("path", "stripe", "stripes")))
    for path, stripe, stripes in items:
        src = Path(str(path))
        kind = input_format(src)
        skip = done_rows.get(str(src), set())
        position = -1
        files: list[str] = []
        rows: list[int] = []
        recs: list[bytes] = []
        problems: list[str | None] = []
        for row, rec, problem in iter_records(src, kind, chunk_size):
            position += 1
            if (position // chunk_size) % stripes != stripe or row in skip:
                continue
            files.append(str(src))
            rows.append(row)
            recs.append(pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL))
            problems.append(problem)
            if len(rows) >= chunk_size:
                yield _rows_table(files, rows, recs, problems)
                files, rows, recs, problems = [], [], [], []
        if rows:
            yield _rows_table(files, rows, recs, problems)


def _rows_table(files: list[str], rows: list[int], recs: list[bytes], problems: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "source_file": pa.array(files, pa.string()),
            "source_row": pa.array(rows, pa.int64()),
            "record": pa.array(recs, pa.binary()),
            "problem": pa.array(problems, pa.string()),
        }
    )


class ScoreBatches:
    """The scoring actor: loads the model once, then scores and writes one partition per batch."""

    def __init__(
        self,
        model: str,
        outdir: str,
        text_column: str | None,
        engine: str | None,
        batch_size: int,
        threads: int,
        fault: str | None = None,
    ) -> None:
        self.predictor = Predictor(model, batch_size=batch_size, engine=engine, threads=threads)
        self.cols = OutputColumns(self.predictor.labels, inline_errors=False)
        self.outdir = Path(outdir)
        self.text_column = text_column
        self.batches = 0
        self.kill_after = int(fault.split(":")[1]) if fault and fault.startswith("kill-after:") else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        files = batch.column("source_file").to_pylist()
        rows = batch.column("source_row").to_pylist()
        recs = [pickle.loads(b) for b in batch.column("record").to_pylist()]
        problems = batch.column("problem").to_pylist()
        scored: list[ScoredRow] = []
        where: list[tuple[str, int]] = []
        failed: list[tuple[str, int, str]] = []
        texts: list[str] = []
        for file, row, rec, problem in zip(files, rows, recs, problems):
            column = self.text_column or ("full_text" if file.lower().endswith(".js") else "text")
            if rec is not None and problem is None:
                problem = text_problem(rec, column)
            if problem is None:
                texts.append(rec[column])
                scored.append(ScoredRow(row, rec, None))
                where.append((file, row))
            else:
                failed.append((file, row, problem))
        for r, pred in zip(scored, self.predictor.predict(texts) if texts else []):
            r.prediction = pred
        digest = hashlib.sha1()
        for file, row in zip(files, rows):
            digest.update(f"{_key(file)}:{row};".encode())
        name = f"part-{digest.hexdigest()[:20]}.parquet"
        if scored:
            table = scored_table(scored, self.cols)
            table = _with_sources(table, [w[0] for w in where], [w[1] for w in where])
            _write_atomic(table, self.outdir / name)
        if failed:
            errors = pa.table(
                {
                    "source_file": pa.array([f[0] for f in failed], pa.string()),
                    "source_row": pa.array([f[1] for f in failed], pa.int64()),
                    "reason": pa.array([f[2] for f in failed], pa.string()),
                }
            )
            _write_atomic(errors, self.outdir / ERRORS_DIR / name)
        self.batches += 1
        if self.kill_after is not None and self.batches >= self.kill_after:
            marker = self.outdir / ".fault-fired"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once per job, by one actor
            except FileExistsError:
                pass
            else:
                os.close(fd)
                # After the write and before Ray hears of it: the worst moment; the retried batch
                # must rewrite the same partition, not add a second copy.
                os.kill(os.getpid(), signal.SIGKILL)
        return pa.table({"read": [len(rows)], "scored": [len(scored)], "errors": [len(failed)], "pid": [os.getpid()]})


def _with_sources(table: pa.Table, files: list[str], rows: list[int]) -> pa.Table:
    """``source_file`` and ``source_row`` first; an input column of the same name becomes ``input_<name>``;
    columns with no value at all are typed as text, so partitions of one job share a schema."""
    for name in SOURCE_COLUMNS:
        if name in table.column_names:
            table = table.rename_columns([f"input_{c}" if c == name else c for c in table.column_names])
    for i, f in enumerate(table.schema):
        if f.type == pa.null():
            table = table.set_column(i, f.name, pa.nulls(len(table), pa.string()))
    table = table.add_column(0, "source_row", pa.array(rows, pa.int64()))
    return table.add_column(0, "source_file", pa.array(files, pa.string()))


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def committed(outdir: Path) -> tuple[dict[str, set[int]], int, int]:
    """The rows already written under ``outdir`` (file -> rows), and how many were scored and errors.

    Leftover temporary files (a write cut off by a kill) are removed: their rows are not done.
    """
    done: dict[str, set[int]] = {}
    counts = [0, 0]
    for i, folder in enumerate((outdir, outdir / ERRORS_DIR)):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".part-*.tmp"):
            tmp.unlink(missing_ok=True)
        for part in folder.glob("part-*.parquet"):
            table = pq.read_table(part, columns=list(SOURCE_COLUMNS))
            for file, row in zip(table.column(0).to_pylist(), table.column(1).to_pylist()):
                done.setdefault(file, set()).add(row)
            counts[i] += len(table)
    return done, counts[0], counts[1]


def _start_ray(ray: Any, address: str | None, workers: int) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=workers, **kwargs)


def score_with_ray(
    inputs: list[Path],
    outdir: str | Path,
    model: str | Path,
    text_column: str | None = None,
    resume: bool = False,
    address: str | None = None,
    workers: int | None = None,
    chunk_size: int = 512,
    batch_size: int = 32,
    engine: str | None = None,
    progress: bool = True,
) -> ScoreSummary:
    """Score ``inputs`` into Parquet partitions under ``outdir`` on Ray (a local one unless ``address``).

    ``workers`` scoring actors (default: the local cores, or the cluster's CPUs), each loading the
    model once, one CPU and one engine thread each. ``engine`` is the inference engine inside the
    actors (default auto: onnx-int8 when exported). ``model`` must be a path every node can read.
    """
    started = time.monotonic()
    ray = _import_ray()
    dst = Path(outdir)
    if dst.exists() and not dst.is_dir():
        raise ScoreError(f"{dst}: --engine ray writes Parquet partitions to a folder, not a file; choose another -o")
    bundle = open_model(model)  # resolve a store tag to its directory once, on the driver
    model_dir = str(bundle.path)
    chosen = bundle.engine(engine)
    job = _Job(
        inputs=[{"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in inputs],
        model=model_dir,
        text_column=text_column,
        engine=chosen,
    )
    job_path = dst / JOB_FILE
    done: dict[str, set[int]] = {}
    prev_scored = prev_errors = 0
    if resume:
        if not job_path.is_file():
            raise ScoreError(f"{dst}: no {JOB_FILE} here, so no interrupted --engine ray run to resume; drop --resume")
        old = json.loads(job_path.read_text(encoding="utf-8"))
        if old != job.__dict__:
            raise ScoreError(
                f"cannot resume {dst}: the inputs, model, text column or engine differ from the interrupted run; "
                "run the same command, or score again without --resume"
            )
        done, prev_scored, prev_errors = committed(dst)
    else:
        if dst.is_dir():
            _clear(dst)
        dst.mkdir(parents=True, exist_ok=True)
        job_path.write_text(json.dumps(job.__dict__), encoding="utf-8")
    (dst / ".fault-fired").unlink(missing_ok=True)

    _start_ray(ray, address, workers or available_cores())
    actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours below counts posts; Ray's count blocks
    ctx.print_on_execution_start = False
    # Ray merges what a task yields into blocks of up to 128 MiB; the scoring actors take whole
    # blocks, so one file would land on one actor. Small blocks (about one chunk each) spread the
    # rows of even a single file over every actor, and keep what waits between the stages small.
    ctx.target_max_block_size = BLOCK_BYTES
    done_ref = [ray.put({str(Path(k)): v for k, v in done.items()})] if done else []
    # Enough readers to keep every actor fed even from a single file; at most MAX_STRIPES per file,
    # as each stripe parses the whole file (parsing a row costs about 1/1000 of scoring it).
    stripes = min(MAX_STRIPES, -(-actors // len(inputs)))
    items = [{"path": j["path"], "stripe": k, "stripes": stripes} for j in job.inputs for k in range(stripes)]
    files = ray.data.from_items(items, override_num_blocks=len(items))
    rows = files.map_batches(
        read_rows,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={"text_column": text_column, "chunk_size": chunk_size, "done": done_ref},
        num_cpus=0,  # light next to scoring; a CPU held by a reader would idle a scoring actor
    )
    stats = rows.map_batches(
        ScoreBatches,
        batch_size=chunk_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "model": model_dir,
            "outdir": str(dst.resolve()),
            "text_column": text_column,
            "engine": chosen,
            "batch_size": batch_size,
            "threads": 1,
            "fault": os.environ.get(FAULT_ENV),
        },
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )

    totals = [parquet_rows(p) if input_format(p) == "parquet" else None for p in inputs]
    total = sum(t for t in totals if t is not None) if all(t is not None for t in totals) else None
    already = prev_scored + prev_errors
    bar = tqdm(
        total=total,
        initial=already,
        unit=" posts",
        desc=f"scoring on Ray ({actors} actors)",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    read = scored = errors = 0
    try:
        for batch in stats.iter_batches(batch_size=None, batch_format="pyarrow"):
            n = sum(batch.column("read").to_pylist())
            read += n
            scored += sum(batch.column("scored").to_pylist())
            errors += sum(batch.column("errors").to_pylist())
            bar.update(n)
    except Exception as exc:  # a Ray task error: one line with the cause, and how to carry on
        cause = _cause(exc)
        raise ScoreError(f"the Ray run stopped ({cause}); run the same command with --resume to continue") from None
    finally:
        bar.close()
    return ScoreSummary(
        read=already + read,
        scored=prev_scored + scored,
        errors=prev_errors + errors,
        output=dst,
        errors_path=dst / ERRORS_DIR if prev_errors + errors else None,
        seconds=time.monotonic() - started,
        resumed_from=already,
        files=len(inputs),
    )


def _clear(dst: Path) -> None:
    """Remove what an earlier ``--engine ray`` run left in ``dst`` (only its own files)."""
    for folder in (dst, dst / ERRORS_DIR):
        if folder.is_dir():
            for p in [*folder.glob("part-*.parquet"), *folder.glob(".part-*.tmp")]:
                p.unlink()
    (dst / JOB_FILE).unlink(missing_ok=True)
