//! PostgreSQL protocol 3.0 codec (placeholder until the codec lands).
