//! Host collectors (placeholder until the collectors land).
