//! Identity stage (placeholder until it lands).
