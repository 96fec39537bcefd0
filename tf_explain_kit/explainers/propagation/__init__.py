"""Propagation methods' shared machinery: LRP and DeepLIFT as modified backward passes.

Both keep the model's forward pass and replace the backward pass of chosen layers:

- :mod:`.graph` probes the model once (every layer and operation call, nested and custom
  layers included) and finds which tensors vary with the input;
- :mod:`.kinds` sorts each layer into what the rules need to know (linear, elementwise,
  max pooling, product, softmax, normalisation, attention, recurrent, container);
- :mod:`.lrp_rules`, :mod:`.composites` and :mod:`.canonizers` are LRP's rules (objects),
  the maps from layers to rules, and the rewrites applied before any rule runs;
- :mod:`.deeplift_rules` holds DeepLIFT's multipliers (rescale, max pooling, products);
- :mod:`.recurrent` and :mod:`.attention` write LSTM/GRU cells and attention as elementwise
  steps and products, so that each method's rules apply to them.
"""
