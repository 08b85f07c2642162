"""Serving: the engine that batches questions from every front end and runs the model off the
event loop, with its queue, answer cache and statistics. It never imports training code.
"""
