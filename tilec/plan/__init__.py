"""Planner: schedule -> partition -> place -> lay out -> verify -> diagnose."""
