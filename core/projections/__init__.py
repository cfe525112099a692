"""2-D and 3-D layouts of a dataset (PCA now; LargeVis, UMAP and heat-geodesic to come)."""
