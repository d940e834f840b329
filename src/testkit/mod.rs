//! Test support shipped with the library for the service tests, benchmarks and fuzz targets: key
//! sources answering from a script, so no test needs a network.

pub mod scripted_keys;
