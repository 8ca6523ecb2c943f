"""Model knowledge: the recipe book, its schema and sync, the resolver, the catalog of
checkpoints, images and sizing.
"""
