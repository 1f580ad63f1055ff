"""Thin adapters from trainers' events to the one :class:`curvlab.Monitor`.

``curvlab.integrations.lightning.CurvlabCallback`` (PyTorch Lightning 2.x) and
``curvlab.integrations.transformers.CurvlabCallback`` (the Hugging Face ``Trainer``) build an Objective on the
trainer's model, step the Monitor after each optimizer step, and pass its new scalars to the trainer's own
logging. They measure nothing themselves and never change training state. Each module imports its trainer
package, so ``import curvlab`` works without either.
"""
