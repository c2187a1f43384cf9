"""Barycentric alignment of many models, with per-stimulus agreement.

K models' representations of the same n stimuli (n x d_k each, d_k may differ) are centred,
optionally scaled, brought to a common dimension (zero-padding or PCA) and aligned to their
barycenter up to a nuisance symmetry (rotations, unit permutations).  The shared space then gives

- per-stimulus agreement (:meth:`BarycentricAlignment.stimulus_agreement`,
  :meth:`~BarycentricAlignment.rank_stimuli`, :meth:`~BarycentricAlignment.agreement_null`):
  which inputs the models converge or diverge on;
- set-level summaries (:meth:`~BarycentricAlignment.summary`);
- cross-modal retrieval (:func:`cross_modal_retrieval`): align vision and language models post
  hoc on paired stimuli and match held-out image/text pairs by cosine similarity.

Example::

    from fastmlem.align import BarycentricAlignment
    al = BarycentricAlignment(group="orth", dim=64, scale="frobenius").fit(
        {"vit": X_vit, "resnet": X_resnet, "clip": X_clip})
    al.rank_stimuli("cosine", top=10)           # most convergent / divergent stimuli
    Z_new = al.transform(X_vit_new, "vit")      # held-out stimuli in the shared space
"""
from ._agreement import identification, mean_pairwise_cosine
from ._crossmodal import CrossModalResult, cross_modal_retrieval, retrieval_accuracy
from ._estimator import BarycentricAlignment
from ._solve import procrustes_distance

__all__ = ["BarycentricAlignment", "CrossModalResult", "cross_modal_retrieval",
           "retrieval_accuracy", "procrustes_distance", "mean_pairwise_cosine", "identification"]
