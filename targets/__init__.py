"""Target descriptions and cost models (installed as tilec.targets)."""
