//! The training engine: everything that touches dfdx lives here.
pub mod batchnorm;
pub mod conv;
// pub mod data;
pub mod forward;
pub mod model;
