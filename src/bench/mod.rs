//! Benchmarks behind `bntop bench` (training speed, metrics on vs off) and `bntop bench-dashboard`
//! (render time, terminal bandwidth, memory of the dashboard). Release builds only give numbers
//! worth reporting.
pub mod dashboard;
pub mod session;
pub mod training;
