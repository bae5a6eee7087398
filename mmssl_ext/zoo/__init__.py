"""Published self-supervised weights of other frameworks, converted to mmpretrain backbones.

Key decision (shared by the converters, the loader schemes and the model index): every
converter and every scheme (``vissl://``, ``dino://``, ``mmselfsup://``) returns a checkpoint
``dict(state_dict=..., meta=...)`` whose keys are the mmpretrain backbone's WITH the
``backbone.`` prefix, i.e. laid out like a full mmpretrain classifier / selfsup model without
its heads. So:

* backbone ``init_cfg``: ``dict(type='Pretrained', checkpoint='vissl://FILE',
  prefix='backbone.')`` (as our benchmark configs already do for our own checkpoints);
* a whole model (``mmpretrain.get_model(NAME, pretrained='dino://FILE')``, ``load_from``):
  no prefix; the head stays as initialised.

Layer: bottom (as ``utils``); imports only ``mmssl_ext.utils`` and ``mmssl_ext.registry``.
"""
