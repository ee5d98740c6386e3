"""Tag-based bottom-up video instance segmentation (Kini & Shah), trained on ground truth or on
the UVIS pseudo-labels.

- :mod:`uvis.tagvis.config`: :class:`~uvis.tagvis.config.TagVisConfig`, its presets
  (``default``, ``smoke``, ``paper``) and the ablation switches of the paper's Table III;
- :mod:`uvis.tagvis.model`: the network (R(2+1)D encoder, location embedding, spatio-temporal,
  tag-based and self-attention, tag generator, semantic decoder);
- :mod:`uvis.tagvis.losses`: the spatio-temporal tagging loss, one function per equation;
- :mod:`uvis.tagvis.clips`, :mod:`uvis.tagvis.data`: which frames make a clip, and training
  clips with tracked targets;
- :mod:`uvis.tagvis.train`: resumable training (:func:`~uvis.tagvis.train.train_tagvis`);
- :mod:`uvis.tagvis.checkpoint`: checkpoints (:func:`~uvis.tagvis.checkpoint.load_tagvis_model`);
- :mod:`uvis.tagvis.clustering`, :mod:`uvis.tagvis.infer`: tags to instances by 1-D mean-shift,
  and inference to YouTube-VIS results and DAVIS PNGs
  (:func:`~uvis.tagvis.infer.infer_videos`).

Nothing is re-exported here: inference needs neither the training code nor its imports.
"""
