//! Consul's wire format: how requests are decoded and responses shaped, so Consul clients work
//! unmodified. Nothing here knows about HTTP routing or the write path.

pub mod duration;
pub mod relaxed;
pub mod request;
pub mod response;
