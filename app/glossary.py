"""The glossary: every term a page shows, explained in words a newcomer understands.

One place for the explanations, shown where the terms appear: as ``help=`` tooltips on
metrics, widgets and table columns (:func:`explain`, :func:`help_text`), and as a "What is
this?" expander listing the terms of a page (:func:`what_is_this`; the codecs of the
Compression page each get a sentence of their own, :func:`codec_explanation`).

An explanation never starts by repeating its term: it is shown after the term
(``**IsoScore**: how evenly...``). :func:`without_label` strips such a repetition from a text
written elsewhere (the scorecard's own explanations).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import streamlit as st

from embscope.app.text import md_escape

__all__ = [
    "PAGE_TERMS",
    "TERMS",
    "codec_explanation",
    "codec_family",
    "explain",
    "help_text",
    "title",
    "what_is_this",
    "without_label",
]

# term -> (how it is written on the page, what it means). The explanation follows the term
# on the page, so it never starts with the term itself (a test checks).
TERMS: dict[str, tuple[str, str]] = {
    # -- codecs (Compression page) ---------------------------------------------------------
    "float32": (
        "float32",
        "full precision, 4 bytes per dimension: the vectors as stored, and the reference every "
        "codec is measured against.",
    ),
    "float16": (
        "float16",
        "half precision: each number in 2 bytes instead of 4. Half the size, and it almost "
        "never changes a neighbour list.",
    ),
    "int8": (
        "int8",
        "each dimension rounded to one of 256 levels (one byte), on a range learned per "
        "dimension: 4× smaller than float32.",
    ),
    "binary": (
        "binary",
        "only the sign of each dimension is kept: one bit per dimension, 32× smaller than "
        "float32. Fast but coarse; it usually needs re-ranking. binary:centred subtracts the "
        "mean vector first; binary:asym compares the full-precision query with the bits.",
    ),
    "pq": (
        "pq:M (product quantisation)",
        "each vector is cut into M pieces, and each piece is stored as the number (one byte) "
        "of its nearest of 256 prototypes learned from the data.",
    ),
    "lvq": (
        "lvq:B (LVQ, locally-adaptive vector quantisation)",
        "after subtracting the mean vector, each vector is stored with B bits per dimension on "
        "a scale fitted to that vector's own range (two extra numbers per vector).",
    ),
    "lvq2": (
        "lvq:B1xB2 (two-level LVQ)",
        "a B1-bit LVQ code to search with, plus a B2-bit code of what the first level got "
        "wrong (its residual), used to re-rank the shortlist. Both levels are stored.",
    ),
    "leanvec": (
        "leanvec:D:B1xB2 (LeanVec)",
        "the vectors are first reduced to D dimensions (a PCA-like projection) and stored as "
        "LVQ-B1 to search with; the full vectors are also stored as LVQ-B2 to re-rank the "
        "shortlist.",
    ),
    "pca": (
        "pca:K",
        "keeps the K directions in which the vectors vary most (their principal components), "
        "as float32.",
    ),
    "rp": (
        "rp:K (random projection)",
        "projects the vectors onto K random directions, as float32. Nothing to learn, and "
        "distances are kept roughly (the Johnson-Lindenstrauss lemma).",
    ),
    "truncate": (
        "truncate:K (truncation)",
        "keeps the first K dimensions and drops the rest. Works well only for models trained "
        "for it (Matryoshka embeddings).",
    ),
    "dct": (
        "dct:K (discrete cosine transform)",
        "each vector is rewritten as a sum of cosine waves (as JPEG does with images) and the "
        "first K coefficients are kept. dct:K:renorm rescales the result to unit length.",
    ),
    "rerank": (
        "re-ranking (re-ranked with)",
        "search with the small codes for a longer shortlist (r·k candidates), then re-order "
        "that shortlist with a more precise representation and keep the top k. 're-ranked "
        "with' names it: the float32 vectors (which must then be kept too), or a two-level "
        "codec's own second level ('secondary lvq:8', 'two-level lvq:4x8'), already in its "
        "bytes.",
    ),
    "first_stage": (
        "first stage",
        "what a two-level codec searches with before re-ranking: LVQ-B1's codes, or LeanVec's "
        "reduced vectors. Its recall is that first search alone.",
    ),
    "bytes": (
        "bytes per vector",
        "the size of one compressed vector, with its per-vector constants. Shared bytes "
        "(codebooks, ranges, projections) are stored once for the whole dataset.",
    ),
    "ratio": ("× smaller", "float32's size divided by the codec's bytes per vector."),
    "spearman": (
        "Spearman ρ",
        "whether similarities keep their order after compression: the rank correlation of "
        "the similarities of random pairs, before and after (1: every pair keeps its place).",
    ),
    "pareto": (
        "Pareto front",
        "the codecs that no other codec beats on both size and recall at once: the best "
        "trade-offs. Every other codec has one that is smaller and at least as good.",
    ),
    "interval": (
        "± (95 % interval)",
        "how sure the number is: a range that holds the true mean 95 times in 100, estimated "
        "by resampling the queries (bootstrap).",
    ),
    # -- neighbours and search -------------------------------------------------------------
    "recall": (
        "recall@k",
        "of a query's k true nearest neighbours (found by exact search), the share a faster, "
        "approximate search returns. 1 means nothing was missed.",
    ),
    "exact": (
        "exact search",
        "compares the query with every item: always right, slower on large datasets.",
    ),
    "hnsw": (
        "HNSW",
        "an approximate search index (Hierarchical Navigable Small World): a layered graph of "
        "links between nearby items, walked from coarse to fine. Very fast; it may miss a few "
        "true neighbours.",
    ),
    "ef": (
        "ef",
        "how many candidates HNSW keeps in hand while it searches (at least k). Higher finds "
        "more of the true neighbours, and takes longer.",
    ),
    "M": (
        "M",
        "how many links each item gets in the HNSW graph (16 here). More links: better "
        "recall, more memory.",
    ),
    "ef_construction": (
        "ef_construction",
        "the ef used while the HNSW index is built (200 here): how carefully each item's "
        "links are chosen.",
    ),
    "milvus": ("Milvus", "a vector database; embscope can search through it instead of HNSW."),
    "metric": (
        "metric",
        "how distance is measured: cosine (the angle between vectors, for text embeddings), "
        "l2 (straight-line distance) or inner product (the dot product, larger is closer).",
    ),
    "latency": ("latency", "how long one search took, in milliseconds."),
    "qps": ("queries / s", "queries answered per second by one thread."),
    "hub_reduction": (
        "hub reduction (CSLS, mutual proximity)",
        "re-ranks the nearest candidates so that hubs (items close to almost everything) stop "
        "crowding every answer. CSLS subtracts each item's average closeness to its own "
        "neighbours; mutual proximity asks whether the closeness is mutual.",
    ),
    # -- geometry ---------------------------------------------------------------------------
    "isoscore": (
        "IsoScore",
        "how evenly the vectors' variance is spread over all directions: 0 when everything "
        "lies on one line, 1 when it is the same in every direction.",
    ),
    "effective_rank": (
        "effective rank",
        "roughly how many directions the data really use (the exponential of the entropy of "
        "the singular values): the dimension itself when all are used equally.",
    ),
    "partition_isotropy": (
        "partition isotropy I(W)",
        "1 when no single direction dominates the raw vectors, near 0 when one does (often an "
        "offset shared by every vector).",
    ),
    "participation_ratio": (
        "participation ratio",
        "another count of the directions in use, from the variances: K for K equal "
        "variances, small when a few directions dominate.",
    ),
    "avg_cosine": (
        "average cosine",
        "the mean cosine similarity of two different vectors: about 0 when they point every "
        "way, near 1 when they all lean the same way.",
    ),
    "pca_spectrum": (
        "PCA spectrum",
        "the share of the variance along each principal direction, largest first, and how "
        "many directions it takes to explain 90, 95 and 99 % of it.",
    ),
    "intrinsic_dimension": (
        "intrinsic dimension",
        "how many directions the data can vary in locally, whatever the number of "
        "coordinates: a sheet of paper crumpled in 3-D is still 2-dimensional.",
    ),
    "lid": (
        "LID (local intrinsic dimension)",
        "the intrinsic dimension seen around one point, from how fast the distances to its "
        "20 nearest neighbours grow. High-LID regions are where approximate search loses "
        "recall.",
    ),
    "twonn": (
        "TwoNN",
        "an intrinsic-dimension estimate from the ratio of each point's second to first "
        "nearest-neighbour distance; it under-estimates above about 10.",
    ),
    "mle": (
        "MLE (Levina-Bickel)",
        "a maximum-likelihood intrinsic-dimension estimate from each point's distances to its "
        "k nearest neighbours, averaged over the points.",
    ),
    "dse": (
        "DSE (diffusion spectral entropy)",
        "the entropy, in bits, of a random walk's spread over the data: low for a few tight "
        "clusters or a simple shape (log2 of the number of clusters), up to log2 of the "
        "sample size for structureless noise.",
    ),
    "hubness": (
        "hubness, k-occurrence",
        "k-occurrence counts in how many of the other items' lists of k nearest neighbours "
        "an item appears. Hubs are items in almost everyone's list, anti-hubs in no one's; the "
        "skewness of the counts measures hubness (near 0 or below: none).",
    ),
    # -- projections -------------------------------------------------------------------------
    "projection": (
        "projection (layout)",
        "a 2-D or 3-D map of the vectors that tries to keep near items near. Distances "
        "between far-apart groups on the map mean little.",
    ),
    "umap": (
        "UMAP",
        "a projection that keeps each item's nearest neighbours together (our port of "
        "umap-learn, on the shared neighbour graph).",
    ),
    "largevis": (
        "LargeVis",
        "a projection like t-SNE, fitted by sampling neighbour links: keeps local groups "
        "tight and scales to millions of points.",
    ),
    "heatgeo": (
        "heat-geodesic",
        "a projection from distances measured along the data (how heat spreads over the "
        "neighbour graph); keeps the overall shape of curved data, like the Swiss roll.",
    ),
    "pca_layout": (
        "PCA",
        "the view along the two (or three) directions in which the data vary most: fast and "
        "faithful to large distances, but mixes up local groups.",
    ),
    "trustworthiness": (
        "trustworthiness",
        "whether neighbours on the map are true neighbours (1: no false neighbours brought in).",
    ),
    "continuity": (
        "continuity",
        "whether true neighbours stay neighbours on the map (1: none torn apart).",
    ),
    "knn_preservation": (
        "kNN preservation",
        "the share of each item's k nearest neighbours that are also its k nearest on the map.",
    ),
    "knn_accuracy": (
        "kNN accuracy",
        "how often the label of an item is the majority label of its k nearest neighbours on "
        "the map, for the label column chosen when the layout was computed.",
    ),
    "geodesic": (
        "geodesic ρ",
        "for data with known true coordinates (the Swiss roll): the rank correlation of "
        "distances on the map with distances along the roll.",
    ),
    "clusters": (
        "clusters (Leiden)",
        "groups of items more linked to each other than to the rest in the neighbour graph, "
        "each named by its most typical words.",
    ),
    "neighbour_graph": (
        "neighbour graph",
        "each item's nearest neighbours, computed once per dataset and metric and shared by "
        "every page.",
    ),
    "cells": (
        "cells",
        "groups of nearby items (k-means clusters). To find neighbours fast, embscope compares "
        "items only within a cell and its nearest cells, instead of every item with every "
        "other.",
    ),
    "nndescent": (
        "NN-descent",
        "finds approximate nearest neighbours on large datasets by repeatedly checking the "
        "neighbours of neighbours.",
    ),
    # -- compare -----------------------------------------------------------------------------
    "overlap": (
        "neighbourhood overlap",
        "for each item, the share of its k nearest neighbours found in both embeddings (1: "
        "the same neighbours).",
    ),
    "jaccard": (
        "Jaccard",
        "the overlap of two neighbour lists as shared items over all distinct items in either.",
    ),
    "cka": (
        "CKA (linear centred kernel alignment)",
        "how alike two embeddings of the same items are as a whole, ignoring rotation and "
        "scale: 1 for the same space, near the chance level for unrelated ones.",
    ),
    "procrustes": (
        "Procrustes alignment",
        "the second map is rotated, scaled and shifted to lie as closely as possible on the "
        "first, so the two can be read side by side; its disparity is what remains (0: "
        "identical).",
    ),
}

# The terms each page lists in its "What is this?" (by page title).
PAGE_TERMS: dict[str, tuple[str, ...]] = {
    "Neighbours": (
        "exact", "hnsw", "ef", "M", "ef_construction", "recall", "interval", "metric",
        "latency", "qps", "hub_reduction", "hubness", "lid", "milvus",
    ),
    "Projections": (
        "projection", "umap", "largevis", "heatgeo", "pca_layout", "trustworthiness",
        "continuity", "knn_preservation", "knn_accuracy", "geodesic", "clusters",
        "neighbour_graph", "cells", "nndescent",
    ),
    "Compare": ("overlap", "jaccard", "cka", "procrustes", "projection"),
    "Geometry": (
        "isoscore", "effective_rank", "partition_isotropy", "participation_ratio",
        "avg_cosine", "pca_spectrum", "intrinsic_dimension", "twonn", "mle", "lid", "dse",
        "hubness",
    ),
    "Compression": (
        "bytes", "ratio", "recall", "interval", "rerank", "first_stage", "spearman",
        "isoscore", "effective_rank", "pareto",
    ),
}  # fmt: skip


def title(term: str) -> str:
    """How ``term`` is written on the page."""
    return TERMS[term][0]


def explain(term: str) -> str:
    """What ``term`` means, as a sentence starting with a capital."""
    text = TERMS[term][1]
    return text[:1].upper() + text[1:]


def help_text(*terms: str) -> str:
    """A tooltip for a widget or metric: the terms' explanations, each after its name when
    there is more than one."""
    if len(terms) == 1:
        return explain(terms[0])
    return "\n\n".join(f"**{title(t)}**: {TERMS[t][1]}" for t in terms)


_BITS = re.compile(r"^([1-8])(?:x([1-8]))?$")


def codec_family(spec: str) -> str:
    """The glossary term of a codec spec (``"pq:48"`` -> ``"pq"``, ``"lvq:4x8"`` ->
    ``"lvq2"``); the spec's own name when it is not one the glossary knows."""
    name, *args = spec.strip().lower().split(":")
    if name == "lvq" and args and "x" in args[0]:
        return "lvq2"
    return name if name in TERMS else spec


