"""An upload saved as a new dataset, as a background job with progress and Cancel.

Two kinds of job (:class:`core.jobs.JobRunner`'s ``kind``), one request dataclass each:

* ``upload`` (:class:`VectorsUpload`): a file of vectors (and a metadata file) read and
  checked (:func:`core.ingest.read_dataset`), the model recognised from the file's own texts
  when none was named (:func:`core.text_ingest.recognise_model`), the metric guessed when none
  was chosen, then stored.
* ``text_upload`` (:class:`TextsUpload`): a table of texts whose column is embedded with the
  bundled model (:func:`core.text_ingest.read_texts`, a Cancel check every 256 texts), then
  stored; one such job embeds at a time in a process (it takes both cores for minutes).

:func:`save_upload` runs either. Cancel is honoured at every progress report up to the write:
the reports are made between the steps (and between the chunks of texts), before anything is
written, so a cancelled job raises :class:`~core.errors.OperationCancelled` and leaves the
database as it was. The read of a file of vectors has no report inside it
(:func:`core.ingest.read_dataset` takes no progress): a Cancel pressed while it reads stops the
job when the read ends. The write itself (:meth:`core.store.Store.add_dataset`) is one
transaction, so an error in it leaves nothing either; it is not interrupted (once it has
started, the job finishes and the dataset is saved; its progress says so).
:func:`core.memory.job_peak` estimates either kind's peak from the request's ``n``, ``dim``,
``text_bytes`` and ``loads_model``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from embscope.core.errors import InvalidInputError
from embscope.core.memory import upload_text_bytes
from embscope.core.progress import ProgressFn, check_cancel, stage
from embscope.core.validation import check_int

if TYPE_CHECKING:
    from embscope.core.store import DatasetInfo, Store

__all__ = [
    "BUSY_EMBEDDING",
    "TEXT_UPLOAD_KIND",
    "UPLOAD_KIND",
    "UPLOAD_KINDS",
    "WRITING",
    "SavedUpload",
    "TextsUpload",
    "VectorsUpload",
    "check_upload",
    "model_record",
    "save_upload",
    "upload_key",
]

UPLOAD_KIND = "upload"
TEXT_UPLOAD_KIND = "text_upload"
UPLOAD_KINDS = (UPLOAD_KIND, TEXT_UPLOAD_KIND)
_WHAT = "the upload"
# What the progress says while the dataset is written: Cancel no longer applies then.
WRITING = "writing to the database (too late to cancel)"


@dataclass(frozen=True)
class VectorsUpload:
    """A file of vectors to save as the dataset ``name`` (the upload form's choices).

    ``n`` and ``dim``: the rows and dimension the inspection found (for the memory estimate).
    ``model`` None: recognised from the file's own texts when a supported model matches;
    ``metric`` None: guessed from the vectors.
    """

    kind: ClassVar[str] = UPLOAD_KIND
    path: Path
    filename: str
    name: str
    n: int
    dim: int
    metadata_path: Path | None = None
    metadata_filename: str | None = None
    id_column: str | None = None
    vector_column: str | None = None
    vector_columns: tuple[str, ...] | None = None
    model: str | None = None
    metric: str | None = None

    @property
    def source(self) -> str:
        """What the catalog shows as its origin: the names the user's files had."""
        if self.metadata_filename is None:
            return self.filename
        return f"{self.filename} + {self.metadata_filename}"

    @property
    def paths(self) -> tuple[Path, ...]:
        """The uploaded files the job reads."""
        return tuple(p for p in (self.path, self.metadata_path) if p is not None)

    @property
    def text_bytes(self) -> int:
        """Bytes of its files that are parsed as text (CSV, TSV, JSON), for the estimate."""
        return upload_text_bytes(self.paths)

    @property
    def loads_model(self) -> bool:
        """Whether recognising the model loads a sentence model (one of its dimension)."""
        from embscope.core.text_model import SUPPORTED_MODELS

        return self.model is None and any(s.dim == self.dim for s in SUPPORTED_MODELS.values())


@dataclass(frozen=True)
class TextsUpload:
    """A table of texts whose ``text_column`` is embedded with ``model`` and saved as ``name``;
    ``n``: its rows."""

    kind: ClassVar[str] = TEXT_UPLOAD_KIND
    loads_model: ClassVar[bool] = True
    path: Path
    filename: str
    name: str
    text_column: str
    model: str
    n: int
    id_column: str | None = None

    @property
    def source(self) -> str:
        return self.filename

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    @property
    def text_bytes(self) -> int:
        """The table's bytes (all of it is text), for the memory estimate."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def dim(self) -> int:
        """The dimension of the model's vectors."""
        from embscope.core.text_model import SUPPORTED_MODELS, canonical_model_name

        spec = SUPPORTED_MODELS.get(canonical_model_name(self.model) or self.model)
        return spec.dim if spec is not None else 0


Upload = VectorsUpload | TextsUpload


@dataclass(frozen=True)
class SavedUpload:
    """What a finished upload job returns: the new dataset, the read's warnings, and the
    model recognised from the file's texts (name, text column, lowest cosine) if any."""

    request: Upload
    dataset: DatasetInfo
    warnings: tuple[str, ...]
    recognised: tuple[str, str, float] | None = None


def _check_text(value: Any, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be non-empty text, got {value!r}")


def check_upload(store: Store, request: Upload) -> Upload:
    """Check ``request`` before any work: its files exist, its choices are text, its name is
    valid and not taken (the name is checked again when the dataset is written).

    Raises
    ------
    InvalidInputError
        What is wrong, and how to fix it.
    """
    if not isinstance(request, (VectorsUpload, TextsUpload)):
        raise InvalidInputError(
            f"an upload is a VectorsUpload or a TextsUpload, got {type(request).__name__}"
        )
    from embscope.core.tables import validate_name

    name = validate_name(request.name)
    for path in request.paths:
        if not isinstance(path, Path) or not path.is_file():
            raise InvalidInputError(
                f"the uploaded file of {request.filename!r} is gone from the server (it is "
                "removed once saved or after a day): upload it again"
            )
    _check_text(request.filename, "filename")
    check_int(request.n, "n", low=0)
    if isinstance(request, VectorsUpload):
        check_int(request.dim, "dim", low=0)
        for field in ("metadata_filename", "id_column", "vector_column", "model", "metric"):
            _check_text(getattr(request, field), field, optional=True)
        if request.vector_columns is not None:
            if not request.vector_columns:
                raise InvalidInputError("choose at least one vector column")
            for column in request.vector_columns:
                _check_text(column, "a vector column")
        if (request.metadata_path is None) != (request.metadata_filename is None):
            raise InvalidInputError("a metadata file needs both its path and its file name")
    else:
        _check_text(request.text_column, "text_column")
        _check_text(request.model, "model")
        _check_text(request.id_column, "id_column", optional=True)
    taken = [d.id for d in store.list_datasets() if d.name == name]
    if taken:
        raise InvalidInputError(
            f"a dataset named {name!r} already exists (id {taken[0]}): choose another name"
        )
    return request


def upload_key(request: Upload) -> str:
    """The job key of an upload: its kind and a hash of its files and choices (asking twice
    joins the running job)."""
    text = repr((request.kind, *(str(p) for p in request.paths), request))
    return f"{request.kind}:{hashlib.blake2b(text.encode(), digest_size=12).hexdigest()}"


def model_record(chosen: str | None, recognised: tuple[str, str, float] | None) -> dict[str, str]:
    """What a dataset records of its model: the one chosen, else the one recognised."""
    if chosen is not None:
        return {"model": chosen}
    if recognised is not None:
        return {"model": recognised[0], "text_column": recognised[1]}
    return {}


# One table of texts is embedded at a time in a process (it takes both cores for minutes).
_EMBEDDING = threading.BoundedSemaphore(1)
BUSY_EMBEDDING = (
    "Another upload's texts are being embedded on this server: try again when it has finished."
)


def save_upload(store: Store, request: Upload, progress: ProgressFn | None = None) -> SavedUpload:
    """Save an upload as a new dataset: the work of an ``upload`` or ``text_upload`` job.

    ``progress(fraction, message)`` is called between the steps (and between chunks of texts);
    when it returns True the job stops with :class:`OperationCancelled`, before anything is
    written. The uploaded files are only read (the caller removes them).

    Raises
    ------
    InvalidInputError
        The request or the file cannot be used (the message says why); nothing is written.
    OperationCancelled
        ``progress`` asked to stop; nothing is written.
    """
    check_upload(store, request)
    if isinstance(request, TextsUpload):
        if not _EMBEDDING.acquire(blocking=False):
            raise InvalidInputError(BUSY_EMBEDDING)
        try:
            return _save_texts(store, request, progress)
        finally:
            _EMBEDDING.release()
    return _save_vectors(store, request, progress)


def _save_vectors(store: Store, request: VectorsUpload, progress: ProgressFn | None) -> SavedUpload:
    from embscope.core.ingest import read_dataset
    from embscope.core.text_ingest import recognise_model
    from embscope.core.validation import metric_record

    check_cancel(progress, 0.0, "reading and checking the file", _WHAT)
    parsed = read_dataset(
        request.path,
        filename=request.filename,
        metadata_path=request.metadata_path,
        metadata_filename=request.metadata_filename,
        id_column=request.id_column,
        vector_column=request.vector_column,
        vector_columns=None if request.vector_columns is None else list(request.vector_columns),
    )
    # The catalog shows the names the user's files had, not the upload paths.
    parsed = replace(parsed, source=request.source)
    recognised = None
    if request.model is None:
        check_cancel(progress, 0.5, "recognising the model from the file's own texts", _WHAT)
        recognised = recognise_model(parsed.vectors, parsed.metadata)
    info = {
        **metric_record(parsed.vectors, request.metric),
        **model_record(request.model, recognised),
    }
    check_cancel(progress, 0.6, WRITING, _WHAT)  # the last point where Cancel applies
    dataset = store.add_dataset(parsed, name=request.name, info=info)
    return SavedUpload(request, dataset, parsed.warnings, recognised)


def _save_texts(store: Store, request: TextsUpload, progress: ProgressFn | None) -> SavedUpload:
    from embscope.core.text_ingest import read_texts, texts_info

    check_cancel(progress, 0.0, "reading the table", _WHAT)
    parsed = read_texts(
        request.path,
        text_column=request.text_column,
        model=request.model,
        filename=request.filename,
        id_column=request.id_column,
        progress=stage(progress, 0.0, 0.9),
    )
    info = texts_info(parsed, model=request.model, text_column=request.text_column, metric=None)
    check_cancel(progress, 0.9, WRITING, _WHAT)  # the last point where Cancel applies
    dataset = store.add_dataset(parsed, name=request.name, info=info)
    return SavedUpload(request, dataset, parsed.warnings)
