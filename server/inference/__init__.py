"""Turning validated rows into predictions: the predictor (fast and generic paths) and the batcher
that merges concurrent requests. Wire formats live in `server.codecs`, models in `server.live`.
"""
