"""Training data: corpus reading, the FIM transform, repository-level packing into rows."""
