//! Braid field sender agent (ARCHITECTURE.md): control-plane client, stream actors,
//! device status, and a development control plane.

pub mod media;
pub mod streams;
