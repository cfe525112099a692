"""Readers for every upload format, turning a file into vectors, ids and metadata.

Every reader ends in the same checks (:func:`read_dataset`): vectors become a finite
float32 C-contiguous ``(n, d)`` matrix, ids are unique strings, metadata is a typed pandas
frame with one row per vector. Anything embscope cannot use raises
:class:`~core.errors.InvalidInputError` with a message saying what is wrong, where (rows,
lines, columns, keys) and how to fix it; anything odd but usable is accepted with a note in
``warnings``. Pickles are never loaded: every ``np.load`` passes ``allow_pickle=False`` and
object arrays are refused from their header before any data is read.

Hostile files do no harm: every read works within the limits of a :class:`ReadLimits`
(``limits=``, default :meth:`ReadLimits.from_environment`: :func:`read_budget_bytes`; or
``max_read_bytes=``) and refuses a file whose contents would expand beyond its memory
budget, from the sizes its headers declare (npy/npz headers, zip entries, Parquet footers,
HDF5 dataspaces) before anything large is allocated. Compressed containers (npz, Parquet,
h5ad) may also expand to at most :data:`MAX_EXPANSION_RATIO` times the file's size (above
:data:`EXPANSION_RATIO_FLOOR`): a decompression bomb is refused, a real embedding file
(float32 vectors compress about 1.1x) never is. Reading itself is capped too, so a header
that lies cannot get through: zip entries stop at their declared size, Parquet is read in
batches whose real size is counted. Text is never read through a path whose suffix asks
pyarrow to decompress it.

No file makes embscope read anything outside it: a path that is a symbolic link (or not a
regular file) is refused; an .h5ad is walked link by link before any data is read and
refused if it holds an external link, external raw storage, a virtual dataset, a soft link
leading out of the file, a filter that is not built into HDF5 (a plugin) or references; a
Parquet footer naming another file (``file_path``) or encrypted is refused before pyarrow
reads a column chunk; an .npz member stored as a symbolic link is refused (members are read
from the archive, never extracted).

Rows are named by file line (counting from 1) for text formats and by row number
(counting from 0, the same numbers that become the default ids) for binary formats.

The package, by module:

- :mod:`~embscope.core.ingest.api`: :func:`read_dataset`, :func:`inspect_file`,
  :func:`from_arrays`.
- :mod:`~embscope.core.ingest.readers`: the registries ``READERS`` and ``METADATA_READERS``
  (``{suffix: reader}``) and the dispatch through them.
- :mod:`~embscope.core.ingest.limits`: :class:`ReadLimits`, the per-read ``ReadBudget``.
- :mod:`~embscope.core.ingest.model`: :class:`FileInspection`, :class:`ParsedDataset`, what a
  reader is given (``ReadRequest``) and returns (``Loaded``).
- :mod:`~embscope.core.ingest.checks`: the shared checks of vectors, ids and metadata.
- :mod:`~embscope.core.ingest.files`: suffix, regular-file, size and library-error checks of
  a file.
- :mod:`~embscope.core.ingest.columns`: typed metadata and vector columns of table formats.
- One module per format family: :mod:`~embscope.core.ingest.numpy_files` (npy, npz, and
  :func:`read_query_vector`), :mod:`~embscope.core.ingest.parquet` (its footer checked by
  :mod:`~embscope.core.ingest.parquet_footer`),
  :mod:`~embscope.core.ingest.delimited` (CSV/TSV/TXT, the Projector's files; parsing in
  :mod:`~embscope.core.ingest.text_tables`), :mod:`~embscope.core.ingest.json_files` (JSONL,
  JSON) and :mod:`~embscope.core.ingest.anndata` (h5ad).
"""

from embscope.core.ingest.api import from_arrays, inspect_file, read_dataset
from embscope.core.ingest.limits import (
    EXPANSION_RATIO_FLOOR,
    MAX_EXPANSION_RATIO,
    MAX_QUERY_VECTOR_BYTES,
    READ_BUDGET_ENV,
    ReadLimits,
    read_budget_bytes,
)
from embscope.core.ingest.model import FORMATS, FileInspection, ParsedDataset
from embscope.core.ingest.numpy_files import read_query_vector
from embscope.core.ingest.readers import METADATA_SUFFIXES, SUPPORTED_SUFFIXES

__all__ = [
    "EXPANSION_RATIO_FLOOR",
    "FORMATS",
    "MAX_EXPANSION_RATIO",
    "MAX_QUERY_VECTOR_BYTES",
    "METADATA_SUFFIXES",
    "READ_BUDGET_ENV",
    "SUPPORTED_SUFFIXES",
    "FileInspection",
    "ParsedDataset",
    "ReadLimits",
    "from_arrays",
    "inspect_file",
    "read_budget_bytes",
    "read_dataset",
    "read_query_vector",
]
