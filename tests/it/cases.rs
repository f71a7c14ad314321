//! Data-driven cases: written next.
