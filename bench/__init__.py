"""The benchmarks: not tests; they measure, and write bench/results/ and bench/RESULTS.md."""