def codec_explanation(spec: str) -> str:
    """One sentence on what ``spec`` (a canonical codec spec) stores, with its own numbers:
    ``pq:48`` cuts each vector into 48 pieces, ``lvq:4x8`` searches with 4 bits a dimension
    and re-ranks with 8 more..."""
    name, *args = spec.strip().lower().split(":")
    arg = args[0] if args else ""
    bits = _BITS.match(arg)
    if name == "pq" and arg.isdigit():
        return (
            f"product quantisation: each vector cut into {arg} pieces, each stored as the "
            "number (one byte) of its nearest of 256 prototypes learned from the data."
        )
    if name == "lvq" and bits:
        b1, b2 = bits.group(1), bits.group(2)
        if b2 is None:
            return (
                f"LVQ (locally-adaptive vector quantisation): {b1} bits per dimension, on a "
                "scale fitted to each vector's own range after subtracting the mean vector."
            )
        return (
            f"two-level LVQ: searches with a {b1}-bit code per dimension, then re-ranks the "
            f"shortlist with a {b2}-bit code of what the first level got wrong; both levels "
            "are stored."
        )
    if name == "leanvec" and arg.isdigit():
        second = _BITS.match(args[1]) if len(args) > 1 else _BITS.match("4x8")
        b1 = second.group(1) if second else "4"
        b2 = second.group(2) if second else None
        tail = (
            f"; the full vectors are also stored as {b2}-bit LVQ to re-rank the shortlist."
            if b2
            else " (no second level: re-ranked with float32)."
        )
        return (
            f"LeanVec: reduced to {arg} dimensions (a PCA-like projection) and stored as "
            f"{b1}-bit LVQ to search with{tail}"
        )
    if name in ("pca", "rp", "truncate", "dct") and arg.isdigit():
        what = {
            "pca": f"the {arg} directions in which the vectors vary most (principal components)",
            "rp": f"{arg} random directions (random projection)",
            "truncate": f"the first {arg} dimensions only (truncation; good for Matryoshka models)",
            "dct": f"the first {arg} coefficients of a discrete cosine transform",
        }[name]
        renorm = ", rescaled to unit length" if args[1:] == ["renorm"] else ""
        return f"keeps {what}, as float32{renorm}."
    if name == "int8" and arg == "absmax":
        return (
            "each dimension rounded to one of 256 levels (one byte), on a range symmetric around 0."
        )
    family = codec_family(spec)
    return TERMS[family][1] if family in TERMS else "a codec embscope does not describe yet."


