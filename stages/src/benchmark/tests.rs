//! Benchmark tests.
