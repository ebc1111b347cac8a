"""Lowering passes (installed as tilec.passes); one pass per file."""
