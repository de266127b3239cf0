"""Wire formats: request bodies into float64 arrays in signature order, predictions into JSON.

Codecs know the HTTP body and the model's feature names; they know nothing of metrics, the
registry, or how a model computes.
"""
