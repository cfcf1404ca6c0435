"""Deployment providers behind one protocol (`base.Provider`): the local runtime (`local`) and
RunPod (`runpod/`); `factory.provider_for` picks one from an environment's settings."""
