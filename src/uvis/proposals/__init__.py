"""Class-agnostic object proposals from self-supervised features (UVIS §3.1: CutLER's MaskCut).

Import from the submodules (``uvis.proposals.maskcut``, ``uvis.proposals.refine``); nothing is
re-exported here, because a ``maskcut`` function in this namespace would shadow the submodule.
"""
