"""Hugging Face checkpoints: the PyTorch/transformers layouts and their key table (`mapping`), reading them tensor by
tensor (`torch_io`), the released ExHuBERT's layout (`released`), our exports' config (`exhubert_config`), the
conversion to our parameters (`conversion`), and Hub ids with their converted cache (`repos`). Above `pretrained`
(it writes and reads checkpoints), below everything that accepts a checkpoint; converters/ builds on it."""
