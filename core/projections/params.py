"""The parameters of each projection method: one table each (see :mod:`core.params`).

The layout functions take their defaults from here, the Projections page draws its widgets
from here, and share links, ``embscope project --param`` and the Python API are checked
against these bounds before any work starts.
"""

from __future__ import annotations

from embscope.core.params import AUTO, Param, ParamTable

__all__ = ["HEATGEO_PARAMS", "LARGEVIS_PARAMS", "PCA_PARAMS", "PREVIEW_PARAMS", "UMAP_PARAMS"]

# The widest neighbour list any method may ask for: the shared graph is built this wide at
# most (GRAPH_K = 150 by default), so a link cannot ask for a graph of n x n.
MAX_NEIGHBOURS = 200

PCA_PARAMS = ParamTable("PCA", ())

LARGEVIS_PARAMS = ParamTable(
    "LargeVis",
    (
        Param(
            "n_neighbors", "int", 30, 2, MAX_NEIGHBOURS, "n neighbors",
            "K: neighbours per point that get a weight (reference 150; 30 keeps more of each "
            "point's nearest neighbours on real text, at every size measured).", below_n=True,
        ),
        Param(
            "perplexity", "float", 50.0, 1.0, 100.0, "perplexity",
            "Effective number of neighbours of the Gaussian weights (reference 50; capped "
            "at K / 3, so 10 at the default K = 30).",
        ),
        Param(
            "samples_per_point", "int", None, 1, 5_000, "samples per point",
            "Edge samples per point: more is slower and usually more faithful (automatic: "
            "1000, and at least 10 million in all).",
            auto=True, start=1000,
        ),
        Param(
            "negatives", "int", 5, 1, 20, "negatives",
            "M: negative samples per positive edge (reference 5).",
        ),
        Param(
            "gamma", "float", 7.0, 0.1, 50.0, "gamma",
            "γ: weight of the negative edges, how hard unrelated points push apart (reference "
            "7).",
        ),
    ),
)  # fmt: skip

UMAP_PARAMS = ParamTable(
    "UMAP",
    (
        Param(
            "n_neighbors", "int", 15, 2, MAX_NEIGHBOURS, "n neighbors",
            "Neighbourhood size, the point itself included: small keeps local detail, large "
            "keeps more of the global shape (umap-learn's default 15).",
            below_n=True,
        ),
        Param(
            "min_dist", "float", 0.1, 0.0, 1.0, "min dist",
            "How tightly points may pack together in the layout (umap-learn's default 0.1).",
        ),
        Param(
            "n_epochs", "int", None, 1, 2_000, "n epochs",
            "Optimisation rounds (automatic: 15 million / n, between 300 and 1,500; umap-learn "
            "runs 500 up to 10,000 points and 200 above).",
            auto=True, start=300,
        ),
    ),
)  # fmt: skip

HEATGEO_PARAMS = ParamTable(
    "Heat-geodesic",
    (
        Param(
            "knn", "int", 10, 1, 100, "knn",
            "Bandwidth neighbour of the alpha-decay kernel (reference 10).", below_n=True,
        ),
        Param(
            "tau", "float", AUTO, 0.1, 500.0, "τ (diffusion time)",
            "Diffusion time: small follows the graph closely, large smooths over it "
            "(automatic: the knee of the time-entropy curve).",
            auto=True, auto_value=AUTO, start=10.0,
        ),
        Param(
            "sigma", "float", 0.0, 0.0, 100.0, "sigma",
            "Weight of the Harnack term (reference 0).",
        ),
        Param(
            "n_landmarks", "int", None, 4, 20_000, "n landmarks",
            "Landmarks of the heat kernel and the MDS (automatic: 256 to 2,000 by size; every "
            "point when there are fewer). The paper's method uses every point.",
            auto=True, start=2_000,
        ),
        Param(
            "mds", "choice", "reference", 0, 1, "MDS",
            "Metric MDS by SGD. reference: unit weights, steps 1 to 0.01 (s_gd2.mds_direct "
            "with w=None, as the paper's code runs it: every pair counts the same, global "
            "shape first). weighted: weights 1/d², steps to 0.1 (near pairs count most).",
            choices=("reference", "weighted"),
        ),
        Param(
            "complete", "bool", True, 0, 1, "complete distances",
            "Our addition, not in the paper: distances beyond the heat kernel's reach (which "
            "all saturate at one value) are replaced by shortest paths through reliable "
            "heat-geodesic distances. Off: the paper's saturated distances.",
        ),
    ),
)  # fmt: skip

# The quick preview of LargeVis and UMAP (core/projections/preview.py): a layout of a seeded
# sample, every other point placed by its neighbours in the sample. The two settings join
# those methods' tables in core/projections/runs.py (PARAM_TABLES); preview_layout takes its
# defaults from here. Off, they are left out of the request, so a full layout's key is the
# same as before they existed.
PREVIEW_PARAMS = ParamTable(
    "Preview",
    (
        Param(
            "preview", "bool", False, 0, 1, "preview",
            "A quick preview: lay out a sample of the points, then place every other point at "
            "its nearest sample points (a few optimisation steps each). Minutes faster on "
            "large datasets; labelled as a preview wherever it is shown.",
        ),
        Param(
            "preview_sample", "int", 50_000, 1_000, 200_000, "preview sample",
            "Points laid out in a preview (used only with preview on; a dataset of at most "
            "this many points gets its full layout).",
        ),
    ),
)  # fmt: skip
