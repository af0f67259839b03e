//! statusd: skeleton module map (rewritten at the end of this step).
#![forbid(unsafe_code)]

pub mod status;
pub mod token;
