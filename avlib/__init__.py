"""avlib: the building blocks of the audio-visual masked-autoencoder course.

Layers import only downwards:
primitives (env, audio, vision, patching, pos_embed, masking, blocks) -> data, losses, plots -> models
-> train, evaluate, predict, convert -> ``python -m avlib``.

Shape legend used everywhere: B batch, T time frames, F mel bins, H/W image height/width, N tokens,
L tokens before masking, D embedding width, K classes.
"""

__version__ = "0.1.0"
