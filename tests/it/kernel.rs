//! Kernel tests: written next.
