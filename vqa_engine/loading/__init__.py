"""From MODEL_REPO_ID to a ready backend: a local folder or a Hub repo (downloaded into the Hub
cache), one model or an ensemble of them.
"""
