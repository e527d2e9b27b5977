"""Helpers the template's tests share (see README.md here); fixtures stay in conftest.py."""
