"""Helpers the tests share: not tests themselves, so they live apart from the test modules."""
