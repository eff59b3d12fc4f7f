//! The lab, behind opt-in features: the demo (the proxy in front of an embedded store) and the harnesses the fuzz targets and corpus tests call.

#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