_LINKS = ("in", "of", "by", "for", "on", "with", "from")


def without_label(label: str, text: str) -> str:
    """``text`` without a leading repetition of ``label`` ("IsoScore: how evenly..." after
    the label IsoScore reads "How evenly..."), so that no explanation repeats its label.
    Where the rest would open on a preposition, what the label names stays ("Diffusion
    spectral entropy in bits, ..." reads "Entropy in bits, ...", "IsoScore of an isotropic
    Gaussian with ..." reads "An isotropic Gaussian with ...")."""
    stripped = text.strip()
    for head in (label.strip(), re.sub(r"\s*\(.*\)$", "", label.strip())):
        if head and stripped.lower().startswith(head.lower()):
            rest = stripped[len(head) :]
            if rest[:1] in (":", " ", ",", ""):
                rest = rest.lstrip(":, ").strip()
                if rest.split(" ", 1)[0].lower() in _LINKS:  # keep what the label names
                    named = head.rsplit(" of ", 1)[1] if " of " in head else head.split()[-1]
                    rest = f"{named} {rest}"
                if rest:
                    return rest[:1].upper() + rest[1:]
    return stripped


def what_is_this(
    terms: Sequence[str],
    *,
    codecs: Iterable[str] = (),
    label: str = "What is this? The terms on this page",
) -> None:
    """An expander listing ``terms`` (glossary keys) and, first, every codec in ``codecs``
    with its own explanation."""
    with st.expander(label, icon=":material/help:"):
        lines = [f"- **{md_escape(spec)}**: {codec_explanation(spec)}" for spec in codecs]
        lines += [f"- **{title(t)}**: {TERMS[t][1]}" for t in terms if t in TERMS]
        st.markdown("\n".join(lines))
