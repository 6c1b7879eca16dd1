//! Runtime stage.
