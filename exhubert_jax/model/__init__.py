"""Plain HuBERT in Flax and Backbone Block Expansion: config, layers, the layer stack, the classifier, heads, the
expanded layouts and expand(), and which parameters train. Nothing here knows about adapters."""
