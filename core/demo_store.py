"""Putting demo and generated datasets into the store, through the same checks as uploads."""

from __future__ import annotations

from collections.abc import Callable

from embscope.core.demo import DemoDataset, demo_datasets
from embscope.core.ingest import from_arrays
from embscope.core.store import DatasetInfo, Store

__all__ = ["load_demo_datasets", "store_demo_dataset"]


def store_demo_dataset(store: Store, demo: DemoDataset, *, name: str | None = None) -> DatasetInfo:
    """Validate ``demo`` like an upload and store it under ``name`` (default ``demo.name``)."""
    parsed = from_arrays(
        demo.vectors,
        metadata=demo.metadata,
        id_column=demo.id_column,
        source=f"embscope demo: {demo.name}",
        format="demo",
    )
    info = {"description": demo.description, **dict(demo.info)}
    return store.add_dataset(parsed, name=name or demo.name, info=info)


def load_demo_datasets(
    store: Store, *, progress: Callable[[float, str], bool | None] | None = None
) -> list[DatasetInfo]:
    """Store every bundled demo dataset that is not there yet (matched by name).

    Returns the datasets added (empty when all were already present).
    """
    present = {d.name for d in store.list_datasets()}
    added: list[DatasetInfo] = []
    demos = demo_datasets()
    for i, demo in enumerate(demos):
        if progress is not None and progress(i / len(demos), f"storing {demo.name}"):
            break
        if demo.name in present:
            continue
        added.append(store_demo_dataset(store, demo))
    return added
