"""Training DSLNet: dataset readers, identity sampling, augmentation, losses, the loop, evaluation.

Entry points: ``python -m train.run`` (train / resume / fine-tune), ``python -m train.evaluate``
(Rank-k, mAP, CMC and pictures for a checkpoint) and ``python -m train.peers`` (the peer models
measured with the same evaluation code). Everything here imports torch; ``dslnet_edge`` never
imports this package.
"""
