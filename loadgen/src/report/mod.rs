//! Reports of a finished result (`crate::result`): the live progress line, the final table,
//! JSON, HdrHistogram percentile files and interval logs. Nothing here computes a figure the
//! summary has.

pub mod files;
pub mod progress;
pub mod table;
