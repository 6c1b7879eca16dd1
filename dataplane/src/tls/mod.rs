//! Client and upstream TLS.
