"""Notes: each author's short notes, kept in memory (a plug-in example, not a product)."""
