//! Session stage.
