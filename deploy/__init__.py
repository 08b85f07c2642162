"""Deploying vqa-chat: a Hugging Face Space (``space.py``); the systemd unit lives beside it."""
