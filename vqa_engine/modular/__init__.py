"""Our modular VQA model (image encoder + question encoder + fusion + classifier) and its package
format: the files a model package holds, how they load, and the predictor that runs one batch.
"""
