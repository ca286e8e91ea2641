//! Rust code generated from the `.proto` contracts in `proto/`.
//!
//! Only this crate includes generated code; everything else imports it from
//! here. `FILE_DESCRIPTOR_SET` feeds gRPC server reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]

/// Encoded `FileDescriptorSet` of every moat proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/moat_descriptor.bin"));

pub mod marketdata {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/moat.marketdata.v1.rs"));
    }
}

pub mod state {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/moat.state.v1.rs"));
    }
}

pub mod gateway {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/moat.gateway.v1.rs"));
    }
}
