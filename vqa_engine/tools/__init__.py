"""Offline tools, run as python -m vqa_engine.tools.NAME: training, evaluation, calibration,
export to ONNX and the picture sets (easy-VQA, pictures as people draw them, out-of-distribution).
"""
