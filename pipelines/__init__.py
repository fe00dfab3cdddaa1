"""Whole-dataset steps as plain functions, and the `linkedout` CLI."""
