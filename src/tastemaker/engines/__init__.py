"""Execution engines beyond one machine (Apache Spark)."""
