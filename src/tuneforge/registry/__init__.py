"""Records and lineage: run folders (the unit of truth), model artefacts, model cards and MLflow."""
