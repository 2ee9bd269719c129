//! Transport (placeholder).
