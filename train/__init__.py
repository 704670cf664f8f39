"""Training DSLNet: data readers, identity sampler, augmentation, losses, loop (``python -m train.run``)."""
