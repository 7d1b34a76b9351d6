//! Stepgate: an OpenID Connect identity provider with TOTP two-factor
//! authentication built in.

pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod email;
pub mod hasher;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod protocol;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod layers;
